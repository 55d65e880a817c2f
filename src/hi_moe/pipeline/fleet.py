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
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from hi_moe import deadline
from hi_moe.errors import HiMoeError
from hi_moe.pipeline.plan import Plan, Step
from hi_moe.pipeline.result import StepResult
from hi_moe.pipeline.scheduler import AdapterScheduler, Ticket

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
        scheduler: AdapterScheduler | None = None,
        adapter_of: Callable[[Step], str | None] | None = None,
    ) -> None:
        """`scheduler` (with `adapter_of`, the adapter a step will ask for) orders the ready
        steps so that they fit the server's LoRA slots; it may be shared by many Fleets."""
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        if grace_s < 0:
            raise ValueError("grace_s must not be negative")
        if (scheduler is None) != (adapter_of is None):
            raise ValueError("a scheduler needs adapter_of, and adapter_of a scheduler")
        self.max_parallel = max_parallel
        self.step_timeout_s = step_timeout_s
        self.grace_s = grace_s
        self.scheduler = scheduler
        self.adapter_of = adapter_of

    async def run(
        self,
        plan: Plan,
        runner: StepRunner,
        *,
        done: Mapping[str, StepResult] | None = None,
        on_skip: Callable[[StepResult], None] | None = None,
        label: str = "",
    ) -> dict[str, StepResult]:
        """Run every step of `plan` not already in `done` (finished results from a journal);
        return the results of all steps, in plan order.

        Raises whatever a runner raises other than a `HiMoeError` or `StopRun` (a bug), after
        cancelling and awaiting the steps still running."""
        results: dict[str, StepResult] = {k: v for k, v in (done or {}).items() if v.ok}
        waiting_on: dict[str, int] = {}
        dependents: dict[str, list[str]] = {step.id: [] for step in plan.steps}
        ready: deque[Step] = deque()  # first ready, first started
        for step in plan.steps:
            if step.id in results:
                continue
            missing = [d for d in step.depends_on if d not in results]
            waiting_on[step.id] = len(missing)
            for dep in missing:
                dependents[dep].append(step.id)
            if not missing:
                ready.append(step)
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

        gate = _Gate(self, label)

        def start(step: Step) -> None:
            inputs = {d: results[d] for d in step.depends_on}
            task = asyncio.create_task(self._run_one(step, runner, inputs))
            running[task] = step
            gate.started(task, step)

        try:
            while ready or running or gate.pending:
                if stop_reason is None:
                    for step in gate.release(ready, len(running)):
                        start(step)
                else:
                    gate.close()
                if not running and not gate.pending:
                    break
                finished = await gate.wait(running)
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
                gate.close()
                for step in plan.steps:
                    skip(step.id, stop_reason)
        finally:
            gate.close()
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


class _Gate:
    """Which ready steps of one run start now: up to `max_parallel`, in plan order, or, with
    a scheduler, the ones it grants (it sees every ready step and picks)."""

    def __init__(self, fleet: Fleet, label: str) -> None:
        self.fleet = fleet
        self.label = label
        self.granted: list[Step] = []
        self.tickets: dict[str, Ticket] = {}
        """Steps submitted and not yet finished, granted or not."""
        self.wake = asyncio.Event()

    @property
    def pending(self) -> bool:
        """Steps submitted to the scheduler and not started yet."""
        return any(t.granted_at is None for t in self.tickets.values()) or bool(self.granted)

    def release(self, ready: deque[Step], running: int) -> list[Step]:
        """The steps to start now; `ready` is emptied of what was handed on."""
        fleet = self.fleet
        if fleet.scheduler is None or fleet.adapter_of is None:
            chosen: list[Step] = []
            while ready and running + len(chosen) < fleet.max_parallel:
                chosen.append(ready.popleft())
            return chosen
        while ready:
            step = ready.popleft()
            self.tickets[step.id] = fleet.scheduler.submit(
                fleet.adapter_of(step),
                functools.partial(self._granted, step),
                run=self.label,
                run_limit=fleet.max_parallel,
            )
        chosen, self.granted = self.granted, []
        return chosen

    def _granted(self, step: Step, ticket: Ticket) -> None:
        self.granted.append(step)
        self.wake.set()

    def started(self, task: asyncio.Task[StepResult], step: Step) -> None:
        ticket = self.tickets.get(step.id)
        if ticket is not None and self.fleet.scheduler is not None:
            scheduler = self.fleet.scheduler
            task.add_done_callback(lambda _: self._finished(step.id, scheduler))

    def _finished(self, step_id: str, scheduler: AdapterScheduler) -> None:
        ticket = self.tickets.pop(step_id, None)
        if ticket is not None:
            scheduler.finished(ticket)

    async def wait(
        self, running: Mapping[asyncio.Task[StepResult], Step]
    ) -> set[asyncio.Task[StepResult]]:
        """Until a step finishes or the scheduler grants one; the finished steps."""
        if self.fleet.scheduler is None:
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            return finished
        if self.granted:
            return set()
        self.wake.clear()
        woken = asyncio.ensure_future(self.wake.wait())
        try:
            done, _ = await asyncio.wait({*running, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        return {task for task in running if task in done}

    def close(self) -> None:
        """No more steps start: give back what was granted and not started, and withdraw the
        rest. (Steps running give theirs back when they end.)"""
        scheduler = self.fleet.scheduler
        if scheduler is None:
            return
        # Withdraw first: giving a grant back lets the scheduler grant again, and nothing of
        # this run may be granted any more.
        for step_id, ticket in list(self.tickets.items()):
            if ticket.granted_at is None:
                scheduler.withdraw(ticket)
                del self.tickets[step_id]
        granted, self.granted = self.granted, []
        for step in granted:
            if step.id in self.tickets:
                scheduler.finished(self.tickets.pop(step.id))
