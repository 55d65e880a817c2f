"""The Progress Monitor: owns a run from task to answer.

It plans (Architect), assigns each step (Dispatcher), executes the DAG (Fleet) and checks what
comes back. Requests go through one `FallbackProvider` over the loaded providers, ordered per
call by the Dispatcher's routes, so a provider that is down is passed over (and cooled down)
there, not by loops here. A code step with tests runs in the sandbox, a JSON step is
schema-checked by the provider. A failed check is retried with the failure as feedback; a final
step that fails for good is re-planned; both within a `Budget` of tokens, wall time and
attempts. Every finished step is journaled, so `resume(run_id)` continues a killed run without
asking again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hi_moe import constraints
from hi_moe.errors import (
    ConfigError,
    ConstraintViolation,
    HiMoeError,
    UnknownAdapter,
)
from hi_moe.pipeline.architect import Architect
from hi_moe.pipeline.dispatcher import Assignment, Dispatcher, extract_output
from hi_moe.pipeline.events import Event, EventKind, EventSink
from hi_moe.pipeline.fleet import Fleet, StopRun
from hi_moe.pipeline.journal import Journal
from hi_moe.pipeline.plan import Plan, Step, Task, plan_problems
from hi_moe.pipeline.result import RunResult, StepResult
from hi_moe.pipeline.sandbox.base import SandboxBackend
from hi_moe.pipeline.settings import PipelineSettings
from hi_moe.providers.base import InferenceProvider
from hi_moe.providers.fallback import (
    Cooldown,
    FallbackProvider,
    on_unavailable,
    on_unavailable_or_rejected,
)
from hi_moe.types import Completion, CompletionRequest, Hop, Message, Usage

__all__ = ["ProgressMonitor"]

log = logging.getLogger(__name__)

OUTPUT_INSTRUCTIONS = {
    "code": "Answer with Python code only, in one ```python block.",
    "code_json": 'Answer with a JSON object {"code": "<the Python code>"}.',
    "json": 'Answer with a JSON object {"answer": "<your answer>"}.',
    "text": "Answer concisely.",
}


@dataclass
class _Run:
    run_id: str
    task: Task
    version: int = 0
    plan: Plan | None = None
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)


class ProgressMonitor:
    """Runs tasks on one provider, or on several by routing (see `PipelineSettings.routes`)."""

    def __init__(
        self,
        providers: InferenceProvider | Mapping[str, InferenceProvider],
        settings: PipelineSettings | None = None,
        *,
        primary: str | None = None,
        journal: Journal | None = None,
        on_event: EventSink | Sequence[EventSink] = (),
        sandbox: SandboxBackend | None = None,
    ) -> None:
        if isinstance(providers, InferenceProvider):
            providers = {providers.name: providers}
            primary = primary or next(iter(providers))
        if not providers:
            raise ValueError("a ProgressMonitor needs at least one provider")
        self.providers = dict(providers)
        self.primary = primary or next(iter(self.providers))
        self.settings = settings or PipelineSettings()
        self.journal = journal
        self.sandbox = sandbox
        """Where code steps' tests run; by default `load_backend(settings.sandbox)`, built
        when a task with tests first needs it."""
        self.sinks: list[EventSink] = [on_event] if callable(on_event) else list(on_event)
        s = self.settings
        self.architect = Architect(
            domains=s.domains,
            max_steps=s.max_steps,
            max_repairs=s.max_plan_repairs,
            max_goal_chars=s.max_goal_chars,
            max_tokens=s.plan_max_tokens,
            temperature=s.temperature,
        )
        self.dispatcher = Dispatcher(
            self.providers,
            primary=self.primary,
            routes=s.routes,
            fallbacks=s.fallbacks,
            adapters=s.adapters,
            prompts=s.prompts,
            max_tokens=s.step_max_tokens,
            code_max_lines=s.code_max_lines,
            code_line_chars=s.code_line_chars,
            json_max_chars=s.json_max_chars,
        )
        self.fleet = Fleet(max_parallel=s.max_parallel, step_timeout_s=s.step_timeout_s)
        self.chain = FallbackProvider.of(
            self.providers,
            fallback_on=on_unavailable_or_rejected if s.fallback_on_rejected else on_unavailable,
            cooldown=Cooldown(
                failures=s.cooldown_failures, window_s=s.cooldown_window_s, cooldown_s=s.cooldown_s
            ),
        )
        """Every request of a run goes through this, ordered per call (`chain.ordered`)."""
        # The plan schema and the output constraints are the same for every run: compile them
        # in the background now, so no request waits for XGrammar (or its import).
        d = self.dispatcher
        constraints.precompile(
            [self.architect.constraint, d.code_grammar, d.code_schema, d.json_schema]
        )

    # -- events -------------------------------------------------------------------------------

    def _emit(
        self,
        kind: EventKind,
        run: _Run,
        step_id: str | None = None,
        detail: str = "",
        **data: object,
    ) -> None:
        event = Event(kind=kind, run_id=run.run_id, step_id=step_id, detail=detail, data=data)
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a broken display must not break the run
                log.exception("event sink %r failed", sink)

    # -- runs ---------------------------------------------------------------------------------

    async def run(
        self, task: Task | str, *, run_id: str | None = None, plan: Plan | None = None
    ) -> RunResult:
        """Plan and execute `task`; the result says whether it succeeded and why not.

        With `plan`, the Architect is not asked: the plan runs as given (a final step that
        fails for good is still re-planned by the Architect, within `budget.max_replans`).
        A plan naming unknown domains or steps, or with a cycle, raises `ConfigError` before
        any request.
        """
        task = Task(prompt=task) if isinstance(task, str) else task
        if plan is not None:
            problems = plan_problems(
                plan, domains=self.settings.domains, max_steps=len(plan.steps), task=task
            )
            if problems:
                raise ConfigError(f"the plan cannot run: {'; '.join(problems)}")
        if task.tests:
            await self.sandbox_backend()  # a sandbox that cannot be had is a ConfigError now
        run = _Run(run_id=run_id or _new_run_id(), task=task)
        if self.journal is not None:
            self.journal.start_run(run.run_id, task)
        self._emit("run_started", run, detail=task.prompt[:200])
        if plan is not None:
            self._adopt(run, plan, detail=f"{len(plan.steps)} steps, as given")
        return await self._drive(run, done={})

    async def resume(self, run_id: str) -> RunResult:
        """Continue a journaled run: finished steps are taken from the journal, not asked again.
        A run that already finished returns its journaled result."""
        if self.journal is None:
            raise ValueError("resume needs a journal")
        record = self.journal.load_run(run_id)
        if record is None:
            raise KeyError(f"no run {run_id!r} in {self.journal.path}")
        run = _Run(run_id=run_id, task=record.task, version=record.plan_version, plan=record.plan)
        done = self.journal.finished_steps(run_id, record.plan_version) if record.plan else {}
        if record.status != "running" and record.plan is not None:
            return self._result(run, record.plan, done, reason="", resumed=done)
        if record.task.tests:
            await self.sandbox_backend()
        self._emit("run_started", run, detail=f"resuming with {len(done)} finished steps")
        for step_id in done:
            self._emit("step_resumed", run, step_id)
        return await self._drive(run, done=done)

    async def _survey(self) -> None:
        # A provider found down here is skipped by the first request instead of costing it a
        # failed call (and, for vLLM, compiling the request's grammar first).
        for name, error in (await self.dispatcher.survey()).items():
            self.chain.record_failure(name, error)

    async def _drive(self, run: _Run, done: dict[str, StepResult]) -> RunResult:
        resumed = dict(done)
        try:
            await self._survey()
            if run.plan is None:
                await self._plan(run, feedback=None)
            assert run.plan is not None
            for replan in range(self.settings.budget.max_replans + 1):
                results = await self.fleet.run(
                    run.plan,
                    lambda step, inputs: self._run_step(run, step, inputs),
                    done=done,
                    on_skip=lambda r: self._emit("step_skipped", run, r.step_id, r.error or ""),
                )
                final = results.get(run.plan.final_step().id)
                if final is not None and final.ok:
                    return self._finish(run, results, resumed)
                reason = (final.error if final else None) or "the final step did not finish"
                if replan == self.settings.budget.max_replans:
                    return self._finish(run, results, resumed, reason=reason)
                if (spent := self._budget_left(run)) is not None:
                    return self._finish(run, results, resumed, reason=spent)
                self._emit("replanned", run, detail=reason)
                await self._plan(run, feedback=f"step {final.step_id if final else '?'}: {reason}")
                done = {}
            raise AssertionError("unreachable")  # the loop returns on its last pass
        except HiMoeError as error:
            reason = f"{type(error).__name__}: {error}"
            return self._finish(run, {}, resumed, reason=reason)

    async def _plan(self, run: _Run, feedback: str | None) -> None:
        """Plan on the primary provider, falling back in the configured order."""
        names = list(dict.fromkeys([self.primary, *self.settings.fallbacks]))

        def fell_back(hop: Hop) -> None:
            if hop.error != "skipped":
                later = names[names.index(hop.provider) + 1 :]
                where = f"planning on {later[0]}" if later else "planning"
                self._emit("fell_back", run, detail=f"{where}: {hop.provider}: {hop.message}")

        outcome = await self.architect.plan(
            self.chain.ordered(names, on_hop=fell_back), run.task, feedback=feedback
        )
        run.usage = run.usage + outcome.usage
        for made in outcome.requests:
            self._emit(
                "request",
                run,
                None,
                provider=made.provider or self.primary,
                adapter=None,
                domain="plan",
                latency_s=None if made.latency_s is None else round(made.latency_s, 4),
                prompt_tokens=made.usage.prompt_tokens,
                completion_tokens=made.usage.completion_tokens,
                error=made.error,
            )
        if outcome.fell_back:
            note = "the model gave no usable plan; fell back to one step: " + "; ".join(
                outcome.problems[-3:]
            )
            run.notes.append(note)
            self._emit("plan_fell_back", run, detail=note)
        elif outcome.problems:
            self._emit("plan_rejected", run, detail="; ".join(outcome.problems))
        self._adopt(
            run,
            outcome.plan,
            detail=f"{len(outcome.plan.steps)} steps",
            attempts=outcome.attempts,
            tokens=outcome.usage.total_tokens,
        )

    def _adopt(
        self, run: _Run, plan: Plan, *, detail: str, attempts: int = 0, tokens: int = 0
    ) -> None:
        """Make `plan` the run's current plan: journaled before any of its steps runs."""
        run.plan = plan
        run.version += 1
        if self.journal is not None:
            self.journal.save_plan(run.run_id, plan, run.version)
        self._emit(
            "planned",
            run,
            detail=detail,
            plan=json.loads(plan.model_dump_json()),
            attempts=attempts,
            tokens=tokens,
        )

    def _budget_left(self, run: _Run) -> str | None:
        """Why the run must stop now, or None while budget remains."""
        budget = self.settings.budget
        if run.usage.total_tokens >= budget.max_tokens:
            return f"token budget spent ({run.usage.total_tokens} of {budget.max_tokens})"
        elapsed = time.monotonic() - run.started
        if elapsed >= budget.max_wall_s:
            return f"time budget spent ({elapsed:.0f} s of {budget.max_wall_s:.0f} s)"
        return None

    # -- steps --------------------------------------------------------------------------------

    async def _run_step(
        self, run: _Run, step: Step, inputs: Mapping[str, StepResult]
    ) -> StepResult:
        assert run.plan is not None
        is_final = step.id == run.plan.final_step().id
        notes: list[str] = []
        feedback: list[Message] = []
        usage = Usage()
        failure = "not attempted"
        attempts = 0
        started = time.perf_counter()

        def note(text: str) -> None:
            if text not in notes:
                notes.append(text)
                self._emit("fell_back", run, step.id, text)

        while attempts < self.settings.budget.step_attempts:
            if (spent := self._budget_left(run)) is not None:
                raise StopRun(spent)
            attempts += 1
            first = self.dispatcher.assign(step)
            self._emit(
                "step_started" if attempts == 1 else "step_retried",
                run,
                step.id,
                failure if attempts > 1 else step.goal[:200],
                attempt=attempts,
                provider=first.provider,
                adapter=first.adapter,
            )
            attempt = _Attempt(self, run, step, inputs, feedback, is_final, note)
            text = ""
            try:
                completion = await attempt.send()
            except HiMoeError as error:
                usage = usage + attempt.spent
                failure, text, again = self._failed(run, step, error, attempt)
                if again is None:
                    break
                if again == "survey":
                    await self._survey()
                    continue
            else:
                usage = usage + attempt.spent
                assignment = attempt.assignments[completion.provider]
                for adapted in assignment.notes:
                    note(adapted)
                result = await self._accept(run, step, assignment, completion, is_final)
                usage = usage + completion.usage
                if isinstance(result, str):
                    failure, text = result, completion.text
                else:
                    return self._done(run, result, attempts, usage, started, notes)
            feedback = [
                Message.assistant(text),
                Message.user(f"That did not work: {failure}\nFix it and answer again."),
            ]
        self._emit("step_failed", run, step.id, failure, attempts=attempts)
        return StepResult(
            step_id=step.id,
            status="failed",
            attempts=attempts,
            usage=usage,
            latency_s=time.perf_counter() - started,
            notes=tuple(notes),
            error=failure,
        )

    def _failed(
        self, run: _Run, step: Step, error: HiMoeError, attempt: _Attempt
    ) -> tuple[str, str, str | None]:
        """What an attempt that ended in `error` leaves: the failure to feed back, the text it
        was about, and what to do (`retry`, `survey` the adapters first, or None: give up)."""
        if isinstance(error, ConstraintViolation):
            cost = error.usage or Usage()
            run.usage = run.usage + cost
            self._request_event(run, step, attempt.last(), cost, error=type(error).__name__)
            return f"the output broke its format: {error.reason}", error.text, "retry"
        if isinstance(error, UnknownAdapter):
            self.dispatcher.forget_adapters(error.provider or attempt.last().provider)
            return str(error), "", "survey"
        # Every candidate was tried (or is cooling down), or no retry can fix it (a bad
        # constraint or setting): the step fails with the provider's own typed error.
        return f"{type(error).__name__}: {error}", "", None

    def _done(
        self,
        run: _Run,
        result: StepResult,
        attempts: int,
        usage: Usage,
        started: float,
        notes: list[str],
    ) -> StepResult:
        result = result.model_copy(
            update={
                "attempts": attempts,
                "usage": usage,
                "latency_s": time.perf_counter() - started,
                "notes": tuple(notes),
            }
        )
        if self.journal is not None:
            self.journal.finish_step(run.run_id, run.version, result)
        self._emit(
            "step_finished",
            run,
            result.step_id,
            attempts=attempts,
            provider=result.provider,
            adapter=result.adapter,
            tokens=usage.total_tokens,
        )
        return result

    async def _accept(
        self,
        run: _Run,
        step: Step,
        assignment: Assignment,
        completion: Completion,
        is_final: bool,
    ) -> StepResult | str:
        """The done step for a completion that passes the step's checks, or why it fails
        them; its tokens are counted either way."""
        run.usage = run.usage + completion.usage
        self._request_event(run, step, assignment, completion.usage, latency_s=completion.latency_s)
        output = extract_output(step.output, completion.text, completion.parsed)
        problem = await self._check(run.task, step, output, is_final)
        if problem is not None:
            return problem
        return StepResult(
            step_id=step.id,
            status="done",
            output=output,
            parsed=completion.parsed,
            provider=assignment.provider,
            adapter=assignment.adapter,
            model=completion.model,
        )

    def _request_event(
        self,
        run: _Run,
        step: Step,
        assignment: Assignment,
        usage: Usage,
        *,
        latency_s: float | None = None,
        error: str | None = None,
    ) -> None:
        self._emit(
            "request",
            run,
            step.id,
            provider=assignment.provider,
            adapter=assignment.adapter,
            domain=step.domain,
            latency_s=None if latency_s is None else round(latency_s, 4),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            error=error,
        )

    def _request(
        self,
        task: Task,
        step: Step,
        assignment: Assignment,
        inputs: Mapping[str, StepResult],
        feedback: list[Message],
        is_final: bool,
    ) -> CompletionRequest:
        # Shared text first (system prompt, then the task), so steps share the longest prefix
        # and vLLM's prefix cache serves it once.
        parts = [f"Overall task:\n{task.prompt}"]
        for dep_id, result in inputs.items():
            parts.append(f"Result of step {dep_id}:\n{result.output}")
        parts.append(f"Your step ({step.id}): {step.goal}")
        if is_final and task.tests:
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
            temperature=self.settings.temperature,
        )

    async def _check(self, task: Task, step: Step, output: str, is_final: bool) -> str | None:
        """Why the output fails, or None. The provider has already checked its constraint."""
        if step.output == "code" and is_final and task.tests:
            from hi_moe.pipeline.sandbox.verdict import check_solution

            verdict = await check_solution(
                await self.sandbox_backend(),
                output,
                task.tests,
                entry_point=task.entry_point,
                limits=self.settings.sandbox.limits(),
            )
            return None if verdict.passed else f"the tests failed: {verdict.summary}"
        if step.output == "json":
            try:
                json.loads(output)
            except ValueError as error:
                return f"the answer is not JSON: {error}"
        return None

    async def sandbox_backend(self) -> SandboxBackend:
        """The backend code steps' tests run in, built once from `settings.sandbox` (probing
        bubblewrap takes a real run, so off the event loop)."""
        if self.sandbox is None:
            from hi_moe.pipeline.sandbox.choose import load_backend

            # The probe is cached per process, so two steps racing here build two handles
            # on the same backend: harmless, and no lock tied to an event loop.
            chosen = await asyncio.to_thread(load_backend, self.settings.sandbox)
            self.sandbox = self.sandbox or chosen
        return self.sandbox

    # -- results ------------------------------------------------------------------------------

    def _finish(
        self,
        run: _Run,
        results: dict[str, StepResult],
        resumed: Mapping[str, StepResult],
        *,
        reason: str = "",
    ) -> RunResult:
        result = self._result(run, run.plan, results, reason=reason, resumed=resumed)
        if self.journal is not None:
            self.journal.finish_run(run.run_id, result.status, result.answer, result.summary())
        self._emit(
            "run_finished",
            run,
            detail=reason,
            status=result.status,
            tokens=result.usage.total_tokens,
            wall_s=round(result.wall_s, 3),
        )
        return result

    def _result(
        self,
        run: _Run,
        plan: Plan | None,
        results: Mapping[str, StepResult],
        *,
        reason: str,
        resumed: Mapping[str, StepResult],
    ) -> RunResult:
        final = results.get(plan.final_step().id) if plan is not None else None
        ok = final is not None and final.ok and not reason
        usage = run.usage
        for step_id, earlier in resumed.items():
            if step_id in results:
                usage = usage + earlier.usage  # spent before the kill, counted once
        return RunResult(
            run_id=run.run_id,
            status="succeeded" if ok else "failed",
            answer=final.output if ok and final is not None else None,
            plan=plan,
            steps=dict(results),
            usage=usage,
            wall_s=time.monotonic() - run.started,
            reason=reason,
            notes=tuple(run.notes),
            resumed_steps=tuple(sorted(resumed)),
        )


