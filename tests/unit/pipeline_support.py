"""Scripted models for pipeline tests: a plan for the Architect, answers per step."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hi_moe.pipeline.architect import plan_json
from hi_moe.pipeline.plan import OutputKind, Plan, Step
from hi_moe.providers.mock import Reply
from hi_moe.types import CompletionRequest, Grammar, JsonSchema

STEP = re.compile(r"Your step \((\w+)\)")

Answer = str | BaseException | Callable[[CompletionRequest], Reply | Awaitable[Reply]]


def plan_of(*steps: tuple[str, str, str, tuple[str, ...], OutputKind]) -> Plan:
    """plan_of(("s1", "goal", "python", (), "code"), ...)"""
    return Plan(
        steps=tuple(
            Step(id=i, goal=g, domain=d, depends_on=deps, output=o) for i, g, d, deps, o in steps
        )
    )


def step_of(request: CompletionRequest) -> str | None:
    found = STEP.search(request.messages[1].content) if len(request.messages) > 1 else None
    return found.group(1) if found else None


def is_plan_request(request: CompletionRequest) -> bool:
    return isinstance(request.constraint, JsonSchema) and request.constraint.name == "plan"


def fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def shaped(request: CompletionRequest, answer: str) -> str:
    """Put a step's answer in the form its constraint asks for."""
    if isinstance(request.constraint, Grammar):
        return fenced(answer)
    if isinstance(request.constraint, JsonSchema) and request.constraint.name == "code":
        import json

        return json.dumps({"code": answer})
    if isinstance(request.constraint, JsonSchema) and request.constraint.name == "answer":
        import json

        return json.dumps({"answer": answer})
    return answer


def scripted(
    plan: Plan | str | list[Plan | str],
    answers: Mapping[str, Answer | list[Answer]] | None = None,
    *,
    default: str = "ok",
) -> Callable[[CompletionRequest], Awaitable[Reply]]:
    """A `MockProvider(respond=...)` function: plan requests get `plan` (a list: one per
    request, the last repeated), step requests get `answers[step_id]` (a list: one per attempt,
    the last repeated), shaped to the step's constraint. A callable answer is sent as it
    returns, unshaped."""
    plans = list(plan) if isinstance(plan, list) else [plan]
    queues: dict[str, list[Any]] = {
        k: list(v) if isinstance(v, list) else [v] for k, v in (answers or {}).items()
    }

    async def respond(request: CompletionRequest) -> Reply:
        if is_plan_request(request):
            chosen = plans.pop(0) if len(plans) > 1 else plans[0]
            return chosen if isinstance(chosen, str) else plan_json(chosen)
        step = step_of(request)
        queue = queues.get(step or "", [default])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            return answer
        if callable(answer):  # answers exactly as written, not shaped to the constraint
            result = answer(request)
            reply: Reply = await result if isinstance(result, Awaitable) else result
            return reply
        return shaped(request, answer)

    return respond
