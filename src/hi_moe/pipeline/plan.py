"""Tasks and plans: what a run is asked to do, and the DAG of steps the Architect makes of it.

`plan_problems` words every fault of a plan for the model (the Architect feeds them back when it
asks again), so a cycle is named step by step, as `graphlib` finds it, not just said to exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from graphlib import CycleError, TopologicalSorter
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OutputKind", "Plan", "Step", "Task", "plan_problems", "plan_schema"]

OutputKind: TypeAlias = Literal["code", "text", "json"]


class Task(BaseModel):
    """What a run is asked to do. With `tests`, the final step must produce Python code that
    passes them (run in the sandbox, calling `check(entry_point)` when `entry_point` is set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Annotated[str, Field(min_length=1)]
    tests: str | None = None
    entry_point: str | None = None
    id: str | None = None


class Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=32)]
    goal: Annotated[str, Field(min_length=1)]
    domain: str
    depends_on: tuple[str, ...] = ()
    output: OutputKind = "text"


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: Annotated[tuple[Step, ...], Field(min_length=1)]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def order(self) -> list[Step]:
        """Steps in an order that respects dependencies: level by level, plan order within a
        level. Raises `ValueError`, in words for the model, if a dependency is unknown or the
        dependencies form a cycle."""
        if unknown := _unknown_dependencies(self):
            raise ValueError(unknown[0])
        by_id = {step.id: step for step in self.steps}
        position = {step.id: index for index, step in enumerate(self.steps)}
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for step in self.steps:
            sorter.add(step.id, *step.depends_on)
        try:
            sorter.prepare()
        except CycleError as error:
            raise ValueError(_cycle_problem(error.args[1], position)) from None
        ordered: list[Step] = []
        while sorter.is_active():
            # Sorted, because graphlib hands out a level in the order its steps became ready.
            level = sorted(sorter.get_ready(), key=position.__getitem__)
            ordered.extend(by_id[step_id] for step_id in level)
            sorter.done(*level)
        return ordered

    def final_step(self) -> Step:
        """The step whose output answers the task: the last one in dependency order."""
        return self.order()[-1]

    def critical_path(self, cost: dict[str, float]) -> float:
        """The longest chain of `cost` through the DAG: the least time any schedule needs."""
        finish: dict[str, float] = {}
        for step in self.order():
            start = max((finish[d] for d in step.depends_on), default=0.0)
            finish[step.id] = start + cost.get(step.id, 0.0)
        return max(finish.values(), default=0.0)


def plan_problems(
    plan: Plan, *, domains: Sequence[str], max_steps: int, task: Task | None = None
) -> list[str]:
    """What is wrong with a plan, in words the Architect can feed back to the model."""
    problems: list[str] = []
    ids = [s.id for s in plan.steps]
    if len(plan.steps) > max_steps:
        problems.append(f"the plan has {len(plan.steps)} steps; at most {max_steps} are allowed")
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"step ids must be unique; repeated: {', '.join(duplicates)}")
    for step in plan.steps:
        if step.domain not in domains:
            problems.append(
                f"step {step.id}: unknown domain {step.domain!r}; use one of {', '.join(domains)}"
            )
        if step.id in step.depends_on:
            problems.append(f"step {step.id} depends on itself")
    problems.extend(_unknown_dependencies(plan))
    if not problems:
        try:
            order = plan.order()
        except ValueError as error:
            problems.append(str(error))
        else:
            if task is not None and task.tests and order[-1].output != "code":
                problems.append(
                    f"the task has tests, so the final step ({order[-1].id}) must output code"
                )
    return problems


def _unknown_dependencies(plan: Plan) -> list[str]:
    known = {step.id for step in plan.steps}
    return [
        f"step {step.id} depends on unknown step {dep!r}"
        for step in plan.steps
        for dep in step.depends_on
        if dep not in known
    ]


def _cycle_problem(cycle: list[str], position: dict[str, int]) -> str:
    """`graphlib`'s cycle (first step repeated last, each step needed by the next) as a
    sentence: each step depends on the next, starting at the cycle's earliest step in the plan,
    so the same plan is always described the same way."""
    steps = list(reversed(cycle[1:]))
    start = steps.index(min(steps, key=position.__getitem__))
    steps = steps[start:] + steps[:start]
    return f"steps {' -> '.join([*steps, steps[0]])} form a cycle (each depends on the next)"


def plan_schema(
    *, domains: Sequence[str], max_steps: int, max_goal_chars: int = 400
) -> dict[str, Any]:
    """The JSON schema a plan is asked for under. Ids come from a fixed list and every string
    is bounded, so even a weak model's constrained output ends, and a dependency can only name
    an id that can exist."""
    ids = [f"s{i}" for i in range(1, max_steps + 1)]
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"enum": ids},
                        "goal": {"type": "string", "minLength": 1, "maxLength": max_goal_chars},
                        "domain": {"enum": list(domains)},
                        "depends_on": {
                            "type": "array",
                            "items": {"enum": ids},
                            "maxItems": max_steps - 1,
                        },
                        "output": {"enum": ["code", "text", "json"]},
                    },
                    "required": ["id", "goal", "domain", "depends_on", "output"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    }
