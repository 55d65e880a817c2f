"""`hi-moe batch`: many tasks against one provider, at most `concurrency` at once and
`max_parallel` steps in flight across them; one shared scheduler, so steps of different tasks
on one adapter share a wave; resumable through the journal (a cancelled or SIGKILLed batch
skips its finished tasks and steps); results as JSON lines; a failed task, or a bug, does not
stop the others."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hi_moe.cli import app
from hi_moe.cli.batch import BatchProgress
from hi_moe.errors import ProviderUnavailable
from hi_moe.pipeline import Event, Journal, PipelineSettings, Plan, ProgressMonitor, Step, Task
from hi_moe.pipeline.architect import plan_json
from hi_moe.pipeline.batch import Batch, BatchSummary, BatchTask, Pending, TaskResult, prepare
from hi_moe.pipeline.demo import demo_responder
from hi_moe.pipeline.specialists import default_adapters
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest, JsonSchema

runner = CliRunner()
DOMAINS = PipelineSettings().domains
demo = demo_responder(DOMAINS)


def mock(**options: object) -> MockProvider:
    """A mock with the demo's three-step plans (math and data_structures, then python)."""
    options.setdefault("respond", demo)
    return MockProvider(adapters=default_adapters().values(), **options)  # type: ignore[arg-type]


def tasks(*prompts: str) -> list[BatchTask]:
    return [BatchTask(line, Task(prompt=p)) for line, p in enumerate(prompts, start=1)]


def text_of(request: CompletionRequest) -> str:
    return "\n".join(m.content for m in request.messages)


async def run_batch(
    provider: MockProvider,
    items: list[BatchTask],
    journal: Journal,
    settings: PipelineSettings | None = None,
    **options: object,
) -> tuple[BatchSummary, list[TaskResult]]:
    results: list[TaskResult] = []
    batch = Batch(
        provider,
        settings or PipelineSettings(),
        journal,
        batch_id="b1",
        on_result=results.append,
        **options,  # type: ignore[arg-type]
    )
    summary = await asyncio.wait_for(batch.run(prepare(journal, "b1", items)), 60)
    return summary, results


class Running:
    """An event sink: how many runs were between started and finished at most."""

    def __init__(self) -> None:
        self.now = self.most = 0

    def __call__(self, event: Event) -> None:
        if event.kind == "run_started":
            self.now += 1
            self.most = max(self.most, self.now)
        elif event.kind == "run_finished":
            self.now -= 1


async def test_tasks_run_at_most_concurrency_at_once(tmp_path: Path) -> None:
    running = Running()
    items = tasks(*(f"task {i}" for i in range(7)))
    summary, results = await run_batch(
        mock(latency_s=0.01), items, Journal(tmp_path / "j.sqlite"), concurrency=3, on_event=running
    )
    assert running.most == 3
    assert summary.succeeded == summary.tasks == 7
    assert sorted(r.line for r in results) == list(range(1, 8))
    assert all(r.run_id == f"b1/line-{r.line}" and r.origin == "ran" for r in results)
    assert summary.tokens == sum(r.tokens for r in results) > 0


async def test_steps_in_flight_across_tasks_stay_within_max_parallel(tmp_path: Path) -> None:
    in_flight: list[int] = []
    now = 0

    async def respond(request: CompletionRequest) -> str | None:
        nonlocal now
        now += 1
        in_flight.append(now)
        try:
            await asyncio.sleep(0.02)
        finally:
            now -= 1
        return demo(request)

    settings = PipelineSettings(max_parallel=2)
    summary, _ = await run_batch(
        mock(respond=respond), tasks(*(f"t{i}" for i in range(6))), Journal(tmp_path / "j"),
        settings, concurrency=6,
    )  # fmt: skip
    assert summary.succeeded == 6
    # Six tasks could have twelve steps ready at once; two steps, plus one plan per task
    # (planning is not a step), is the most the server sees.
    assert max(in_flight) <= 2 + 6
    assert summary.adapter_switches is None  # not adapter-aware without lora_slots


ROTATION = ("python", "math", "algorithms", "data_structures")


def rotated_plans(request: CompletionRequest) -> str | None:
    """Task "rotate#N" plans four independent steps on the four adapters, rotated by N, then
    a final one: at any moment different tasks want different adapters."""
    constraint = request.constraint
    if not (isinstance(constraint, JsonSchema) and constraint.name == "plan"):
        return None
    found = re.search(r"rotate#(\d+)", text_of(request))
    assert found is not None
    n = int(found[1])
    domains = ROTATION[n % 4 :] + ROTATION[: n % 4]
    parts = [Step(id=f"s{i}", goal=f"part {i}", domain=d) for i, d in enumerate(domains, 1)]
    end = Step(id="s5", goal="join", domain="python", depends_on=tuple(p.id for p in parts))
    return plan_json(Plan(steps=(*parts, end)))


