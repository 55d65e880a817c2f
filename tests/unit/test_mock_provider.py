"""MockProvider behaves like a real provider, offline and deterministically."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hi_moe import (
    Choice,
    Completion,
    CompletionRequest,
    Grammar,
    JsonSchema,
    Message,
    Regex,
    constraints,
)
from hi_moe.errors import (
    ConstraintViolation,
    InvalidConstraint,
    ProviderTimeout,
    RateLimited,
    UnknownAdapter,
    UnsupportedConstraint,
)
from hi_moe.providers import MockProvider, ScriptExhausted
from hi_moe.types import Constraint
from tests.support import WITHOUT_XGRAMMAR, requires_grammar, run_python
from tests.unit.test_constraints import ARITHMETIC, ORDER, PART_NUMBER

TREE = JsonSchema(
    {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "minLength": 1},
                    "weight": {"type": "integer", "minimum": -5, "maximum": 5, "multipleOf": 5},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["label", "weight", "children"],
            }
        },
    }
)
# `pattern` is beyond the pure-Python sampler: this one is drawn from XGrammar's grammar.
TICKET = JsonSchema(
    {
        "type": "object",
        "properties": {
            "key": {"type": "string", "pattern": "^[A-Z]{2,4}-[1-9][0-9]{0,3}$"},
            "priority": {"enum": ["low", "high"]},
        },
        "required": ["key", "priority"],
    }
)
SEEDS = range(200)


def ask(constraint: Constraint | None = None, **fields: Any) -> CompletionRequest:
    return CompletionRequest.from_prompt("Do the thing.", constraint=constraint, **fields)


async def sample_many(constraint: Constraint) -> list[Completion]:
    return [await MockProvider(seed=seed).complete(ask(constraint)) for seed in SEEDS]


@pytest.mark.parametrize(
    "constraint",
    [
        ORDER,
        TREE,
        Choice(["red", "green", "blue"]),
        pytest.param(TICKET, marks=requires_grammar),
        pytest.param(ARITHMETIC, marks=requires_grammar),
        pytest.param(PART_NUMBER, marks=requires_grammar),
    ],
    ids=["nested-schema", "recursive-schema", "choice", "pattern-schema", "grammar", "regex"],
)
async def test_two_hundred_seeds_give_only_valid_and_varied_outputs(
    constraint: Constraint,
) -> None:
    completions = await sample_many(constraint)
    for completion in completions:
        # Checked again here, independently of the provider's own check.
        parsed = constraints.check(constraint, completion.text)
        if isinstance(constraint, JsonSchema):
            assert completion.parsed == parsed == json.loads(completion.text)
        assert completion.finish_reason == "stop"
    distinct = {completion.text for completion in completions}
    assert len(distinct) >= (3 if isinstance(constraint, Choice) else 100)


async def test_the_same_seed_and_request_give_the_same_output() -> None:
    request = ask(ORDER)
    first = await MockProvider(seed=7).complete(request)
    again = await MockProvider(seed=7).complete(request)
    other = await MockProvider(seed=8).complete(request)
    assert first.text == again.text
    assert first.text != other.text
    assert (await MockProvider(seed=7).complete(ask(ORDER, seed=1))).text != first.text


async def test_answers_do_not_depend_on_arrival_order() -> None:
    requests = [ask(max_tokens=40 + i) for i in range(8)]
    mock = MockProvider(seed=3)
    forward = [c.text for c in await asyncio.gather(*(mock.complete(r) for r in requests))]
    backward = [c.text for c in await asyncio.gather(*(mock.complete(r) for r in requests[::-1]))]
    assert forward == backward[::-1]


async def test_plain_text_fits_max_tokens_and_reports_plausible_usage() -> None:
    short = await MockProvider().complete(ask())
    long_prompt = CompletionRequest(messages=[Message.user("word " * 400)])
    longer = await MockProvider().complete(long_prompt)
    assert short.text
    assert short.usage.completion_tokens == -(-len(short.text) // 4)
    assert longer.usage.prompt_tokens > short.usage.prompt_tokens + 400
    assert short.usage.total_tokens == short.usage.prompt_tokens + short.usage.completion_tokens
    assert (short.provider, short.model, short.adapter) == ("mock", "mock-base", None)


async def test_replies_are_consumed_in_order_then_the_script_runs_out() -> None:
    mock = MockProvider(replies=["one", RateLimited("slow down", retry_after=1.0), "three"])
    assert (await mock.complete(ask())).text == "one"
    with pytest.raises(RateLimited) as caught:
        await mock.complete(ask())
    assert caught.value.retry_after == 1.0
    assert (await mock.complete(ask())).text == "three"
    with pytest.raises(ScriptExhausted, match="ran out at request 4"):
        await mock.complete(ask())


async def test_a_reply_function_sees_the_request_sync_or_async() -> None:
    def shout(request: CompletionRequest) -> str:
        return request.messages[-1].content.upper()

    async def slow_echo(request: CompletionRequest) -> str:
        await asyncio.sleep(0)
        return f"{request.adapter}: {request.messages[-1].content}"

    assert (await MockProvider(respond=shout).complete(ask())).text == "DO THE THING."
    mock = MockProvider(respond=slow_echo, adapters=["python-lora"])
    reply = await mock.complete(ask(adapter="python-lora"))
    assert reply.text == "python-lora: Do the thing."
    assert reply.model == "python-lora"


async def test_a_scripted_reply_that_breaks_the_constraint_is_raised_not_returned() -> None:
    mock = MockProvider(replies=['{"id": "no"}'])
    with pytest.raises(ConstraintViolation) as caught:
        await mock.complete(ask(ORDER))
    assert caught.value.text == '{"id": "no"}'


async def test_a_scripted_reply_is_cut_at_max_tokens_like_a_server_would() -> None:
    mock = MockProvider(replies=["x" * 100, '{"n": 123456789}'])
    cut = await mock.complete(ask(max_tokens=5))
    assert (cut.text, cut.finish_reason) == ("x" * 20, "length")
    with pytest.raises(ConstraintViolation) as caught:
        await mock.complete(ask(JsonSchema({"type": "object"}), max_tokens=2))
    assert not caught.value.retryable


async def test_every_request_that_reaches_it_is_recorded() -> None:
    mock = MockProvider(adapters=["math-lora"])
    await mock.complete(ask(adapter="math-lora"))
    await mock.complete(ask(Choice(["a"])))
    with pytest.raises(InvalidConstraint):
        await mock.complete(ask(Regex("(")))
    assert [r.adapter for r in mock.requests] == ["math-lora", None]
    assert mock.requests[1].constraint == Choice(["a"])


async def test_unknown_adapters_are_rejected_like_a_server_would() -> None:
    mock = MockProvider(adapters=["python-lora", "math-lora"])
    with pytest.raises(UnknownAdapter) as caught:
        await mock.complete(ask(adapter="sql-lora"))
    assert caught.value.available == ("math-lora", "python-lora")
    assert await mock.adapters() == ["python-lora", "math-lora"]


async def test_adapters_can_be_loaded_and_unloaded_at_runtime() -> None:
    mock = MockProvider()
    await mock.load_adapter("sql-lora", "/adapters/sql")
    assert (await mock.complete(ask(adapter="sql-lora"))).adapter == "sql-lora"
    await mock.unload_adapter("sql-lora")
    with pytest.raises(UnknownAdapter):
        await mock.complete(ask(adapter="sql-lora"))
    with pytest.raises(UnknownAdapter):
        await mock.unload_adapter("sql-lora")


async def test_injected_latency_past_the_timeout_is_a_timeout() -> None:
    mock = MockProvider(
        latency_s=lambda request: 0.05 if request.adapter is None else 10.0, adapters=["slow-lora"]
    )
    assert (await mock.complete(ask(timeout_s=1.0))).latency_s >= 0.05
    with pytest.raises(ProviderTimeout) as caught:
        await mock.complete(ask(adapter="slow-lora", timeout_s=0.05))
    assert caught.value.retryable


async def test_a_json_only_mock_stands_in_for_the_openai_provider() -> None:
    mock = MockProvider(constraint_kinds=["json_schema"])
    assert mock.capabilities.constraint_kinds == {"json_schema"}
    with pytest.raises(UnsupportedConstraint, match="configured without it"):
        await mock.complete(ask(Choice(["a", "b"])))
    assert mock.requests == []
    assert (await mock.complete(ask(ORDER))).parsed is not None


async def test_streaming_yields_the_text_then_checks_it() -> None:
    mock = MockProvider(seed=2)
    request = ask(ORDER)
    chunks = [chunk async for chunk in mock.stream(request)]
    assert len(chunks) > 1
    assert "".join(chunks) == (await MockProvider(seed=2).complete(request)).text

    broken = MockProvider(replies=['{"id": 1}'])
    seen: list[str] = []

    async def consume() -> None:
        async for chunk in broken.stream(ask(ORDER)):
            seen.append(chunk)

    with pytest.raises(ConstraintViolation):
        await consume()
    assert "".join(seen) == '{"id": 1}'


async def test_it_is_an_async_context_manager_and_healthy() -> None:
    async with MockProvider() as mock:
        health = await mock.health()
    assert health.ok
    assert health.provider == "mock"


@requires_grammar
async def test_a_grammar_with_no_finite_output_is_reported_not_looped_on() -> None:
    # Refused when validated (the mock's question: can it sample an answer?), before any reply.
    with pytest.raises(InvalidConstraint, match="cannot produce an output"):
        await MockProvider().complete(ask(Grammar('root ::= "a" root'), max_tokens=64))


def test_without_xgrammar_json_and_choice_work_and_the_rest_name_the_extra() -> None:
    out = run_python(
        WITHOUT_XGRAMMAR
        + """
