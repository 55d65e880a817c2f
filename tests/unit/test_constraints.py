"""The constraint engine: malformed constraints are refused, outputs are checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from typing import Any

import pytest

from hi_moe import Choice, Grammar, JsonSchema, Regex, constraints
from hi_moe.errors import ConstraintViolation, InvalidConstraint
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest, Constraint
from tests.support import WITHOUT_XGRAMMAR, requires_grammar, run_python

# Arrays, enums, nested objects, numeric bounds, a $ref and an optional property.
ORDER = JsonSchema(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 3, "maxLength": 12},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
            "discount": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
            "status": {"enum": ["new", "paid", "shipped"]},
            "lines": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {"$ref": "#/$defs/line"},
            },
            "customer": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "vip": {"type": "boolean"}},
                "required": ["name", "vip"],
            },
            "note": {"type": ["string", "null"]},
        },
        "required": ["id", "quantity", "discount", "status", "lines", "customer"],
        "$defs": {
            "line": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "price": {"type": "number", "minimum": 0},
                },
                "required": ["sku", "price"],
            }
        },
    }
)
GOOD_ORDER: dict[str, Any] = {
    "id": "A-17",
    "quantity": 3,
    "discount": 0.25,
    "status": "paid",
    "lines": [{"sku": "x1", "price": 9.5}],
    "customer": {"name": "Ada", "vip": True},
}

# A recursive grammar: arithmetic with nested parentheses.
ARITHMETIC = Grammar(
    """root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= [0-9]+ | "(" expr ")"
