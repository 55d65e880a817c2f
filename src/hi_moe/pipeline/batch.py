"""Many tasks against one provider at once (`hi-moe batch`), resumable through the journal.

One `ProgressMonitor` per task, all on the same providers and sharing ONE `AdapterScheduler`,
so steps of different runs on the same adapter reach the server in the same wave. Bounds:

- at most `concurrency` tasks run at once: that many workers take the tasks in input order, so
  a 10,000-task batch holds `concurrency` monitors, not 10,000 waiting on a semaphore;
- at most `max_parallel` steps are in flight across all of them, through the shared scheduler.
  With `lora_slots` set it is the adapter-aware one; without, a scheduler with as many slots
  as `max_parallel` is shared, which grants in arrival order (no adapter ever waits for a
  slot), so the bound is global either way. Planning requests are not steps: each running
  task has at most one, so requests in flight stay below `max_parallel + concurrency`.

Resume: a batch has an id (by default a digest of its tasks, so the same file run again is
the same batch); each task's run id is `{batch_id}/{task id}`, or `{batch_id}/line-{n}` for a
task without an id. Before anything runs, `prepare` reads the journal: a task whose run
finished (succeeded or failed) is not run again, its result comes from the journal; one
whose run was interrupted continues through `ProgressMonitor.resume`, so its finished steps are
not asked again; the rest start. A journaled task that differs from the file's, or a run that
another live process owns, is a `ConfigError` then, before any request.

Results come out in completion order (the journal's first, in input order), one `TaskResult`
each, through `on_result` as each task ends; each carries its input `line` to sort by. (The
CLI writes them to a JSON lines file, `hi_moe.cli.batch.ResultsFile`.)

Failures: a task that fails (its run failed, or a `HiMoeError` refused it) is a failed result
and the batch goes on. An exception of any other type is a bug in our code: it is logged at
ERROR with its traceback and the task is counted failed under the error's type (`error`), never
retried; the batch goes on, and since its run never finished in the journal, resuming the batch
runs it again (after the fix).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from hi_moe.cost.account import RunCost
from hi_moe.cost.prices import Prices
from hi_moe.errors import ConfigError, HiMoeError
from hi_moe.pipeline.events import EventSink
from hi_moe.pipeline.journal import Journal, RunRecord
from hi_moe.pipeline.plan import Task
from hi_moe.pipeline.result import RunResult
from hi_moe.pipeline.sandbox.base import SandboxBackend
from hi_moe.pipeline.scheduler import AdapterScheduler
from hi_moe.pipeline.settings import PipelineSettings
from hi_moe.providers.base import InferenceProvider

__all__ = [
    "Batch",
    "BatchSummary",
    "BatchTask",
    "Pending",
    "TaskResult",
    "batch_id_of",
    "prepare",
    "run_id_of",
]

log = logging.getLogger(__name__)

Origin = Literal["ran", "resumed", "journal"]
"""Where a result comes from: a run started now, an interrupted run continued, the journal."""


@dataclass(frozen=True)
class BatchTask:
    line: int
    """Its line in the tasks file, from 1."""
    task: Task

    @property
    def key(self) -> str:
        return self.task.id if self.task.id is not None else f"line-{self.line}"


def batch_id_of(tasks: Sequence[BatchTask]) -> str:
    """The id of a batch of these tasks: the same tasks, the same batch (and so resumed)."""
    digest = hashlib.sha256()
    for item in tasks:
        digest.update(json.dumps([item.key, item.task.model_dump(mode="json")]).encode())
    return f"batch-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class Pending:
    """A task and what the journal says of its run."""

    item: BatchTask
    run_id: str
    state: Literal["new", "interrupted", "finished"]
    record: RunRecord | None = None


def run_id_of(batch_id: str, item: BatchTask) -> str:
    return f"{batch_id}/{item.key}"


def prepare(journal: Journal, batch_id: str, tasks: Sequence[BatchTask]) -> list[Pending]:
    """What each task's run is in the journal; a `ConfigError` when one cannot go on."""
    pending = []
    for item in tasks:
        run_id = run_id_of(batch_id, item)
        record = journal.load_run(run_id)
        if record is None:
            pending.append(Pending(item, run_id, "new"))
            continue
        if record.task != item.task:
            raise ConfigError(
                f"line {item.line}: run {run_id} of batch {batch_id} was journaled for another "
                "task; restore the file, or start a new batch"
            )
        if record.status != "running":
            pending.append(Pending(item, run_id, "finished", record))
        elif record.owner_alive and not _ours(record):
            raise ConfigError(
                f"batch {batch_id} is still running: run {run_id} is owned by pid "
                f"{record.owner_pid} on {record.owner_host}"
            )
        else:
            pending.append(Pending(item, run_id, "interrupted", record))
    return pending


