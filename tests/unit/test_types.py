"""Requests validate themselves: a malformed one never reaches a provider."""

from __future__ import annotations

import contextlib
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