class _Attempt:
    """One attempt at a step through the fallback chain: the request fitted to each provider
    tried (its adapter and constraint, kept in `assignments`), and what each hop leaves (a
    request event, a note, the tokens it cost in `spent`)."""

    def __init__(
        self,
        monitor: ProgressMonitor,
        run: _Run,
        step: Step,
        inputs: Mapping[str, StepResult],
        feedback: list[Message],
        is_final: bool,
        note: Callable[[str], None],
    ) -> None:
        self.monitor, self.run, self.step = monitor, run, step
        self.inputs, self.feedback, self.is_final = inputs, feedback, is_final
        self.note = note
        self.assignments: dict[str, Assignment] = {}
        self.spent = Usage()

    async def send(self) -> Completion:
        dispatcher = self.monitor.dispatcher
        chain = self.monitor.chain.ordered(dispatcher.candidates(self.step), on_hop=self._hopped)
        return await chain.complete_each(self._request_for)

    def last(self) -> Assignment:
        """The assignment of the provider tried last."""
        if self.assignments:
            return list(self.assignments.values())[-1]
        return self.monitor.dispatcher.assign(self.step)

    def _request_for(self, label: str, provider: InferenceProvider) -> CompletionRequest:
        monitor = self.monitor
        assignment = monitor.dispatcher.assign(self.step, label)
        self.assignments[label] = assignment
        return monitor._request(
            self.run.task, self.step, assignment, self.inputs, self.feedback, self.is_final
        )

    def _hopped(self, hop: Hop) -> None:
        if hop.error == "skipped":
            if hop.message.startswith("cooling down"):  # capability skips are in the notes
                self.note(f"{hop.provider} skipped: {hop.message}")
            return
        self.spent = self.spent + hop.usage
        self.run.usage = self.run.usage + hop.usage
        assignment = self.assignments.get(hop.provider) or self.last()
        self.monitor._request_event(self.run, self.step, assignment, hop.usage, error=hop.error)
        word = "rejected its output" if hop.error == "ConstraintViolation" else "unavailable"
        self.note(f"{hop.provider} {word}: {hop.message}")


def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
