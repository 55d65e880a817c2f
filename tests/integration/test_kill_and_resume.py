"""A run killed with SIGKILL mid-way resumes from its journal without redoing finished steps."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hi_moe.pipeline import Journal, PipelineSettings, ProgressMonitor, RunResult, StepResult
from hi_moe.pipeline.architect import plan_json
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest
from tests.unit.pipeline_support import is_plan_request, plan_of, scripted, step_of

pytestmark = pytest.mark.integration

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

# Twelve steps in six waves, with parallel branches and a long-range dependency (s12 on s1), so
# kills land in planning, between waves and with steps in flight. The Architect's default limit
# is 8 steps: the child, the reference run and every resume use the same raised limit.
DAG = plan_of(
    ("s1", "a", "math", (), "text"),
    ("s2", "b", "python", (), "text"),
    ("s3", "c", "math", (), "text"),
    ("s4", "d", "python", ("s1",), "text"),
    ("s5", "e", "math", ("s2", "s3"), "text"),
    ("s6", "f", "python", ("s4",), "text"),
    ("s7", "g", "math", ("s5",), "text"),
    ("s8", "h", "python", ("s4", "s5"), "text"),
    ("s9", "i", "math", ("s6", "s7"), "text"),
    ("s10", "j", "python", ("s8", "s9"), "text"),
    ("s11", "k", "math", ("s9",), "text"),
    ("s12", "l", "python", ("s10", "s11", "s1"), "text"),
)
STEP_IDS = frozenset(step.id for step in DAG.steps)
SETTINGS = PipelineSettings(max_steps=len(DAG.steps))
ADAPTERS = ["python-lora", "math-lora"]
LATENCY_S = 0.04
KILL_POINTS = 20
SEED = 20261122
CHILD_DEADLINE_S = 60.0


async def chained(request: CompletionRequest) -> str:
    """Each answer is a digest of its whole prompt, dependency results included: a resumed run
    reaches the reference answer only if every step saw exactly the same inputs."""
    await asyncio.sleep(LATENCY_S)
    if is_plan_request(request):
        return plan_json(DAG)
    digest = hashlib.sha256(request.messages[1].content.encode()).hexdigest()[:12]
    return f"{step_of(request)}:{digest}"


def monitor_on(path: str | Path, mock: MockProvider) -> ProgressMonitor:
    return ProgressMonitor(mock, SETTINGS, journal=Journal(path))


# argv: journal path, then optionally an event ("kind" or "kind:step") at which the child
# SIGKILLs itself, right after the journal write that event follows.
CHAINED_CHILD = """
import asyncio, os, signal, sys, time
from hi_moe.pipeline import Journal
from hi_moe.providers import MockProvider
from hi_moe import constraints
from hi_moe.types import JsonSchema
from tests.integration.test_kill_and_resume import ADAPTERS, chained, monitor_on

kill_at = sys.argv[2] if len(sys.argv) > 2 else None

def sink(event):
    if kill_at in (event.kind, f"{event.kind}:{event.step_id}"):
        os.kill(os.getpid(), signal.SIGKILL)

monitor = monitor_on(sys.argv[1], MockProvider(respond=chained, adapters=ADAPTERS))
monitor.sinks.append(sink)
# Kill and resume do not depend on XGrammar, and loading it would cost each child seconds:
# the plan's JSON schema is checked with jsonschema alone here.
constraints.grammar_engine_available = lambda: False
constraints.validate(JsonSchema({"type": "object"}))  # load jsonschema before the clock starts
print("ready", flush=True)
started = time.perf_counter()
asyncio.run(monitor.run("task", run_id="chained"))
print(f"done {time.perf_counter() - started:.4f}", flush=True)
"""


def run_child(path: Path, *, kill_after_s: float | None = None, kill_at: str = "") -> str:
    """Run the chained plan in a child and return what it printed. With `kill_after_s`, SIGKILL
    it that long after it is ready to run (it may finish first); with `kill_at`, it kills
    itself at that event; otherwise it must finish."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHAINED_CHILD), str(path), kill_at],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], CHILD_DEADLINE_S)
        assert ready, "the child never became ready"
        assert child.stdout.readline().strip() == "ready"
        if kill_after_s is not None:
            time.sleep(kill_after_s)
            os.kill(child.pid, signal.SIGKILL)  # not yet reaped, so the pid is still the child's
        out, err = child.communicate(timeout=CHILD_DEADLINE_S)
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
    if kill_after_s is None and not kill_at:
        assert child.returncode == 0, err
    elif kill_at:
        assert child.returncode == -signal.SIGKILL, f"not killed at {kill_at}: {err}"
    else:  # killed, or finished cleanly just before the kill
        assert child.returncode in (0, -signal.SIGKILL), err
    return out


def outcome(result: RunResult) -> tuple[str, str | None, dict[str, str]]:
    return result.status, result.answer, {k: v.output for k, v in result.steps.items()}


@dataclass
class Tally:
    """Where the kills landed and what the resumes asked."""

    landed: Counter[str] = field(default_factory=Counter)
    from_journal: int = 0
    asked: int = 0
    asked_again: int = 0

    def line(self) -> str:
        stages = ", ".join(f"{n} {stage}" for stage, n in self.landed.items())
        return (
            f"kill points: {stages}; steps taken from the journal: {self.from_journal}, "
            f"asked on resume: {self.asked}, re-asked: {self.asked_again}"
        )


