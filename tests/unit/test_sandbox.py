"""Generated code runs in a child process with limits, and never outlives its timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hi_moe.sandbox import OUTPUT_LIMIT, run_python, run_python_async


def test_a_passing_program_passes() -> None:
    result = run_python("print('hi')")
    assert result.passed
    assert result.stdout == "hi\n"
    assert result.summary == "passed"


def test_a_failed_assertion_is_summarised_by_its_last_line() -> None:
    result = run_python("assert 1 + 1 == 3, 'arithmetic is broken'")
    assert not result.passed
    assert result.returncode == 1
    assert result.summary == "exit 1: AssertionError: arithmetic is broken"


def test_an_infinite_loop_is_killed_at_the_timeout() -> None:
    started = time.monotonic()
    result = run_python("while True:\n    pass", timeout_s=1.0)
    assert time.monotonic() - started < 3.0
    assert result.timed_out
    assert not result.passed
    assert result.summary == "timed out after 1.0 s"


def test_children_it_forked_die_with_it(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    program = f"""
import os, time
pid = os.fork()
if pid == 0:
    time.sleep(600)
else:
    open({str(marker)!r}, "w").write(str(pid))
    time.sleep(600)
"""
    result = run_python(program, timeout_s=1.0)
    assert result.timed_out
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while True:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # Reparented to init, it may linger as a zombie for a moment.
        status = Path(f"/proc/{child}/status")
        if status.exists() and "zombie" in status.read_text():
            break
        assert time.monotonic() < deadline, "the forked child survived the timeout"
        time.sleep(0.05)


def test_a_memory_bomb_fails_without_hurting_the_harness() -> None:
    result = run_python("x = bytearray(4 * 1024**3)", memory_mb=256)
    assert not result.passed
    assert "MemoryError" in result.summary


def test_nothing_from_the_harness_environment_leaks_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HI_MOE_OPENAI__API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    result = run_python("import os, json; print(json.dumps(dict(os.environ))); print(os.getcwd())")
    assert "sk-should-not-leak" not in result.stdout
    workdir = Path(result.stdout.splitlines()[-1])
    assert workdir.name.startswith("hi-moe-sandbox-")
    assert not workdir.exists()  # removed afterwards


def test_output_is_bounded() -> None:
    result = run_python("print('x' * 100_000)")
    assert len(result.stdout) < OUTPUT_LIMIT + 100
    assert "characters cut" in result.stdout


async def test_the_async_variant_behaves_the_same() -> None:
    assert (await run_python_async("print(2)")).stdout == "2\n"
    failed = await run_python_async("raise ValueError('bad')")
    assert failed.summary == "exit 1: ValueError: bad"
    slow = await run_python_async("import time\ntime.sleep(60)", timeout_s=0.5)
    assert slow.timed_out