def one_slot_server() -> MockProvider:
    return mock(respond=rotated_plans, lora_slots=1, lora_load_s=0.01, latency_s=0.01)


async def test_tasks_share_one_scheduler_and_load_fewer_adapters(tmp_path: Path) -> None:
    settings = PipelineSettings(max_parallel=8, lora_slots=1)
    items = tasks(*(f"rotate#{i}" for i in range(6)))
    shared = one_slot_server()
    summary, results = await run_batch(
        shared, items, Journal(tmp_path / "a"), settings, concurrency=6
    )
    alone = one_slot_server()  # the same tasks, one monitor (and scheduler) each
    monitors = [ProgressMonitor(alone, settings) for _ in items]
    apart = await asyncio.gather(*(m.run(i.task) for m, i in zip(monitors, items, strict=True)))
    assert summary.succeeded == 6
    assert all(r.status == "succeeded" for r in apart)
    assert shared.lora_loads < alone.lora_loads
    # Each task has one math step: a mean batch above one is steps of different tasks in a wave.
    assert summary.adapters["math-lora"]["mean_batch"] > 1
    assert summary.adapter_switches == sum(
        r.scheduling["adapter_switches"] for r in results if r.scheduling
    )
    assert all(set(r.scheduling or {}) == {"adapter_switches"} for r in results)


def slow_final_steps(request: CompletionRequest) -> float:
    """Tasks saying "slow" hang in their final (code) step; everything else is quick."""
    text = text_of(request)
    return 30.0 if "slow" in text and "Write the Python code" in text else 0.01


