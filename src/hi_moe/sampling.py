"""Draw strings that satisfy a constraint: how `MockProvider` answers constrained requests.

Two samplers:
- JSON schemas are sampled in pure Python from the schema itself, for the keywords this module
  knows (types, properties, enums, bounds, lengths, anyOf/oneOf, local $refs). The values read
  like data, and no extra is needed.
- Everything else (EBNF grammars, regexes, and schemas using keywords the pure sampler does not
  know, such as `pattern`) is drawn from the XGrammar-compiled grammar over a byte-level
  vocabulary: at each step the grammar's token mask says which bytes may come next and the
  sampler picks one. Whatever comes out is in the grammar's language by construction.

Both are deterministic for a given `random.Random` state.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

from hi_moe import constraints
from hi_moe.errors import ConstraintViolation
from hi_moe.types import Choice, Constraint, JsonSchema

__all__ = ["NeedsGrammarEngine", "SamplingFailed", "sample", "sample_text"]


class NeedsGrammarEngine(Exception):
    """The constraint can only be sampled with XGrammar (the `grammar` extra)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class SamplingFailed(Exception):
    """No finite output was found: the grammar may admit none (e.g. `root ::= "a" root`)."""


_WORDS = (
    "alpha bravo delta echo golf hotel kilo lima mike oscar papa romeo sierra tango "
    "victor yankee zulu amber birch cedar maple river stone cloud ember frost grove"
).split()


def sample_text(rng: random.Random, max_chars: int) -> str:
    """A short plain-text sentence of known words, at most `max_chars` long."""
    words: list[str] = []
    for _ in range(rng.randint(3, 12)):
        word = rng.choice(_WORDS)
        if len(" ".join([*words, word])) + 1 > max_chars:
            break
        words.append(word)
    return (" ".join(words) + ".") if words else ""


def sample(constraint: Constraint, rng: random.Random, *, max_chars: int) -> str:
    """A string that satisfies `constraint`, aiming well under `max_chars`.

    Raises `NeedsGrammarEngine` when only XGrammar can sample it and it is not installed, and
    `SamplingFailed` when no short enough output was found.
    """
    if isinstance(constraint, Choice):
        return rng.choice(constraint.options)
    if isinstance(constraint, JsonSchema):
        return _sample_json(constraint, rng, max_chars)
    if not constraints.grammar_engine_available():
        raise NeedsGrammarEngine(f"{constraint.kind} constraints")
    return _sample_from_grammar(constraint, rng, max_chars)


def _sample_json(constraint: JsonSchema, rng: random.Random, max_chars: int) -> str:
    # Keywords interact (an enum beside bounds, `required` naming an undeclared property), and
    # XGrammar's grammar leaves some JSON Schema rules out, so every draw is checked and
    # redrawn until one passes.
    pure_python = True
    for _ in range(_ATTEMPTS * 2):
        if pure_python:
            try:
                value = _JsonSampler(constraint.schema, rng).value(constraint.schema, 0)
                text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            except NeedsGrammarEngine:
                if not constraints.grammar_engine_available():
                    raise
                pure_python = False
                continue
        else:
            text = _sample_from_grammar(constraint, rng, max_chars)
        try:
            constraints.check(constraint, text)
        except ConstraintViolation:
            continue
        return text
    raise SamplingFailed(
        f"no draw satisfied the schema in {_ATTEMPTS * 2} attempts (is it satisfiable?)"
    )


# -- pure-Python JSON schema sampler ---------------------------------------------------------

# Keywords that only describe or that the sampler satisfies by construction.
_IGNORED = {
    "$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default",
    "examples", "deprecated", "readOnly", "writeOnly", "format", "additionalProperties",
    "unevaluatedProperties", "contentMediaType", "contentEncoding", "strict",
}  # fmt: skip
_KNOWN = _IGNORED | {
    "type", "enum", "const", "properties", "required", "items", "prefixItems", "minItems",
    "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "anyOf", "oneOf", "$ref", "allOf", "pattern",
}  # fmt: skip
_MAX_DEPTH = 12