@dataclass(frozen=True)
class TaskResult:
    """One line of the results: what became of one task."""

    line: int
    id: str
    run_id: str
    status: Literal["succeeded", "failed"]
    answer: str | None
    reason: str
    tokens: int
    wall_s: float
    origin: Origin
    cost_usd: float | None = 0.0
    """What the task's run cost; None when a request had no price."""
    scheduling: dict[str, Any] | None = None
    """This run's `adapter_switches`, when the batch is adapter-aware (`lora_slots`)."""
    error: str | None = None
    """The exception's type when a bug ended the task."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("scheduling", "error"):
            if data[optional] is None:
                del data[optional]
        return data


@dataclass
class BatchSummary:
    batch_id: str
    tasks: int = 0
    succeeded: int = 0
    failed: int = 0
    bugs: int = 0
    """Failed tasks that were bugs in our code (logged at ERROR)."""
    from_journal: int = 0
    resumed: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    """Tasks some of whose requests had no price (their priced part is in `cost_usd`)."""
    wall_s: float = 0.0
    """This invocation's, from start to the last task."""
    adapter_switches: int | None = None
    adapters: dict[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> int:
        """Tasks that ran (or continued) in this invocation."""
        return self.tasks - self.from_journal

    @property
    def tasks_per_s(self) -> float:
        return self.ran / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "wall_s": round(self.wall_s, 3),
            "ran": self.ran,
            "tasks_per_s": round(self.tasks_per_s, 3),
        }