async def resume_killed(path: Path, reference: RunResult, where: str, tally: Tally) -> str:
    """Check the journal a killed child left, resume (or, if no run was journaled, run) it,
    and check the result against the uninterrupted reference. Returns where the kill landed."""
    journal = Journal(path)
    assert journal.integrity_ok(), where
    record = journal.load_run("chained")
    mock = MockProvider(respond=chained, adapters=ADAPTERS)
    monitor = ProgressMonitor(mock, SETTINGS, journal=journal)
    if record is None:
        stage = "before the run"
        assert journal.runs() == [], where
        result = await monitor.run("task", run_id="chained")
        finished: dict[str, StepResult] = {}
    else:
        assert record.task.prompt == "task", where
        finished = journal.finished_steps("chained", record.plan_version) if record.plan else {}
        assert set(finished) <= STEP_IDS, where
        assert all(r.ok and r.output for r in finished.values()), where
        if record.plan is None:
            assert record.status == "running", where
            stage = "before the plan"
        elif record.status != "running":
            stage = "after the run"
        elif not finished:
            stage = "planned, no step finished"
        elif len(finished) < len(STEP_IDS):
            stage = "some steps finished"
        else:
            stage = "all steps finished, run not marked"
        if record.plan is not None:
            assert record.plan == DAG, where
            assert record.plan_version == 1, where
            # Journaled results are the reference's, byte for byte.
            assert {k: r.output for k, r in finished.items()} == {
                k: reference.steps[k].output for k in finished
            }, where
        result = await monitor.resume("chained")
        assert set(result.resumed_steps) == set(finished), where
        if record.status != "running":
            assert mock.requests == [], f"{where}: a finished run asked {len(mock.requests)}"
    steps_asked = [s for r in mock.requests if (s := step_of(r)) is not None]
    plans_asked = sum(is_plan_request(r) for r in mock.requests)
    again = sorted(set(steps_asked) & finished.keys())
    tally.landed[stage] += 1
    tally.from_journal += len(finished)
    tally.asked += len(steps_asked)
    tally.asked_again += len(again)
    assert not again, f"{where}: finished steps asked again: {again}"
    # Every step not finished is asked exactly once; the plan only if it was not journaled.
    assert sorted(steps_asked) == sorted(STEP_IDS - finished.keys()), f"{where}: {steps_asked}"
    assert plans_asked == (0 if record is not None and record.plan is not None else 1), where
    assert outcome(result) == outcome(reference), where
    assert journal.integrity_ok(), where
    after = journal.load_run("chained")
    assert after is not None, where
    assert after.status == "succeeded", where
    assert after.answer == reference.answer, where
    return stage


async def reference_run(tmp_path: Path) -> RunResult:
    mock = MockProvider(respond=chained, adapters=ADAPTERS)
    reference = await monitor_on(tmp_path / "reference.sqlite", mock).run("task", run_id="chained")
    assert reference.status == "succeeded", reference.reason
    assert set(reference.steps) == STEP_IDS
    assert reference.answer == reference.steps["s12"].output
    assert len(mock.requests) == 1 + len(STEP_IDS)
    return reference


async def test_killed_at_20_random_points_every_resume_gives_the_same_result(
    tmp_path: Path,
) -> None:
    reference = await reference_run(tmp_path)
    out = await asyncio.to_thread(run_child, tmp_path / "whole.sqlite")
    duration = float(out.split()[-1])
    assert Journal(tmp_path / "whole.sqlite").load_run("chained").answer == reference.answer  # type: ignore[union-attr]

    # Stratified: one kill point in each twentieth of 1.1x the run, placed at random within it.
    rng = random.Random(SEED)
    delays = [duration * 1.1 * (i + rng.random()) / KILL_POINTS for i in range(KILL_POINTS)]
    tally = Tally()
    for point, delay in enumerate(delays):
        path = tmp_path / f"killed-{point}.sqlite"
        await asyncio.to_thread(run_child, path, kill_after_s=delay)
        where = f"kill point {point} ({delay * 1000:.0f} ms of {duration * 1000:.0f}, seed {SEED})"
        await resume_killed(path, reference, where, tally)
    print(
        f"\n{KILL_POINTS} kills over a {duration * 1000:.0f} ms run (seed {SEED}): {tally.line()}"
    )
    assert sum(tally.landed.values()) == KILL_POINTS
    # Most kills must land mid-run, or the test checks little; the run's timing shifts on a
    # loaded machine (9 of 20 landed there under a parallel pip install), hence a quarter.
    assert tally.landed["some steps finished"] >= KILL_POINTS // 4, tally.landed


# Points a random kill rarely hits, reached exactly: the child SIGKILLs itself right after the
# journal write each event follows.
EXACT_POINTS = {
    "run_started": "before the plan",
    "planned": "planned, no step finished",
    "step_finished:s5": "some steps finished",
    "step_finished:s12": "all steps finished, run not marked",
    "run_finished": "after the run",
}


async def test_killed_at_exact_points_every_resume_gives_the_same_result(tmp_path: Path) -> None:
    reference = await reference_run(tmp_path)
    tally = Tally()
    for point, (kill_at, expected) in enumerate(EXACT_POINTS.items()):
        path = tmp_path / f"exact-{point}.sqlite"
        await asyncio.to_thread(run_child, path, kill_at=kill_at)
        stage = await resume_killed(path, reference, f"killed at {kill_at}", tally)
        assert stage == expected, kill_at
    print(f"\nexact kills: {tally.line()}")
