"""The Fleet: runs a plan's steps as a DAG with bounded concurrency.

A step starts as soon as its last dependency is done, up to `max_parallel` at once, so
independent steps reach the server together (vLLM batches them). Only ready steps become
tasks: a 10,000-step plan holds at most `max_parallel` tasks, not 10,000 waiting on a
semaphore. A failed step skips its dependents, not its siblings; skipping walks the DAG with an
explicit stack, so a chain of any length is skipped without recursion. Leaving `run` for any
reason, cancellation included, leaves no step running.

Errors: a `HiMoeError` from the runner fails its step (the error's type and message become the
step's error); `StopRun` stops the run. Any other exception is a bug in our code or the runner:
it is logged at ERROR with its traceback and propagates out of `run`, cancelling the steps
still running.

Time: each step runs under `deadline.scope(step_timeout_s)`, so every provider call inside it
inherits the step's remaining time and ends with its own typed `ProviderTimeout` before the
step's time is up. The Fleet's hard cancel is only a backstop, at `step_timeout_s + grace_s`;
when it fires the step fails with "step timed out after {step_timeout_s} s".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from hi_moe import deadline
from hi_moe.errors import HiMoeError
from hi_moe.pipeline.plan import Plan, Step
from hi_moe.pipeline.result import StepResult

__all__ = ["Fleet", "StepRunner", "StopRun"]

log = logging.getLogger(__name__)

StepRunner = Callable[[Step, Mapping[str, StepResult]], Awaitable[StepResult]]
"""Runs one step, given the results of its dependencies."""


class StopRun(Exception):
    """Raised by a step runner to stop the run (a spent budget): no new step starts, running
    ones finish, and every step not started is skipped with this reason."""


class Fleet:
    """Runs plans. `step_timeout_s` bounds each step (None: no bound); `grace_s` is the time
    given past it to a provider to report its own typed timeout before the Fleet cancels the
    step itself."""

    def __init__(
        self,
        *,
        max_parallel: int = 4,
        step_timeout_s: float | None = None,
        grace_s: float = 5.0,
    ) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        if grace_s < 0:
            raise ValueError("grace_s must not be negative")
        self.max_parallel = max_parallel
        self.step_timeout_s = step_timeout_s
        self.grace_s = grace_s

    async def run(
        self,
        plan: Plan,
        runner: StepRunner,
        *,
        done: Mapping[str, StepResult] | None = None,
        on_skip: Callable[[StepResult], None] | None = None,
    ) -> dict[str, StepResult]:
        """Run every step of `plan` not already in `done` (finished results from a journal);
        return the results of all steps, in plan order.

        Raises whatever a runner raises other than a `HiMoeError` or `StopRun` (a bug), after
        cancelling and awaiting the steps still running."""
        results: dict[str, StepResult] = {k: v for k, v in (done or {}).items() if v.ok}
        waiting_on: dict[str, int] = {}
        dependents: dict[str, list[str]] = {step.id: [] for step in plan.steps}
        ready: list[Step] = []
        for step in plan.steps:
            if step.id in results:
                continue
            missing = [d for d in step.depends_on if d not in results]
            waiting_on[step.id] = len(missing)
            for dep in missing:
                dependents[dep].append(step.id)
            if not missing:
                ready.append(step)
        ready.reverse()  # pop() from the end keeps plan order
        by_id = {step.id: step for step in plan.steps}
        running: dict[asyncio.Task[StepResult], Step] = {}
        stop_reason: str | None = None

        def skip(step_id: str, reason: str) -> None:
            """Skip `step_id` and, depth first, everything that depends on it."""
            stack = [(step_id, reason)]
            while stack:
                current, why = stack.pop()
                if current in results:
                    continue
                result = StepResult(step_id=current, status="skipped", error=why)
                results[current] = result
                if on_skip is not None:
                    on_skip(result)
                because = f"depends on {current}, which was skipped"
                # Reversed, so the first dependent is popped (and skipped) first.
                stack.extend((child, because) for child in reversed(dependents[current]))

        try:
            while ready or running:
                while ready and len(running) < self.max_parallel and stop_reason is None:
                    step = ready.pop()
                    inputs = {d: results[d] for d in step.depends_on}
                    task = asyncio.create_task(self._run_one(step, runner, inputs))
                    running[task] = step
                if not running:
                    break
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    step = running.pop(task)
                    try:
                        result = task.result()
                    except StopRun as stop:
                        stop_reason = stop_reason or str(stop) or "stopped"
                        result = StepResult(step_id=step.id, status="failed", error=stop_reason)
                    results[step.id] = result
                    for child in dependents[step.id]:
                        if not result.ok:
                            skip(child, f"depends on {step.id}, which failed")
                            continue
                        waiting_on[child] -= 1
                        if waiting_on[child] == 0 and child not in results:
                            ready.append(by_id[child])
            if stop_reason is not None:
                for step in plan.steps:
                    skip(step.id, stop_reason)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return {step.id: results[step.id] for step in plan.steps if step.id in results}

    async def _run_one(
        self, step: Step, runner: StepRunner, inputs: Mapping[str, StepResult]
    ) -> StepResult:
        timeout = self.step_timeout_s
        backstop_s = None if timeout is None else timeout + self.grace_s
        backstop = asyncio.timeout(backstop_s)
        try:
            async with backstop:
                with deadline.scope(timeout):  # None: the caller's deadline, if any, holds
                    return await runner(step, inputs)
        except StopRun:
            raise
        except HiMoeError as error:
            log.debug("step %s failed", step.id, exc_info=True)
            return StepResult(
                step_id=step.id, status="failed", error=f"{type(error).__name__}: {error}"
            )
        except Exception as error:
            if isinstance(error, TimeoutError) and backstop.expired():
                return StepResult(
                    step_id=step.id,
                    status="failed",
                    error=f"step timed out after {timeout} s",
                )
            log.error(
                "step %s: the runner raised %s, a bug, not a step failure",
                step.id,
                type(error).__name__,
                exc_info=error,
            )
            raise
