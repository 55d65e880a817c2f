"""A plan for the offline demo: what `hi-moe run` shows on the mock provider.

Sampled from the plan schema alone, a mock's plans are random DAGs that rarely survive the
Architect's checks, so the demo would always fall back to one step. This responder answers plan
requests with a fixed three-step plan (two independent specialists, then the Python one), so
the offline run shows what a real one does: routing, concurrency, dependencies. Every other
request is left to the mock's sampler.
"""

from __future__ import annotations

from collections.abc import Callable

from hi_moe.pipeline.architect import plan_json
from hi_moe.pipeline.plan import Plan, Step
from hi_moe.types import CompletionRequest, JsonSchema

__all__ = ["demo_plan", "demo_responder"]


def demo_plan(task: str, domains: list[str]) -> Plan:
    first = task.strip().splitlines()[0][:120] if task.strip() else "the task"
    pick = [d for d in ("math", "data_structures", "algorithms") if d in domains][:2]
    steps = [
        Step(id=f"s{i}", goal=f"Work out the {d.replace('_', ' ')} side of: {first}", domain=d)
        for i, d in enumerate(pick, start=1)
    ]
    coder = "python" if "python" in domains else domains[0]
    steps.append(
        Step(
            id=f"s{len(steps) + 1}",
            goal=f"Write the Python code for: {first}",
            domain=coder,
            depends_on=tuple(s.id for s in steps),
            output="code",
        )
    )
    return Plan(steps=tuple(steps))


def demo_responder(domains: list[str]) -> Callable[[CompletionRequest], str | None]:
    """A `MockProvider(respond=...)` function: the demo plan for plan requests, else None."""

    def respond(request: CompletionRequest) -> str | None:
        constraint = request.constraint
        if isinstance(constraint, JsonSchema) and constraint.name == "plan":
            task = request.messages[-1].content.removeprefix("Task:\n").split("\n\n")[0]
            return plan_json(demo_plan(task, domains))
        return None

    return respond