"""
)
PART_NUMBER = Regex(r"[A-Z][a-z]{2,5}-\d{3}(\.[0-9a-f]{2})?")


def test_a_valid_json_output_is_parsed() -> None:
    assert constraints.check(ORDER, json.dumps(GOOD_ORDER)) == GOOD_ORDER


def test_json_is_checked_whatever_its_whitespace_and_key_order() -> None:
    shuffled = dict(reversed(list(GOOD_ORDER.items())))
    assert constraints.check(ORDER, json.dumps(shuffled, indent=4)) == GOOD_ORDER


ANSWER = JsonSchema(
    {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 24}},
        "required": ["answer"],
        "additionalProperties": False,
    }
)


def test_raw_control_characters_in_strings_are_repaired_into_canonical_json() -> None:
    # Seen from vLLM: under a `maxLength` XGrammar's JSON grammar lets a raw tab or \x1e into a
    # string, which RFC 8259 forbids. The value is unambiguous: it comes back, with text that
    # is strict JSON, never the broken text.
    text = '{"answer": "a\tb\x1ec"}'
    if constraints.grammar_engine_available():
        from hi_moe.constraints import grammar_engine

        assert grammar_engine.accepts(ANSWER, text)
    checked = constraints.check_output(ANSWER, text)
    assert checked.parsed == {"answer": "a\tb\x1ec"}
    assert checked.text == '{"answer":"a\\tb\\u001ec"}'
    assert json.loads(checked.text) == checked.parsed  # strict by default
    assert constraints.check_output(ANSWER, '{"answer": "ok"}').text == '{"answer": "ok"}'


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"answer": "a", "answer": "b"}', "duplicate key 'answer'"),
        ('{"answer": NaN}', "NaN is not JSON"),
        ('{"answer": -Infinity}', "-Infinity is not JSON"),
        ('{"answer": 1e400}', "out of range"),
        ('{"answer": -1e999}', "out of range"),
        ('{"answer": "\\ud800"}', "unpaired surrogate"),
        ('\ufeff{"answer": "x"}', "BOM"),
        ('{"answer": "a\tb"} trailing', "Extra data"),
        ('{"answer": "a\tb", }', "Expecting property name"),  # a control char AND a fault
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"answer": ' + "9" * 5000 + "}", "digits"),
        ("", "Expecting value"),
    ],
)
def test_text_that_is_not_rfc_8259_json_is_a_violation(text: str, reason: str) -> None:
    with pytest.raises(ConstraintViolation, match=re.escape(reason)) as caught:
        constraints.check(ANSWER, text)
    assert caught.value.text == text


def test_a_repaired_output_is_what_the_provider_returns() -> None:
    mock = MockProvider(replies=['{"answer": "tab\there"}'])
    done = asyncio.run(mock.complete(CompletionRequest.from_prompt("x", constraint=ANSWER)))
    assert done.text == '{"answer":"tab\\there"}'
    assert done.parsed == {"answer": "tab\there"}


def test_formats_are_asserted() -> None:
    dated = JsonSchema({"type": "object", "properties": {"on": {"type": "string",
                        "format": "date"}, "to": {"format": "email"}}})  # fmt: skip
    assert constraints.check(dated, '{"on": "2020-01-31", "to": "a@example.com"}')
    for bad in ('{"on": "2020-01-32"}', '{"to": "not an email"}'):
        with pytest.raises(ConstraintViolation, match="is not a"):
            constraints.check(dated, bad)


def test_patterns_follow_ecma_262_not_python() -> None:
    letters = JsonSchema({"type": "string", "pattern": "^\\p{Letter}+$"})
    assert constraints.check(letters, '"h\u00e9llo"') is not None
    with pytest.raises(ConstraintViolation):
        constraints.check(letters, '"h3llo"')
    digits = JsonSchema({"type": "string", "pattern": "^\\d+$"})  # ECMA \d is ASCII only
    with pytest.raises(ConstraintViolation):
        constraints.check(digits, '"\u0661\u0662"')
    with pytest.raises(InvalidConstraint, match="pattern"):
        constraints.validate_local(JsonSchema({"type": "string", "pattern": "(?P<x>a)"}))


def test_huge_and_infinite_bounds_never_crash() -> None:
    for schema in (
        {"type": "integer", "maximum": 10**400},
        {"type": "number", "multipleOf": 1e-308},
        {"type": "number", "maximum": 1e308, "minimum": -1e308},
        {"type": "string", "maxLength": 10**30},
        {"type": "integer", "multipleOf": 10**300},
    ):
        constraint = JsonSchema(schema)
        constraints.validate_local(constraint)
        for text in ("1", "1e308", "-1e308", "12345678901234567890", '"x"', "0.5"):
            with contextlib.suppress(ConstraintViolation):  # a verdict either way, no crash
                constraints.check(constraint, text)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"quantity": 0}, "/quantity"),
        ({"quantity": 100}, "/quantity"),
        ({"quantity": 2.5}, "/quantity"),
        ({"discount": 0}, "/discount"),
        ({"discount": 0.75}, "/discount"),
        ({"status": "lost"}, "/status"),
        ({"id": "ab"}, "/id"),
        ({"lines": []}, "/lines"),
        ({"lines": [{"sku": "x"}] * 4}, "/lines"),
        ({"lines": [{"sku": "x", "price": -1}]}, "/lines/0/price"),
        ({"customer": {"name": "Ada", "vip": "yes"}}, "/customer/vip"),
        ({"customer": {"name": "Ada"}}, "/customer"),
        ({"note": 5}, "/note"),
    ],
)
def test_each_json_schema_rule_is_enforced(change: dict[str, Any], where: str) -> None:
    text = json.dumps({**GOOD_ORDER, **change})
    with pytest.raises(ConstraintViolation) as caught:
        constraints.check(ORDER, text)
    assert caught.value.text == text
    assert f"(at {where})" in caught.value.reason


def test_a_missing_required_property_is_a_violation() -> None:
    without_id = {k: v for k, v in GOOD_ORDER.items() if k != "id"}
    with pytest.raises(ConstraintViolation, match="'id' is a required property"):
        constraints.check(ORDER, json.dumps(without_id))


@pytest.mark.parametrize("text", ['{"id": ', "", "NaN", '{"a": Infinity}', "{'a': 1}"])
def test_text_that_is_not_json_is_a_violation(text: str) -> None:
    with pytest.raises(ConstraintViolation, match="not valid JSON"):
        constraints.check(JsonSchema({}), text)


@pytest.mark.parametrize("text", ["1+2", "(1+2)*3", "((4))", "12/(3-1)*(2+(5*6))"])
def test_a_recursive_grammar_accepts_its_language(text: str) -> None:
    assert constraints.check(ARITHMETIC, text) is None


@requires_grammar
@pytest.mark.parametrize("text", ["(1+2", "1++2", "", "1+2)", "a", "1 + 2"])
def test_a_recursive_grammar_rejects_the_rest(text: str) -> None:
    with pytest.raises(ConstraintViolation, match="grammar"):
        constraints.check(ARITHMETIC, text)


@pytest.mark.parametrize("text", ["Bolt-123", "Nutbol-007.af"])
def test_a_regex_with_classes_and_repetition_matches(text: str) -> None:
    assert constraints.check(PART_NUMBER, text) is None


@pytest.mark.parametrize(
    "text", ["bolt-123", "Bo-123", "Boltnuts-123", "Bolt-12", "Bolt-123.AF", "Bolt-123 "]
)
def test_a_regex_must_match_the_whole_output(text: str) -> None:
    with pytest.raises(ConstraintViolation, match="does not match"):
        constraints.check(PART_NUMBER, text)


def test_a_choice_must_be_exactly_one_option() -> None:
    assert constraints.check(Choice(["yes", "no"]), "no") is None
    for text in ["No", "no ", "yes, no", ""]:
        with pytest.raises(ConstraintViolation):
            constraints.check(Choice(["yes", "no"]), text)


def test_a_violation_at_max_tokens_is_not_retryable() -> None:
    with pytest.raises(ConstraintViolation) as caught:
        constraints.check(ORDER, '{"id": "A-1', finish_reason="length")
    assert not caught.value.retryable


@requires_grammar
@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (Grammar('root ::= "a" | '), "EBNF parser error at line 1"),
        (Grammar("root ::= undefined_rule"), 'Rule "undefined_rule" is not defined'),
        (Grammar('start ::= "a"'), "root"),
        (Regex("a(b"), "parenthesis is not closed"),
        (Regex("(?=a)b"), "Lookahead is not supported"),
        (Regex("[z-a]"), "lower bound is larger than upper bound"),
        (JsonSchema({"type": "foo"}), "'foo' is not valid"),
        (JsonSchema({"type": "object", "properties": 3}), "3 is not of type 'object'"),
        (JsonSchema({"type": "integer", "minimum": "one"}), "'one' is not of type 'number'"),
        (JsonSchema({"$ref": "#/$defs/missing"}), "missing"),
    ],
)
def test_malformed_constraints_are_refused_with_the_parsers_message(
    constraint: Constraint, message: str
) -> None:
    with pytest.raises(InvalidConstraint) as caught:
        constraints.validate(constraint)
    assert message in str(caught.value)
    # The parser's words, not the C++ source location XGrammar prefixes them with.
    assert ".cc:" not in str(caught.value)
    assert "/project/" not in str(caught.value)


@requires_grammar
def test_compiled_grammars_are_cached_by_content() -> None:
    first = constraints.compile_constraint(Regex("[0-9]{4}"))
    assert constraints.compile_constraint(Regex("[0-9]{4}")) is first


def test_without_xgrammar_json_and_regex_are_still_checked_and_grammar_says_it_is_not() -> None:
    out = run_python(
        WITHOUT_XGRAMMAR
        + """
