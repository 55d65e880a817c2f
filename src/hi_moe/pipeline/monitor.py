"""The Progress Monitor: owns a run from task to answer.

It plans (Architect), assigns each step (Dispatcher), executes the DAG (Fleet) and checks what
comes back. Requests go through one `FallbackProvider` over the loaded providers, ordered per
call by the Dispatcher's routes, so a provider that is down is passed over (and cooled down)
there, not by loops here. A code step with tests runs in the sandbox, a JSON step is
schema-checked by the provider. A failed check is retried with the failure as feedback; a final
step that fails for good is re-planned; both within a `Budget` of tokens, wall time and
attempts. Every finished step is journaled, so `resume(run_id)` continues a killed run without
asking again.

This module holds the decisions: when to plan, re-plan, retry or stop. What one attempt at a
step comes to (done, retry with feedback, survey the adapters again, give up) is
`pipeline.attempt`'s; what a run leaves behind (journal rows, events, notes, tokens) is
`pipeline.recorder`'s.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hi_moe import constraints
from hi_moe.cost import Prices
from hi_moe.errors import ConfigError, HiMoeError
from hi_moe.pipeline.architect import Architect
from hi_moe.pipeline.attempt import Attempt, Done, GiveUp, Resurvey, Retry, StepWork
from hi_moe.pipeline.dispatcher import Dispatcher
from hi_moe.pipeline.events import EventSink
from hi_moe.pipeline.fleet import Fleet, StopRun
from hi_moe.pipeline.journal import Journal
from hi_moe.pipeline.plan import Plan, Step, Task, plan_problems
from hi_moe.pipeline.recorder import RunRecorder
from hi_moe.pipeline.result import RunResult, StepResult
from hi_moe.pipeline.sandbox.base import SandboxBackend
from hi_moe.pipeline.scheduler import AdapterScheduler
from hi_moe.pipeline.settings import PipelineSettings
from hi_moe.providers.base import InferenceProvider
from hi_moe.providers.fallback import (
    Cooldown,
    FallbackProvider,
    on_unavailable,
    on_unavailable_or_rejected,
)
from hi_moe.types import Message

__all__ = ["ProgressMonitor"]


@dataclass
class _Run:
    task: Task
    record: RunRecorder
    """Its journal rows, events, notes and tokens."""
    plan: Plan | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def run_id(self) -> str:
        return self.record.run_id


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
        scheduler: AdapterScheduler | None = None,
        prices: Prices | None = None,
    ) -> None:
        """`scheduler`: one to share with other monitors (many runs against one server);
        by default each monitor makes its own when `settings.lora_slots` is set. `prices`:
        what requests cost (`[prices]`); by default the shipped table."""
        if isinstance(providers, InferenceProvider):
            providers = {providers.name: providers}
            primary = primary or next(iter(providers))
        if not providers:
            raise ValueError("a ProgressMonitor needs at least one provider")
        self.providers = dict(providers)
        self.primary = primary or next(iter(self.providers))
        self.settings = settings or PipelineSettings()
        self.journal = journal
        self.prices = prices or Prices()
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
        self._owns_scheduler = scheduler is None
        if scheduler is None and s.lora_slots is not None:
            scheduler = AdapterScheduler(
                slots=s.lora_slots, max_parallel=s.max_parallel, max_wait_s=s.adapter_max_wait_s
            )
        self.scheduler = scheduler
        self.fleet = Fleet(
            max_parallel=s.max_parallel,
            step_timeout_s=s.step_timeout_s,
            scheduler=scheduler,
            adapter_of=None if scheduler is None else self._adapter_of,
        )
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
        run = self._new_run(run_id or _new_run_id(), task)
        run.record.started(task)
        if plan is not None:
            self._adopt(run, plan, detail=f"{len(plan.steps)} steps, as given")
        return await self._drive(run, done={})

    async def resume(self, run_id: str) -> RunResult:
        """Continue a journaled run: finished steps are taken from the journal, not asked again.
        A run that already finished returns its journaled result; one that another live
        process runs is a `ConfigError`."""
        if self.journal is None:
            raise ValueError("resume needs a journal")
        journaled = self.journal.take_over(run_id)
        if journaled is None:
            raise KeyError(f"no run {run_id!r} in {self.journal.path}")
        run = self._new_run(run_id, journaled.task, plan_version=journaled.plan_version)
        run.record.carry_over()
        run.plan = journaled.plan
        done = self.journal.finished_steps(run_id, journaled.plan_version) if journaled.plan else {}
        if journaled.status != "running" and journaled.plan is not None:
            return self._result(run, done, reason="", resumed=done)
        if journaled.task.tests:
            await self.sandbox_backend()
        run.record.resumed(list(done))
        return await self._drive(run, done=done)

    def _new_run(self, run_id: str, task: Task, *, plan_version: int = 0) -> _Run:
        record = RunRecorder(
            run_id, self.sinks, self.journal, plan_version=plan_version, prices=self.prices
        )
        return _Run(task=task, record=record)

    def _scheduling(self, run_id: str) -> dict[str, object] | None:
        if self.scheduler is None:
            return None
        switches: dict[str, object] = {"adapter_switches": self.scheduler.switches.get(run_id, 0)}
        if not self._owns_scheduler:
            return switches  # a shared scheduler's figures are the batch's, reported there
        return {**switches, "adapters": self.scheduler.summary()["adapters"]}

    def _adapter_of(self, step: Step) -> str | None:
        """The adapter a step is routed to, which is what decides its LoRA slot."""
        return self.dispatcher.adapters.get(step.domain)

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
                    on_skip=run.record.step_skipped,
                    label=run.run_id,
                )
                final = results.get(run.plan.final_step().id)
                if final is not None and final.ok:
                    return self._finish(run, results, resumed)
                reason = (final.error if final else None) or "the final step did not finish"
                if replan == self.settings.budget.max_replans:
                    return self._finish(run, results, resumed, reason=reason)
                if (spent := self._budget_left(run)) is not None:
                    return self._finish(run, results, resumed, reason=spent)
                run.record.replanned(reason)
                await self._plan(run, feedback=f"step {final.step_id if final else '?'}: {reason}")
                done = {}
            raise AssertionError("unreachable")  # the loop returns on its last pass
        except HiMoeError as error:
            reason = f"{type(error).__name__}: {error}"
            return self._finish(run, {}, resumed, reason=reason)

    async def _plan(self, run: _Run, feedback: str | None) -> None:
        """Plan on the primary provider, falling back in the configured order."""
        names = list(dict.fromkeys([self.primary, *self.settings.fallbacks]))
        chain = self.chain.ordered(names, on_hop=lambda hop: run.record.planning_hop(hop, names))
        outcome = await self.architect.plan(
            chain,
            run.task,
            feedback=feedback,
            on_request=lambda made: run.record.plan_request(made, self.primary),
        )
        run.record.plan_made(outcome)
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
        run.plan = plan
        run.record.planned(plan, detail=detail, attempts=attempts, tokens=tokens)

    def _budget_left(self, run: _Run) -> str | None:
        """Why the run must stop now, or None while budget remains."""
        record = run.record
        elapsed = time.monotonic() - run.started
        return self.settings.budget.spent(record.usage.total_tokens, elapsed, record.account)

    # -- steps --------------------------------------------------------------------------------

    async def _run_step(
        self, run: _Run, step: Step, inputs: Mapping[str, StepResult]
    ) -> StepResult:
        """Attempt `step` until an answer passes its checks, no retry can help, or its
        attempts run out; a spent run budget stops the whole run (`StopRun`)."""
        assert run.plan is not None
        work = StepWork(
            run.task,
            step,
            inputs,
            is_final=step.id == run.plan.final_step().id,
            temperature=self.settings.temperature,
        )
        record = run.record.step(step)
        feedback: list[Message] = []
        failure: str | None = None  # the last attempt's, fed back or reported
        for _ in range(self.settings.budget.step_attempts):
            if (spent := self._budget_left(run)) is not None:
                raise StopRun(spent)
            record.attempt_started(self.dispatcher.assign(step), failure)
            attempt = Attempt(
                work,
                feedback,
                record,
                dispatcher=self.dispatcher,
                chain=self.chain,
                check=self._check,
            )
            match await attempt.outcome():
                case Done(result):
                    return record.finished(result)
                case Retry(failure) as retry:
                    feedback = retry.feedback()
                case Resurvey(failure):
                    await self._survey()  # the next attempt is fitted to what is served now
                case GiveUp(failure):
                    break
        return record.failed(failure or "not attempted")

    async def _check(self, work: StepWork, output: str) -> str | None:
        """Why the output fails, or None. The provider has already checked its constraint."""
        if work.runs_tests:
            from hi_moe.pipeline.sandbox.verdict import check_solution

            assert work.task.tests is not None
            verdict = await check_solution(
                await self.sandbox_backend(),
                output,
                work.task.tests,
                entry_point=work.task.entry_point,
                limits=self.settings.sandbox.limits(),
            )
            return None if verdict.passed else f"the tests failed: {verdict.summary}"
        if work.step.output == "json":
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
        result = self._result(run, results, reason=reason, resumed=resumed)
        run.record.run_finished(result)
        return result

    def _result(
        self,
        run: _Run,
        results: Mapping[str, StepResult],
        *,
        reason: str,
        resumed: Mapping[str, StepResult],
    ) -> RunResult:
        plan = run.plan
        final = results.get(plan.final_step().id) if plan is not None else None
        ok = final is not None and final.ok and not reason
        usage = run.record.usage
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
            cost=run.record.account.summary(),
            wall_s=time.monotonic() - run.started,
            reason=reason,
            notes=tuple(run.record.notes),
            resumed_steps=tuple(sorted(resumed)),
            scheduling=self._scheduling(run.run_id),
        )


def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