class Batch:
    """Runs tasks concurrently against `providers` (see the module docstring)."""

    def __init__(
        self,
        providers: InferenceProvider | Mapping[str, InferenceProvider],
        settings: PipelineSettings,
        journal: Journal,
        *,
        batch_id: str,
        concurrency: int = 4,
        primary: str | None = None,
        on_event: EventSink | Sequence[EventSink] = (),
        sandbox: SandboxBackend | None = None,
        on_start: Callable[[Pending], None] | None = None,
        on_result: Callable[[TaskResult], None] | None = None,
        prices: Prices | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.providers = providers
        self.settings = settings
        self.journal = journal
        self.batch_id = batch_id
        self.concurrency = concurrency
        self.primary = primary
        self.sinks: list[EventSink] = [on_event] if callable(on_event) else list(on_event)
        self.sandbox = sandbox
        self.on_start = on_start
        self.on_result = on_result
        self.prices = prices
        self.aware = settings.lora_slots is not None
        self.scheduler = AdapterScheduler(
            # As many slots as steps in flight: no adapter waits for one, so this is a global
            # first-come, first-served bound.
            slots=settings.lora_slots or settings.max_parallel,
            max_parallel=settings.max_parallel,
            max_wait_s=settings.adapter_max_wait_s,
        )

    async def run(self, pending: Sequence[Pending]) -> BatchSummary:
        """Run what `prepare` found unfinished; report every task through `on_result`."""
        summary = BatchSummary(batch_id=self.batch_id)
        started = time.monotonic()
        for done in (p for p in pending if p.state == "finished"):
            self._report(summary, self._from_journal(done))
        queue = deque(p for p in pending if p.state != "finished")
        if any(p.item.task.tests for p in queue) and self.sandbox is None:
            from hi_moe.pipeline.sandbox.choose import load_backend

            # Once for the batch, before any task: no sandbox is a ConfigError now.
            self.sandbox = await asyncio.to_thread(load_backend, self.settings.sandbox)

        async def worker() -> None:
            while queue:
                self._report(summary, await self._one(queue.popleft()))

        # Not a TaskGroup: what stops a worker (a results file that cannot be written, a
        # cancel) surfaces as itself, not wrapped in an ExceptionGroup.
        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(queue)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        summary.wall_s = time.monotonic() - started
        if self.aware:
            summary.adapter_switches = sum(self.scheduler.switches.values())
            summary.adapters = cast(dict[str, Any], self.scheduler.summary()["adapters"])
        return summary

    def _report(self, summary: BatchSummary, result: TaskResult) -> None:
        summary.tasks += 1
        summary.tokens += result.tokens
        summary.cost_usd += result.cost_usd or 0.0
        summary.unpriced += result.cost_usd is None
        if result.status == "succeeded":
            summary.succeeded += 1
        else:
            summary.failed += 1
        summary.bugs += result.error is not None
        summary.from_journal += result.origin == "journal"
        summary.resumed += result.origin == "resumed"
        if self.on_result is not None:
            self.on_result(result)

    async def _one(self, pending: Pending) -> TaskResult:
        from hi_moe.pipeline.monitor import ProgressMonitor  # 0.1 s of imports: not for --help

        monitor = ProgressMonitor(
            self.providers,
            self.settings,
            primary=self.primary,
            journal=self.journal,
            on_event=self.sinks,
            sandbox=self.sandbox,
            scheduler=self.scheduler,
            prices=self.prices,
        )
        origin: Origin = "resumed" if pending.state == "interrupted" else "ran"
        if self.on_start is not None:
            self.on_start(pending)
        started = time.monotonic()
        try:
            if origin == "resumed":
                await asyncio.to_thread(self.journal.claim, pending.run_id)
                result = await monitor.resume(pending.run_id)
            else:
                result = await monitor.run(pending.item.task, run_id=pending.run_id)
        except HiMoeError as error:  # refused before it ran (a plan problem, say)
            return self._failed(pending, origin, started, f"{type(error).__name__}: {error}")
        except Exception as error:  # a bug: loud, counted, and the batch goes on
            log.error(
                "task on line %d (run %s): %s is a bug in hi-moe, not a task failure",
                pending.item.line,
                pending.run_id,
                type(error).__name__,
                exc_info=error,
            )
            reason = f"internal error (a bug in hi-moe): {type(error).__name__}: {error}"
            return self._failed(pending, origin, started, reason, error=type(error).__name__)
        return self._from_run(pending, origin, result)

    def _from_run(self, pending: Pending, origin: Origin, result: RunResult) -> TaskResult:
        return TaskResult(
            line=pending.item.line,
            id=pending.item.key,
            run_id=pending.run_id,
            status=result.status,
            answer=result.answer,
            reason=result.reason,
            tokens=result.usage.total_tokens,
            wall_s=round(result.wall_s, 3),
            origin=origin,
            cost_usd=result.cost.usd if result.cost.complete else None,
            scheduling=self._switches(result.scheduling),
        )

    def _failed(
        self,
        pending: Pending,
        origin: Origin,
        started: float,
        reason: str,
        *,
        error: str | None = None,
    ) -> TaskResult:
        return TaskResult(
            line=pending.item.line,
            id=pending.item.key,
            run_id=pending.run_id,
            status="failed",
            answer=None,
            reason=reason,
            tokens=0,
            wall_s=round(time.monotonic() - started, 3),
            origin=origin,
            error=error,
        )

    def _from_journal(self, pending: Pending) -> TaskResult:
        record = pending.record
        assert record is not None
        assert record.status != "running"
        summary = record.summary or {}
        return TaskResult(
            line=pending.item.line,
            id=pending.item.key,
            run_id=pending.run_id,
            status=record.status,
            answer=record.answer,
            reason=str(summary.get("reason", "")),
            tokens=int(summary.get("tokens", 0)),
            wall_s=float(summary.get("wall_s", 0.0)),
            origin="journal",
            cost_usd=_journaled_cost(summary),
            scheduling=self._switches(summary.get("scheduling")),
        )

    def _switches(self, scheduling: Mapping[str, Any] | None) -> dict[str, Any] | None:
        # Only this run's figure: the rest of a run's summary is the shared scheduler's, the
        # same for every task (it is in the batch's summary once).
        if not self.aware or scheduling is None:
            return None
        return {"adapter_switches": scheduling.get("adapter_switches", 0)}


def _ours(record: RunRecord) -> bool:
    """Owned by this process: a batch of ours that was stopped (cancelled), not a live one."""
    return record.owner_pid == os.getpid() and record.owner_host == socket.gethostname()


def _journaled_cost(summary: Mapping[str, Any]) -> float | None:
    """A journaled run's total cost (None when unpriced requests made it partial)."""
    cost = RunCost.of_summary(summary)
    if cost is None:
        return 0.0  # journaled before costs were kept
    return cost.usd if cost.complete else None
