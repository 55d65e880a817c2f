"""One attempt at a step, and the outcome it comes to.

`ProgressMonitor._run_step` loops over attempts; each ends in exactly one `Outcome`:

- `Done`: an answer passed the step's checks.
- `Retry`: an answer failed a check (its format, the tests, JSON parsing); the next attempt
  feeds the answer and the failure back to the model.
- `Resurvey`: a provider no longer serves the step's adapter. The model did no wrong, so there
  is nothing to feed back: the providers are asked what they serve and the step is fitted again
  (the base model instead, or another provider).
- `GiveUp`: no retry can help: every provider failed or is cooling down (the `FallbackProvider`
  already tried them all), or the request itself is wrong (a bad constraint or setting).

Only a `HiMoeError` becomes an outcome. Anything else (a `KeyError`, a `TypeError`) is a bug in
our code and propagates, so it is never retried as if the model had failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from hi_moe.cost.meter import InFlight, watching
from hi_moe.cost.spent import Spent, unrecorded
from hi_moe.errors import ConstraintViolation, HiMoeError, UnknownAdapter
from hi_moe.pipeline.dispatcher import Assignment, Dispatcher, extract_output
from hi_moe.pipeline.plan import Step, Task
from hi_moe.pipeline.recorder import StepRecorder
from hi_moe.pipeline.result import StepResult
from hi_moe.providers.base import InferenceProvider
from hi_moe.providers.fallback import FallbackProvider
from hi_moe.types import CompletionRequest, Hop, Message

__all__ = ["Attempt", "Done", "GiveUp", "Outcome", "Resurvey", "Retry", "StepWork"]

OUTPUT_INSTRUCTIONS = {
    "code": "Answer with Python code only, in one ```python block.",
    "code_json": 'Answer with a JSON object {"code": "<the Python code>"}.',
    "json": 'Answer with a JSON object {"answer": "<your answer>"}.',
    "text": "Answer concisely.",
}


@dataclass(frozen=True)
class Done:
    result: StepResult
    """The answer and who gave it; attempts, tokens and notes are the recorder's to add."""


@dataclass(frozen=True)
class Retry:
    failure: str
    answer: str
    """The answer that failed, shown to the model with the failure."""

    def feedback(self) -> list[Message]:
        return [
            Message.assistant(self.answer),
            Message.user(f"That did not work: {self.failure}\nFix it and answer again."),
        ]


@dataclass(frozen=True)
class Resurvey:
    failure: str


@dataclass(frozen=True)
class GiveUp:
    failure: str


Outcome: TypeAlias = Done | Retry | Resurvey | GiveUp


@dataclass(frozen=True)
class StepWork:
    """What every attempt at one step shares: the task, the step, its dependencies' results."""

    task: Task
    step: Step
    inputs: Mapping[str, StepResult]
    is_final: bool
    temperature: float

    @property
    def runs_tests(self) -> bool:
        """Whether the answer is run against the task's tests (the final code step's is)."""
        return self.step.output == "code" and self.is_final and bool(self.task.tests)

    def request(self, assignment: Assignment, feedback: Sequence[Message]) -> CompletionRequest:
        # Shared text first (system prompt, then the task), so steps share the longest prefix
        # and vLLM's prefix cache serves it once.
        task, step = self.task, self.step
        parts = [f"Overall task:\n{task.prompt}"]
        for dep_id, result in self.inputs.items():
            parts.append(f"Result of step {dep_id}:\n{result.output}")
        parts.append(f"Your step ({step.id}): {step.goal}")
        if self.is_final and task.tests:
            entry = f" `{task.entry_point}`" if task.entry_point else ""
            parts.append(f"Write the complete implementation{entry}; it must pass:\n{task.tests}")
        kind: str = step.output
        if kind == "code" and assignment.constraint is not None:
            kind = "code" if assignment.constraint.kind == "grammar" else "code_json"
        parts.append(OUTPUT_INSTRUCTIONS[kind])
        return CompletionRequest(
            messages=[
                Message.system(assignment.system_prompt),
                Message.user("\n\n".join(parts)),
                *feedback,
            ],
            adapter=assignment.adapter,
            constraint=assignment.constraint,
            max_tokens=assignment.max_tokens,
            temperature=self.temperature,
        )


