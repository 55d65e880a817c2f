"""Plans: the order steps run in, and what a plan that cannot run is told about itself."""

from __future__ import annotations

import pytest

from hi_moe.pipeline.architect import Architect
from hi_moe.pipeline.plan import Task, plan_problems
from hi_moe.providers import MockProvider
from tests.unit.pipeline_support import plan_of, scripted

DOMAINS = ["python", "math"]


def test_a_cycle_is_named_step_by_step_in_the_direction_of_its_dependencies() -> None:
    # s1 needs s2, s2 needs s3, s3 needs s1; s4 hangs off the cycle without being part of it.
    cyclic = plan_of(
        ("s1", "a", "python", ("s2",), "text"),
        ("s2", "b", "python", ("s3",), "text"),
        ("s3", "c", "python", ("s1",), "text"),
        ("s4", "d", "python", ("s1",), "text"),
    )
    assert plan_problems(cyclic, domains=DOMAINS, max_steps=4) == [
        "steps s1 -> s2 -> s3 -> s1 form a cycle (each depends on the next)"
    ]


def test_a_cycle_is_named_from_its_earliest_step_in_the_plan() -> None:
    cyclic = plan_of(
        ("s1", "a", "python", (), "text"),
        ("s2", "b", "python", ("s3",), "text"),
        ("s3", "c", "python", ("s2", "s1"), "text"),
    )
    assert plan_problems(cyclic, domains=DOMAINS, max_steps=3) == [
        "steps s2 -> s3 -> s2 form a cycle (each depends on the next)"
    ]


async def test_the_architect_feeds_the_named_cycle_back_to_the_model() -> None:
    cyclic = plan_of(("s1", "a", "python", ("s3",), "text"), ("s3", "b", "python", ("s1",), "text"))
    good = plan_of(("s1", "a", "python", (), "text"), ("s3", "b", "python", ("s1",), "text"))
    mock = MockProvider(respond=scripted([cyclic, good]))
    outcome = await Architect(domains=DOMAINS).plan(mock, Task(prompt="t"))
    assert outcome.plan == good
    assert outcome.problems == ("steps s1 -> s3 -> s1 form a cycle (each depends on the next)",)
    repair = mock.requests[1].messages[-1].content
    assert "s1 -> s3 -> s1 form a cycle" in repair


def test_order_runs_dependencies_first_and_keeps_plan_order_among_equals() -> None:
    plan = plan_of(
        ("s4", "d", "python", ("s2", "s3"), "text"),
        ("s3", "c", "python", (), "text"),
        ("s2", "b", "python", ("s1",), "text"),
        ("s1", "a", "python", (), "text"),
    )
    assert [s.id for s in plan.order()] == ["s3", "s1", "s2", "s4"]
    assert plan.final_step().id == "s4"


def test_order_refuses_a_plan_that_cannot_run() -> None:
    cyclic = plan_of(("s1", "a", "python", ("s2",), "text"), ("s2", "b", "python", ("s1",), "text"))
    with pytest.raises(ValueError, match=r"s1 -> s2 -> s1 form a cycle"):
        cyclic.order()
    dangling = plan_of(("s1", "a", "python", ("s9",), "text"))
    with pytest.raises(ValueError, match="unknown step 's9'"):
        dangling.order()


def test_the_critical_path_is_the_longest_chain_of_costs() -> None:
    plan = plan_of(
        ("s1", "a", "python", (), "text"),
        ("s2", "b", "python", (), "text"),
        ("s3", "c", "python", ("s1", "s2"), "text"),
    )
    assert plan.critical_path({"s1": 1.0, "s2": 3.0, "s3": 2.0}) == 5.0
