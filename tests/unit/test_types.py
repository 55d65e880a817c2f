"""Requests validate themselves: a malformed one never reaches a provider."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from hi_moe import (
    Choice,
    Completion,
    CompletionRequest,
    Grammar,
    HiMoeError,
    JsonSchema,
    Message,
    Regex,
    Usage,
)
from hi_moe.types import constraint_key


def request(**fields: Any) -> CompletionRequest:
    fields.setdefault("messages", [Message.user("hi")])
    return CompletionRequest(**fields)


def test_defaults_mean_base_model_and_no_constraint() -> None:
    req = request()
    assert req.adapter is None
    assert req.constraint is None
    assert req.max_tokens > 0


def test_from_prompt_puts_the_system_message_first() -> None:
    req = CompletionRequest.from_prompt("2+2?", system="be brief", adapter="math-lora")
    assert [m.role for m in req.messages] == ["system", "user"]
    assert req.adapter == "math-lora"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"messages": []}, "messages"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"adapter": ""}, "adapter"),
        ({"adapter": "has space"}, "adapter"),
        ({"stop": [""]}, "stop"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"seed": 2**63}, "seed"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_malformed_fields_are_named(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        request(**fields)
    assert field in str(caught.value)


def test_a_message_needs_a_known_role() -> None:
    with pytest.raises(ValidationError, match="role"):
        Message.model_validate({"role": "robot", "content": "beep"})


@pytest.mark.parametrize(
    "make",
    [
        lambda: Choice([]),
        lambda: Choice(["a", "a"]),
        lambda: Choice(["a", ""]),
        lambda: Grammar(""),
        lambda: Regex(""),
        lambda: JsonSchema({"type": "object"}, name="has space"),
        lambda: JsonSchema("not a dict"),  # type: ignore[arg-type]
    ],
)
def test_malformed_constraints_fail_on_construction(make: Any) -> None:
    with pytest.raises(ValidationError):
        make()


def test_constraints_are_a_tagged_union_that_round_trips() -> None:
    for constraint in [
        JsonSchema({"type": "object", "properties": {"a": {"type": "integer"}}}),
        Grammar('root ::= "x"'),
        Regex("[0-9]+"),
        Choice(["yes", "no"]),
    ]:
        req = request(constraint=constraint)
        again = CompletionRequest.model_validate_json(req.model_dump_json())
        assert again == req
        assert again.constraint is not None
        assert type(again.constraint) is type(constraint)
        assert again.constraint.kind == constraint.kind


def test_a_dict_constraint_is_parsed_by_its_kind() -> None:
    req = request(constraint={"kind": "choice", "options": ["a", "b"]})
    assert req.constraint == Choice(["a", "b"])


def test_constraints_hash_by_content_and_keep_key_order() -> None:
    assert hash(Regex("a+")) == hash(Regex("a+"))
    first = JsonSchema({"properties": {"a": {}, "b": {}}})
    second = JsonSchema({"properties": {"b": {}, "a": {}}})
    assert constraint_key(first) != constraint_key(second)


def test_json_schema_from_a_pydantic_model() -> None:
    class Step(BaseModel):
        id: str
        depends_on: list[str]

    constraint = JsonSchema.from_model(Step)
    assert constraint.name == "Step"
    assert set(constraint.schema["required"]) == {"id", "depends_on"}


def test_usage_adds_up_and_round_trips() -> None:
    total = Usage(prompt_tokens=3, completion_tokens=4) + Usage(prompt_tokens=1)
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (4, 4, 8)
    assert Usage.model_validate_json(total.model_dump_json()) == total


def test_completion_round_trips_through_json() -> None:
    completion = Completion(
        text='{"a": 1}', parsed={"a": 1}, provider="mock", model="m", usage=Usage(prompt_tokens=2)
    )
    assert Completion.model_validate_json(completion.model_dump_json()) == completion


_anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "messages": _anything
        | st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "x"]), "content": _anything})
        ),
        "adapter": _anything,
        "constraint": _anything
        | st.fixed_dictionaries(
            {"kind": st.sampled_from(["json_schema", "grammar", "regex", "choice", "nope"])},
            optional={
                "schema": _anything,
                "ebnf": _anything,
                "pattern": _anything,
                "options": _anything,
            },
        ),
        "max_tokens": _anything,
        "temperature": _anything,
        "top_p": _anything,
        "stop": _anything,
        "seed": _anything,
        "timeout_s": _anything,
        "extra": _anything,
    },
)


@settings(max_examples=400, deadline=None)
@given(_fields)
def test_any_malformed_request_raises_a_validation_error_and_nothing_else(
    fields: dict[str, Any],
) -> None:
    with contextlib.suppress(ValidationError, HiMoeError):
        CompletionRequest.model_validate(fields)


# Equal constraints must hash alike, or a dict or `lru_cache` keyed by them misses (or keeps
# two entries for one constraint) depending on how the caller happened to order a schema.
EQUAL_PAIRS = [
    pytest.param(
        JsonSchema({"properties": {"a": {}, "b": {}}}),
        JsonSchema({"properties": {"b": {}, "a": {}}}),
        id="key-order",
    ),
    pytest.param(
        JsonSchema({"type": "object", "properties": {"x": {"enum": [1, {"p": 1, "q": [2]}]}}}),
        JsonSchema({"properties": {"x": {"enum": [1, {"q": [2], "p": 1}]}}, "type": "object"}),
        id="nested-dicts-in-lists",
    ),
    pytest.param(
        JsonSchema({"type": "number", "minimum": 1}),
        JsonSchema({"minimum": 1.0, "type": "number"}),
        id="1-and-1.0",
    ),
    pytest.param(
        JsonSchema({"anyOf": [{"type": "string"}, {"const": 0}]}),
        JsonSchema({"anyOf": [{"type": "string"}, {"const": -0.0}]}),
        id="0-and-minus-0",
    ),
]


@pytest.mark.parametrize(("first", "second"), EQUAL_PAIRS)
def test_equal_constraints_hash_alike(first: JsonSchema, second: JsonSchema) -> None:
    assert first == second  # what __eq__ says; the hash has to follow it
    assert hash(first) == hash(second)
    assert {first: "cached"}[second] == "cached"
    assert len({first, second}) == 1


@pytest.mark.parametrize(("first", "second"), EQUAL_PAIRS)
def test_equal_constraints_share_an_lru_cache_entry(first: JsonSchema, second: JsonSchema) -> None:
    calls: list[JsonSchema] = []

    @functools.lru_cache(maxsize=8)
    def compile_(constraint: JsonSchema) -> int:
        calls.append(constraint)
        return len(calls)

    assert compile_(first) == compile_(second) == 1
    assert calls == [first]


def test_hashing_is_by_content_for_every_kind() -> None:
    for make in (
        lambda: JsonSchema({"a": [1, 2, {"b": None}]}, name="x", strict=False),
        lambda: Grammar('root ::= "x"'),
        lambda: Regex("a+"),
        lambda: Choice(["yes", "no"]),
    ):
        assert make() == make()
        assert hash(make()) == hash(make())
    assert Choice(["a", "b"]) != Choice(["b", "a"])  # options are ordered (eq agrees)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3) | st.text(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=12,
    )
)
@settings(max_examples=200, deadline=None)
def test_a_reordered_schema_is_equal_and_hashes_alike(value: Any) -> None:
    def reordered(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: reordered(node[key]) for key in reversed(list(node))}
        if isinstance(node, list):
            return [reordered(item) for item in node]
        return node

    first, second = JsonSchema({"x": value}), JsonSchema({"x": reordered(value)})
    if first == second:  # NaN is unequal to itself, and then anything goes
        assert hash(first) == hash(second)


def test_true_is_not_1_in_a_schema_so_checks_of_one_are_never_served_for_the_other() -> None:
    # Python says {"const": True} == {"const": 1}; JSON Schema does not. A cache keyed by the
    # constraint would hand one the other's validator if equality followed Python's.
    from hi_moe import constraints
    from hi_moe.errors import ConstraintViolation

    true, one = JsonSchema({"const": True}), JsonSchema({"const": 1})
    assert true != one
    assert JsonSchema({"enum": [False]}) != JsonSchema({"enum": [0]})
    assert constraints.check(true, "true") is True
    assert constraints.check(one, "1") == 1
    with pytest.raises(ConstraintViolation):
        constraints.check(one, "true")
    with pytest.raises(ConstraintViolation):
        constraints.check(true, "1")
