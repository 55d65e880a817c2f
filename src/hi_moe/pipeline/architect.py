"""The Architect: turns a task into a `Plan`, asked for under a JSON schema so it parses on
every backend, checked, repaired a bounded number of times, and replaced by a one-step plan
(which it says) when the model cannot produce a good one."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hi_moe.cost.spent import Spent, unrecorded
from hi_moe.errors import ConstraintViolation, HiMoeError
from hi_moe.pipeline.plan import Plan, Step, Task, plan_problems, plan_schema
from hi_moe.providers.base import InferenceProvider
from hi_moe.types import CompletionRequest, Hop, JsonSchema, Message, Usage

__all__ = ["Architect", "PlanOutcome"]

log = logging.getLogger(__name__)

INSTRUCTIONS = """You are the architect of a team of specialists. Break the task into a small \
plan of steps. Each step has an id (s1, s2, ...), a goal a specialist can act on alone, the \
domain of the specialist that should do it ({domains}), the ids of earlier steps whose results \
it needs (depends_on), and the output it produces: code (Python), text, or json. Steps that do \
not need each other's results must not depend on each other, so they can run at the same time. \
Use as few steps as the task needs, at most {max_steps}. The last step produces the final \
answer.{tests_rule}"""
TESTS_RULE = " The task comes with tests: the last step must output code that passes them."


class PlanRequest(BaseModel):
    """One request the Architect made, for the metrics log and the run's cost."""

    model_config = ConfigDict(frozen=True)

    spent: Spent
    attempt: int = 1
    error: str | None = None
    provider: str = ""
    """Who answered, where known (a rejected output under a fallback may not say)."""


class PlanOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    plan: Plan
    usage: Usage = Field(default_factory=Usage)
    attempts: int = 0
    fell_back: bool = False
    problems: tuple[str, ...] = ()
    """What was wrong with the rejected plans, last attempt last."""
    requests: tuple[PlanRequest, ...] = ()

    @classmethod
    def of(
        cls,
        plan: Plan,
        requests: Sequence[PlanRequest],
        *,
        attempts: int,
        problems: Sequence[str],
        fell_back: bool = False,
    ) -> PlanOutcome:
        """The outcome whose `usage` is what its `requests` cost, so the two cannot differ."""
        usage = sum((made.spent.usage for made in requests), Usage())
        return cls(
            plan=plan,
            usage=usage,
            attempts=attempts,
            fell_back=fell_back,
            problems=tuple(problems),
            requests=tuple(requests),
        )


class Architect:
    def __init__(
        self,
        *,
        domains: Sequence[str],
        max_steps: int = 8,
        max_repairs: int = 2,
        max_goal_chars: int = 400,
        max_tokens: int = 1024,
        temperature: float = 0.2,
    ) -> None:
        if not domains:
            raise ValueError("the Architect needs at least one domain")
        self.domains = tuple(domains)
        self.max_steps = max_steps
        self.max_repairs = max_repairs
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.constraint = JsonSchema(
            plan_schema(domains=self.domains, max_steps=max_steps, max_goal_chars=max_goal_chars),
            name="plan",
        )

    def fallback_plan(self, task: Task) -> Plan:
        """One step that does the whole task."""
        domain = "python" if "python" in self.domains else self.domains[0]
        output = "code" if task.tests else "text"
        return Plan(steps=(Step(id="s1", goal=task.prompt, domain=domain, output=output),))

    def messages(self, task: Task, feedback: str | None = None) -> list[Message]:
        system = INSTRUCTIONS.format(
            domains=", ".join(self.domains),
            max_steps=self.max_steps,
            tests_rule=TESTS_RULE if task.tests else "",
        )
        user = f"Task:\n{task.prompt}"
        if task.tests:
            user += f"\n\nTests the final code must pass:\n{task.tests}"
        if feedback:
            user += f"\n\nAn earlier attempt failed: {feedback}\nPlan differently."
        return [Message.system(system), Message.user(user)]

    async def plan(
        self,
        provider: InferenceProvider,
        task: Task,
        *,
        feedback: str | None = None,
        on_request: Callable[[PlanRequest], None] | None = None,
    ) -> PlanOutcome:
        """Ask `provider` for a plan. Provider errors other than a broken plan propagate (the
        caller decides whether another provider should plan). `on_request` hears of each
        request as it ends, those of a call that then raises included (they were paid for)."""
        messages = self.messages(task, feedback)
        problems: list[str] = []
        requests: list[PlanRequest] = []

        def heard(*made: PlanRequest) -> None:
            requests.extend(made)
            for one in made:
                if on_request is not None:
                    on_request(one)

        for attempt in range(1, self.max_repairs + 2):
            request = CompletionRequest(
                messages=messages,
                constraint=self.constraint,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
            try:
                completion = await provider.complete(request)
            except ConstraintViolation as error:
                heard(*_passed_over(error.hops, attempt))
                if unrecorded(error):
                    spent = Spent.of_error(error)
                    heard(PlanRequest(spent=spent, attempt=attempt, error="violation"))
                found = [f"the output was not a valid plan: {error.reason}"]
                text = error.text
            except HiMoeError as error:
                heard(*_passed_over(error.hops, attempt))
                if unrecorded(error):
                    spent, name = Spent.of_error(error), type(error).__name__
                    heard(PlanRequest(spent=spent, attempt=attempt, error=name))
                raise
            else:
                heard(*_passed_over(completion.hops, attempt))
                spent = Spent.of(completion)
                heard(PlanRequest(spent=spent, attempt=attempt, provider=completion.provider))
                text = completion.text
                found = self._problems(completion.parsed, task)
                if not found:
                    plan = Plan.model_validate(completion.parsed)
                    return PlanOutcome.of(plan, requests, attempts=attempt, problems=problems)
            problems.extend(found)
            log.info("plan attempt %d rejected: %s", attempt, "; ".join(found))
            messages = [
                *messages,
                Message.assistant(text),
                Message.user(
                    "That plan cannot be used: " + "; ".join(found) + ". Return a corrected plan."
                ),
            ]
        return PlanOutcome.of(
            self.fallback_plan(task),
            requests,
            attempts=self.max_repairs + 1,
            problems=problems,
            fell_back=True,
        )

    def _problems(self, parsed: object, task: Task) -> list[str]:
        try:
            plan = Plan.model_validate(parsed)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return [f"{where}: {first['msg']}"]
        return plan_problems(plan, domains=self.domains, max_steps=self.max_steps, task=task)


def plan_json(plan: Plan) -> str:
    """A plan as the model would write it (for examples and scripted tests)."""
    return json.dumps(
        {
            "steps": [
                {
                    "id": s.id,
                    "goal": s.goal,
                    "domain": s.domain,
                    "depends_on": list(s.depends_on),
                    "output": s.output,
                }
                for s in plan.steps
            ]
        }
    )


def _passed_over(hops: Sequence[Hop], attempt: int) -> list[PlanRequest]:
    """The requests to providers a chain passed over on the way (a skip sent nothing)."""
    return [
        PlanRequest(spent=Spent.of(hop), attempt=attempt, error=hop.error, provider=hop.provider)
        for hop in hops
        if hop.error != "skipped"
    ]
