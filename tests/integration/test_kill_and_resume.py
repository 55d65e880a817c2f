"""A run killed with SIGKILL mid-way resumes from its journal without redoing finished steps."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hi_moe.pipeline import Journal, ProgressMonitor, RunResult
from hi_moe.pipeline.architect import plan_json
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest
from tests.unit.pipeline_support import is_plan_request, plan_of, scripted, step_of

ROOT = Path(__file__).resolve().parents[2]

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
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
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


# -- killed at 20 random points ---------------------------------------------------------------

# Eight steps (the Architect's limit) in four waves, the first two parallel, so kills land in
# planning, between waves and with steps in flight.
DAG = plan_of(
    ("s1", "a", "math", (), "text"),
    ("s2", "b", "python", (), "text"),
    ("s3", "c", "math", (), "text"),
    ("s4", "d", "python", (), "text"),
    ("s5", "e", "math", ("s1", "s2"), "text"),
    ("s6", "f", "python", ("s3", "s4"), "text"),
    ("s7", "g", "python", ("s5", "s6", "s1"), "text"),
    ("s8", "h", "math", ("s7",), "text"),
)
ADAPTERS = ["python-lora", "math-lora"]
LATENCY_S = 0.04
KILL_POINTS = 20
SEED = 20261122


async def chained(request: CompletionRequest) -> str:
    """Each answer is a digest of its whole prompt, dependency results included: a resumed run
    reaches the reference answer only if every step saw exactly the same inputs."""
    await asyncio.sleep(LATENCY_S)
    if is_plan_request(request):
        return plan_json(DAG)
    digest = hashlib.sha256(request.messages[1].content.encode()).hexdigest()[:12]
    return f"{step_of(request)}:{digest}"


CHAINED_CHILD = """
import asyncio, sys, time
from hi_moe.pipeline import Journal, ProgressMonitor
from hi_moe.providers import MockProvider
from hi_moe import constraints
from hi_moe.types import JsonSchema
from tests.integration.test_kill_and_resume import ADAPTERS, chained

mock = MockProvider(respond=chained, adapters=ADAPTERS)
monitor = ProgressMonitor(mock, journal=Journal(sys.argv[1]))
# Kill and resume do not depend on XGrammar, and loading it would cost each of the 21 children
# seconds: the plan's JSON schema is checked with jsonschema alone here.
constraints.grammar_engine_available = lambda: False
constraints.validate(JsonSchema({"type": "object"}))  # load jsonschema before the clock starts
print("ready", flush=True)
started = time.perf_counter()
asyncio.run(monitor.run("task", run_id="chained"))
print(f"done {time.perf_counter() - started:.4f}", flush=True)
"""


def run_child(path: Path, kill_after_s: float | None) -> tuple[int, str]:
    """Run the chained plan in a child; SIGKILL it `kill_after_s` after it is ready to run.
    Returns its exit code and what it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHAINED_CHILD), str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        if kill_after_s is None:
            out, _ = child.communicate(timeout=60)
            return child.returncode, out
        time.sleep(kill_after_s)
    finally:
        if child.returncode is None:  # not yet reaped: a child that has ended takes it too
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
    return child.returncode, ""


def outcome(result: RunResult) -> tuple[str, str | None, dict[str, str]]:
    return result.status, result.answer, {k: v.output for k, v in result.steps.items()}


async def test_killed_at_20_random_points_every_resume_gives_the_same_result(
    tmp_path: Path,
) -> None:
    reference_mock = MockProvider(respond=chained, adapters=ADAPTERS)
    reference = await ProgressMonitor(reference_mock, journal=Journal(tmp_path / "ref.sqlite")).run(
        "task", run_id="chained"
    )
    assert reference.status == "succeeded"
    assert len(reference.steps) == len(DAG.steps)
    code, out = await asyncio.to_thread(run_child, tmp_path / "whole.sqlite", None)
    assert code == 0, out
    duration = float(out.split()[-1])

    # Stratified: one kill point in each twentieth of 1.1x the run, placed at random within it.
    rng = random.Random(SEED)
    delays = [duration * 1.1 * (i + rng.random()) / KILL_POINTS for i in range(KILL_POINTS)]
    landed = {"before the run": 0, "planning": 0, "mid-run": 0, "after the run": 0}
    for point, delay in enumerate(delays):
        path = tmp_path / f"killed-{point}.sqlite"
        await asyncio.to_thread(run_child, path, delay)
        journal = Journal(path)
        where = f"kill point {point} ({delay * 1000:.0f} ms, seed {SEED})"
        assert journal.integrity_ok(), where
        record = journal.load_run("chained") if path.exists() else None
        mock = MockProvider(respond=chained, adapters=ADAPTERS)
        monitor = ProgressMonitor(mock, journal=journal)
        if record is None:
            landed["before the run"] += 1
            result = await monitor.run("task", run_id="chained")
        else:
            finished = journal.finished_steps("chained", record.plan_version) if record.plan else {}
            if record.status != "running":
                landed["after the run"] += 1
            else:
                landed["mid-run" if record.plan else "planning"] += 1
            result = await monitor.resume("chained")
            asked = {step_of(r) for r in mock.requests} - {None}
            assert not asked & finished.keys(), (
                f"{where}: asked again for {asked & finished.keys()}"
            )
            if record.plan is not None:
                assert not any(is_plan_request(r) for r in mock.requests), where
            if record.status != "running":
                assert mock.requests == [], where
            assert set(result.resumed_steps) == set(finished), where
        assert outcome(result) == outcome(reference), where
        assert journal.integrity_ok(), where
        record = journal.load_run("chained")
        assert record is not None
        assert record.status == "succeeded", where
    print(
        f"\n{KILL_POINTS} kill points over a {duration * 1000:.0f} ms run (seed {SEED}): {landed}"
    )
    assert landed["mid-run"] >= KILL_POINTS // 2, landed
