"""`hi-moe serve-local --tiny --write-config hi_moe.toml`, then `hi-moe health | adapters |
complete | run` against it, as the README shows (the run on the written config: the tiny
model's context is small); stopping the command stops vLLM and every worker it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hi_moe import Regex, constraints
from hi_moe.ops.serving import free_port
from tests.support import requires

pytestmark = [
    pytest.mark.integration,
    requires("vllm", "server"),
    requires("peft", "train"),
    requires("openai", "openai"),
]

KEY = "serve-local-key-8d7c"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def hi_moe(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hi_moe", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_serve_local_tiny_serves_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    tiny_dir = tmp_path / "tiny"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "hi_moe", "serve-local", "--tiny", "--tiny-dir", str(tiny_dir),
         "--port", str(port), "--log-file", str(tmp_path / "vllm.log"),
         "--write-config", str(tmp_path / "hi_moe.toml")],
        env={**env, "HI_MOE_MODAL__API_KEY": KEY, "HF_HUB_OFFLINE": "1"},
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "vLLM did not start"
                time.sleep(1)
        client_env = {
            **env,
            "HI_MOE_PROVIDER": "modal",
            "HI_MOE_MODAL__ENDPOINT": url,
            "HI_MOE_MODAL__API_KEY": KEY,
        }
        health = hi_moe("health", env=client_env)
        assert health.returncode == 0, health.stderr
        assert health.stdout.startswith("vllm: ok")  # provider = "modal" is its alias
        adapters = hi_moe("adapters", "--json", env=client_env)
        assert sorted(json.loads(adapters.stdout)) == ["math-lora", "python-lora"]
        answer = hi_moe(
            "complete", "Code?", "--adapter", "math-lora", "--regex", "[A-Z]{2}-[0-9]{2}",
            env=client_env,
        )  # fmt: skip
        assert answer.returncode == 0, answer.stderr
        constraints.check(Regex("[A-Z]{2}-[0-9]{2}"), answer.stdout.rstrip("\n"))
        # The README's `hi-moe run "Add two numbers"`, on the config serve-local wrote.
        run_env = {
            **env,
            "HI_MOE_MODAL__API_KEY": KEY,
            "HI_MOE_PIPELINE__JOURNAL": str(tmp_path / "journal.sqlite"),
            "HI_MOE_PIPELINE__METRICS": str(tmp_path / "metrics.jsonl"),
        }
        started = time.monotonic()
        done = hi_moe("run", "Add two numbers", env=run_env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip()  # the answer: noise, but an answer
        assert "context" not in done.stderr
        assert "offline mock" not in done.stderr
        assert "succeeded" in done.stderr
        print(f"hi-moe run on the tiny model: {time.monotonic() - started:.1f} s")
        wrong = hi_moe("adapters", env={**client_env, "HI_MOE_MODAL__API_KEY": "nope"})
        assert wrong.returncode == 1
        assert "AuthenticationError" in wrong.stderr
        assert KEY not in wrong.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert processes_mentioning(str(tiny_dir)) == []
    with pytest.raises(OSError, match="Connection refused"):
        urllib.request.urlopen(f"{url}/health", timeout=2)
