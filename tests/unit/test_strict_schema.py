"""Fitting schemas to OpenAI's strict mode, and undoing the nulls that costs."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hi_moe.errors import InvalidConstraint
from hi_moe.providers.strict_schema import drop_optional_nulls, to_strict

NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "owner": {"$ref": "#/$defs/person"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["title"],
    "$defs": {
        "person": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name"],
        }
    },
}


def every_object(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found += every_object(value)
    elif isinstance(schema, list):
        for value in schema:
            found += every_object(value)
    return found


def test_every_object_is_closed_with_every_property_required() -> None:
    strict = to_strict(NESTED)
    objects = every_object(strict)
    assert len(objects) == 2
    for node in objects:
        assert node["additionalProperties"] is False
        assert sorted(node["required"]) == sorted(node["properties"])
    jsonschema.Draft202012Validator.check_schema(strict)


def test_optional_properties_become_nullable_unless_they_already_are() -> None:
    strict = to_strict(NESTED)
    props = strict["properties"]
    assert props["tags"]["anyOf"][1] == {"type": "null"}
    assert props["owner"] == {"anyOf": [{"$ref": "#/$defs/person"}, {"type": "null"}]}
    assert props["note"] == {"type": ["string", "null"]}  # nullable already: left alone
    assert props["title"] == {"type": "string"}  # required: not nullable; minLength checked here


def test_the_callers_schema_is_not_modified() -> None:
    before = repr(NESTED)
    to_strict(NESTED)
    assert repr(NESTED) == before


def test_one_of_is_sent_as_any_of() -> None:
    schema = {
        "type": "object",
        "properties": {"v": {"oneOf": [{"type": "integer"}, {"type": "string"}]}},
        "required": ["v"],
    }
    assert to_strict(schema)["properties"]["v"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "array"}, "root that is not an object"),
        ({"type": "string"}, "root that is not an object"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "additionalProperties"),
        ({"type": "object", "properties": {"a": {"not": {}}}}, "not (at /properties/a)"),
        ({"type": "object", "allOf": [{"type": "object"}]}, "allOf"),
        ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
        ({"type": "object", "properties": {"a": True}}, "a boolean schema"),
        ({"type": "object", "if": {}, "then": {}}, "if/then/else"),
    ],
)  # fmt: skip
def test_what_strict_mode_cannot_express_is_refused_with_where(
    schema: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidConstraint) as caught:
        to_strict(schema)
    assert words in str(caught.value)
    assert caught.value.kind == "json_schema"


def test_nulls_in_optional_fields_are_dropped_through_refs_and_arrays() -> None:
    answer = {
        "title": "t",
        "tags": None,
        "owner": {"name": "Ada", "age": None},
        "note": None,
    }
    cleaned = drop_optional_nulls(answer, NESTED)
    assert cleaned == {"title": "t", "owner": {"name": "Ada"}, "note": None}
    jsonschema.validate(cleaned, NESTED)
    listed = {
        "type": "object",
        "properties": {"people": {"type": "array", "items": NESTED["$defs"]["person"]}},
        "required": ["people"],
    }
    assert drop_optional_nulls({"people": [{"name": "a", "age": None}]}, listed) == {
        "people": [{"name": "a"}]
    }


person = st.fixed_dictionaries(
    {"name": st.text(max_size=5)},
    optional={"age": st.integers()},
)


@given(
    st.fixed_dictionaries(
        {"title": st.text(min_size=1, max_size=5)},
        optional={
            "tags": st.lists(st.text(max_size=3), unique=True, max_size=3),
            "owner": person,
            "note": st.none() | st.text(max_size=3),
        },
    )
)
def test_any_answer_valid_for_the_strict_schema_is_valid_for_the_original_once_cleaned(
    original: dict[str, Any],
) -> None:
    # What OpenAI would send: every property present, absent ones as null.
    strict_answer: dict[str, Any] = {key: original.get(key) for key in NESTED["properties"]}
    if isinstance(strict_answer["owner"], dict):
        strict_answer["owner"] = {
            "name": original["owner"]["name"],
            "age": original["owner"].get("age"),
        }
    jsonschema.validate(strict_answer, to_strict(NESTED))
    cleaned = drop_optional_nulls(strict_answer, NESTED)
    jsonschema.validate(cleaned, NESTED)
    expected = dict(original)
    expected.setdefault("note", None)
    assert cleaned == expected