import json, logging
logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
from hi_moe import Grammar, JsonSchema, Regex, constraints
from hi_moe.errors import ConstraintViolation, InvalidConstraint

assert not constraints.grammar_engine_available()
schema = JsonSchema({"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}},
                     "required": ["n"]})
assert constraints.check(schema, '{"n": 2}') == {"n": 2}
for bad in ['{"n": 4}', '{}', 'x']:
    try:
        constraints.check(schema, bad)
    except ConstraintViolation:
        print("json rejected", bad)
try:
    constraints.validate(Regex("a(b"))
except InvalidConstraint as error:
    print("regex invalid:", error.detail)
constraints.check(Regex("[a-c]+"), "abc")
try:
    constraints.check(Regex("[a-c]+"), "abd")
except ConstraintViolation:
    print("regex rejected")
assert not constraints.locally_checked("grammar")
print("imported xgrammar:", "xgrammar" in sys.modules and sys.modules["xgrammar"] is not None)
"""
    )
    assert out.count("json rejected") == 3
    assert "regex invalid: missing ), unterminated subpattern" in out
    assert "regex rejected" in out
    assert "imported xgrammar: False" in out


async def test_concurrent_validations_of_one_constraint_share_one_worker_call() -> None:
    calls = []

    def work() -> str:
        calls.append(1)
        time.sleep(0.05)
        return "compiled"

    key = ("test-share", time.monotonic_ns())
    results = await asyncio.gather(
        *(constraints.in_worker(key, work, timeout_s=5, kind="regex") for _ in range(64))
    )
    assert results == ["compiled"] * 64
    assert calls == [1]
    assert await constraints.in_worker(key, work, timeout_s=5, kind="regex") == "compiled"
    assert calls == [1]  # cached


async def test_a_validation_past_its_time_bound_is_an_invalid_constraint() -> None:
    def slow() -> None:
        time.sleep(0.5)

    started = time.monotonic()
    with pytest.raises(InvalidConstraint, match=r"longer than 0\.1 s"):
        await constraints.in_worker(("test-slow", time.monotonic_ns()), slow, timeout_s=0.1,
                                    kind="json_schema")  # fmt: skip
    assert time.monotonic() - started < 0.4


async def test_a_heavy_check_runs_off_the_event_loop() -> None:
    big = JsonSchema({"type": "object", "properties": {f"p{i}": {"type": "string"}
                      for i in range(2000)}})  # fmt: skip
    assert constraints.heavy(big, "{}")
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = constraints.check_output

    def spy(*args: Any, **kwargs: Any) -> constraints.Checked:
        seen.append(threading.get_ident())
        return original(*args, **kwargs)

    constraints.check_output = spy
    try:
        done = await constraints.check_in_worker(big, "{}", finish_reason=None, timeout_s=5)
    finally:
        constraints.check_output = original
    assert done.parsed == {}
    assert seen
    assert seen[0] != loop_thread


def test_without_xgrammar_the_vllm_provider_refuses_grammars_unless_trusted() -> None:
    out = run_python(
        WITHOUT_XGRAMMAR
        + """
import asyncio
from hi_moe import CompletionRequest, Grammar
from hi_moe.errors import UnsupportedConstraint
from hi_moe.providers import ModalVLLMProvider

grammar = CompletionRequest.from_prompt("x", constraint=Grammar('root ::= "a"'))
plain = ModalVLLMProvider("http://127.0.0.1:9")
print("kinds", sorted(plain.capabilities.constraint_kinds))
try:
    plain.prepare(grammar)
except UnsupportedConstraint as error:
    print("refused:", error)
trusting = ModalVLLMProvider("http://127.0.0.1:9", trust_server_constraints=["grammar"])
trusting.prepare(grammar)
print("trusted kinds", sorted(trusting.capabilities.constraint_kinds))
"""
    )
    assert "kinds ['choice', 'json_schema', 'regex']" in out
    assert "refused:" in out
    assert "pip install 'hi-moe[grammar]'" in out
    assert "trust_server_constraints" in out
    assert "trusted kinds ['choice', 'grammar', 'json_schema', 'regex']" in out
