"""`hi-moe doctor` against real servers: the tiny vLLM server passes every check; a server
that ignores constraints fails, naming each check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import VLLMServer
from tests.servers.openai_stub import running

ROOT = Path(__file__).resolve().parents[2]


def doctor(url: str, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    env.update(HI_MOE_PROVIDER="modal", HI_MOE_MODAL__ENDPOINT=url)
    if api_key:
        env["HI_MOE_MODAL__API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "hi_moe.cli", "doctor"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


def test_doctor_passes_against_the_tiny_vllm_server(vllm_server: VLLMServer) -> None:
    done = doctor(vllm_server.url, vllm_server.api_key)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    for name in ("health", "plain request (auth)", "choice enforced", "regex enforced",
                 "json_schema enforced", "grammar enforced", "adapter python-lora",
                 "adapter math-lora"):  # fmt: skip
        assert any(line.startswith(f"ok   {name}:") for line in lines), (name, lines)


def test_doctor_fails_a_server_that_ignores_constraints_naming_the_checks() -> None:
    with running("The sea is wide and grey.") as url:
        done = doctor(url)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith("ok   health") for line in lines), lines
    for kind in ("choice", "regex", "json_schema", "grammar"):
        assert any(
            line.startswith(f"FAIL {kind} enforced: the server ignored the constraint")
            for line in lines
        ), (kind, lines)
    assert "Traceback" not in done.stderr


def test_doctor_fails_on_a_wrong_key_in_one_line(vllm_server: VLLMServer) -> None:
    done = doctor(vllm_server.url, "not-the-key")
    assert done.returncode == 1
    assert any("FAIL plain request (auth): authentication failed" in line
               for line in done.stdout.splitlines()), done.stdout  # fmt: skip
    assert "Traceback" not in done.stderr