async def test_a_cancelled_batch_resumes_without_redoing_finished_tasks_or_steps(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    items = tasks("quick one", "slow two", "slow three", "quick four", "quick five")
    settings = PipelineSettings()
    first: list[TaskResult] = []
    three_done = asyncio.Event()

    def on_result(result: TaskResult) -> None:
        first.append(result)
        if len(first) == 3:
            three_done.set()

    batch = Batch(
        mock(latency_s=slow_final_steps), settings, journal, batch_id="b1", concurrency=3,
        on_result=on_result,
    )  # fmt: skip
    running = asyncio.create_task(batch.run(prepare(journal, "b1", items)))
    await asyncio.wait_for(three_done.wait(), 30)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert sorted(r.line for r in first) == [1, 4, 5]

    states = {p.item.line: p.state for p in prepare(journal, "b1", items)}
    assert states == {
        1: "finished", 2: "interrupted", 3: "interrupted", 4: "finished", 5: "finished"
    }  # fmt: skip
    again = mock()
    summary, results = await run_batch(again, items, journal, settings)
    assert {r.line: r.origin for r in results} == {
        1: "journal", 2: "resumed", 3: "resumed", 4: "journal", 5: "journal"
    }  # fmt: skip
    assert summary.succeeded == 5
    assert (summary.from_journal, summary.resumed) == (3, 2)
    # Only the two final steps were asked again: no plans, no finished step.
    assert len(again.requests) == 2
    assert all("Write the Python code" in text_of(r) for r in again.requests)
    for line in (2, 3):
        record = journal.load_run(f"b1/line-{line}")
        assert record is not None
        assert record.summary is not None
        assert record.summary["resumed_steps"] == ["s1", "s2"]
    assert {r.line: r.answer for r in results if r.origin == "journal"} == {
        r.line: r.answer for r in first
    }


async def test_a_failing_task_and_a_bug_do_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def respond(request: CompletionRequest) -> str | None:
        text = text_of(request)
        if "refused" in text:
            raise ProviderUnavailable("the server is down", provider="mock")
        if "buggy" in text:
            raise KeyError("a bug of ours")
        return demo(request)

    items = tasks("fine one", "refused two", "buggy three", "fine four")
    with caplog.at_level(logging.ERROR, logger="hi_moe.pipeline.batch"):
        summary, results = await run_batch(mock(respond=respond), items, Journal(tmp_path / "j"))
    by_line = {r.line: r for r in results}
    statuses = [by_line[i].status for i in (1, 2, 3, 4)]
    assert statuses == ["succeeded", "failed", "failed", "succeeded"]
    assert "ProviderUnavailable" in by_line[2].reason
    assert by_line[2].error is None  # a failed task, not a bug
    assert by_line[3].error == "KeyError"
    assert "a bug in hi-moe" in by_line[3].reason
    assert (summary.failed, summary.bugs) == (2, 1)
    bugs = [r for r in caplog.records if r.levelno == logging.ERROR and "bug" in r.getMessage()]
    assert len(bugs) == 1
    assert bugs[0].exc_info is not None
    # The bug's run never finished: resuming the batch runs it again, the rest are journaled.
    states = {p.item.line: p.state for p in prepare(Journal(tmp_path / "j"), "b1", items)}
    assert states == {1: "finished", 2: "finished", 3: "interrupted", 4: "finished"}


def test_a_task_changed_since_it_was_journaled_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.start_run("b1/line-1", Task(prompt="the old task"))
    with pytest.raises(Exception, match="another task"):
        prepare(journal, "b1", tasks("a new task"))


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    values = {
        "HI_MOE_PIPELINE__JOURNAL": str(tmp_path / "journal.sqlite"),
        "HI_MOE_PIPELINE__METRICS": str(tmp_path / "metrics.jsonl"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def write_tasks(path: Path, *lines: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


RESULT_KEYS = {"line", "id", "run_id", "status", "answer", "reason", "tokens", "wall_s", "origin"}


def test_the_command_writes_one_parseable_line_per_task(
    env: dict[str, str], tmp_path: Path
) -> None:
    file = write_tasks(
        tmp_path / "t.jsonl", {"prompt": "Add two numbers"}, {"prompt": "Sort", "id": "sort"}
    )
    result = runner.invoke(app, ["batch", str(file), "--out", "r.jsonl", "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == ["line-1", "sort"]
    assert all(line.keys() >= RESULT_KEYS and line["status"] == "succeeded" for line in lines)
    first = result.stderr.splitlines()[0]
    batch_id = lines[0]["run_id"].split("/")[0]
    assert first.startswith(f"batch {batch_id}")
    assert f"--resume {batch_id}" in first
    assert "offline mock" in result.stderr
    assert "2 of 2 tasks succeeded" in result.stderr
    assert result.stdout == ""
    # The same command again: every task from the journal, no line written twice.
    again = runner.invoke(app, ["batch", str(file), "--out", "r.jsonl", "--json", "--quiet"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["from_journal"] == 2
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2


def test_without_out_the_lines_go_to_stdout_and_a_failure_is_status_1(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write_tasks(tmp_path / "t.jsonl", {"prompt": "fine"}, {"prompt": "refused"})
    original = MockProvider._complete

    async def refusing(self: MockProvider, request: CompletionRequest) -> object:
        if "refused" in text_of(request):
            raise ProviderUnavailable("down", provider="mock")
        return await original(self, request)

    monkeypatch.setattr(MockProvider, "_complete", refusing)
    result = runner.invoke(app, ["batch", str(file), "--quiet"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["id"]: line["status"] for line in lines} == {
        "line-1": "succeeded",
        "line-2": "failed",
    }
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "batch failed: 1 of 2 tasks failed"
    ]


def test_a_sigkilled_batch_resumes_and_skips_its_finished_tasks(
    env: dict[str, str], tmp_path: Path
) -> None:
    file = write_tasks(tmp_path / "t.jsonl", *({"prompt": f"task {i}"} for i in range(4)))
    out = tmp_path / "r.jsonl"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    child_env.update(env, HI_MOE_MOCK__LATENCY_S="1")
    command = [sys.executable, "-m", "hi_moe", "batch", str(file), "--out", str(out)]
    child = subprocess.Popen(
        [*command, "--concurrency", "1"], env=child_env, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    deadline = time.monotonic() + 60
    while "task line-1 succeeded" not in (line := child.stderr.readline()):
        assert line, "the batch ended before its first task"
        assert time.monotonic() < deadline, "the batch did not finish its first task"
    time.sleep(0.5)  # the second task is journaled and planning: it will be interrupted
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    (kept,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert kept["id"] == "line-1"
    resumed = subprocess.run(
        [*command, "--quiet"], env={**child_env, "HI_MOE_MOCK__LATENCY_S": "0"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["id"]: line["origin"] for line in lines} == {
        "line-1": "ran", "line-2": "resumed", "line-3": "ran", "line-4": "ran"
    }  # fmt: skip
    assert all(line["status"] == "succeeded" for line in lines)


def test_on_a_terminal_a_progress_bar_counts_tasks_done_failed_and_running() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=120)
    (one, two) = tasks("a", "b")
    with BatchProgress(console, 2) as progress:
        progress.started(Pending(one, "b1/line-1", "new"))
        progress.started(Pending(two, "b1/line-2", "new"))
        assert progress._counts() == "0 failed, 2 running"
        progress.finished(
            TaskResult(
                1, "line-1", "b1/line-1", "failed", None, "the server is down", 0, 0.1, "ran"
            )
        )
        time.sleep(0.2)
        assert progress._counts() == "1 failed, 1 running"
    text = out.getvalue()
    assert "1/2" in text
    assert "task line-1 failed: the server is down" in text  # a failure is a line of its own


def test_an_interrupted_batch_says_how_to_continue_it(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(self: Batch, pending: object) -> BatchSummary:
        raise KeyboardInterrupt

    monkeypatch.setattr(Batch, "run", interrupted)
    file = write_tasks(tmp_path / "t.jsonl", {"prompt": "a"})
    result = runner.invoke(app, ["batch", str(file), "--quiet"])
    assert result.exit_code == 130
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("interrupted: batch batch-")
    assert f"hi-moe batch {file} --resume batch-" in line