class _JsonSampler:
    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or schema == {}:
            return self.rng.choice([self.rng.randint(0, 9), self.rng.choice(_WORDS), True, None])
        if not isinstance(schema, dict):
            raise NeedsGrammarEngine(f"schema {schema!r}")
        if depth > _MAX_DEPTH:
            raise SamplingFailed("the schema nests deeper than the sampler goes")
        unknown = set(schema) - _KNOWN
        if unknown:
            raise NeedsGrammarEngine(f"schema keyword {sorted(unknown)[0]!r}")
        if "$ref" in schema:
            return self.value(self._resolve(schema["$ref"]), depth + 1)
        if "allOf" in schema:
            parts = schema["allOf"]
            if len(parts) != 1 or len(schema) > 1:
                raise NeedsGrammarEngine("schema keyword 'allOf'")
            return self.value(parts[0], depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                # Deep in a recursive schema, prefer the branch listed first (usually the leaf).
                branches = schema[key]
                branch = branches[0] if depth > _MAX_DEPTH // 2 else self.rng.choice(branches)
                return self.value(branch, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = self.rng.choice(kind)
        if kind is None:
            kind = self._infer_type(schema)
        make: Callable[[dict[str, Any], int], Any] | None = {
            "object": self._object,
            "array": self._array,
            "string": self._string,
            "integer": self._integer,
            "number": self._number,
        }.get(kind)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        if make is None:
            raise NeedsGrammarEngine(f"schema type {kind!r}")
        return make(schema, depth)

    @staticmethod
    def _infer_type(schema: dict[str, Any]) -> str:
        if {"properties", "required"} & schema.keys():
            return "object"
        if {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
            return "array"
        if {"minLength", "maxLength", "pattern"} & schema.keys():
            return "string"
        if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & schema.keys():
            return "number"
        return "string"

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise NeedsGrammarEngine(f"remote $ref {ref!r}")
        node: Any = self.root
        for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise NeedsGrammarEngine(f"$ref {ref!r}")
            node = node[part]
        return node

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        missing = required - properties.keys()
        if missing:
            raise NeedsGrammarEngine(f"required property {sorted(missing)[0]!r} with no schema")
        # Optional properties thin out with depth so recursive schemas end.
        keep = 0.5 if depth < _MAX_DEPTH // 2 else 0.0
        return {
            key: self.value(sub, depth + 1)
            for key, sub in properties.items()
            if key in required or self.rng.random() < keep
        }

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix: list[Any] = schema.get("prefixItems", [])
        items = schema.get("items", not prefix)
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", low + 3))
        if items is False:
            high = min(high, len(prefix))
        if depth >= _MAX_DEPTH // 2:
            high = min(high, low)
        if high < low:
            raise SamplingFailed(f"no array length fits minItems {low} and the other bounds")
        count = self.rng.randint(low, high)
        return [
            self.value(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)
        ]

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        if "pattern" in schema:
            raise NeedsGrammarEngine("schema keyword 'pattern'")
        low = int(schema.get("minLength", 0))
        high = int(schema.get("maxLength", max(low, 24)))
        if high < low:
            raise SamplingFailed(f"minLength {low} > maxLength {high}")
        length = self.rng.randint(low, min(high, max(low, 24)))
        text = self.rng.choice(_WORDS)
        while len(text) < length:
            text = f"{text} {self.rng.choice(_WORDS)}"
        return text[:length]

    def _integer(self, schema: dict[str, Any], depth: int) -> int:
        low, high = -math.inf, math.inf
        if "minimum" in schema:
            low = math.ceil(schema["minimum"])
        if "exclusiveMinimum" in schema:
            low = max(low, math.floor(schema["exclusiveMinimum"]) + 1)
        if "maximum" in schema:
            high = math.floor(schema["maximum"])
        if "exclusiveMaximum" in schema:
            high = min(high, math.ceil(schema["exclusiveMaximum"]) - 1)
        low, high = _default_span(low, high, 100)
        step = schema.get("multipleOf", 1)
        if not isinstance(step, int) or step <= 0:
            raise NeedsGrammarEngine("a non-integer multipleOf")
        first, last = math.ceil(low / step), math.floor(high / step)
        if last < first:
            raise SamplingFailed("no integer lies within the schema's bounds")
        return int(self.rng.randint(int(first), int(last)) * step)

    def _number(self, schema: dict[str, Any], depth: int) -> float | int:
        if "multipleOf" in schema:
            return self._integer(schema, depth)
        low = max(schema.get("minimum", -math.inf), schema.get("exclusiveMinimum", -math.inf))
        high = min(schema.get("maximum", math.inf), schema.get("exclusiveMaximum", math.inf))
        low, high = _default_span(low, high, 100.0)
        for candidate in (
            *(round(self.rng.uniform(low, high), 2) for _ in range(8)),
            (low + high) / 2,
        ):
            if _within(schema, candidate):
                return candidate
        raise SamplingFailed("no number lies within the schema's bounds")


def _default_span(low: float, high: float, span: float) -> tuple[float, float]:
    """Unbounded sides get a finite range, so sampled numbers stay readable."""
    if math.isinf(low) and math.isinf(high):
        return 0, span
    if math.isinf(low):
        return high - span, high
    if math.isinf(high):
        return low, low + span
    return low, high


def _within(schema: dict[str, Any], value: float) -> bool:
    low: float = max(schema.get("minimum", -math.inf), -math.inf)
    high: float = min(schema.get("maximum", math.inf), math.inf)
    above: float = schema.get("exclusiveMinimum", -math.inf)
    below: float = schema.get("exclusiveMaximum", math.inf)
    return low <= value <= high and above < value < below


# -- XGrammar sampler -------------------------------------------------------------------------

_PRINTABLE = frozenset(range(0x20, 0x7F))
# Bytes that tend to end what is open: brackets and quotes, and lines and code fences.
_CLOSERS = frozenset(b"\"')]}\n`")
_ATTEMPTS = 8


def _allowed_tokens(bitmask: Any) -> list[int]:
    allowed: list[int] = []
    for word_index, word in enumerate(bitmask[0].tolist()):
        word &= 0xFFFFFFFF
        while word:
            low_bit = word & -word
            allowed.append(word_index * 32 + low_bit.bit_length() - 1)
            word ^= low_bit
    return [token for token in allowed if token <= constraints.STOP_TOKEN_ID]


def _sample_from_grammar(constraint: Constraint, rng: random.Random, max_chars: int) -> str:
    import xgrammar as xgr

    compiled = constraints.compile_constraint(constraint)
    bitmask = xgr.allocate_token_bitmask(1, constraints.STOP_TOKEN_ID + 1)
    for _ in range(_ATTEMPTS):
        matcher = xgr.GrammarMatcher(compiled)
        target = rng.randint(1, max(1, min(max_chars // 2, 80)))
        out = bytearray()
        while len(out) <= max_chars:
            matcher.fill_next_token_bitmask(bitmask)
            allowed = _allowed_tokens(bitmask)
            if not allowed:
                raise SamplingFailed("the grammar allows no continuation (unsatisfiable)")
            can_stop = constraints.STOP_TOKEN_ID in allowed
            if can_stop and (len(out) >= target or len(allowed) == 1):
                return out.decode("utf-8")
            choices = [token for token in allowed if token != constraints.STOP_TOKEN_ID]
            # Past the target length, closing brackets and quotes steer towards the end.
            pool = (len(out) >= target and [t for t in choices if t in _CLOSERS]) or [
                t for t in choices if t in _PRINTABLE
            ]
            token = rng.choice(pool or choices)
            if not matcher.accept_token(token):
                raise SamplingFailed(f"the grammar engine refused byte {token} it had allowed")
            out.append(token)
    raise SamplingFailed(
        f"no output of at most {max_chars} characters found in {_ATTEMPTS} attempts"
    )
