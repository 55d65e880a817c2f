"""One step's attempts, as the Progress Monitor makes them: what each failure leads to (a retry
with feedback, a fresh adapter survey, another provider, giving up), and what is recorded."""

from __future__ import annotations

import pytest

from hi_moe.errors import ProviderUnavailable, RequestRejected
from hi_moe.pipeline import Budget, Event
from hi_moe.providers import MockProvider
from hi_moe.providers.mock import Reply
from hi_moe.types import CompletionRequest
from tests.unit.pipeline_support import is_plan_request, plan_of, scripted, step_of
from tests.unit.test_pipeline import monitor

ADAPTERS = ["python-lora", "math-lora"]
CODE = plan_of(("s1", "write it", "python", (), "code"))
MATHS = plan_of(("s1", "work it out", "math", (), "text"))


def of_step(events: list[Event], step_id: str) -> list[Event]:
    return [e for e in events if e.step_id == step_id]


def tokens_requested(events: list[Event], step_id: str | None = None) -> int:
    return sum(
        e.data["prompt_tokens"] + e.data["completion_tokens"]
        for e in events
        if e.kind == "request" and (step_id is None or e.step_id == step_id)
    )


async def test_a_retried_step_tells_its_story_in_events() -> None:
    mock = MockProvider(
        respond=scripted(CODE, {"s1": [lambda r: "unfenced", "print(2)"]}), adapters=ADAPTERS
    )
    run, events = monitor(mock)
    result = await run.run("t")
    story = of_step(events, "s1")
    assert [e.kind for e in story] == [
        "step_started",
        "request",
        "step_retried",
        "request",
        "step_finished",
    ]
    started, rejected, retried, answered, finished = story
    assert started.detail == "write it"
    assert started.data == {"attempt": 1, "provider": "mock", "adapter": "python-lora"}
    assert rejected.data["error"] == "ConstraintViolation"
    assert retried.detail.startswith("the output broke its format")
    assert retried.data["attempt"] == 2
    assert answered.data["error"] is None
    assert finished.data == {
        "attempts": 2,
        "provider": "mock",
        "adapter": "python-lora",
        "tokens": result.steps["s1"].usage.total_tokens,
        "cost_usd": 0.0,  # the mock is free
    }


async def test_a_step_s_tokens_include_its_rejected_outputs() -> None:
    mock = MockProvider(respond=scripted(CODE, {"s1": [lambda r: "unfenced", "print(2)"]}))
    run, events = monitor(mock)
    result = await run.run("t")
    assert result.steps["s1"].usage.total_tokens == tokens_requested(events, "s1")
    assert result.usage.total_tokens == tokens_requested(events)  # the plan's included


async def test_a_stale_adapter_list_is_surveyed_again_and_the_step_retried_without_feedback() -> (
    None
):
    ask = scripted(MATHS, {"s1": "n(n+1)/2"})

    async def unload_after_the_survey(request: CompletionRequest) -> Reply:
        if is_plan_request(request):  # the survey has run: the adapter goes away behind it
            await mock.unload_adapter("math-lora")
        return await ask(request)

    mock = MockProvider(respond=unload_after_the_survey, adapters=ADAPTERS)
    run, events = monitor(mock)
    result = await run.run("t")
    assert result.status == "succeeded", result.reason
    asked = [r for r in mock.requests if step_of(r) == "s1"]
    assert [r.adapter for r in asked] == ["math-lora", None]
    assert asked[1].messages == asked[0].messages  # nothing to feed back: the model did no wrong
    assert "mock lacks adapter math-lora: base model instead" in result.steps["s1"].notes
    retried = next(e for e in events if e.kind == "step_retried")
    assert "unknown adapter 'math-lora'" in retried.detail


async def test_a_rejected_output_moves_to_the_next_provider_when_configured() -> None:
    rejecting = MockProvider(respond=scripted(CODE, {"s1": lambda r: "unfenced"}))
    backup = MockProvider(respond=scripted(CODE, {"s1": "print(1)"}))
    run, events = monitor(
        {"primary": rejecting, "backup": backup}, fallbacks=["backup"], fallback_on_rejected=True
    )
    result = await run.run("t")
    step = result.steps["s1"]
    assert (step.provider, step.attempts) == ("backup", 1)
    assert any(n.startswith("primary rejected its output: ") for n in step.notes)
    requests = [e for e in of_step(events, "s1") if e.kind == "request"]
    assert [(e.data["provider"], e.data["error"]) for e in requests] == [
        ("primary", "ConstraintViolation"),
        ("backup", None),
    ]
    assert step.usage.total_tokens == tokens_requested(events, "s1")


async def test_a_provider_that_stays_down_fails_the_step_at_once_with_its_typed_error() -> None:
    down = MockProvider(respond=scripted(MATHS, {"s1": ProviderUnavailable("gone")}))
    run, events = monitor(down, budget=Budget(step_attempts=3, max_replans=0))
    result = await run.run("t")
    assert result.steps["s1"].attempts == 1
    assert result.steps["s1"].error == "ProviderUnavailable: gone"
    failed = next(e for e in events if e.kind == "step_failed")
    assert (failed.detail, failed.data) == ("ProviderUnavailable: gone", {"attempts": 1})


async def test_a_rejected_request_is_not_retried() -> None:
    mock = MockProvider(respond=scripted(MATHS, {"s1": RequestRejected("bad request")}))
    run, _ = monitor(mock, budget=Budget(max_replans=0))
    result = await run.run("t")
    assert result.steps["s1"].attempts == 1
    assert [step_of(r) for r in mock.requests if not is_plan_request(r)] == ["s1"]


@pytest.mark.parametrize("bug", [KeyError("answer"), TypeError("not a str")])
async def test_a_bug_is_raised_never_retried_as_a_step_failure(bug: Exception) -> None:
    def broken(request: CompletionRequest) -> str:
        raise bug

    mock = MockProvider(respond=scripted(MATHS, {"s1": broken}))
    run, _ = monitor(mock)
    with pytest.raises(type(bug)):
        await run.run("t")
    assert [step_of(r) for r in mock.requests if not is_plan_request(r)] == ["s1"]


async def test_attempts_stop_at_the_budget_s_count_with_the_last_failure() -> None:
    mock = MockProvider(respond=scripted(CODE, {"s1": lambda r: "unfenced"}))
    run, events = monitor(mock, budget=Budget(step_attempts=2, max_replans=0))
    result = await run.run("t")
    step = result.steps["s1"]
    assert (step.status, step.attempts) == ("failed", 2)
    assert (step.error or "").startswith("the output broke its format")
    assert [e.kind for e in events].count("step_retried") == 1


async def test_when_every_provider_rejects_each_rejected_output_is_counted_once() -> None:
    first = MockProvider(respond=scripted(CODE, {"s1": lambda r: "unfenced"}))
    second = MockProvider(respond=scripted(CODE, {"s1": lambda r: "also unfenced"}))
    run, events = monitor(
        {"first": first, "second": second},
        fallbacks=["second"],
        fallback_on_rejected=True,
        budget=Budget(step_attempts=1, max_replans=0),
    )
    result = await run.run("t")
    requests = [e for e in of_step(events, "s1") if e.kind == "request"]
    assert [(e.data["provider"], e.data["error"]) for e in requests] == [
        ("first", "ConstraintViolation"),
        ("second", "ConstraintViolation"),
    ]
    assert (result.steps["s1"].error or "").startswith("the output broke its format")
    assert result.usage.total_tokens == tokens_requested(events)