import asyncio, json
from hi_moe import Choice, CompletionRequest, Grammar, JsonSchema, Regex
from hi_moe.errors import UnsupportedConstraint
from hi_moe.providers import MockProvider
from tests.unit.test_constraints import ORDER
from tests.unit.test_mock_provider import TICKET

async def main():
    mock = MockProvider(seed=1)
    print("kinds", sorted(mock.capabilities.constraint_kinds))
    for seed in range(50):
        request = CompletionRequest.from_prompt("x", constraint=ORDER)
        done = await MockProvider(seed=seed).complete(request)
        assert done.parsed == json.loads(done.text)
    request = CompletionRequest.from_prompt("x", constraint=Choice(["a"]))
    print("choice", (await mock.complete(request)).text)
    for constraint in (Grammar('root ::= "a"'), Regex("a+")):
        try:
            await mock.complete(CompletionRequest.from_prompt("x", constraint=constraint))
        except UnsupportedConstraint as error:
            print("unsupported:", error)
    done = await mock.complete(CompletionRequest.from_prompt("x", constraint=TICKET))
    print("pattern sampled in pure Python:", done.parsed is not None)
    print("imported xgrammar:", sys.modules.get("xgrammar") is not None)

asyncio.run(main())
"""
    )
    assert "kinds ['choice', 'json_schema']" in out
    assert "choice a" in out
    assert out.count("unsupported:") == 2
    assert out.count("pip install 'hi-moe[grammar]'") == 2
    assert "pattern sampled in pure Python: True" in out
    assert "imported xgrammar: False" in out


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
_schemas = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "bogus"])},
        optional={
            "minimum": st.integers(-5, 5),
            "maximum": st.integers(-5, 5),
            "minLength": st.integers(0, 4),
            "maxLength": st.integers(0, 4),
            "enum": st.lists(st.integers(), min_size=1, max_size=3),
        },
    ),
    lambda inner: (
        st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.dictionaries(_text, inner, max_size=3)},
            optional={"required": st.lists(_text, max_size=2)},
        )
        | st.fixed_dictionaries(
            {"type": st.just("array"), "items": inner},
            optional={"minItems": st.integers(0, 3), "maxItems": st.integers(0, 3)},
        )
    ),
    max_leaves=6,
)
_constraints = (
    st.builds(Grammar, _text.filter(bool))
    | st.builds(Grammar, st.from_regex(r'root ::= ("[a-z]{1,3}" ?\|? ?){1,3}', fullmatch=True))
    | st.builds(Regex, _text.filter(bool))
    | st.builds(JsonSchema, _schemas)
    | st.builds(Choice, st.lists(_text.filter(bool), min_size=1, max_size=4, unique=True))
)


@requires_grammar
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(constraint=_constraints, seed=st.integers(0, 2**32))
async def test_any_constraint_gives_a_valid_output_or_a_typed_error(
    constraint: Constraint, seed: int
) -> None:
    mock = MockProvider(seed=seed)
    refused: InvalidConstraint | None = None
    try:
        completion = await mock.complete(ask(constraint, max_tokens=64))
    except InvalidConstraint as error:
        refused = error
    if refused is None:
        event(f"valid {constraint.kind}")
        constraints.check(constraint, completion.text)
    else:
        # Malformed: refused before the "network", so the mock never saw it. Or well-formed
        # but with no output the sampler could find (e.g. an enum outside the bounds).
        event("refused before sending" if mock.requests == [] else "unsatisfiable")
        assert mock.requests == [] or "found no output" in str(refused), refused