Check: TypeAlias = Callable[[StepWork, str], Awaitable[str | None]]
"""Why a step's output fails the checks beyond its constraint (tests, JSON), or None."""


class Attempt:
    """One attempt at a step through the fallback chain. Each provider tried is asked a request
    fitted to it (`dispatcher.assign(step, label)`: its adapter and constraint), kept in
    `assignments`; each one passed over leaves a request event and a note."""

    def __init__(
        self,
        work: StepWork,
        feedback: Sequence[Message],
        record: StepRecorder,
        *,
        dispatcher: Dispatcher,
        chain: FallbackProvider,
        check: Check,
    ) -> None:
        self.work = work
        self.feedback = feedback
        self.record = record
        self.dispatcher = dispatcher
        self.chain = chain
        self.check = check
        self.assignments: dict[str, Assignment] = {}

    async def outcome(self) -> Outcome:
        step = self.work.step
        chain = self.chain.ordered(self.dispatcher.candidates(step), on_hop=self._passed_over)
        started = time.perf_counter()
        try:
            with watching() as flights:
                completion = await chain.complete_each(self._request_for)
        except asyncio.CancelledError:
            self._cancelled(flights)
            raise
        except ConstraintViolation as error:
            self._unhopped(error, started)
            return Retry(f"the output broke its format: {error.reason}", answer=error.text)
        except UnknownAdapter as error:
            self._unhopped(error, started)
            self.dispatcher.forget_adapters(error.provider or self._last().provider)
            return Resurvey(str(error))
        except HiMoeError as error:
            self._unhopped(error, started)
            return GiveUp(f"{type(error).__name__}: {error}")
        assignment = self.assignments[completion.provider]
        for adapted in assignment.notes:
            self.record.note(adapted)
        self.record.request(assignment, Spent.of(completion))
        output = extract_output(step.output, completion.text, completion.parsed)
        if (problem := await self.check(self.work, output)) is not None:
            return Retry(problem, answer=completion.text)
        return Done(
            StepResult(
                step_id=step.id,
                status="done",
                output=output,
                parsed=completion.parsed,
                provider=assignment.provider,
                adapter=assignment.adapter,
                model=completion.model,
            )
        )

    def _unhopped(self, error: HiMoeError, started: float) -> None:
        """Record the request that ended the chain with `error`, unless the chain passed it
        over as a hop (recorded then), or it was refused before it was sent."""
        if not unrecorded(error):
            return
        took = time.perf_counter() - started - sum(hop.latency_s for hop in error.hops)
        spent = Spent.of_error(error).model_copy(update={"latency_s": max(took, 0.0)})
        self.record.request(self._last(), spent, error=type(error).__name__)

    def _cancelled(self, flights: Sequence[InFlight]) -> None:
        """The call was cancelled (the run stopped, the step's backstop fired): the request in
        flight then is booked, with what it occupied of its server; no answer came back."""
        for flight in (f for f in flights if f.cancelled):
            spent = Spent(
                latency_s=flight.wall_s,
                busy_share_s=flight.share_s,
                cold_share_s=flight.cold_share_s,
                cold_wait_s=flight.cold_wait_s,
            )
            self.record.request(self._last(), spent, error="Cancelled")

    def _last(self) -> Assignment:
        """The assignment of the provider tried last."""
        if self.assignments:
            return list(self.assignments.values())[-1]
        return self.dispatcher.assign(self.work.step)

    def _request_for(self, label: str, provider: InferenceProvider) -> CompletionRequest:
        assignment = self.dispatcher.assign(self.work.step, label)
        self.assignments[label] = assignment
        return self.work.request(assignment, self.feedback)

    def _passed_over(self, hop: Hop) -> None:
        self.record.hop(hop, self.assignments.get(hop.provider) or self._last())
