"""The Modal deployment, checked offline from Modal's own objects: no token, no network."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hi_moe.ops import deploy
from tests.support import refuse_connections, requires

pytestmark = requires("modal", "modal")

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "deployment" / "modal"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any attempt to open a connection fails the test: defining the apps must not need one."""
    return refuse_connections(monkeypatch)


def load(name: str, monkeypatch: pytest.MonkeyPatch, mode: str = "dev") -> ModuleType:
    monkeypatch.setenv("HI_MOE_DEPLOY_MODE", mode)
    spec = importlib.util.spec_from_file_location(
        f"deployment_{name}_{mode}", DEPLOYMENT / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["dev", "demo", "prod"])
def test_the_server_app_is_built_as_its_mode_says(
    mode: str, monkeypatch: pytest.MonkeyPatch, no_network: list[object]
) -> None:
    server = load("vllm_server", monkeypatch, mode)
    info: Any = server.serve.info()
    wanted = deploy.MODES[mode]  # type: ignore[index]
    assert info.gpus == [(wanted.gpu, 1)]
    assert info.concurrency_info.max_inputs == wanted.max_inputs
    assert info.web_info.unauthenticated is False  # requires_proxy_auth
    assert info.timeout == 24 * 3600
    assert {path: v.name for path, v in info.volumes.items()} == {
        deploy.MODELS_DIR: deploy.MODELS_VOLUME,
        deploy.ADAPTERS_DIR: deploy.ADAPTERS_VOLUME,
        deploy.CACHE_DIR: deploy.CACHE_VOLUME,
    }
    assert info.secrets == [f"modal.Secret.from_name('{deploy.API_KEY_SECRET}')"]
    assert server.app.name == deploy.APP_NAME
    assert no_network == []


def test_gpu_and_model_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HI_MOE_DEPLOY_GPU", "H100")
    monkeypatch.setenv("HI_MOE_DEPLOY_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    server = load("vllm_server", monkeypatch)
    assert server.serve.info().gpus == [("H100", 1)]
    assert server.config.model_dir == "/models/Qwen--Qwen2.5-7B-Instruct"
    assert server.config.served_model_name == "qwen2.5-7b-instruct"
    defaults = deploy.deployment({})
    assert defaults.model == "Qwen/QwQ-32B-AWQ"
    assert defaults.gpu == "A100-40GB"
    with pytest.raises(ValueError, match="HI_MOE_DEPLOY_MODE must be one of"):
        deploy.deployment({"HI_MOE_DEPLOY_MODE": "staging"})


def test_the_command_line_serves_every_adapter_with_xgrammar_and_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[object]
) -> None:
    from hi_moe.ops.serving import vllm_command

    server = load("vllm_server", monkeypatch)
    for name in ("python-lora", "math-lora", "sql-lora"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": 16}))
    command = vllm_command(server.server_options(str(tmp_path), key="k-123"), python="python")
    modules = command[command.index("--lora-modules") + 1 :][:3]
    assert sorted(m.split("=")[0] for m in modules) == ["math-lora", "python-lora", "sql-lora"]
    config = json.loads(command[command.index("--structured-outputs-config") + 1])
    assert config["backend"] == "xgrammar"
    assert command[command.index("--api-key") + 1] == "k-123"
    assert command[command.index("--model") + 1] == server.config.model_dir
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert int(command[command.index("--max-loras") + 1]) >= 3


def test_the_training_app_has_a_gpu_and_the_three_volumes(
    monkeypatch: pytest.MonkeyPatch, no_network: list[object]
) -> None:
    training = load("training", monkeypatch, "prod")
    info: Any = training.train.info()
    assert info.gpus == [("A100-80GB", 1)]
    assert {v.name for v in info.volumes.values()} == {
        deploy.MODELS_VOLUME,
        deploy.ADAPTERS_VOLUME,
        deploy.DATA_VOLUME,
    }
    assert info.timeout == 6 * 3600


def test_upload_reports_bad_lines_by_number_and_uploads_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload = load("upload_data", monkeypatch)
    uploaded: list[object] = []
    monkeypatch.setattr(upload, "upload", uploaded.append)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"domain": "math", "prompt": "1+1?", "answer": "2"}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [
                json.dumps({"domain": "math", "prompt": "2+2?", "answer": "4"}),
                "{not json",
                json.dumps({"domain": "math", "prompt": "x"}),
                json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
            ]
        )
    )
    assert upload.main([str(good), str(bad)]) == 1
    assert uploaded == []
    err = capsys.readouterr().err
    assert f"{bad}: line 2: not JSON" in err
    assert f"{bad}: line 3: needs string fields" in err
    assert f"{bad}: line 4: the last message must be the assistant's answer" in err
    assert "good.jsonl" not in err
    assert upload.main([str(good)]) == 0
    assert uploaded == [[good]]


def test_modal_deploy_without_a_token_fails_fast_and_the_script_says_what_to_do(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "HI_MOE_"))} | {
        "HOME": str(tmp_path),
        "PYTHON": sys.executable,
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(DEPLOYMENT / "deploy.sh")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert "Token missing" in done.stderr  # Modal's own message
    assert "modal token new" in done.stderr  # and ours: what to do
    assert elapsed < 15  # about 1.5 s here


def test_the_scripts_say_what_is_missing_without_modal(tmp_path: Path) -> None:
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.exit(1)'\n")
    fake_python.chmod(0o755)
    for script in ("deploy.sh", "test_deployment.sh", "stop.sh"):
        done = subprocess.run(
            ["bash", str(DEPLOYMENT / script)],
            env={**os.environ, "PYTHON": str(fake_python)},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 2
        assert "modal is not installed" in done.stderr
        assert "pip install" in done.stderr


@pytest.mark.filterwarnings("ignore:The download_model function is executing locally")
def test_the_model_is_downloaded_at_its_pinned_revision_only(
    monkeypatch: pytest.MonkeyPatch, no_network: list[object]
) -> None:
    import huggingface_hub

    fetched: list[dict[str, Any]] = []
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo, **kw: fetched.append({"repo": repo, **kw}),
    )
    server = load("vllm_server", monkeypatch)
    with pytest.raises(ValueError, match="HI_MOE_DEPLOY_MODEL_REVISION"):
        server.download_model.local()  # no pin: nothing is fetched
    assert fetched == []

    commit = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("HI_MOE_DEPLOY_MODEL_REVISION", commit)
    server = load("vllm_server", monkeypatch)
    monkeypatch.setattr(server.models, "commit", lambda: None)
    target = server.download_model.local()
    assert fetched == [{"repo": deploy.DEFAULT_MODEL, "revision": commit, "local_dir": target}]
    assert target == f"/models/Qwen--QwQ-32B-AWQ@{commit}" == server.config.model_dir


@pytest.mark.parametrize("moving", ["main", "v1.0", "0123abc"])
def test_a_revision_that_can_move_is_refused(moving: str) -> None:
    with pytest.raises(ValueError, match="commit id"):
        deploy.deployment({"HI_MOE_DEPLOY_MODEL_REVISION": moving})
