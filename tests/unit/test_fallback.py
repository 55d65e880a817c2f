"""`FallbackProvider` specifications, written against `MockProvider`s."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from hi_moe import Choice, CompletionRequest, JsonSchema, Regex, deadline
from hi_moe.errors import (
    AuthenticationError,
    ConstraintViolation,
    InvalidConstraint,
    ProviderNotReady,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    RateLimited,
    UnknownAdapter,
    UnsupportedConstraint,
)
from hi_moe.providers import MockProvider
from hi_moe.providers.fallback import Cooldown, FallbackProvider, on_unavailable_or_rejected
from hi_moe.types import Completion, Hop, Usage

YES_NO = Choice(["yes", "no"])
ASK = CompletionRequest.from_prompt("Yes or no?", constraint=YES_NO)


def down(message: str = "connection refused") -> ProviderUnavailable:
    return ProviderUnavailable(message, provider="mock")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- order --------------------------------------------------------------------------------------


async def test_the_primary_answers_when_it_can_and_no_fallback_is_asked() -> None:
    primary, backup = MockProvider(replies=["yes"]), MockProvider(replies=["no"])
    chain = FallbackProvider.of({"primary": primary, "backup": backup})
    completion = await chain.complete(ASK)
    assert (completion.text, completion.provider, completion.hops) == ("yes", "primary", ())
    assert backup.requests == []


async def test_providers_are_tried_in_order_and_each_hop_is_recorded() -> None:
    first = MockProvider(replies=[down()])
    second = MockProvider(replies=[RateLimited("slow down", provider="mock", retry_after=1.0)])
    third = MockProvider(replies=["no"])
    seen: list[Hop] = []
    chain = FallbackProvider.of({"a": first, "b": second, "c": third}, on_hop=seen.append)
    completion = await chain.complete(ASK)
    assert completion.text == "no"
    assert completion.provider == "c"
    assert [(h.provider, h.error) for h in completion.hops] == [
        ("a", "ProviderUnavailable"),
        ("b", "RateLimited"),
    ]
    assert list(completion.hops) == seen
    assert all(len(p.requests) == 1 for p in (first, second, third))


async def test_labels_default_to_provider_names_made_unique() -> None:
    chain = FallbackProvider(MockProvider(replies=[down()]), MockProvider(replies=["yes"]))
    assert list(chain.members) == ["mock", "mock-2"]
    assert (await chain.complete(ASK)).provider == "mock-2"


async def test_when_every_provider_fails_the_last_typed_error_is_raised_with_the_hops() -> None:
    chain = FallbackProvider.of(
        {"a": MockProvider(replies=[down("a is down")]), "b": MockProvider(replies=[down("b")])}
    )
    with pytest.raises(ProviderUnavailable, match="b") as caught:
        await chain.complete(ASK)
    assert [h.provider for h in caught.value.hops] == ["a", "b"]


async def test_an_error_another_provider_cannot_fix_is_raised_at_once() -> None:
    backup = MockProvider(replies=["yes"])
    wrong_key = AuthenticationError("not authorised", provider="mock", status_code=401)
    chain = FallbackProvider.of({"a": MockProvider(replies=[wrong_key]), "b": backup})
    with pytest.raises(AuthenticationError):
        await chain.complete(ASK)
    assert backup.requests == []


async def test_a_programming_error_in_a_member_is_not_a_fallback_reason() -> None:
    backup = MockProvider(replies=["yes"])
    chain = FallbackProvider.of({"a": MockProvider(replies=[KeyError("bug")]), "b": backup})
    with pytest.raises(KeyError):
        await chain.complete(ASK)
    assert backup.requests == []


async def test_a_readiness_timeout_falls_back() -> None:
    cold = ProviderNotReady("still starting after 5 s", provider="mock")
    chain = FallbackProvider.of({"a": MockProvider(replies=[cold]), "b": MockProvider()})
    completion = await chain.complete(ASK)
    assert completion.provider == "b"
    assert completion.hops[0].error == "ProviderNotReady"


# -- capabilities ---------------------------------------------------------------------------------


async def test_a_constraint_kind_a_member_lacks_goes_to_the_next_that_has_it() -> None:
    json_only = MockProvider(constraint_kinds=["json_schema"])
    everything = MockProvider()
    chain = FallbackProvider.of({"openai": json_only, "vllm": everything})
    completion = await chain.complete(
        CompletionRequest.from_prompt("digits", constraint=Regex(r"[0-9]{3}"))
    )
    assert completion.provider == "vllm"
    assert json_only.requests == []  # passed over without a request
    assert completion.hops[0].error == "skipped"
    assert "regex" in completion.hops[0].message


async def test_a_request_no_member_can_take_raises_the_first_members_reason() -> None:
    chain = FallbackProvider.of(
        {"a": MockProvider(constraint_kinds=["choice"]), "b": MockProvider(constraint_kinds=[])}
    )
    with pytest.raises(UnsupportedConstraint) as caught:
        await chain.complete(CompletionRequest.from_prompt("x", constraint=Regex("[a-z]+")))
    assert caught.value.provider == "a"


async def test_an_adapter_a_member_does_not_serve_goes_to_the_next() -> None:
    base_only = MockProvider(adapters=[])
    specialist = MockProvider(adapters=["python-lora"])
    chain = FallbackProvider.of({"a": base_only, "b": specialist})
    request = CompletionRequest.from_prompt("code", adapter="python-lora")
    completion = await chain.complete(request)
    assert completion.provider == "b"
    assert completion.hops[0].error == "UnknownAdapter"


async def test_a_schema_one_dialect_refuses_is_sent_to_a_member_that_takes_it() -> None:
    """The mock cannot sample an unsatisfiable-for-it schema; the next member is asked."""
    refuses = MockProvider(replies=[InvalidConstraint("json_schema", "not in my dialect")])
    takes = MockProvider()
    chain = FallbackProvider.of({"a": refuses, "b": takes})
    schema = JsonSchema({"type": "object", "properties": {"n": {"type": "integer"}}})
    completion = await chain.complete(CompletionRequest.from_prompt("n", constraint=schema))
    assert completion.provider == "b"


async def test_capabilities_are_the_union_of_the_members() -> None:
    chain = FallbackProvider(
        MockProvider(constraint_kinds=["json_schema"], adapters=[]),
        MockProvider(constraint_kinds=["choice"]),
    )
    assert chain.capabilities.constraint_kinds == {"json_schema", "choice"}
    assert chain.capabilities.adapters


async def test_request_for_adapts_the_request_to_each_member() -> None:
    json_only = MockProvider(constraint_kinds=["json_schema"], replies=[down()])
    grammar = MockProvider()
    asked: list[str] = []

    def request_for(label: str, provider: object) -> CompletionRequest | None:
        asked.append(label)
        if label == "skip-me":
            return None
        if label == "json":  # what this member can enforce
            schema = JsonSchema({"type": "object", "properties": {"answer": {"type": "string"}}})
            return CompletionRequest.from_prompt("Yes or no?", constraint=schema)
        return ASK

    chain = FallbackProvider.of({"skip-me": grammar, "json": json_only, "last": MockProvider()})
    completion = await chain.complete_each(request_for)
    assert asked == ["skip-me", "json", "last"]
    assert completion.provider == "last"
    assert [h.error for h in completion.hops] == ["skipped", "ProviderUnavailable"]


# -- rejected outputs -----------------------------------------------------------------------------


def violation(text: str, tokens: int) -> ConstraintViolation:
    error = ConstraintViolation(YES_NO, text, "not one of the choices")
    error.usage = Usage(prompt_tokens=tokens, completion_tokens=tokens)
    return error


async def test_a_rejected_output_is_raised_by_default() -> None:
    backup = MockProvider(replies=["yes"])
    chain = FallbackProvider.of({"a": MockProvider(replies=[violation("maybe", 5)]), "b": backup})
    with pytest.raises(ConstraintViolation):
        await chain.complete(ASK)
    assert backup.requests == []


async def test_fallback_on_a_rejected_output_when_asked_and_its_tokens_are_counted() -> None:
    chain = FallbackProvider.of(
        {"a": MockProvider(replies=[violation("maybe", 7)]), "b": MockProvider(replies=["no"])},
        fallback_on=on_unavailable_or_rejected,
    )
    completion = await chain.complete(ASK)
    assert completion.provider == "b"
    hop = completion.hops[0]
    assert (hop.provider, hop.error, hop.usage.total_tokens) == ("a", "ConstraintViolation", 14)


# -- cooldowns ------------------------------------------------------------------------------------


async def test_a_failing_member_is_skipped_for_its_cooldown_then_probed_once() -> None:
    clock = Clock()
    flaky = MockProvider(respond=lambda request: down())
    backup = MockProvider()
    chain = FallbackProvider.of(
        {"flaky": flaky, "backup": backup},
        cooldown=Cooldown(failures=2, window_s=10.0, cooldown_s=30.0, clock=clock),
    )
    for _ in range(2):
        assert (await chain.complete(ASK)).provider == "backup"
    assert len(flaky.requests) == 2  # two failures open the breaker

    for _ in range(3):
        completion = await chain.complete(ASK)
        assert completion.hops[0].error == "skipped"
        assert "cooling down" in completion.hops[0].message
    assert len(flaky.requests) == 2  # skipped while cooling down

    clock.now += 30.0
    await chain.complete(ASK)
    assert len(flaky.requests) == 3  # one half-open probe; it failed, so open again
    await chain.complete(ASK)
    assert len(flaky.requests) == 3

    flaky._respond = None  # recovers
    clock.now += 30.0
    assert (await chain.complete(ASK)).provider == "flaky"  # the probe succeeds: closed
    assert (await chain.complete(ASK)).provider == "flaky"


async def test_failures_outside_the_window_do_not_open_the_breaker() -> None:
    clock = Clock()
    flaky = MockProvider(respond=lambda request: down())
    chain = FallbackProvider.of(
        {"flaky": flaky, "backup": MockProvider()},
        cooldown=Cooldown(failures=2, window_s=10.0, cooldown_s=30.0, clock=clock),
    )
    await chain.complete(ASK)
    clock.now += 11.0
    await chain.complete(ASK)
    clock.now += 11.0
    await chain.complete(ASK)
    assert len(flaky.requests) == 3


async def test_only_one_probe_at_a_time_while_half_open() -> None:
    clock = Clock()
    release = asyncio.Event()

    async def slow(request: CompletionRequest) -> str:
        await release.wait()
        return "yes"

    flaky = MockProvider(respond=lambda request: down())
    chain = FallbackProvider.of(
        {"flaky": flaky, "backup": MockProvider()},
        cooldown=Cooldown(failures=1, window_s=10.0, cooldown_s=5.0, clock=clock),
    )
    await chain.complete(ASK)  # opens the breaker
    clock.now += 5.0
    flaky._respond = slow
    probe = asyncio.create_task(chain.complete(ASK))
    await asyncio.sleep(0.01)
    others = [await chain.complete(ASK) for _ in range(3)]
    assert {c.provider for c in others} == {"backup"}
    release.set()
    assert (await probe).provider == "flaky"


async def test_when_everything_is_cooling_down_the_call_fails_at_once_with_retry_after() -> None:
    clock = Clock()
    chain = FallbackProvider.of(
        {"only": MockProvider(respond=lambda request: down())},
        cooldown=Cooldown(failures=1, window_s=10.0, cooldown_s=20.0, clock=clock),
    )
    with pytest.raises(ProviderUnavailable):
        await chain.complete(ASK)
    clock.now += 5.0
    with pytest.raises(ProviderUnavailable, match="cooling down") as caught:
        await chain.complete(ASK)
    assert caught.value.retry_after == pytest.approx(15.0)


async def test_views_share_their_members_breakers() -> None:
    clock = Clock()
    flaky = MockProvider(respond=lambda request: down())
    chain = FallbackProvider.of(
        {"flaky": flaky, "backup": MockProvider()},
        cooldown=Cooldown(failures=1, window_s=10.0, cooldown_s=20.0, clock=clock),
    )
    await chain.ordered(["flaky", "backup"]).complete(ASK)
    completion = await chain.ordered(["flaky", "backup"]).complete(ASK)
    assert completion.hops[0].message.startswith("cooling down")
    assert len(flaky.requests) == 1


# -- deadlines, streams, the rest of the interface ------------------------------------------------


async def test_the_call_deadline_covers_every_member() -> None:
    slow = MockProvider(latency_s=5.0)
    chain = FallbackProvider.of({"slow": slow, "backup": MockProvider()})
    with pytest.raises(ProviderTimeout):
        await chain.complete(ASK.model_copy(update={"deadline_s": 0.2}))


async def test_a_members_timeout_inside_the_call_deadline_falls_back() -> None:
    slow = MockProvider(latency_s=5.0)
    slow.deadline_s = 0.1  # its own worst case
    completion = await FallbackProvider.of({"slow": slow, "fast": MockProvider()}).complete(ASK)
    assert completion.provider == "fast"
    assert completion.hops[0].error == "ProviderTimeout"


async def test_a_stream_falls_back_before_its_first_chunk() -> None:
    chain = FallbackProvider.of(
        {"a": MockProvider(replies=[down()]), "b": MockProvider(replies=["yes"])}
    )
    stream = chain.stream(ASK)
    chunks = [chunk async for chunk in stream]
    assert "".join(chunks) == "yes"
    assert stream.completion is not None
    assert stream.completion.provider == "b"
    assert [h.provider for h in stream.completion.hops] == ["a"]


async def test_adapters_and_health_span_the_members() -> None:
    chain = FallbackProvider.of(
        {"a": MockProvider(adapters=["x"]), "b": MockProvider(adapters=["y"])}
    )
    assert await chain.adapters() == ["x", "y"]
    health = await chain.health()
    assert health.ok
    assert "a: ok" in health.detail
    assert "b: ok" in health.detail


async def test_prepare_refuses_only_what_no_member_can_take() -> None:
    chain = FallbackProvider(
        MockProvider(constraint_kinds=["json_schema"]), MockProvider(constraint_kinds=["choice"])
    )
    chain.prepare(ASK)
    with pytest.raises(UnsupportedConstraint):
        chain.prepare(CompletionRequest.from_prompt("x", constraint=Regex("[a-z]")))


async def test_unknown_adapter_everywhere_is_raised() -> None:
    chain = FallbackProvider(MockProvider(adapters=["x"]), MockProvider(adapters=[]))
    with pytest.raises(UnknownAdapter):
        await chain.complete(CompletionRequest.from_prompt("x", adapter="nope"))


async def test_usage_of_the_answer_is_the_answering_members() -> None:
    answer = Completion(
        text="yes", provider="mock", model="m", usage=Usage(prompt_tokens=3, completion_tokens=1)
    )
    chain = FallbackProvider.of(
        {"a": MockProvider(replies=[down()]), "b": MockProvider(replies=[answer])}
    )
    completion = await chain.complete(ASK)
    assert completion.usage.total_tokens == 4
    assert completion.hops[0].usage.total_tokens == 0


def test_deadline_scopes_only_shorten() -> None:
    with deadline.scope(10.0) as outer:
        with deadline.scope(100.0) as inner:
            assert inner == outer
        with deadline.scope(1.0) as shorter:
            assert shorter is not None
            assert outer is not None
            assert shorter < outer
    assert deadline.current() is None


async def test_successes_in_between_do_not_forgive_failures_within_the_window() -> None:
    clock = Clock()
    answers: Iterator[str | ProviderUnavailable] = iter([down(), "yes", down(), "yes", down()])
    flaky = MockProvider(respond=lambda request: next(answers))
    chain = FallbackProvider.of(
        {"flaky": flaky, "backup": MockProvider()},
        cooldown=Cooldown(failures=3, window_s=60.0, cooldown_s=30.0, clock=clock),
    )
    for _ in range(5):  # fail, ok, fail, ok, fail: three failures within the minute
        clock.now += 5.0
        await chain.complete(ASK)
    completion = await chain.complete(ASK)
    assert completion.provider == "backup"
    assert completion.hops[0].message.startswith("cooling down")
    assert len(flaky.requests) == 5


async def test_nothing_listening_opens_the_breaker_at_once_and_the_skip_says_why() -> None:
    clock = Clock()
    dead = MockProvider(
        respond=lambda request: ProviderUnreachable("nothing listens there", provider="dead")
    )
    chain = FallbackProvider.of(
        {"dead": dead, "backup": MockProvider()},
        cooldown=Cooldown(failures=3, window_s=10.0, cooldown_s=30.0, clock=clock),
    )
    assert (await chain.complete(ASK)).provider == "backup"
    skipped = await chain.complete(ASK)
    assert len(dead.requests) == 1  # one refused connection is enough: not three
    assert skipped.hops[0].error == "skipped"
    assert skipped.hops[0].message == "cooling down for 30.0 s after: nothing listens there"


async def test_a_failure_seen_outside_the_chain_counts_towards_its_cooldown() -> None:
    clock = Clock()
    primary = MockProvider()
    chain = FallbackProvider.of(
        {"primary": primary, "backup": MockProvider()},
        cooldown=Cooldown(failures=2, window_s=10.0, cooldown_s=30.0, clock=clock),
    )
    chain.ordered(["backup", "primary"]).record_failure("primary", down())
    assert (await chain.complete(ASK)).provider == "primary"  # one failure of two
    chain.record_failure("primary", down())
    chain.record_failure("primary", UnknownAdapter("x", [], provider="primary"))  # not health
    assert (await chain.complete(ASK)).provider == "backup"
    assert len(primary.requests) == 1
    with pytest.raises(ValueError, match="no such member"):
        chain.record_failure("nobody", down())
