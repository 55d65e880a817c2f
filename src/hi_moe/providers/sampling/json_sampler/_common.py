"""What every part of the sampler shares: its exceptions, word list and keyword sets, and small
helpers for messages, counts, numbers and comparing JSON values."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from typing import Any


class Unsatisfiable(Exception):
    """The schema admits no value at all; the message says why."""


class CannotSample(Exception):
    """No value was found, and the schema is not known to be unsatisfiable; the message says
    what got in the way."""


class _NoValue(Exception):
    """No value on this path. `proof`: the subschema provably admits none."""

    def __init__(self, reason: str, proof: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.proof = proof


class _OutOfFuel(Exception):
    """The search took more steps than one attempt may."""


# -- words and keywords ------------------------------------------------------------------------

_WORDS = (
    "alpha bravo delta echo golf hotel kilo lima mike oscar papa romeo sierra tango "
    "victor zulu amber birch cedar maple river stone cloud ember frost grove lemon olive "
    "pearl coral north south lake hill"
).split()

_DEFAULT_BASE = "https://hi-moe.invalid/schema.json"

_TYPE_KINDS: dict[str, tuple[str, ...]] = {
    "null": ("null",),
    "boolean": ("boolean",),
    "object": ("object",),
    "array": ("array",),
    "string": ("string",),
    "integer": ("int",),
    "number": ("int", "frac"),
}
# Keywords that assert nothing: a `not` holding only these forbids every value.
_ANNOTATIONS = frozenset(
    "title description $comment default examples $id id $schema $anchor $defs definitions "
    "readOnly writeOnly deprecated $vocabulary $dynamicAnchor contentSchema".split()
)
_FORMATS = frozenset(
    "date date-time time duration email idn-email hostname idn-hostname ipv4 ipv6 uri "
    "uri-reference iri iri-reference uri-template uuid json-pointer relative-json-pointer "
    "regex".split()
)


def _dumps(value: Any) -> str | None:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


# -- small helpers ----------------------------------------------------------------------------


def _where(path: str) -> str:
    return f"at {path}" if path else "at the root"


def _both(left: str, left_path: str, op: str, right: str, right_path: str) -> str:
    if left_path == right_path:
        return f"{left} {op} {right} {_where(left_path)}"
    return f"{left} ({_where(left_path)}) {op} {right} ({_where(right_path)})"


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _short(value: Any) -> str:
    if isinstance(value, list | dict) and len(value) > 8:
        return f"[{len(value)} values]" if isinstance(value, list) else "{...}"
    if isinstance(value, int) and not isinstance(value, bool):
        return _n(value)
    text = _dumps(value)
    if text is None:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - junk may not even print
            text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _n(number: int | Fraction | None) -> str:
    """A number for a message; huge ones (which Python refuses to print) abbreviated."""
    if isinstance(number, Fraction) and number.denominator != 1:
        return f"{_n(number.numerator)}/{_n(number.denominator)}"
    whole = int(number) if number is not None else 0
    if whole.bit_length() > 200:
        return f"about 2**{whole.bit_length() - 1}" if whole > 0 else "a huge negative number"
    return str(whole)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any) -> int | None:
    """A non-negative count (`minLength`, `maxItems`...) or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _multiple_ok(value: Any, step: Any) -> bool | None:
    """`multipleOf` exactly as jsonschema judges it (floats divide as floats)."""
    if not _is_number(step) or step <= 0 or (isinstance(step, float) and math.isinf(step)):
        return None
    try:
        if isinstance(step, float):
            quotient = value / step
            try:
                failed = int(quotient) != quotient
            except OverflowError:
                failed = (Fraction(value) / Fraction(step)).denominator != 1
        else:
            failed = bool(value % step)
    except (OverflowError, ZeroDivisionError, ValueError):
        return None
    return not failed


def _canon(value: Any, depth: int = 0) -> Any:
    """A hashable form under which JSON Schema's equal values are equal (1 == 1.0, true != 1)."""
    if depth > 64:
        raise _NoValue("a value nests too deeply to compare", False)
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value) if value == value else ("nan",)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("l", tuple(_canon(item, depth + 1) for item in value))
    if isinstance(value, dict):
        try:
            return ("o", frozenset((k, _canon(v, depth + 1)) for k, v in value.items()))
        except TypeError:
            return ("x", id(value))
    return ("x", id(value))


def _equal(one: Any, two: Any) -> bool:
    return bool(_canon(one) == _canon(two))


def _reasons(reasons: list[str]) -> str:
    unique: list[str] = []
    for reason in reasons:
        if reason not in unique:
            unique.append(reason)
    text = "; ".join(unique[:4])
    return text if len(text) <= 600 else text[:597] + "..."


def _fill(rng: random.Random, length: int) -> str:
    out = ""
    while len(out) < length:
        out += rng.choice(_WORDS)
    return out[: max(length, 0)]
