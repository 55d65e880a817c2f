"""A run killed with SIGKILL mid-way resumes from its journal without redoing finished steps."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hi_moe.pipeline import Journal, ProgressMonitor
from hi_moe.providers import MockProvider
from tests.unit.pipeline_support import plan_of, scripted, step_of

PLAN = plan_of(
    ("s1", "a", "math", (), "text"),
    ("s2", "b", "math", (), "text"),
    ("s3", "c", "python", ("s1", "s2"), "text"),
    ("s4", "d", "python", ("s3",), "text"),
)

# The child runs the plan; s3 hangs, so the kill lands after s1 and s2 are journaled.
CHILD = """
import asyncio, sys
from hi_moe.pipeline import Journal, ProgressMonitor
from hi_moe.providers import MockProvider
from tests.integration.test_kill_and_resume import PLAN
from tests.unit.pipeline_support import scripted

async def hang(request):
    await asyncio.sleep(600)

async def main():
    mock = MockProvider(respond=scripted(PLAN, {"s1": "one", "s2": "two", "s3": hang}))
    await ProgressMonitor(mock, journal=Journal(sys.argv[1])).run("task", run_id="killed")

asyncio.run(main())
"""


def kill_after_two_steps(path: Path) -> None:
    """Start the child run; SIGKILL it once s1 and s2 are journaled."""
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, "the child ended before it was killed"
            if path.exists() and len(Journal(path).finished_steps("killed", 1)) == 2:
                break
            assert time.monotonic() < deadline, "s1 and s2 were never journaled"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL


async def test_a_killed_run_resumes_without_asking_finished_steps_again(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    await asyncio.to_thread(kill_after_two_steps, path)
    journal = Journal(path)
    assert journal.integrity_ok()
    record = journal.load_run("killed")
    assert record is not None
    assert record.status == "running"
    mock = MockProvider(respond=scripted(PLAN, {"s3": "three", "s4": "four"}))
    result = await ProgressMonitor(mock, journal=journal).resume("killed")
    assert [step_of(r) for r in mock.requests] == ["s3", "s4"]  # no plan, no s1, no s2
    assert result.status == "succeeded"
    assert result.answer == "four"
    assert result.resumed_steps == ("s1", "s2")
    assert result.steps["s1"].output == "one"
    assert "Result of step s1:\none" in mock.requests[0].messages[1].content
    assert journal.load_run("killed").status == "succeeded"  # type: ignore[union-attr]
    assert journal.integrity_ok()
