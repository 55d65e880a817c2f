"""Adapter-aware scheduling: the Fleet releases ready steps in waves that fit the server's LoRA
slots, drains a loaded adapter before switching, never starves a step, and keeps dependency
order and `max_parallel`."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from hi_moe.errors import ProviderUnavailable
from hi_moe.pipeline import (
    Fleet,
    MetricsLog,
    PipelineSettings,
    Plan,
    ProgressMonitor,
    RunResult,
    Step,
    StepResult,
    StopRun,
    Task,
)
from hi_moe.pipeline.scheduler import AdapterScheduler, Ticket
from hi_moe.pipeline.specialists import default_adapters
from hi_moe.providers import MockProvider


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plan_of(*steps: tuple[str, str, tuple[str, ...]]) -> Plan:
    """Steps as (id, domain, depends_on); the domain names the adapter here."""
    return Plan(
        steps=tuple(
            Step(id=i, goal=f"do {i}", domain=d, depends_on=list(deps)) for i, d, deps in steps
        )
    )


def adapter_of(step: Step) -> str | None:
    return None if step.domain == "base" else f"{step.domain}-lora"


class Server:
    """A runner standing in for vLLM: records what was in flight when each step started."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds
        self.started: list[str] = []
        self.in_flight: dict[str, str | None] = {}
        self.max_adapters = 0
        self.max_parallel = 0
        self.finished: set[str] = set()

    async def __call__(self, step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        assert set(step.depends_on) <= self.finished, f"{step.id} started before its inputs"
        self.started.append(step.id)
        self.in_flight[step.id] = adapter_of(step)
        adapters = {a for a in self.in_flight.values() if a is not None}
        self.max_adapters = max(self.max_adapters, len(adapters))
        self.max_parallel = max(self.max_parallel, len(self.in_flight))
        try:
            await asyncio.sleep(self.seconds)
        finally:
            del self.in_flight[step.id]
        self.finished.add(step.id)
        return StepResult(step_id=step.id, status="done", answer=step.id)


def interleaved(n: int, domains: tuple[str, ...] = ("a", "b", "c", "d"), prefix: str = "s") -> Plan:
    return plan_of(*((f"{prefix}{i}", domains[i % len(domains)], ()) for i in range(n)))


def aware_fleet(slots: int, max_parallel: int, max_wait_s: float = 30.0) -> Fleet:
    scheduler = AdapterScheduler(slots=slots, max_parallel=max_parallel, max_wait_s=max_wait_s)
    return Fleet(max_parallel=max_parallel, scheduler=scheduler, adapter_of=adapter_of)


async def test_steps_go_in_waves_of_one_adapter_when_the_server_has_one_slot() -> None:
    server = Server()
    results = await aware_fleet(slots=1, max_parallel=4).run(interleaved(16), server)
    assert all(r.ok for r in results.values())
    assert server.max_adapters == 1  # never two adapters in flight on a one-slot server
    assert server.max_parallel == 4  # and each wave is full
    waves = [server.started[i : i + 4] for i in range(0, 16, 4)]
    for wave in waves:
        assert len({adapter_of(interleaved(16).step(s)) for s in wave}) == 1, waves


async def test_today_the_same_steps_interleave_adapters() -> None:
    server = Server()
    await Fleet(max_parallel=4).run(interleaved(16), server)
    assert server.max_adapters == 4  # what the scheduler is for


async def test_with_enough_slots_the_order_is_todays() -> None:
    plan = plan_of(
        ("s1", "a", ()), ("s2", "b", ()), ("s3", "a", ("s1",)), ("s4", "c", ()),
        ("s5", "b", ("s2", "s4")), ("s6", "d", ()),
    )  # fmt: skip
    today, aware = Server(seconds=0.0), Server(seconds=0.0)
    await Fleet(max_parallel=2).run(plan, today)
    await aware_fleet(slots=4, max_parallel=2).run(plan, aware)
    assert aware.started == today.started


async def test_one_adapter_only_is_todays_order_too() -> None:
    plan = interleaved(10, domains=("a",))
    today, aware = Server(seconds=0.0), Server(seconds=0.0)
    await Fleet(max_parallel=3).run(plan, today)
    await aware_fleet(slots=1, max_parallel=3).run(plan, aware)
    assert aware.started == today.started


async def test_dependency_order_and_max_parallel_hold_across_adapters() -> None:
    plan = plan_of(
        ("s1", "a", ()), ("s2", "b", ()), ("s3", "a", ("s2",)), ("s4", "b", ("s1",)),
        ("s5", "c", ("s3", "s4")), ("s6", "a", ()), ("s7", "b", ()), ("s8", "c", ("s5",)),
    )  # fmt: skip
    server = Server()  # asserts each step's inputs finished before it starts
    results = await aware_fleet(slots=1, max_parallel=2).run(plan, server)
    assert [r.status for r in results.values()] == ["done"] * 8
    assert server.max_parallel <= 2
    assert server.max_adapters == 1


async def test_base_model_steps_need_no_slot() -> None:
    plan = plan_of(("s1", "a", ()), ("s2", "base", ()), ("s3", "b", ()), ("s4", "base", ()))
    server = Server()
    await aware_fleet(slots=1, max_parallel=4).run(plan, server)
    assert server.started[:3] == ["s1", "s2", "s4"]  # both base steps join a's wave


def test_a_loaded_adapter_drains_before_another_is_loaded() -> None:
    scheduler = AdapterScheduler(slots=1, max_parallel=8)
    granted: list[str] = []

    def submit(name: str, adapter: str) -> Ticket:
        return scheduler.submit(adapter, lambda t: granted.append(name))

    a1 = submit("a1", "a")
    submit("b1", "b")  # waits: the only slot is busy with a
    a2 = submit("a2", "a")  # joins a's wave ahead of the older b1
    assert granted == ["a1", "a2"]
    scheduler.finished(a1)
    assert granted == ["a1", "a2"]  # a still in flight: b still waits
    scheduler.finished(a2)
    assert granted == ["a1", "a2", "b1"]
    assert scheduler.switches[""] == 2


def test_a_step_waiting_past_the_bound_goes_next_whatever_its_adapter() -> None:
    clock = Clock()
    scheduler = AdapterScheduler(slots=1, max_parallel=8, max_wait_s=5.0, clock=clock)
    granted: list[str] = []

    def grant(name: str, ticket: Ticket) -> None:
        granted.append(name)

    scheduler.submit("a", lambda t: granted.append("a0"))
    scheduler.submit("b", lambda t: granted.append("b"))
    for i in range(1, 4):  # a keeps getting work; b would wait for ever
        clock.now += 1.0
        scheduler.submit("a", functools.partial(grant, f"a{i}"))
    assert "b" not in granted
    clock.now += 3.0  # b has now waited 6 s > 5 s
    scheduler.submit("a", lambda t: granted.append("a4"))
    assert granted.index("b") < granted.index("a4")
    assert scheduler.stats["b"].waits_s == [6.0]


def test_metrics_per_adapter_requests_waits_and_batch() -> None:
    clock = Clock()
    scheduler = AdapterScheduler(slots=1, max_parallel=8, clock=clock)
    tickets = [scheduler.submit("a", lambda t: None, run="r1") for _ in range(3)]
    b = scheduler.submit("b", lambda t: None, run="r2")
    clock.now += 2.0
    for ticket in tickets:
        scheduler.finished(ticket)
    summary = scheduler.summary()
    assert summary["adapters"] == {
        "a": {"requests": 3, "mean_wait_s": 0.0, "p95_wait_s": 0.0, "mean_batch": 2.0},
        "b": {"requests": 1, "mean_wait_s": 2.0, "p95_wait_s": 2.0, "mean_batch": 1.0},
    }
    assert summary["switches"] == {"r1": 1, "r2": 1}
    scheduler.finished(b)
    assert scheduler.in_flight == 0


async def test_runs_sharing_a_scheduler_batch_their_steps_on_one_adapter() -> None:
    scheduler = AdapterScheduler(slots=1, max_parallel=4)
    server = Server()
    fleets = [Fleet(max_parallel=4, scheduler=scheduler, adapter_of=adapter_of) for _ in range(3)]
    plans = [interleaved(4, domains=("a", "b"), prefix=f"r{i}s") for i in range(len(fleets))]
    await asyncio.gather(
        *(
            f.run(p, server, label=f"r{i}")
            for i, (f, p) in enumerate(zip(fleets, plans, strict=True))
        )
    )
    assert len(server.started) == 12
    assert server.max_adapters == 1
    assert server.max_parallel == 4  # the global bound, across runs
    assert scheduler.in_flight == 0
    assert scheduler.waiting() == 0


async def test_a_stopped_run_gives_back_everything_it_held() -> None:
    scheduler = AdapterScheduler(slots=1, max_parallel=2)

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        await asyncio.sleep(0.01)
        if step.id == "s0":
            raise StopRun("budget spent")
        return StepResult(step_id=step.id, status="done")

    fleet = Fleet(max_parallel=2, scheduler=scheduler, adapter_of=adapter_of)
    results = await asyncio.wait_for(fleet.run(interleaved(8), runner), 5)
    assert results["s0"].status == "failed"
    assert any(r.status == "skipped" for r in results.values())
    assert scheduler.in_flight == 0
    assert scheduler.waiting() == 0


async def test_a_failing_step_and_a_bug_leave_the_scheduler_clean() -> None:
    scheduler = AdapterScheduler(slots=1, max_parallel=2)

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        if step.id == "s1":
            raise ProviderUnavailable("down", provider="mock")
        if step.id == "s3":
            raise KeyError("our bug")
        await asyncio.sleep(0.01)
        return StepResult(step_id=step.id, status="done")

    fleet = Fleet(max_parallel=2, scheduler=scheduler, adapter_of=adapter_of)
    with pytest.raises(KeyError):
        await fleet.run(interleaved(6), runner)
    assert scheduler.in_flight == 0
    assert scheduler.waiting() == 0


def test_a_scheduler_needs_its_adapter_function() -> None:
    with pytest.raises(ValueError, match="adapter_of"):
        Fleet(scheduler=AdapterScheduler(slots=1, max_parallel=1))
    with pytest.raises(ValueError, match="at least 1"):
        AdapterScheduler(slots=0, max_parallel=1)


# -- the pipeline, on a mock that models a one-slot server ---------------------------------------

DOMAINS = ("python", "math", "algorithms", "data_structures")


def fan_in(n: int, domains: tuple[str, ...]) -> Plan:
    """`n` independent text steps over `domains` in turn, then one step joining them."""
    parts = [
        Step(id=f"s{i}", goal=f"part {i}", domain=domains[i % len(domains)], output="text")
        for i in range(n)
    ]
    end = Step(
        id="end", goal="join", domain="python", output="text", depends_on=[p.id for p in parts]
    )
    return Plan(steps=(*parts, end))


async def run_on_one_slot(lora_slots: int | None) -> tuple[MockProvider, RunResult]:
    mock = MockProvider(
        adapters=default_adapters().values(), lora_slots=1, lora_load_s=0.005, latency_s=0.005
    )
    plan = fan_in(16, DOMAINS)
    monitor = ProgressMonitor(mock, PipelineSettings(max_parallel=4, lora_slots=lora_slots))
    result = await monitor.run(Task(prompt="sixteen parts"), plan=plan)
    assert result.status == "succeeded", result.reason
    return mock, result


async def test_on_a_one_slot_server_the_aware_pipeline_loads_each_adapter_once() -> None:
    naive, naive_result = await run_on_one_slot(None)
    aware, aware_result = await run_on_one_slot(1)
    assert naive_result.scheduling is None
    assert naive.lora_loads >= 8  # interleaved: a load on nearly every request
    # Four waves (python's joined by the final step), one load each.
    assert aware.lora_loads <= 5
    assert aware_result.scheduling is not None
    assert aware_result.scheduling["adapter_switches"] == aware.lora_loads
    adapters = aware_result.scheduling["adapters"]
    assert sum(a["requests"] for a in adapters.values()) == 17
    assert adapters["math-lora"]["mean_batch"] > 1  # steps of one adapter ran together


async def test_the_metrics_log_records_the_runs_scheduling(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    mock = MockProvider(adapters=default_adapters().values(), lora_slots=1)
    monitor = ProgressMonitor(
        mock, PipelineSettings(max_parallel=2, lora_slots=1), on_event=MetricsLog(metrics)
    )
    plan = fan_in(4, DOMAINS[:2])
    await monitor.run(Task(prompt="four parts"), plan=plan)
    finished = [json.loads(line) for line in metrics.read_text().splitlines()]
    [run] = [r for r in finished if r["kind"] == "run_finished"]
    assert run["scheduling"]["adapter_switches"] == mock.lora_loads
    assert set(run["scheduling"]["adapters"]) == {"python-lora", "math-lora"}


async def test_the_wait_bound_holds_while_the_loaded_adapter_runs_one_long_step() -> None:
    # Nothing finishes and nothing new arrives while a's long step runs: the bound alone must
    # wake the scheduler, or b would wait the whole step.
    scheduler = AdapterScheduler(slots=1, max_parallel=4, max_wait_s=0.1)
    started: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    def start(name: str, ticket: Ticket) -> None:
        started[name] = loop.time()

    scheduler.submit("a", functools.partial(start, "a"))
    scheduler.submit("b", functools.partial(start, "b"))
    await asyncio.sleep(0.5)
    assert "b" in started, "b waited past its bound"
    assert started["b"] - started["a"] < 0.4
