"""With every key set, nothing a run leaves behind shows one: output, debug logs (ours, the
openai SDK's, httpx's), metrics, journal, error messages, reprs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import VLLMServer

pytestmark = pytest.mark.integration

PROXY_KEY = "wk-secret-proxy-key-4f1d"
PROXY_SECRET = "ws-secret-proxy-secret-9b2e"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hi_moe", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


# What a harness would print while debugging: the settings, the provider, an error.
REPRS = """
import asyncio, sys
from hi_moe.config import Settings, load_provider
settings = Settings.load(sys.argv[1])
provider = load_provider(settings)
print(repr(settings), settings.model_dump(), settings.model_dump_json(), repr(provider))
"""


def test_no_secret_appears_anywhere_after_a_run(vllm_server: VLLMServer, tmp_path: Path) -> None:
    config = tmp_path / "hi_moe.toml"
    config.write_text(
        f"""
provider = "modal"
[modal]
endpoint = "{vllm_server.url}"
[pipeline]
domains = ["python", "math"]
max_steps = 2
max_goal_chars = 24
plan_max_tokens = 256
step_max_tokens = {{ code = 160, text = 32, json = 96 }}
code_max_lines = 3
code_line_chars = 24
json_max_chars = 24
journal = "{tmp_path / "journal.sqlite"}"
metrics = "{tmp_path / "metrics.jsonl"}"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")} | {
        "HI_MOE_MODAL__API_KEY": vllm_server.api_key,
        "HI_MOE_MODAL__PROXY_KEY": PROXY_KEY,
        "HI_MOE_MODAL__PROXY_SECRET": PROXY_SECRET,
        "PYTHONUNBUFFERED": "1",
        "HI_MOE_LOG_LEVEL": "debug",
    }
    done = run(["run", "Add two numbers.", "--config", str(config)], env)
    assert done.returncode == 0, done.stderr
    wrong_key = "wrong-" + vllm_server.api_key[::-1]
    wrong = run(
        ["run", "Add two numbers.", "--config", str(config)],
        env | {"HI_MOE_MODAL__API_KEY": wrong_key},
    )
    assert wrong.returncode == 1
    assert "AuthenticationError" in wrong.stderr
    shown = run(["complete", "hi", "--json", "--config", str(config)], env)
    assert shown.returncode == 0, shown.stderr
    # The debug logs are really there, so their absence of secrets means something.
    for logged in (done.stderr, wrong.stderr, shown.stderr):
        assert "openai._base_client" in logged, logged[-2000:]
        assert "HTTP Request:" in logged, logged[-2000:]
    reprs = subprocess.run(
        [sys.executable, "-c", REPRS, str(config)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "**********" in reprs.stdout, reprs.stdout
    left_behind = [
        done.stdout, done.stderr, wrong.stdout, wrong.stderr, shown.stdout, shown.stderr,
        reprs.stdout, reprs.stderr,
        (tmp_path / "metrics.jsonl").read_text(),
        *(p.read_bytes().decode("latin-1") for p in tmp_path.glob("journal.sqlite*")),
    ]  # fmt: skip
    for secret in (vllm_server.api_key, PROXY_KEY, PROXY_SECRET, wrong_key):
        for text in left_behind:
            assert secret not in text
