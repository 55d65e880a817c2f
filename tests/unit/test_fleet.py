"""The Fleet on its own: skipping, its error policy and its step deadline."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping

import pytest

from hi_moe import deadline
from hi_moe.errors import ConfigError, ProviderTimeout
from hi_moe.pipeline.fleet import Fleet, StopRun
from hi_moe.pipeline.plan import Plan, Step
from hi_moe.pipeline.result import StepResult


def plan_of(*steps: tuple[str, tuple[str, ...]]) -> Plan:
    """plan_of(("s1", ()), ("s2", ("s1",)), ...)"""
    return Plan(
        steps=tuple(Step(id=i, goal="g", domain="math", depends_on=deps) for i, deps in steps)
    )


def done(step: Step) -> StepResult:
    return StepResult(step_id=step.id, status="done", output=step.id)


# -- skipping ---------------------------------------------------------------------------------


async def test_a_failure_at_the_head_of_a_10000_step_chain_skips_the_rest() -> None:
    n = 10_000
    plan = plan_of(*[(f"s{i}", (f"s{i - 1}",) if i > 1 else ()) for i in range(1, n + 1)])

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        raise ConfigError("no")

    skipped: list[StepResult] = []
    started = time.monotonic()
    results = await Fleet().run(plan, runner, on_skip=skipped.append)
    assert time.monotonic() - started < 1
    assert results["s1"].status == "failed"
    assert [r.step_id for r in skipped] == [f"s{i}" for i in range(2, n + 1)]
    assert all(r.status == "skipped" for r in skipped)
    assert results["s2"].error == "depends on s1, which failed"
    assert results[f"s{n}"].error == f"depends on s{n - 1}, which was skipped"
    assert list(results) == [s.id for s in plan.steps]


async def test_skips_go_depth_first_in_plan_order_each_step_once() -> None:
    plan = plan_of(
        ("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c")), ("e", ("c",)), ("f", ())
    )

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        if step.id == "a":
            raise ConfigError("no")
        return done(step)

    skipped: list[StepResult] = []
    results = await Fleet().run(plan, runner, on_skip=skipped.append)
    assert [(r.step_id, r.error) for r in skipped] == [
        ("b", "depends on a, which failed"),
        ("d", "depends on b, which was skipped"),
        ("c", "depends on a, which failed"),
        ("e", "depends on c, which was skipped"),
    ]
    assert results["f"].status == "done"


async def test_stop_run_skips_every_step_not_started() -> None:
    plan = plan_of(("s1", ()), ("s2", ("s1",)), ("s3", ("s2",)))

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        raise StopRun("budget spent")

    results = await Fleet().run(plan, runner)
    assert results["s1"].status == "failed"
    assert results["s1"].error == "budget spent"
    assert results["s2"].status == results["s3"].status == "skipped"


# -- errors -----------------------------------------------------------------------------------


async def test_a_hi_moe_error_fails_its_step_and_its_sibling_still_finishes() -> None:
    plan = plan_of(("s1", ()), ("s2", ()), ("s3", ("s1",)))

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        if step.id == "s1":
            raise ConfigError("bad setting")
        await asyncio.sleep(0.05)
        return done(step)

    results = await Fleet(max_parallel=2).run(plan, runner)
    assert results["s1"].status == "failed"
    assert results["s1"].error == "ConfigError: bad setting"
    assert results["s2"].status == "done"
    assert results["s3"].status == "skipped"


@pytest.mark.parametrize("bug", [KeyError("missing"), TypeError("wrong type")])
async def test_a_bug_in_the_runner_propagates_logged_and_cancels_its_siblings(
    bug: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    plan = plan_of(("s1", ()), ("s2", ()))
    entered = asyncio.Event()
    sibling: list[str] = []

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        if step.id == "s1":
            await entered.wait()
            raise bug
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            sibling.append("cancelled")
            raise
        sibling.append("finished")
        return done(step)

    caplog.set_level(logging.ERROR, logger="hi_moe.pipeline.fleet")
    with pytest.raises(type(bug)) as raised:
        await asyncio.wait_for(Fleet(max_parallel=2).run(plan, runner), 5)
    assert raised.value is bug
    assert sibling == ["cancelled"]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "s1" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[1] is bug


async def test_a_bare_timeout_error_from_the_runner_is_a_bug_not_a_step_timeout() -> None:
    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        raise TimeoutError("untyped")

    with pytest.raises(TimeoutError, match="untyped"):
        await Fleet(step_timeout_s=10).run(plan_of(("s1", ())), runner)


# -- the step deadline ------------------------------------------------------------------------


async def test_a_step_runs_under_a_deadline_of_its_timeout() -> None:
    seen: list[float] = []

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        seen.append(deadline.seconds_left())
        return done(step)

    await Fleet(step_timeout_s=0.5).run(plan_of(("s1", ()), ("s2", ("s1",))), runner)
    assert len(seen) == 2
    assert all(0.4 < left <= 0.5 for left in seen)
    assert deadline.current() is None  # the scope ends with the step


async def test_without_a_step_timeout_the_caller_s_deadline_holds() -> None:
    seen: list[float] = []

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        seen.append(deadline.seconds_left())
        return done(step)

    await Fleet().run(plan_of(("s1", ())), runner)
    with deadline.scope(0.3):
        await Fleet().run(plan_of(("s1", ())), runner)
        await Fleet(step_timeout_s=10).run(plan_of(("s1", ())), runner)  # only ever shortened
    assert seen[0] == math.inf
    assert 0.2 < seen[1] <= 0.3
    assert 0.2 < seen[2] <= 0.3


async def test_a_runner_that_honours_the_deadline_reports_its_own_timeout() -> None:
    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        try:
            async with asyncio.timeout(deadline.seconds_left()):
                await asyncio.sleep(30)
        except TimeoutError:
            raise ProviderTimeout("no answer in time") from None
        return done(step)

    started = time.monotonic()
    results = await Fleet(step_timeout_s=0.2, grace_s=5).run(plan_of(("s1", ())), runner)
    assert time.monotonic() - started < 1
    assert results["s1"].error == "ProviderTimeout: no answer in time"


async def test_a_runner_that_ignores_the_deadline_is_cut_off_after_the_grace() -> None:
    cancelled = asyncio.Event()

    async def runner(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return done(step)

    started = time.monotonic()
    results = await Fleet(step_timeout_s=0.2, grace_s=0.1).run(plan_of(("s1", ())), runner)
    elapsed = time.monotonic() - started
    assert 0.29 <= elapsed < 1
    assert cancelled.is_set()
    assert results["s1"].status == "failed"
    assert results["s1"].error == "step timed out after 0.2 s"


def test_grace_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        Fleet(grace_s=-1)
