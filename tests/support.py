"""Helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from hi_moe import constraints

requires_grammar = pytest.mark.skipif(
    not constraints.grammar_engine_available(),
    reason="needs the grammar extra (xgrammar): pip install 'hi-moe[grammar]'",
)

# Running code with this prelude makes `import xgrammar` fail, as on an install without the
# grammar extra.
WITHOUT_XGRAMMAR = "import sys\nsys.modules['xgrammar'] = None\n"


def run_python(code: str, *, timeout: float = 120) -> str:
    """Run `code` in a fresh interpreter; return its stdout, failing the test on error."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def requires(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip (locally; CI forbids skips) when an optional extra is not installed."""
    import importlib.util

    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"needs the {extra} extra ({module}): pip install 'hi-moe[{extra}]'",
    )


def requires_bubblewrap() -> pytest.MarkDecorator:
    """Skip (locally; CI installs bubblewrap and forbids skips) where bwrap cannot run."""
    from hi_moe.pipeline.sandbox import bubblewrap_problem

    problem = bubblewrap_problem()
    return pytest.mark.skipif(
        problem is not None,
        reason=f"needs bubblewrap (apt-get install bubblewrap): {problem}",
    )


def refuse_connections(
    monkeypatch: pytest.MonkeyPatch, error: type[Exception] = AssertionError
) -> list[object]:
    """Make every socket connect fail with `error`, recording the addresses tried: the socket
    guard of the offline tests."""
    import socket

    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise error(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def live_processes(tag: str) -> list[int]:
    """Pids of the processes (zombies left out) whose command line contains `tag`."""
    from pathlib import Path

    alive = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
                state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if tag.encode() in cmdline and state != "Z":
                alive.append(int(name))
    return alive
