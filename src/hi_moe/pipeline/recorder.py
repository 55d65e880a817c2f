"""What a run leaves besides its answer: journal rows, events, notes and token counts.

The Progress Monitor decides what to do; it tells a `RunRecorder` (and, per step, a
`StepRecorder`) what happened, and the recorder turns that into journal writes, `Event`s for
the sinks (the progress display, the metrics log, tests), notes for the result, and tokens
counted against the budget. Two orders hold here, in one place:

- a journal write comes before the event that announces it, so whoever sees `planned`,
  `step_finished` or `run_finished` (and is killed then) can resume from the journal;
- tokens and cost are counted where the `request` event is made (and the request journaled),
  so the budget, the metrics log, the report and the step's own figures cannot disagree.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from hi_moe.cost import CostAccount, Prices
from hi_moe.cost.prices import Cost
from hi_moe.cost.spent import Spent
from hi_moe.pipeline.architect import PlanOutcome, PlanRequest
from hi_moe.pipeline.dispatcher import Assignment
from hi_moe.pipeline.events import Event, EventKind, EventSink
from hi_moe.pipeline.journal import Journal
from hi_moe.pipeline.plan import Plan, Step, Task
from hi_moe.pipeline.result import RunResult, StepResult
from hi_moe.types import Hop, Usage

__all__ = ["RunRecorder", "StepRecorder"]

log = logging.getLogger(__name__)


class RunRecorder:
    """One run's journal rows, events, notes and tokens. `sinks` is read at each event, so a
    sink added to the monitor's list later still hears the rest of the run."""

    def __init__(
        self,
        run_id: str,
        sinks: Sequence[EventSink],
        journal: Journal | None = None,
        *,
        plan_version: int = 0,
        prices: Prices | None = None,
    ) -> None:
        self.run_id = run_id
        self.sinks = sinks
        self.journal = journal
        self.plan_version = plan_version
        """How many plans the run has had: the journal keeps finished steps per plan."""
        self.usage = Usage()
        """Every token the run's requests cost, rejected outputs included."""
        self.prices = prices or Prices()
        self.account = CostAccount()
        """What every request cost, by provider and step, retries included."""
        self.notes: list[str] = []

    def started(self, task: Task) -> None:
        if self.journal is not None:
            self.journal.start_run(self.run_id, task)
        self.emit("run_started", detail=task.prompt[:200])

    def carry_over(self) -> None:
        """Book what the run's earlier sessions spent (it was spent, killed or not)."""
        if self.journal is not None:
            for earlier in self.journal.requests(self.run_id):
                self.account.book_journaled(earlier)

    def resumed(self, done: Sequence[str]) -> None:
        self.emit("run_started", detail=f"resuming with {len(done)} finished steps")
        for step_id in done:
            self.emit("step_resumed", step_id)

    def emit(
        self, kind: EventKind, step_id: str | None = None, detail: str = "", **data: object
    ) -> None:
        event = Event(kind=kind, run_id=self.run_id, step_id=step_id, detail=detail, data=data)
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a broken display must not break the run
                log.exception("event sink %r failed", sink)

    def request(
        self,
        step_id: str | None,
        *,
        provider: str,
        adapter: str | None,
        domain: str,
        spent: Spent,
        attempt: int,
        constraint: str | None = None,
        error: str | None = None,
    ) -> Cost:
        """A request was answered (`error` None) or failed: its tokens and cost count either
        way. Journaled, then announced as a `request` event whose data is the record."""
        usage = spent.usage
        self.usage = self.usage + usage
        cost = self.prices.price(provider, spent)
        self.account.book(provider, step_id, cost)
        latency = spent.latency_s
        record: dict[str, object] = {
            "provider": provider,
            "adapter": adapter,
            "domain": domain,
            "model": spent.model,
            "constraint": constraint,
            "attempt": attempt,
            "started_at": round(time.time() - (latency or 0.0), 4),
            "latency_s": None if latency is None else round(latency, 4),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "busy_share_s": round(spent.busy_share_s, 6),
            "cold_share_s": round(spent.cold_share_s, 6),
            "cold_wait_s": round(spent.cold_wait_s, 4),
            "gpu_s": round(cost.gpu_s, 6),
            "cost_usd": cost.usd if cost.priced else None,
            "cost_basis": cost.basis,
            "error": error,
        }
        if self.journal is not None:
            self.journal.record_request(self.run_id, {"step": step_id, **record})
        self.emit("request", step_id, "", **record)
        return cost

    # -- planning -------------------------------------------------------------------------------

    def planning_hop(self, hop: Hop, order: Sequence[str]) -> None:
        """The provider `hop` names failed to plan; `order` is the order they are asked in."""
        if hop.error == "skipped":
            return
        later = order[order.index(hop.provider) + 1 :]
        where = f"planning on {later[0]}" if later else "planning"
        self.emit("fell_back", detail=f"{where}: {hop.provider}: {hop.message}")

    def plan_request(self, made: PlanRequest, primary: str) -> None:
        """A planning request ended (heard as it happens: a planning call that then fails
        for good has still cost what its requests cost)."""
        self.request(
            None,
            provider=made.provider or primary,
            adapter=None,
            domain="plan",
            spent=made.spent,
            attempt=made.attempt,
            constraint="json_schema",
            error=made.error,
        )

    def plan_made(self, outcome: PlanOutcome) -> None:
        if outcome.fell_back:
            note = "the model gave no usable plan; fell back to one step: " + "; ".join(
                outcome.problems[-3:]
            )
            self.notes.append(note)
            self.emit("plan_fell_back", detail=note)
        elif outcome.problems:
            self.emit("plan_rejected", detail="; ".join(outcome.problems))

    def planned(self, plan: Plan, *, detail: str, attempts: int, tokens: int) -> None:
        """`plan` is the run's plan now: journaled before any of its steps runs."""
        self.plan_version += 1
        if self.journal is not None:
            self.journal.save_plan(self.run_id, plan, self.plan_version)
        plan_data = json.loads(plan.model_dump_json())
        self.emit("planned", detail=detail, plan=plan_data, attempts=attempts, tokens=tokens)

    # -- steps and the run ------------------------------------------------------------------------

    def step(self, step: Step) -> StepRecorder:
        return StepRecorder(self, step)

    def replanned(self, reason: str) -> None:
        self.emit("replanned", detail=reason)

    def step_skipped(self, result: StepResult) -> None:
        self.emit("step_skipped", result.step_id, result.error or "")

    def run_finished(self, result: RunResult) -> None:
        if self.journal is not None:
            self.journal.finish_run(self.run_id, result.status, result.answer, result.summary())
        data: dict[str, object] = {
            "status": result.status,
            "tokens": result.usage.total_tokens,
            "cost_usd": result.cost.usd,
            "unpriced_requests": result.cost.unpriced_requests,
            "wall_s": round(result.wall_s, 3),
        }
        if result.scheduling is not None:
            data["scheduling"] = result.scheduling
        self.emit("run_finished", None, result.reason, **data)


