"""The vLLM command line: what Modal and the local server both run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from hi_moe.ops.serving import (
    STRUCTURED_OUTPUTS_CONFIG,
    ServeOptions,
    adapter_rank,
    find_adapters,
    redact,
    server_env,
    vllm_command,
)

KEY = "serve-key-5e6f"


def make_adapter(root: Path, name: str, rank: int = 8) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return directory


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_every_adapter_in_the_directory_is_served(tmp_path: Path) -> None:
    for name in ("sql-lora", "python-lora", "math-lora"):
        make_adapter(tmp_path / "adapters", name)
    (tmp_path / "adapters" / "notes").mkdir()  # no adapter_config.json: not an adapter
    (tmp_path / "model").mkdir()
    options = ServeOptions.from_directories(
        tmp_path / "model", tmp_path / "adapters", served_model_name="qwq", port=9000
    )
    command = vllm_command(options, python="python3")
    start = command.index("--lora-modules") + 1
    modules = command[start : start + 3]
    assert modules == [
        f"{name}={(tmp_path / 'adapters' / name).resolve()}"
        for name in ("math-lora", "python-lora", "sql-lora")
    ]
    assert command[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(command, "--model") == str((tmp_path / "model").resolve())
    assert flag(command, "--served-model-name") == "qwq"
    assert flag(command, "--port") == "9000"
    assert flag(command, "--max-loras") == "3"
    assert flag(command, "--max-lora-rank") == "8"
    assert "--enable-lora" in command
    assert "--enable-prefix-caching" in command


def test_structured_outputs_use_xgrammar_with_no_fallback() -> None:
    command = vllm_command(ServeOptions(model="m"))
    config = json.loads(flag(command, "--structured-outputs-config"))
    assert config == STRUCTURED_OUTPUTS_CONFIG
    assert config["backend"] == "xgrammar"  # a named backend: vLLM's "auto" would fall back
    assert not any("guided" in arg for arg in command)


def test_the_api_key_is_passed_and_redacted_for_logs() -> None:
    command = vllm_command(ServeOptions(model="m", api_key=SecretStr(KEY)))
    assert flag(command, "--api-key") == KEY
    shown = redact(command)
    assert KEY not in " ".join(shown)
    assert flag(shown, "--api-key") == "***"
    assert KEY not in repr(ServeOptions(model="m", api_key=SecretStr(KEY)))
    assert "--api-key" not in vllm_command(ServeOptions(model="m"))


def test_optional_flags_appear_only_when_set() -> None:
    plain = vllm_command(ServeOptions(model="m"))
    for name in ("--max-model-len", "--gpu-memory-utilization", "--lora-modules", "--api-key"):
        assert name not in plain
    full = vllm_command(
        ServeOptions(
            model="m",
            max_model_len=4096,
            gpu_memory_utilization=0.9,
            dtype="half",
            enable_prefix_caching=False,
            extra_args=("--quantization", "awq"),
        )
    )
    assert flag(full, "--max-model-len") == "4096"
    assert flag(full, "--gpu-memory-utilization") == "0.9"
    assert flag(full, "--dtype") == "half"
    assert "--enable-prefix-caching" not in full
    assert full[-2:] == ["--quantization", "awq"]


@pytest.mark.parametrize(("ranks", "expected"), [([], 16), ([8], 8), ([8, 12], 16), ([33], 64)])
def test_the_lora_rank_fits_the_largest_adapter(
    tmp_path: Path, ranks: list[int], expected: int
) -> None:
    for i, rank in enumerate(ranks):
        make_adapter(tmp_path, f"a{i}", rank)
    assert adapter_rank(find_adapters(tmp_path)) == expected


def test_a_rank_vllm_refuses_is_caught_here() -> None:
    with pytest.raises(ValueError, match="max_lora_rank must be one of"):
        vllm_command(ServeOptions(model="m", max_lora_rank=12))


def test_a_missing_adapter_directory_has_no_adapters(tmp_path: Path) -> None:
    assert find_adapters(tmp_path / "nope") == {}


def test_the_server_environment_enables_runtime_loading_and_keeps_what_is_set() -> None:
    env = server_env(cpu=True, base={"VLLM_CPU_KVCACHE_SPACE": "4"})
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert "VLLM_CPU_KVCACHE_SPACE" not in server_env(cpu=False, base={})
    assert server_env(cpu=True, base={})["VLLM_CPU_KVCACHE_SPACE"] == "1"