class StepRecorder:
    """One step's attempts: what each cost, the fallbacks taken, and the step's result."""

    def __init__(self, run: RunRecorder, step: Step) -> None:
        self.run = run
        self.step = step
        self.attempts = 0
        self.usage = Usage()
        self.cost_usd = 0.0
        self._attempt_usd = 0.0  # what the current attempt has cost so far
        self.notes: list[str] = []
        self._started = time.perf_counter()

    def attempt_started(self, first_choice: Assignment, last_failure: str | None) -> None:
        self._discard_attempt()  # a new attempt: the last one's answer was not kept
        self.attempts += 1
        self.run.emit(
            "step_started" if self.attempts == 1 else "step_retried",
            self.step.id,
            self.step.goal[:200] if last_failure is None else last_failure,
            attempt=self.attempts,
            provider=first_choice.provider,
            adapter=first_choice.adapter,
        )

    def note(self, text: str) -> None:
        """A fallback the step took (each said once)."""
        if text not in self.notes:
            self.notes.append(text)
            self.run.emit("fell_back", self.step.id, text)

    def request(self, assignment: Assignment, spent: Spent, *, error: str | None = None) -> Cost:
        self.usage = self.usage + spent.usage
        constraint = assignment.constraint
        cost = self.run.request(
            self.step.id,
            provider=assignment.provider,
            adapter=assignment.adapter,
            domain=self.step.domain,
            spent=spent,
            attempt=self.attempts,
            constraint=None if constraint is None else constraint.kind,
            error=error,
        )
        self.cost_usd += cost.usd
        self._attempt_usd += cost.usd
        return cost

    def _discard_attempt(self) -> None:
        self.run.account.retried(self._attempt_usd)
        self._attempt_usd = 0.0

    def hop(self, hop: Hop, assignment: Assignment) -> None:
        """The fallback chain passed over a provider (`assignment` is what it was asked)."""
        if hop.error == "skipped":
            # Capability skips are already in the notes, as the assignment's own.
            if hop.message.startswith("cooling down"):
                self.note(f"{hop.provider} skipped: {hop.message}")
            return
        cost = self.request(assignment, Spent.of(hop), error=hop.error)
        self._attempt_usd -= cost.usd  # a call passed over: its answer was never kept
        self.run.account.retried(cost.usd)
        word = "rejected its output" if hop.error == "ConstraintViolation" else "unavailable"
        self.note(f"{hop.provider} {word}: {hop.message}")

    def finished(self, done: StepResult) -> StepResult:
        """The step's result, journaled so a resumed run does not ask for it again."""
        result = self._settled(done)
        run = self.run
        if run.journal is not None:
            run.journal.finish_step(run.run_id, run.plan_version, result)
        run.emit(
            "step_finished",
            self.step.id,
            attempts=self.attempts,
            provider=result.provider,
            adapter=result.adapter,
            tokens=self.usage.total_tokens,
            cost_usd=self.cost_usd,
        )
        return result

    def failed(self, failure: str) -> StepResult:
        self._discard_attempt()
        self.run.emit("step_failed", self.step.id, failure, attempts=self.attempts)
        return self._settled(StepResult(step_id=self.step.id, status="failed", error=failure))

    def _settled(self, result: StepResult) -> StepResult:
        return result.model_copy(
            update={
                "attempts": self.attempts,
                "usage": self.usage,
                "cost_usd": self.cost_usd,
                "latency_s": time.perf_counter() - self._started,
                "notes": tuple(self.notes),
            }
        )
