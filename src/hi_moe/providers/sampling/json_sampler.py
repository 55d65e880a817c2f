"""Sample a JSON value that satisfies a JSON Schema: how `MockProvider` answers JSON requests.

`sample_json` reads the schema (drafts 2020-12, 7, 6 and 4; 2019-09 without `$recursiveRef`),
draws candidates that read like data (short words, small numbers, few optional properties,
values near the minimum sizes) and hands each to the caller's `accept`, the authority on
validity, until one passes.

How a candidate is drawn:

- The schema is flattened into a conjunction: `allOf` and `$ref`/`$dynamicRef` (local JSON
  pointers, `$id`s, `$anchor`s and `$dynamicAnchor`s of the document) are followed, and
  `anyOf`, `oneOf` (the other branches then must fail) and `if`/`then`/`else` are choice points
  explored depth first, in an order drawn from the random generator.
- The keywords of the conjunction are merged (types intersected, bounds tightened, `enum` and
  `const` intersected) and a value of an allowed type is built from them, recursing into
  properties and items. Strings come from `format` generators, from a generator walking the
  parse tree of `pattern`, or from a word list.
- Every value built is checked against its whole subschema by a small validator of our own,
  which answers yes, no or "cannot tell"; only its "no" is trusted. It steers the search, and
  `accept` has the last word.

Nothing is claimed unsatisfiable without a proof: the `false` schema, bounds that contradict
each other, required properties the schema forbids, an `enum` none of whose values passes,
and similar, found on paths where every alternative was tried. Anything else that finds no
value is `CannotSample`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import random
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import unquote, urljoin

__all__ = ["CannotSample", "Unsatisfiable", "sample_json"]


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


# -- words and limits ------------------------------------------------------------------------

_WORDS = (
    "alpha bravo delta echo golf hotel kilo lima mike oscar papa romeo sierra tango "
    "victor zulu amber birch cedar maple river stone cloud ember frost grove lemon olive "
    "pearl coral north south lake hill"
).split()
_KEYS = (
    "name id value kind note label count code tag title status size color score level mode "
    "role city owner group"
).split()
_LETTERS = "abcdefghijklmnopqrstuvwxyz"

_MAX_DEPTH = 24  # levels of nested values
_MAX_CHOICES = 48  # nested anyOf/oneOf/if choice points on one path
_MAX_EXPANSIONS = 24  # alternatives tried per subschema
_FUEL = 40_000  # search steps per attempt
_CHECK_DEPTH = 80  # nested checks before the validator says "cannot tell"
_MAX_DIGITS_BITS = 12_000  # integers larger than this would not print as JSON

_DEFAULT_BASE = "https://hi-moe.invalid/schema.json"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_METASCHEMA = re.compile(r"https?://json-schema\.org/")

_KINDS = ("null", "boolean", "object", "array", "string", "int", "frac")
_TYPE_KINDS: dict[str, tuple[str, ...]] = {
    "null": ("null",),
    "boolean": ("boolean",),
    "object": ("object",),
    "array": ("array",),
    "string": ("string",),
    "integer": ("int",),
    "number": ("int", "frac"),
}
_HINTS: dict[str, list[str]] = {
    "object": (
        "properties required additionalProperties patternProperties minProperties "
        "maxProperties propertyNames dependentRequired dependentSchemas dependencies "
        "unevaluatedProperties"
    ).split(),
    "array": (
        "items prefixItems additionalItems contains minItems maxItems uniqueItems "
        "unevaluatedItems minContains maxContains"
    ).split(),
    "string": "minLength maxLength pattern format contentMediaType contentEncoding".split(),
    "number": "minimum maximum exclusiveMinimum exclusiveMaximum multipleOf".split(),
}
_DEFAULT_WEIGHTS = {"string": 5, "number": 4, "boolean": 1, "object": 1, "array": 1, "null": 1}
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

# Subschema positions, for finding `$id`s and anchors.
_ONE_SCHEMA = (
    "additionalProperties additionalItems items contains propertyNames not if then else "
    "unevaluatedProperties unevaluatedItems contentSchema"
).split()
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SCHEMA_MAPS = (
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
)


def sample_json(
    schema: Any,
    rng: random.Random,
    *,
    accept: Callable[[Any], str | None],
    max_chars: int = 2000,
    attempts: int = 40,
) -> Any:
    """A JSON value that `accept` passes, drawn from `schema` with `rng` (deterministic for a
    given schema and generator state); its compact JSON is at most `max_chars` long.

    `accept(value)` returns None when the value satisfies the whole schema, else a reason.
    Raises `Unsatisfiable` when the schema provably admits no value, `CannotSample` when none
    was found in `attempts` tries.
    """
    try:
        run = _Run(schema, rng, max_chars)
    except Exception as error:  # noqa: BLE001 - the schema is anything; never let it escape
        raise CannotSample(f"internal error reading the schema: {error!r}") from None
    tries = max(1, attempts if isinstance(attempts, int) else 1)
    rejections: list[str] = []
    failures: list[str] = []
    starved = 0
    for attempt in range(tries):
        run.lean = run.too_long > 0 or attempt % 2 == 1
        try:
            value, text = run.attempt()
        except _NoValue as error:
            if error.proof and not run.inexact:
                raise Unsatisfiable(error.reason) from None
            failures.append(error.reason)
            continue
        except _OutOfFuel:
            starved += 1
            failures.append("the schema needs more search than one attempt allows")
            if starved >= 2:
                break
            continue
        except Exception as error:  # noqa: BLE001 - a bug here must not look like the schema's
            failures.append(f"internal error: {error!r}")
            break
        if text is None:
            failures.append("the value found does not print as JSON")
            continue
        if len(text) > max_chars:
            run.too_long += 1
            failures.append(f"every value found was longer than max_chars={max_chars}")
            continue
        verdict = accept(value)
        if verdict is None:
            return value
        rejections.append(str(verdict))
        run.exclude(value)
    raise CannotSample(_summary(tries, failures, rejections))


def _summary(tries: int, failures: list[str], rejections: list[str]) -> str:
    parts = [f"no value satisfying the schema was found in {tries} attempts"]
    if failures:
        parts.append(f"the generator: {_most_common(failures)[:300]}")
    if rejections:
        parts.append(f"{len(rejections)} candidates rejected, last: {rejections[-1][:200]}")
    return "; ".join(parts)


def _most_common(items: list[str]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return max(counts, key=lambda item: counts[item])


def _dumps(value: Any) -> str | None:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


# -- small helpers -------------------------------------------------------------------------------


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


def _finite_fraction(value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Fraction(value)


def _count(value: Any) -> int | None:
    """A non-negative count (`minLength`, `maxItems`...) or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _decimal_step(value: Any) -> Fraction | None:
    """`multipleOf` as the decimal its author wrote: 0.01 is 1/100."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value <= 0:
            return None
        return Fraction(repr(value))
    return Fraction(value) if value > 0 else None


def _lcm(a: Fraction, b: Fraction) -> Fraction:
    return Fraction(
        a.numerator * b.numerator // math.gcd(a.numerator, b.numerator),
        math.gcd(a.denominator, b.denominator),
    )


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


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


def _draft_of(uri: Any, default: int) -> int:
    if not isinstance(uri, str):
        return default
    for token, draft in (
        ("draft-03", 4),
        ("draft-04", 4),
        ("draft-06", 6),
        ("draft-07", 7),
        ("2019-09", 2019),
        ("2020-12", 2020),
    ):
        if token in uri:
            return draft
    return default


def _join(base: str, ref: str) -> str:
    if _SCHEME.match(ref):
        return ref
    if ref.startswith("#"):
        return base.partition("#")[0] + ref
    try:
        return urljoin(base, ref)
    except ValueError:
        return ref


def _type_ok(value: Any, name: str, draft: int) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "number":
        return _is_number(value)
    if name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        return draft >= 6 and isinstance(value, float) and value.is_integer()
    return False


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "int" if value.is_integer() else "frac"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "other"


# -- schemas in context --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sub:
    """A subschema where it stands: base URI, path (for messages), draft, dynamic scope."""

    node: Any
    base: str
    path: str
    draft: int
    scope: tuple[str, ...]


@dataclass
class _Expansion:
    """One way through the choice points: dict subschemas that must all hold, and
    subschemas that must all fail."""

    members: list[_Sub]
    negs: list[_Sub]


@dataclass
class _Merged:
    """The keywords of an expansion, merged."""

    kinds: list[str] = field(default_factory=lambda: list(_KINDS))
    type_notes: list[str] = field(default_factory=list)
    consts: list[Any] | None = None
    const_note: str = ""
    lo: Fraction | None = None
    lo_excl: bool = False
    lo_note: tuple[str, str] = ("", "")
    hi: Fraction | None = None
    hi_excl: bool = False
    hi_note: tuple[str, str] = ("", "")
    steps: list[Fraction] = field(default_factory=list)
    raw_steps: list[Any] = field(default_factory=list)
    int_steps: bool = True
    min_len: int = 0
    min_len_path: str = ""
    max_len: int | None = None
    max_len_path: str = ""
    patterns: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    media: str | None = None
    encoding: str | None = None
    min_items: int = 0
    min_items_path: str = ""
    max_items: int | None = None
    max_items_path: str = ""
    unique: bool = False
    min_props: int = 0
    min_props_path: str = ""
    max_props: int | None = None
    max_props_path: str = ""
    hints: dict[str, int] = field(default_factory=dict)


# -- the sampler ---------------------------------------------------------------------------------


class _Run:
    """One `sample_json` call: the schema's index, the generator, and the validator."""

    def __init__(self, schema: Any, rng: random.Random, max_chars: int) -> None:
        self.rng = rng
        self.max_chars = max_chars if isinstance(max_chars, int) and max_chars > 0 else 2000
        self.lean = False
        self.too_long = 0
        self.inexact = False  # something was approximated: no unsatisfiability claims
        self.fuel = _FUEL
        self.excluded: set[Any] = set()
        self.check_depth = 0
        self.deep_hits = 0
        self.active: set[tuple[int, str, int]] = set()
        self.regex_cache: dict[str, Any] = {}
        self.tree_cache: dict[str, Any] = {}
        self.enum_cache: dict[int, tuple[list[Any], dict[Any, Any]]] = {}
        self.resources: dict[str, tuple[Any, str, int]] = {}
        self.anchors: dict[tuple[str, str], tuple[Any, str, int]] = {}
        self.dynamic: dict[tuple[str, str], tuple[Any, str, int]] = {}
        draft = _draft_of(schema.get("$schema"), 2020) if isinstance(schema, dict) else 2020
        base = _DEFAULT_BASE
        if isinstance(schema, dict):
            ident = schema.get("$id") if draft >= 6 else schema.get("id")
            if isinstance(ident, str) and not (draft <= 7 and "$ref" in schema):
                base = _join(base, ident).partition("#")[0]
        self.root = _Sub(schema, base, "", draft, (base,))
        self.resources[base] = (schema, base, draft)
        self._index(schema, base, draft)

    # -- bookkeeping

    def spend(self, steps: int = 1) -> None:
        self.fuel -= steps
        if self.fuel < 0:
            raise _OutOfFuel

    def attempt(self) -> tuple[Any, str | None]:
        self.fuel = _FUEL
        self.active.clear()
        self.check_depth = 0
        value = self.gen([self.root], [], 0, at_root=True)
        return value, _dumps(value)

    def exclude(self, value: Any) -> None:
        with contextlib.suppress(_NoValue):
            self.excluded.add(_canon(value))

    def is_excluded(self, value: Any) -> bool:
        try:
            return _canon(value) in self.excluded
        except _NoValue:
            return False

    # -- the index of `$id`s and anchors

    def _index(self, schema: Any, base: str, draft: int) -> None:
        stack: list[tuple[Any, str, int]] = [(schema, base, draft)]
        seen = 0
        while stack:
            node, base, draft = stack.pop()
            seen += 1
            if seen > 200_000:
                self.inexact = True
                return
            if not isinstance(node, dict):
                continue
            has_ref = "$ref" in node
            ident = node.get("$id") if draft >= 6 else node.get("id")
            if isinstance(ident, str) and not (draft <= 7 and has_ref):
                if "$schema" in node:
                    draft = _draft_of(node.get("$schema"), draft)
                if ident.startswith("#"):
                    if draft <= 7 and len(ident) > 1:
                        self.anchors.setdefault((base, unquote(ident[1:])), (node, base, draft))
                else:
                    full = _join(base, ident)
                    doc, _, fragment = full.partition("#")
                    base = doc
                    self.resources.setdefault(doc, (node, doc, draft))
                    if fragment and draft <= 7:
                        self.anchors.setdefault((doc, unquote(fragment)), (node, doc, draft))
            for key in ("$anchor", "$dynamicAnchor"):
                name = node.get(key)
                if isinstance(name, str) and draft >= 2019:
                    self.anchors.setdefault((base, name), (node, base, draft))
            name = node.get("$dynamicAnchor")
            if isinstance(name, str) and draft >= 2020:
                self.dynamic.setdefault((base, name), (node, base, draft))
            for child in _subschemas(node):
                if isinstance(child, dict):
                    stack.append((child, base, draft))

    def child(self, parent: _Sub, node: Any, key: str) -> _Sub:
        base, draft, scope = parent.base, parent.draft, parent.scope
        if isinstance(node, dict):
            ident = node.get("$id") if draft >= 6 else node.get("id")
            if (
                isinstance(ident, str)
                and not ident.startswith("#")
                and not (draft <= 7 and "$ref" in node)
            ):
                if "$schema" in node:
                    draft = _draft_of(node.get("$schema"), draft)
                base = _join(base, ident).partition("#")[0]
                if not scope or scope[-1] != base:
                    scope = (*scope, base)
        return _Sub(node, base, f"{parent.path}/{key}", draft, scope)

    def resolve(self, ref: str, sub: _Sub, keyword: str = "$ref") -> _Sub:
        uri = _join(sub.base, ref)
        doc, _, fragment = uri.partition("#")
        fragment = unquote(fragment)
        found = self.resources.get(doc)
        path = f"{sub.path}/{keyword}"
        if found is None:
            if _METASCHEMA.match(doc):
                # A schema is wanted; the empty one is valid under every metaschema.
                self.inexact = True
                return _Sub(_EMPTY_OBJECT_SCHEMA, sub.base, path, sub.draft, sub.scope)
            raise _NoValue(f"{keyword} {ref!r} {_where(sub.path)} is not in this schema", False)
        node, base, draft = found
        if fragment.startswith("/"):
            for token in fragment[1:].split("/"):
                token = token.replace("~1", "/").replace("~0", "~")
                if isinstance(node, dict) and token in node:
                    node = node[token]
                elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                    node = node[int(token)]
                else:
                    raise _NoValue(f"{keyword} {ref!r} {_where(sub.path)} points nowhere", False)
                if isinstance(node, dict):
                    ident = node.get("$id") if draft >= 6 else node.get("id")
                    if isinstance(ident, str) and not ident.startswith("#"):
                        base = _join(base, ident).partition("#")[0]
        elif fragment:
            anchored = self.anchors.get((doc, fragment))
            if anchored is None:
                raise _NoValue(f"{keyword} {ref!r} {_where(sub.path)} names no anchor", False)
            node, base, draft = anchored
        scope = sub.scope if sub.scope and sub.scope[-1] == base else (*sub.scope, base)
        return _Sub(node, base, path, draft, scope)

    def resolve_dynamic(self, ref: str, sub: _Sub) -> _Sub:
        target = self.resolve(ref, sub, "$dynamicRef")
        name = ref.partition("#")[2]
        node = target.node
        if (
            name
            and not name.startswith("/")
            and isinstance(node, dict)
            and node.get("$dynamicAnchor") == name
        ):
            for base in sub.scope:
                found = self.dynamic.get((base, name))
                if found is not None:
                    node, base_uri, draft = found
                    return _Sub(node, base_uri, target.path, draft, target.scope)
        return target

    # -- expansions: one flat conjunction per way through the choice points

    def expansions(self, subs: list[_Sub], negs: list[_Sub]) -> Iterator[_Expansion | _NoValue]:
        yield from self._dfs(list(reversed(subs)), [], list(negs), [], set(), 0)

    def _dfs(
        self,
        todo: list[_Sub],
        members: list[_Sub],
        negs: list[_Sub],
        pending: list[tuple[str, _Sub]],
        seen: set[tuple[int, str]],
        level: int,
    ) -> Iterator[_Expansion | _NoValue]:
        while todo:
            self.spend()
            sub = todo.pop()
            node = sub.node
            if node is True:
                continue
            if node is False:
                yield _NoValue(f"the schema {_where(sub.path)} is false", True)
                return
            if not isinstance(node, dict):
                self.inexact = True
                continue
            key = (id(node), sub.base)
            if key in seen:
                continue
            seen.add(key)
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    todo.append(self.resolve(ref, sub))
                except _NoValue as error:
                    yield error
                    return
                if sub.draft <= 7:
                    continue
            dynamic = node.get("$dynamicRef")
            if isinstance(dynamic, str) and sub.draft >= 2020:
                try:
                    todo.append(self.resolve_dynamic(dynamic, sub))
                except _NoValue as error:
                    yield error
                    return
            members.append(sub)
            all_of = node.get("allOf")
            if isinstance(all_of, list):
                for index in range(len(all_of) - 1, -1, -1):
                    todo.append(self.child(sub, all_of[index], f"allOf/{index}"))
            if "not" in node:
                negated = self.child(sub, node["not"], "not")
                inner = negated.node
                if inner is True or (
                    isinstance(inner, dict) and not any(k not in _ANNOTATIONS for k in inner)
                ):
                    yield _NoValue(f"the schema {_where(negated.path)} allows every value", True)
                    return
                if isinstance(inner, dict) and set(inner) == {"not"}:
                    todo.append(self.child(negated, inner["not"], "not"))
                elif inner is not False:
                    negs.append(negated)
            for keyword in ("anyOf", "oneOf"):
                branches = node.get(keyword)
                if isinstance(branches, list):
                    if not branches:
                        yield _NoValue(f"{keyword} {_where(sub.path)} has no branches", True)
                        return
                    pending.append((keyword, sub))
            if "if" in node and sub.draft >= 7:
                pending.append(("if", sub))
        for neg in negs:
            inner = neg.node
            if inner is True or (
                isinstance(inner, dict) and not any(k not in _ANNOTATIONS for k in inner)
            ):
                yield _NoValue(
                    f"the value must fail the schema {_where(neg.path)}, which allows every value",
                    True,
                )
                return
        negs_seen = [n for n in negs if (id(n.node), n.base) in seen]
        if negs_seen:
            yield _NoValue(f"the schema {_where(negs_seen[0].path)} must both hold and fail", True)
            return
        if not pending:
            yield _Expansion(members, negs)
            return
        if level >= _MAX_CHOICES:
            yield _NoValue("too many nested anyOf/oneOf/if choices", False)
            return
        keyword, sub = pending[0]
        rest = pending[1:]
        options = self._options(keyword, sub)
        self.rng.shuffle(options)
        for positives, negatives in options:
            yield from self._dfs(
                list(reversed(positives)),
                list(members),
                negs + negatives,
                list(rest),
                set(seen),
                level + 1,
            )

    def _options(self, keyword: str, sub: _Sub) -> list[tuple[list[_Sub], list[_Sub]]]:
        node = sub.node
        if keyword == "if":
            condition = self.child(sub, node["if"], "if")
            then = self.child(sub, node.get("then", True), "then")
            otherwise = self.child(sub, node.get("else", True), "else")
            if condition.node is True:
                return [([then], [])]
            if condition.node is False:
                return [([otherwise], [])]
            return [([condition, then], []), ([otherwise], [condition])]
        branches = [self.child(sub, b, f"{keyword}/{i}") for i, b in enumerate(node[keyword])]
        if keyword == "anyOf":
            return [([branch], []) for branch in branches]
        return [
            ([branch], [other for other in branches if other is not branch]) for branch in branches
        ]

    # -- generation

    def gen(self, subs: list[_Sub], negs: list[_Sub], depth: int, at_root: bool = False) -> Any:
        """A value satisfying every schema in `subs` and none in `negs`."""
        self.spend()
        if depth > _MAX_DEPTH:
            self.deep_hits += 1
            raise _NoValue(f"values nest deeper than {_MAX_DEPTH} levels", False)
        reasons: list[str] = []
        proof = True
        tried = 0
        for item in self.expansions(subs, negs):
            tried += 1
            if tried > _MAX_EXPANSIONS:
                proof = False
                break
            if isinstance(item, _NoValue):
                reasons.append(item.reason)
                proof = proof and item.proof
                continue
            try:
                return self._from_expansion(item, subs, negs, depth, at_root)
            except _NoValue as error:
                reasons.append(error.reason)
                proof = proof and error.proof
        raise _NoValue(_reasons(reasons), proof)

    def _from_expansion(
        self, exp: _Expansion, subs: list[_Sub], negs: list[_Sub], depth: int, at_root: bool
    ) -> Any:
        merged = self.merge(exp)
        if merged.consts is not None:
            return self._pick_const(merged, subs, negs, at_root)
        kinds = self._kind_order(merged)
        if not kinds:
            notes = " and ".join(merged.type_notes[:4])
            raise _NoValue(f"no type satisfies {notes}" if notes else "no type is allowed", True)
        reasons: list[str] = []
        proof = True
        tries = 3 if depth == 0 else 2
        for kind in kinds:
            dead = self._dead(kind, merged)
            if dead is not None:
                reasons.append(dead)
                continue
            for _ in range(tries):
                deep_hits = self.deep_hits
                try:
                    value = self._gen_kind(kind, merged, exp, subs, negs, depth, at_root)
                except _NoValue as error:
                    reasons.append(error.reason)
                    if error.proof:
                        break
                    proof = False
                    if self.deep_hits > deep_hits:
                        break  # the same recursion would only hit the limit again
                    continue
                if self.check_all(value, subs, negs) is not False and not (
                    at_root and self.is_excluded(value)
                ):
                    return value
                proof = False
                reasons.append(f"no generated {_kind_name(kind)} satisfied the schema")
        raise _NoValue(_reasons(reasons), proof)

    def _pick_const(
        self, merged: _Merged, subs: list[_Sub], negs: list[_Sub], at_root: bool
    ) -> Any:
        candidates = merged.consts or []
        order = list(range(len(candidates)))
        self.rng.shuffle(order)
        for index in order:
            value = candidates[index]
            if _kind_of(value) not in merged.kinds:
                continue
            if at_root and self.is_excluded(value):
                continue
            if self.check_all(value, subs, negs) is not False:
                return value
        raise _NoValue(f"{merged.const_note} satisfies the rest of the schema", True)

    def _kind_order(self, merged: _Merged) -> list[str]:
        has_int, has_frac = "int" in merged.kinds, "frac" in merged.kinds
        numeric = "number" if has_int and has_frac else "integer" if has_int else "fraction"
        names = [k for k in merged.kinds if k not in ("int", "frac")]
        if has_int or has_frac:
            names.append(numeric)
        weights = {name: _DEFAULT_WEIGHTS.get(_hint_group(name), 1) for name in names}
        hinted = [n for n in names if merged.hints.get(_hint_group(n), 0) > 0]
        hinted.sort(key=lambda n: -merged.hints.get(_hint_group(n), 0))
        rest = [n for n in names if n not in hinted]
        ordered: list[str] = []
        while rest:
            total = sum(weights[n] for n in rest)
            pick = self.rng.uniform(0, total)
            for name in rest:
                pick -= weights[name]
                if pick <= 0:
                    break
            ordered.append(name)
            rest.remove(name)
        return hinted + ordered

    def _gen_kind(
        self,
        kind: str,
        merged: _Merged,
        exp: _Expansion,
        subs: list[_Sub],
        negs: list[_Sub],
        depth: int,
        at_root: bool,
    ) -> Any:
        if kind == "null":
            return None
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "string":
            return self._gen_string(merged)
        if kind in ("integer", "number", "fraction"):
            return self._gen_number(kind, merged)
        if kind == "array":
            return self._gen_array(merged, exp, depth)
        return self._gen_object(merged, exp, subs, negs, depth, at_root)

    # -- merging keywords

    def merge(self, exp: _Expansion) -> _Merged:
        merged = _Merged()
        for sub in exp.members:
            self.spend()
            self._merge_node(merged, sub)
        for neg in exp.negs:
            node = neg.node
            if isinstance(node, dict):
                asserting = [k for k in node if k not in _ANNOTATIONS]
                if asserting == ["type"]:
                    kinds = _kinds_of_type(node["type"])
                    if kinds is not None:
                        merged.kinds = [k for k in merged.kinds if k not in kinds]
                        merged.type_notes.append(f"types excluded by the schema {_where(neg.path)}")
        return merged

    def _merge_node(self, merged: _Merged, sub: _Sub) -> None:
        node: dict[str, Any] = sub.node
        draft = sub.draft
        path = sub.path
        for group, keywords in _HINTS.items():
            for keyword in keywords:
                if keyword in node:
                    merged.hints[group] = merged.hints.get(group, 0) + 1
        if "type" in node:
            kinds = _kinds_of_type(node["type"])
            if kinds is not None:
                merged.kinds = [k for k in merged.kinds if k in kinds]
                merged.type_notes.append(f"type {_short(node['type'])} {_where(path)}")
        if "const" in node and draft >= 6:
            self._merge_consts(merged, [node["const"]], f"const {_short(node['const'])}", path)
        enum = node.get("enum")
        if isinstance(enum, list):
            self._merge_consts(merged, enum, f"enum {_short(enum)}", path)
        # numbers
        for keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            if keyword not in node:
                continue
            raw = node[keyword]
            is_min = "inimum" in keyword
            exclusive = keyword.startswith("exclusive")
            if exclusive and draft <= 4:
                continue  # draft 4: a boolean modifier, read with its bound
            bound = _finite_fraction(raw)
            if bound is None:
                continue
            if not exclusive and draft <= 4:
                exclusive = node.get("exclusiveMinimum" if is_min else "exclusiveMaximum") is True
            note = (f"{keyword} {_short(raw)}" + (" (exclusive)" if exclusive else ""), path)
            if is_min:
                if merged.lo is None or bound > merged.lo or (bound == merged.lo and exclusive):
                    merged.lo, merged.lo_excl, merged.lo_note = bound, exclusive, note
            elif merged.hi is None or bound < merged.hi or (bound == merged.hi and exclusive):
                merged.hi, merged.hi_excl, merged.hi_note = bound, exclusive, note
        if "multipleOf" in node:
            step = _decimal_step(node["multipleOf"])
            if step is not None:
                merged.steps.append(step)
                merged.raw_steps.append(node["multipleOf"])
                if not isinstance(node["multipleOf"], int):
                    merged.int_steps = False
        # strings
        count = _count(node.get("minLength"))
        if count is not None and count > merged.min_len:
            merged.min_len, merged.min_len_path = count, path
        count = _count(node.get("maxLength"))
        if count is not None and (merged.max_len is None or count < merged.max_len):
            merged.max_len, merged.max_len_path = count, path
        if isinstance(node.get("pattern"), str):
            merged.patterns.append(node["pattern"])
        if isinstance(node.get("format"), str) and node["format"] in _FORMATS:
            merged.formats.append(node["format"])
        if draft <= 7:
            if isinstance(node.get("contentMediaType"), str):
                merged.media = node["contentMediaType"]
            if isinstance(node.get("contentEncoding"), str):
                merged.encoding = node["contentEncoding"]
        # arrays
        count = _count(node.get("minItems"))
        if count is not None and count > merged.min_items:
            merged.min_items, merged.min_items_path = count, path
        count = _count(node.get("maxItems"))
        if count is not None and (merged.max_items is None or count < merged.max_items):
            merged.max_items, merged.max_items_path = count, path
        if node.get("uniqueItems") is True:
            merged.unique = True
        # objects
        count = _count(node.get("minProperties"))
        if count is not None and count > merged.min_props:
            merged.min_props, merged.min_props_path = count, path
        count = _count(node.get("maxProperties"))
        if count is not None and (merged.max_props is None or count < merged.max_props):
            merged.max_props, merged.max_props_path = count, path

    def enum_keys(self, values: list[Any]) -> dict[Any, Any]:
        """The values of an `enum` by their canonical form (cached per list)."""
        cached = self.enum_cache.get(id(values))
        if cached is not None and cached[0] is values:
            return cached[1]
        self.spend(1 + len(values) // 64)
        keyed: dict[Any, Any] = {}
        for value in values:
            keyed.setdefault(_canon(value), value)
        self.enum_cache[id(values)] = (values, keyed)
        return keyed

    def _merge_consts(self, merged: _Merged, values: list[Any], note: str, path: str) -> None:
        keyed = self.enum_keys(values) if len(values) != 1 else {_canon(values[0]): values[0]}
        if merged.consts is None:
            merged.consts = list(keyed.values())
            merged.const_note = f"no value of {note} {_where(path)}"
            return
        merged.consts = [v for v in merged.consts if _canon(v) in keyed]
        merged.const_note = (
            f"no value common to the enum/const keywords (last: {note} {_where(path)})"
        )

    def _dead(self, kind: str, merged: _Merged) -> str | None:
        """Why no value of this kind can satisfy the merged keywords (a proof), or None."""
        if kind == "string":
            if merged.max_len is not None and merged.min_len > merged.max_len:
                return _both(
                    f"minLength {_n(merged.min_len)}",
                    merged.min_len_path,
                    ">",
                    f"maxLength {_n(merged.max_len)}",
                    merged.max_len_path,
                )
            return None
        if kind == "array":
            if merged.max_items is not None and merged.min_items > merged.max_items:
                return _both(
                    f"minItems {_n(merged.min_items)}",
                    merged.min_items_path,
                    ">",
                    f"maxItems {_n(merged.max_items)}",
                    merged.max_items_path,
                )
            return None
        if kind == "object":
            if merged.max_props is not None and merged.min_props > merged.max_props:
                return _both(
                    f"minProperties {_n(merged.min_props)}",
                    merged.min_props_path,
                    ">",
                    f"maxProperties {_n(merged.max_props)}",
                    merged.max_props_path,
                )
            return None
        if kind in ("integer", "number", "fraction"):
            return self._dead_number(kind, merged)
        return None

    def _dead_number(self, kind: str, merged: _Merged) -> str | None:
        lo, hi = merged.lo, merged.hi
        bounds = "the bounds"
        if lo is not None and hi is not None:
            bounds = _both(merged.lo_note[0], merged.lo_note[1], "and", *merged.hi_note)
            if lo > hi or (lo == hi and (merged.lo_excl or merged.hi_excl)):
                return f"no number satisfies {bounds}"
        if kind == "fraction":
            if merged.steps and merged.int_steps:
                return "multipleOf admits only integers here, and integers are excluded"
            if lo is not None and lo == hi and lo.denominator == 1:
                return f"only an integer satisfies {bounds}, and integers are excluded"
            return None
        if not merged.int_steps or (kind == "number" and not merged.steps):
            return None  # float arithmetic decides, not a proof
        step = self._step(kind, merged)
        if step is None:
            return None
        low, high = _lattice(step, merged)
        if low is not None and high is not None and low > high:
            what = f"no multiple of {_n(step)}" if step != 1 else "no integer"
            return f"{what} satisfies {bounds}"
        return None

    @staticmethod
    def _step(kind: str, merged: _Merged) -> Fraction | None:
        step: Fraction | None = None
        for item in merged.steps:
            step = item if step is None else _lcm(step, item)
        if kind == "integer":
            step = Fraction(1) if step is None else _lcm(step, Fraction(1))
        return step

    # -- numbers

    def _nice(self, merged: _Merged) -> Fraction:
        rng = self.rng
        target = Fraction(rng.choice((1, 2, 3, 5, 7, 8, 10, 12, 15, 20, 25, 42, 50, 64, 100)))
        if rng.random() < 0.15:
            target = Fraction(0)
        lo, hi = merged.lo, merged.hi
        if lo is not None and target <= lo:
            target = lo if abs(lo) > 10**9 else lo + rng.randint(0, 10)
        if hi is not None and target >= hi:
            target = hi if abs(hi) > 10**9 else hi - rng.randint(0, 10)
        if lo is not None and target < lo:
            target = (lo + hi) / 2 if hi is not None else lo
        return target

    def _gen_number(self, kind: str, merged: _Merged) -> int | float:
        step = self._step(kind, merged)
        if step is None and kind == "number" and self.rng.random() < 0.8:
            low, high = _lattice(Fraction(1), merged)
            if low is None or high is None or low <= high:
                step = Fraction(1)
        if step is not None:
            return self._from_lattice(kind, step, merged)
        return self._fractional(kind, merged)

    def _from_lattice(self, kind: str, step: Fraction, merged: _Merged) -> int | float:
        low, high = _lattice(step, merged)
        if low is not None and high is not None and low > high:
            raise _NoValue(f"no multiple of {_n(step)} is in range", False)
        target = self._nice(merged)
        if kind != "integer" and step.denominator > 1 and self.rng.random() < 0.4:
            target += Fraction(self.rng.choice((1, 2, 3)), 4)  # now and then a decimal
        start = round(target / step)
        if low is not None:
            start = max(start, low)
        if high is not None:
            start = min(start, high)
        unprintable = False
        for offset in (0, 1, -1, 2, -2, 3, -3, 5, -5, 8, -8, 13, -13, 21, 34, 55, 89):
            k = start + offset
            if (low is not None and k < low) or (high is not None and k > high):
                continue
            exact = k * step
            if kind == "fraction" and exact.denominator == 1:
                continue
            value = _to_number(exact, prefer_int=kind != "fraction")
            if value is None:
                unprintable = True
                continue
            if self._number_ok(value, merged):
                return value
        if unprintable:
            raise _NoValue("the numbers in range are too large to write as JSON", False)
        raise _NoValue(f"no multiple of {_n(step)} in range survived float arithmetic", False)

    def _fractional(self, kind: str, merged: _Merged) -> int | float:
        lo, hi = merged.lo, merged.hi
        rng = self.rng
        candidates: list[Fraction] = []
        base = self._nice(merged)
        for frac in (Fraction(1, 2), Fraction(1, 4), Fraction(3, 4), Fraction(1, 10)):
            candidates.append(Fraction(_floor(base)) + frac)
            candidates.append(base + frac)
            candidates.append(base - frac)
        if lo is not None and hi is not None:
            middle = (lo + hi) / 2
            for digits in range(0, 18):
                candidates.append(Fraction(round(middle, digits)))
            candidates.append(middle)
        elif lo is not None:
            candidates += [lo + Fraction(1, 2), lo + 1, lo + Fraction(1, 10**6)]
        elif hi is not None:
            candidates += [hi - Fraction(1, 2), hi - 1, hi - Fraction(1, 10**6)]
        if rng.random() < 0.5:
            candidates = candidates[2:] + candidates[:2]
        for exact in candidates:
            value = _to_number(exact, prefer_int=kind == "number")
            if value is None:
                continue
            if kind == "fraction" and float(value).is_integer():
                continue
            if self._number_ok(value, merged):
                return value
        raise _NoValue("no number in range was found", False)

    @staticmethod
    def _number_ok(value: int | float, merged: _Merged) -> bool:
        exact = Fraction(value)
        if merged.lo is not None and (exact < merged.lo or (merged.lo_excl and exact == merged.lo)):
            return False
        if merged.hi is not None and (exact > merged.hi or (merged.hi_excl and exact == merged.hi)):
            return False
        return all(_multiple_ok(value, raw) is not False for raw in merged.raw_steps)

    # -- strings

    def _gen_string(self, merged: _Merged) -> str:
        cap = max(0, self.max_chars - 2)
        lo = merged.min_len
        if lo > cap:
            raise _NoValue(
                f"minLength {_n(lo)} {_where(merged.min_len_path)} is more than max_chars allows",
                False,
            )
        hi = cap if merged.max_len is None else min(merged.max_len, cap)
        formats = merged.formats
        patterns = merged.patterns
        plans: list[tuple[str, Any]] = []
        if merged.media is not None or merged.encoding is not None:
            plans += [("content", None)] * 2
        plans += [("format", f) for f in formats for _ in range(3)]
        plans += [("pattern", (p, i)) for p in patterns for i in range(5)]
        if not formats and not patterns and merged.media is None and merged.encoding is None:
            plans += [("words", None)] * 3
        if not formats:
            plans.append(("words", None))
        notes: list[str] = []
        for plan, arg in plans:
            self.spend()
            text: str | None
            if plan == "content":
                text = self._content_string(merged, lo, hi)
            elif plan == "format":
                text = _format_string(arg, self.rng, lo, hi)
                if text is None:
                    notes.append(
                        f"format {arg!r} cannot be written in {_n(lo)}..{_n(hi)} characters"
                    )
            elif plan == "pattern":
                text = self._pattern_string(arg[0], lo, hi, arg[1])
            else:
                text = self._text_between(lo, hi)
            if text is None or not lo <= len(text) <= hi:
                continue
            if all(self._pattern_ok(p, text) for p in patterns):
                return text
        raise _NoValue(_reasons(notes) or "no string satisfying the patterns was found", False)

    def _text_between(self, lo: int, hi: int) -> str | None:
        if lo > hi:
            return None
        word = self.rng.choice(_WORDS)
        if lo <= len(word) <= hi:
            return word
        return self._text(lo if len(word) < lo else hi)

    def _text(self, length: int) -> str:
        """`length` characters of words and spaces."""
        if length <= 0:
            return ""
        fitting = [w for w in _WORDS if len(w) == length]
        if fitting:
            return self.rng.choice(fitting)
        words: list[str] = []
        total = 0
        while total < length:
            word = self.rng.choice(_WORDS)
            words.append(word)
            total += len(word) + 1
        text = " ".join(words)[:length]
        return text[:-1] + "s" if text.endswith(" ") else text

    def _content_string(self, merged: _Merged, lo: int, hi: int) -> str | None:
        import base64

        raw = _dumps({"name": self.rng.choice(_WORDS)}) if merged.media else None
        if merged.media is not None and merged.media != "application/json":
            raw = self.rng.choice(_WORDS)
        if raw is None:
            raw = self.rng.choice(_WORDS)
        for text in (raw, "{}", "1"):
            if merged.encoding == "base64":
                text = base64.b64encode(text.encode()).decode()
            if lo <= len(text) <= hi:
                return text
        return None

    # -- patterns

    def regex(self, pattern: str) -> Any:
        """A compiled ECMA 262 regex (the `regress` engine), else Python's, else None."""
        if pattern in self.regex_cache:
            return self.regex_cache[pattern]
        compiled: Any = None
        regress: Any
        try:
            import regress
        except ImportError:
            regress = None
        if regress is not None:
            for flags in ("u", ""):
                try:
                    compiled = ("ecma", regress.Regex(pattern, flags))
                    break
                except Exception:  # noqa: BLE001 - any refusal means "try the next flags"
                    continue
        if compiled is None:
            compiled = _python_regex(_ecma_to_python(pattern))
            compiled = None if compiled is None else ("python", compiled)
        self.regex_cache[pattern] = compiled
        return compiled

    def search(self, pattern: str, text: str) -> bool | None:
        compiled = self.regex(pattern)
        if compiled is None:
            return None
        try:
            if compiled[0] == "ecma":
                return compiled[1].find(text) is not None
            return compiled[1].search(text) is not None
        except Exception:  # noqa: BLE001 - an engine that cannot judge leaves it open
            return None

    def _pattern_ok(self, pattern: str, text: str) -> bool:
        """Both engines agree the text matches (ECMA 262, and Python's `re` that jsonschema
        uses by default), where each can read the pattern."""
        if self.search(pattern, text) is False:
            return False
        python = self._python_original(pattern)
        return python is None or python.search(text) is not None

    def _python_original(self, pattern: str) -> Any:
        key = "\x00py:" + pattern
        if key not in self.regex_cache:
            self.regex_cache[key] = _python_regex(pattern)
        return self.regex_cache[key]

    def _tree(self, pattern: str) -> Any:
        if pattern not in self.tree_cache:
            tree: Any = None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = _PARSER.parse(_ecma_to_python(pattern))
            except Exception:  # noqa: BLE001 - Python cannot parse every ECMA pattern
                tree = None
            self.tree_cache[pattern] = tree
        return self.tree_cache[pattern]

    def _pattern_string(self, pattern: str, lo: int, hi: int, attempt: int) -> str | None:
        tree = self._tree(pattern)
        if tree is None:
            return self._pattern_fallback(pattern, lo, hi, attempt)
        items = list(tree)
        modes = ("natural", "short", "fill", "natural", "fill")
        mode = modes[attempt % len(modes)]
        try:
            minimum = _min_length(items)
            need = max(0, lo - minimum)
            text = _RegexGen(self, mode, need).seq(items)
        except _RegexTooHard:
            return self._pattern_fallback(pattern, lo, hi, attempt)
        if len(text) < lo:
            first = items[0] if items else None
            last = items[-1] if items else None
            anchored_start = first is not None and str(first[0]) == "AT"
            anchored_end = last is not None and str(last[0]) == "AT"
            pad = self._letters(lo - len(text))
            if not anchored_end:
                text += pad
            elif not anchored_start:
                text = pad + text
        return text

    def _pattern_fallback(self, pattern: str, lo: int, hi: int, attempt: int) -> str | None:
        self.inexact = True
        literal = re.sub(r"\\.|[\^$.*+?()\[\]{}|]", "", pattern)
        options = [literal, self.rng.choice(_WORDS), str(self.rng.randint(0, 999)), ""]
        text = options[attempt % len(options)]
        if len(text) < lo:
            text += self._letters(lo - len(text))
        return text[: max(hi, 0)] if len(text) > hi else text

    def _letters(self, length: int) -> str:
        out = ""
        while len(out) < length:
            out += self.rng.choice(_WORDS)
        return out[:length]

    # -- arrays

    def _gen_array(self, merged: _Merged, exp: _Expansion, depth: int) -> list[Any]:
        parts: list[tuple[list[_Sub], _Sub | None]] = []
        contains: list[tuple[_Sub, int, int | None]] = []
        unevaluated: list[_Sub] = []
        hi = merged.max_items
        for sub in exp.members:
            node = sub.node
            prefix_nodes: Any = None
            rest: _Sub | None = None
            items = node.get("items")
            if sub.draft >= 2020:
                prefix_nodes = node.get("prefixItems")
                if isinstance(items, list):
                    prefix_nodes = items
                elif "items" in node:
                    rest = self.child(sub, items, "items")
                keyword = "prefixItems" if not isinstance(items, list) else "items"
            else:
                keyword = "items"
                if isinstance(items, list):
                    prefix_nodes = items
                    if "additionalItems" in node:
                        rest = self.child(sub, node["additionalItems"], "additionalItems")
                elif "items" in node:
                    rest = self.child(sub, items, "items")
            prefix: list[_Sub] = []
            if isinstance(prefix_nodes, list):
                prefix = [self.child(sub, n, f"{keyword}/{i}") for i, n in enumerate(prefix_nodes)]
            for index, item in enumerate(prefix):
                if item.node is False:
                    hi = index if hi is None else min(hi, index)
                    break
            if rest is not None and rest.node is False:
                hi = len(prefix) if hi is None else min(hi, len(prefix))
            parts.append((prefix, rest))
            if "contains" in node and sub.draft >= 6:
                least = _count(node.get("minContains")) if sub.draft >= 2019 else None
                most = _count(node.get("maxContains")) if sub.draft >= 2019 else None
                least = 1 if least is None else least
                spec = self.child(sub, node["contains"], "contains")
                if most is not None and least > most:
                    raise _NoValue(
                        f"minContains {_n(least)} > maxContains {_n(most)} {_where(sub.path)}", True
                    )
                if least > 0 and spec.node is False:
                    raise _NoValue(f"contains {_where(sub.path)} is false", True)
                contains.append((spec, least, most))
            if "unevaluatedItems" in node and sub.draft >= 2019:
                unevaluated.append(self.child(sub, node["unevaluatedItems"], "unevaluatedItems"))
        lo = merged.min_items
        if hi is not None and lo > hi:
            raise _NoValue(
                f"minItems {_n(lo)} {_where(merged.min_items_path)} "
                f"but at most {_n(hi)} items are allowed",
                True,
            )
        wanted = sum(least for _, least, _ in contains)
        if hi is not None and wanted > hi:
            if any(least > hi for _, least, _ in contains):
                raise _NoValue(f"contains needs more than the {_n(hi)} items allowed", True)
            wanted = max(least for _, least, _ in contains)
        forced = lo
        size = max(lo, wanted)
        longest = max((len(prefix) for prefix, _ in parts), default=0)
        if not self.lean and depth < 4:
            if size == 0:
                size = self.rng.choice((1, 1, 2, 2, 3, 0))
            if longest > size:
                size = longest
        if hi is not None:
            size = min(size, hi)
        if size > self.max_chars // 2:
            raise _NoValue(f"minItems {_n(size)} needs more than max_chars allows", False)
        designated: dict[int, list[_Sub]] = {}
        position = 0
        for spec, least, _ in contains:
            for _ in range(least):
                index = position % max(size, 1)
                designated.setdefault(index, []).append(spec)
                position += 1
        bounded = [spec for spec, _, most in contains if most is not None]
        out: list[Any] = []
        keys: set[Any] = set()
        for index in range(size):
            subs: list[_Sub] = []
            covered = False
            for prefix, rest in parts:
                if index < len(prefix):
                    subs.append(prefix[index])
                    covered = True
                elif rest is not None:
                    subs.append(rest)
                    covered = True
            if not covered:
                subs += unevaluated
            approximate = not covered and bool(unevaluated)
            chosen = designated.get(index, [])
            subs += chosen
            negs = [spec for spec in bounded if spec not in chosen]
            value: Any = None
            found = False
            for _ in range(4 if merged.unique else 1):
                try:
                    value = self.gen(subs, negs, depth + 1)
                except _NoValue as error:
                    if index < max(forced, wanted):
                        exact = index < forced and not chosen and not negs and not approximate
                        raise _NoValue(
                            f"item {index}: {error.reason}", error.proof and exact
                        ) from None
                    break
                if merged.unique and _canon(value) in keys:
                    continue
                found = True
                break
            if not found:
                if index < max(forced, wanted):
                    raise _NoValue("no distinct items were found for uniqueItems", False)
                break
            keys.add(_canon(value))
            out.append(value)
        return out

    # -- objects

    def _gen_object(
        self,
        merged: _Merged,
        exp: _Expansion,
        subs: list[_Sub],
        negs: list[_Sub],
        depth: int,
        at_root: bool,
    ) -> Any:
        members = exp.members
        declared: dict[str, None] = {}
        required: dict[str, str] = {}
        dep_required: dict[str, list[str]] = {}
        dep_schemas: dict[str, list[_Sub]] = {}
        names: list[_Sub] = []
        patterns: list[str] = []
        for sub in members:
            node = sub.node
            props = node.get("properties")
            if isinstance(props, dict):
                for key in props:
                    if isinstance(key, str):
                        declared.setdefault(key, None)
            pats = node.get("patternProperties")
            if isinstance(pats, dict):
                patterns += [p for p in pats if isinstance(p, str)]
            req = node.get("required")
            if isinstance(req, list):
                for key in req:
                    if isinstance(key, str):
                        required.setdefault(key, sub.path)
            for keyword in ("dependentRequired", "dependencies", "dependentSchemas"):
                deps = node.get(keyword)
                if not isinstance(deps, dict):
                    continue
                if keyword != "dependencies" and sub.draft < 2019:
                    continue
                for key, dep in deps.items():
                    if not isinstance(key, str):
                        continue
                    if isinstance(dep, list) and keyword != "dependentSchemas":
                        dep_required.setdefault(key, []).extend(
                            d for d in dep if isinstance(d, str)
                        )
                    elif isinstance(dep, dict | bool) and keyword != "dependentRequired":
                        child = self.child(sub, dep, f"{keyword}/{_escape(key)}")
                        dep_schemas.setdefault(key, []).append(child)
            if "propertyNames" in node:
                names.append(self.child(sub, node["propertyNames"], "propertyNames"))
        keys: list[str] = list(required)
        self._close(keys, dep_required)
        member_ids = {id(sub.node) for sub in members}
        triggered = [
            s
            for key in keys
            for s in dep_schemas.get(key, [])
            if s.node is not True and id(s.node) not in member_ids
        ]
        if triggered:
            if len(subs) > 64:
                raise _NoValue("dependentSchemas nest too deeply", False)
            return self.gen(subs + triggered, negs, depth, at_root)
        for key in keys:
            problem = self._forbidden(key, members, names)
            if problem is not None:
                where = required.get(key)
                why = f"required {_where(where)}" if where is not None else "a dependency"
                raise _NoValue(f"property {key!r} ({why}) {problem[0]}", problem[1])
        if merged.max_props is not None and len(keys) > merged.max_props:
            raise _NoValue(
                f"{len(keys)} properties are required but maxProperties is "
                f"{_n(merged.max_props)} {_where(merged.max_props_path)}",
                True,
            )
        limit = merged.max_props
        room = (limit - len(keys)) if limit is not None else 10**9
        need = max(0, merged.min_props - len(keys))
        if (len(keys) + need) * 6 > self.max_chars:  # '"k":0,' at the least
            raise _NoValue(
                f"minProperties {_n(merged.min_props)} {_where(merged.min_props_path)} "
                "needs more than max_chars allows",
                False,
            )
        optional = [k for k in declared if k not in keys]
        self.rng.shuffle(optional)
        extra: list[str] = []
        rate = 0.0 if self.lean or depth >= 3 else (0.4 if depth == 0 else 0.2)
        spare = 3 if depth == 0 else 1
        for key in optional:
            if len(extra) >= room:
                break
            wanted = len(extra) < need or (len(extra) < need + spare and self.rng.random() < rate)
            if not wanted or key in dep_schemas:
                continue
            more = [key]
            self._close(more, dep_required)
            more = [k for k in more if k not in keys and k not in extra]
            if len(extra) + len(more) > room:
                continue
            if any(self._forbidden(k, members, names) is not None for k in more):
                continue
            extra += more
        if len(extra) < need:
            extra += self._fresh_keys(
                need - len(extra), keys + extra, members, names, patterns, depth
            )
            if len(extra) < need:
                closed = self._closed_keys(members)
                if closed is not None:
                    allowed = [k for k in closed if self._forbidden(k, members, names) is None]
                    if len(allowed) < merged.min_props:
                        raise _NoValue(
                            f"minProperties {_n(merged.min_props)} "
                            f"{_where(merged.min_props_path)} but only {len(allowed)} "
                            "properties are allowed",
                            True,
                        )
                raise _NoValue("not enough properties could be added for minProperties", False)
        elif not declared and not self.lean and depth <= 1 and room > 0 and self.rng.random() < 0.5:
            extra += self._fresh_keys(1, keys, members, names, patterns, depth)
        chosen = set(keys) | set(extra)
        ordered = [k for k in declared if k in chosen]
        ordered += [k for k in keys + extra if k not in declared]
        out: dict[str, Any] = {}
        for key in ordered:
            value_subs = self._value_subs(key, members)
            try:
                out[key] = self.gen(value_subs, [], depth + 1)
            except _NoValue as error:
                if key in keys:
                    raise _NoValue(f"property {key!r}: {error.reason}", error.proof) from None
                if len(out) + (len(ordered) - ordered.index(key) - 1) < merged.min_props:
                    raise _NoValue(error.reason, False) from None
        return out

    @staticmethod
    def _close(keys: list[str], dep_required: dict[str, list[str]]) -> None:
        index = 0
        while index < len(keys) and len(keys) < 10_000:
            for dep in dep_required.get(keys[index], []):
                if dep not in keys:
                    keys.append(dep)
            index += 1

    def _value_subs(self, key: str, members: list[_Sub]) -> list[_Sub]:
        out: list[_Sub] = []
        covered = False
        for sub in members:
            node = sub.node
            matched = False
            props = node.get("properties")
            if isinstance(props, dict) and key in props:
                out.append(self.child(sub, props[key], f"properties/{_escape(key)}"))
                matched = True
            pats = node.get("patternProperties")
            if isinstance(pats, dict):
                for pattern, schema in pats.items():
                    if isinstance(pattern, str) and self.search(pattern, key):
                        out.append(self.child(sub, schema, f"patternProperties/{_escape(pattern)}"))
                        matched = True
            if not matched and "additionalProperties" in node:
                out.append(self.child(sub, node["additionalProperties"], "additionalProperties"))
                matched = True
            covered = covered or matched
        if not covered:
            for sub in members:
                if "unevaluatedProperties" in sub.node and sub.draft >= 2019:
                    out.append(
                        self.child(sub, sub.node["unevaluatedProperties"], "unevaluatedProperties")
                    )
        return out

    def _forbidden(
        self, key: str, members: list[_Sub], names: list[_Sub]
    ) -> tuple[str, bool] | None:
        """Why the object may not hold `key`, and whether that is certain."""
        for sub in self._value_subs(key, members):
            if sub.node is False:
                last = sub.path.rsplit("/", 1)[-1]
                if last == "additionalProperties":
                    return (
                        f"is not allowed by additionalProperties: false {_where(sub.path)}",
                        True,
                    )
                if last == "unevaluatedProperties":
                    # Other passing branches may evaluate it: not a proof.
                    return (
                        f"is not evaluated and unevaluatedProperties {_where(sub.path)} is false",
                        False,
                    )
                return (f"is forbidden by the false schema {_where(sub.path)}", True)
        for sub in names:
            if self.check(key, sub) is False:
                return (f"fails propertyNames {_where(sub.path)}", True)
        return None

    def _closed_keys(self, members: list[_Sub]) -> list[str] | None:
        """The only property names allowed, when `additionalProperties: false` fixes them."""
        allowed: list[str] | None = None
        for sub in members:
            node = sub.node
            if node.get("additionalProperties") is False and not node.get("patternProperties"):
                props = node.get("properties")
                names = [k for k in props if isinstance(k, str)] if isinstance(props, dict) else []
                allowed = names if allowed is None else [k for k in allowed if k in names]
        return allowed

    def _fresh_keys(
        self,
        count: int,
        used: list[str],
        members: list[_Sub],
        names: list[_Sub],
        patterns: list[str],
        depth: int,
    ) -> list[str]:
        out: list[str] = []
        candidates: list[str] = []
        for pattern in patterns:
            for attempt in range(3):
                text = self._pattern_string(pattern, 1, 40, attempt)
                if text is not None and self.search(pattern, text):
                    candidates.append(text)
        if names:
            for _ in range(max(3, count * 2)):
                try:
                    key = self.gen([*names, _STRING_SUB], [], depth + 1)
                except _NoValue:
                    break
                if isinstance(key, str):
                    candidates.append(key)
        pool = list(_KEYS)
        self.rng.shuffle(pool)
        candidates += pool
        candidates += [f"{self.rng.choice(_KEYS)}{n}" for n in range(2, 2 + count + 4)]
        for key in candidates:
            if len(out) >= count:
                break
            if key in used or key in out:
                continue
            if self._forbidden(key, members, names) is not None:
                continue
            out.append(key)
        return out

    # -- the validator: True, False, or None when it cannot tell

    def check_all(self, value: Any, subs: list[_Sub], negs: list[_Sub]) -> bool | None:
        unknown = False
        for sub in subs:
            verdict = self.check(value, sub)
            if verdict is False:
                return False
            unknown = unknown or verdict is None
        for sub in negs:
            verdict = self.check(value, sub)
            if verdict is True:
                return False
            unknown = unknown or verdict is None
        return None if unknown else True

    def check(self, value: Any, sub: _Sub) -> bool | None:
        node = sub.node
        if node is True:
            return True
        if node is False:
            return False
        if not isinstance(node, dict):
            return None
        self.spend()
        key = (id(node), sub.base, id(value))
        if key in self.active or self.check_depth > _CHECK_DEPTH:
            return None
        self.active.add(key)
        self.check_depth += 1
        try:
            return self._check_node(value, node, sub)
        except (_NoValue, RecursionError):
            return None
        finally:
            self.check_depth -= 1
            self.active.discard(key)

    def _check_node(self, value: Any, node: dict[str, Any], sub: _Sub) -> bool | None:
        draft = sub.draft
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = self.resolve(ref, sub)
            verdict = self.check(value, target)
            if draft <= 7 or verdict is False:
                return verdict
            unknown = verdict is None
        else:
            unknown = False
        dynamic = node.get("$dynamicRef")
        if isinstance(dynamic, str) and draft >= 2020:
            verdict = self.check(value, self.resolve_dynamic(dynamic, sub))
            if verdict is False:
                return False
            unknown = unknown or verdict is None
        if "$recursiveRef" in node:
            unknown = True
        for verdict in self._keyword_verdicts(value, node, sub):
            if verdict is False:
                return False
            unknown = unknown or verdict is None
        return None if unknown else True

    def _keyword_verdicts(
        self, value: Any, node: dict[str, Any], sub: _Sub
    ) -> Iterator[bool | None]:
        draft = sub.draft
        if "type" in node:
            types = node["type"]
            names = [types] if isinstance(types, str) else types
            if isinstance(names, list) and all(
                isinstance(n, str) and n in _TYPE_KINDS for n in names
            ):
                yield any(_type_ok(value, n, draft) for n in names)
            else:
                yield None
        if "enum" in node:
            enum = node["enum"]
            yield _canon(value) in self.enum_keys(enum) if isinstance(enum, list) else None
        if "const" in node and draft >= 6:
            yield _equal(value, node["const"])
        if _is_number(value):
            yield from self._number_verdicts(value, node, draft)
        elif isinstance(value, str):
            yield from self._string_verdicts(value, node, draft)
        elif isinstance(value, list):
            yield from self._array_verdicts(value, node, sub)
        elif isinstance(value, dict):
            yield from self._object_verdicts(value, node, sub)
        yield from self._applicator_verdicts(value, node, sub)

    def _number_verdicts(
        self, value: Any, node: dict[str, Any], draft: int
    ) -> Iterator[bool | None]:
        for keyword in ("minimum", "maximum"):
            bound = node.get(keyword)
            if keyword not in node:
                continue
            if not _is_number(bound):
                yield None
                continue
            exclusive = draft <= 4 and node.get("exclusive" + keyword.capitalize()) is True
            if keyword == "minimum":
                yield value > bound if exclusive else value >= bound
            else:
                yield value < bound if exclusive else value <= bound
        if draft >= 6:
            for keyword in ("exclusiveMinimum", "exclusiveMaximum"):
                if keyword not in node:
                    continue
                bound = node[keyword]
                if not _is_number(bound):
                    yield None
                    continue
                yield value > bound if keyword == "exclusiveMinimum" else value < bound
        if "multipleOf" in node:
            yield _multiple_ok(value, node["multipleOf"])

    def _string_verdicts(
        self, value: str, node: dict[str, Any], draft: int
    ) -> Iterator[bool | None]:
        for keyword in ("minLength", "maxLength"):
            if keyword in node:
                count = _count(node[keyword])
                if count is None:
                    yield None
                else:
                    yield len(value) >= count if keyword == "minLength" else len(value) <= count
        if "pattern" in node:
            pattern = node["pattern"]
            yield self.search(pattern, value) if isinstance(pattern, str) else None
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            yield None  # the caller's format checker decides
        if draft <= 7 and ("contentEncoding" in node or "contentMediaType" in node):
            yield _content_ok(value, node.get("contentEncoding"), node.get("contentMediaType"))

    def _array_verdicts(
        self, value: list[Any], node: dict[str, Any], sub: _Sub
    ) -> Iterator[bool | None]:
        draft = sub.draft
        count = _count(node.get("minItems"))
        if count is not None:
            yield len(value) >= count
        count = _count(node.get("maxItems"))
        if count is not None:
            yield len(value) <= count
        if node.get("uniqueItems") is True:
            try:
                keys = [_canon(item) for item in value]
                yield len(set(keys)) == len(keys)
            except TypeError:
                yield None
        items = node.get("items")
        prefix: Any = node.get("prefixItems") if draft >= 2020 else None
        rest: Any = None
        rest_key = ""
        if isinstance(items, list):
            prefix, rest, rest_key = items, node.get("additionalItems"), "additionalItems"
            if "additionalItems" not in node:
                rest = None
        elif "items" in node:
            rest, rest_key = items, "items"
        covered = 0
        if isinstance(prefix, list):
            for index, (item, schema) in enumerate(zip(value, prefix, strict=False)):
                yield self.check(item, self.child(sub, schema, f"prefixItems/{index}"))
            covered = min(len(prefix), len(value))
        if rest is not None or (rest_key and rest_key in node):
            child = self.child(sub, rest, rest_key)
            for item in value[covered:]:
                yield self.check(item, child)
            covered = len(value)
        if "contains" in node and draft >= 6:
            child = self.child(sub, node["contains"], "contains")
            least = _count(node.get("minContains")) if draft >= 2019 else None
            most = _count(node.get("maxContains")) if draft >= 2019 else None
            least = 1 if least is None else least
            sure = maybe = 0
            for item in value:
                verdict = self.check(item, child)
                sure += verdict is True
                maybe += verdict is None
            if sure + maybe < least or (most is not None and sure > most):
                yield False
            elif sure >= least and (most is None or sure + maybe <= most):
                yield True
            else:
                yield None
        if "unevaluatedItems" in node and draft >= 2019 and node["unevaluatedItems"] is not True:
            yield None if covered < len(value) else True

    def _object_verdicts(
        self, value: dict[str, Any], node: dict[str, Any], sub: _Sub
    ) -> Iterator[bool | None]:
        draft = sub.draft
        count = _count(node.get("minProperties"))
        if count is not None:
            yield len(value) >= count
        count = _count(node.get("maxProperties"))
        if count is not None:
            yield len(value) <= count
        required = node.get("required")
        if isinstance(required, list):
            yield all(key in value for key in required if isinstance(key, str))
        props = node.get("properties")
        pats = node.get("patternProperties")
        evaluated: set[str] = set()
        if isinstance(props, dict):
            for key, schema in props.items():
                if key in value:
                    evaluated.add(key)
                    yield self.check(value[key], self.child(sub, schema, f"properties/{key}"))
        if isinstance(pats, dict):
            for pattern, schema in pats.items():
                if not isinstance(pattern, str):
                    continue
                for key in value:
                    found = self.search(pattern, key)
                    if found is None:
                        yield None
                    elif found:
                        evaluated.add(key)
                        child = self.child(sub, schema, f"patternProperties/{pattern}")
                        yield self.check(value[key], child)
        if "additionalProperties" in node:
            child = self.child(sub, node["additionalProperties"], "additionalProperties")
            for key in value:
                if key not in evaluated:
                    yield self.check(value[key], child)
            evaluated = set(value)
        if "propertyNames" in node:
            child = self.child(sub, node["propertyNames"], "propertyNames")
            for key in value:
                yield self.check(key, child)
        for keyword in ("dependencies", "dependentRequired", "dependentSchemas"):
            deps = node.get(keyword)
            if not isinstance(deps, dict) or (keyword != "dependencies" and draft < 2019):
                continue
            for key, dep in deps.items():
                if key not in value:
                    continue
                if isinstance(dep, list) and keyword != "dependentSchemas":
                    yield all(d in value for d in dep if isinstance(d, str))
                elif isinstance(dep, dict | bool) and keyword != "dependentRequired":
                    yield self.check(value, self.child(sub, dep, f"{keyword}/{key}"))
        if (
            "unevaluatedProperties" in node
            and draft >= 2019
            and node["unevaluatedProperties"] is not True
        ):
            yield None if any(key not in evaluated for key in value) else True

    def _applicator_verdicts(
        self, value: Any, node: dict[str, Any], sub: _Sub
    ) -> Iterator[bool | None]:
        all_of = node.get("allOf")
        if isinstance(all_of, list):
            for index, schema in enumerate(all_of):
                yield self.check(value, self.child(sub, schema, f"allOf/{index}"))
        any_of = node.get("anyOf")
        if isinstance(any_of, list):
            verdicts = [
                self.check(value, self.child(sub, s, f"anyOf/{i}")) for i, s in enumerate(any_of)
            ]
            yield True if True in verdicts else (None if None in verdicts else False)
        one_of = node.get("oneOf")
        if isinstance(one_of, list):
            verdicts = [
                self.check(value, self.child(sub, s, f"oneOf/{i}")) for i, s in enumerate(one_of)
            ]
            sure, maybe = verdicts.count(True), verdicts.count(None)
            if sure > 1 or sure + maybe == 0:
                yield False
            elif sure == 1 and maybe == 0:
                yield True
            else:
                yield None
        if "not" in node:
            verdict = self.check(value, self.child(sub, node["not"], "not"))
            yield None if verdict is None else not verdict
        if "if" in node and sub.draft >= 7:
            condition = self.check(value, self.child(sub, node["if"], "if"))
            then = self.child(sub, node["then"], "then") if "then" in node else None
            otherwise = self.child(sub, node["else"], "else") if "else" in node else None
            if condition is True:
                yield True if then is None else self.check(value, then)
            elif condition is False:
                yield True if otherwise is None else self.check(value, otherwise)
            else:
                a = True if then is None else self.check(value, then)
                b = True if otherwise is None else self.check(value, otherwise)
                yield a if a == b else None


_EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "maxProperties": 0}
_STRING_SUB = _Sub({"type": "string", "maxLength": 40}, _DEFAULT_BASE, "", 2020, ())


def _reasons(reasons: list[str]) -> str:
    unique: list[str] = []
    for reason in reasons:
        if reason not in unique:
            unique.append(reason)
    text = "; ".join(unique[:4])
    return text if len(text) <= 600 else text[:597] + "..."


def _kind_name(kind: str) -> str:
    return {"int": "integer", "frac": "number"}.get(kind, kind)


def _hint_group(name: str) -> str:
    return "number" if name in ("integer", "number", "fraction") else name


def _kinds_of_type(types: Any) -> set[str] | None:
    names = [types] if isinstance(types, str) else types
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    if not all(n in _TYPE_KINDS for n in names):
        return None
    return {kind for n in names for kind in _TYPE_KINDS[n]}


def _subschemas(node: dict[str, Any]) -> Iterator[Any]:
    for key in _ONE_SCHEMA:
        if key in node and not isinstance(node[key], list):
            yield node[key]
    for key in _SCHEMA_LISTS:
        value = node.get(key)
        if isinstance(value, list):
            yield from value
    for key in _SCHEMA_MAPS:
        value = node.get(key)
        if isinstance(value, dict):
            yield from value.values()


def _lattice(step: Fraction, merged: _Merged) -> tuple[int | None, int | None]:
    """The range of k for which k * step lies within the merged bounds."""
    low = high = None
    if merged.lo is not None:
        low = _ceil(merged.lo / step)
        if merged.lo_excl and low * step == merged.lo:
            low += 1
    if merged.hi is not None:
        high = _floor(merged.hi / step)
        if merged.hi_excl and high * step == merged.hi:
            high -= 1
    return low, high


def _to_number(exact: Fraction, prefer_int: bool) -> int | float | None:
    if exact.denominator == 1:
        number = exact.numerator
        if number.bit_length() > _MAX_DIGITS_BITS:
            return None
        if abs(number) > 2**63 and not prefer_int:
            as_float = float(number) if number.bit_length() < 1024 else math.inf
            if math.isfinite(as_float) and as_float == number:
                return as_float
        return number
    try:
        value = float(exact)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _content_ok(value: str, encoding: Any, media: Any) -> bool | None:
    import base64
    import binascii

    data: bytes = value.encode("utf-8", "surrogatepass")
    if encoding == "base64":
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
    if media == "application/json":
        try:
            json.loads(data)
        except (ValueError, RecursionError):
            return False
    return True


# -- regular expressions -------------------------------------------------------------------------

_PARSER: Any = importlib.import_module("re._parser")
_UNICODE_CLASSES = {
    "l": "A-Za-z",
    "letter": "A-Za-z",
    "alphabetic": "A-Za-z",
    "alpha": "A-Za-z",
    "lu": "A-Z",
    "uppercase_letter": "A-Z",
    "uppercase": "A-Z",
    "ll": "a-z",
    "lowercase_letter": "a-z",
    "lowercase": "a-z",
    "n": "0-9",
    "nd": "0-9",
    "number": "0-9",
    "decimal_number": "0-9",
    "digit": "0-9",
    "p": "!,.:;?",
    "punctuation": "!,.:;?",
    "z": " ",
    "zs": " ",
    "white_space": " ",
    "space_separator": " ",
}


class _RegexTooHard(Exception):
    pass


def _python_regex(pattern: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError, MemoryError):
        return None


def _unicode_class(name: str, negated: bool) -> str:
    key = name.split("=")[-1].lower()
    members = _UNICODE_CLASSES.get(key, "a-z")
    if negated:
        return "0-9 " if members != "0-9" else "A-Za-z"
    return members


def _ecma_to_python(pattern: str) -> str:
    """ECMA 262 syntax Python's `re` lacks, rewritten for generation: `\\p{..}`, `\\u{..}`,
    `\\cX`, `(?<name>`, `\\k<name>`, `[^]` and `[]`."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "pP" and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 3)
                if end > 0:
                    members = _unicode_class(pattern[i + 3 : end], e == "P")
                    out.append(members if in_class else f"[{members}]")
                    i = end + 1
                    continue
            if e == "u" and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 3)
                digits = pattern[i + 3 : end] if end > 0 else ""
                if digits and all(ch in "0123456789abcdefABCDEF" for ch in digits):
                    point = int(digits, 16)
                    if point <= 0x10FFFF:
                        out.append(f"\\U{point:08x}")
                        i = end + 1
                        continue
            if e == "c" and i + 2 < n and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
                out.append(f"\\x{ord(pattern[i + 2]) % 32:02x}")
                i += 3
                continue
            if e == "k" and pattern.startswith("<", i + 2):
                end = pattern.find(">", i + 3)
                if end > 0:
                    out.append(f"(?P={pattern[i + 3 : end]})")
                    i = end + 1
                    continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c in "[&~|" or (c == "-" and pattern.startswith("-", i + 1)):
                out.append("\\" + c)
                i += 1
                continue
            out.append(c)
            i += 1
            continue
        if c == "[":
            if pattern.startswith("[^]", i):
                out.append("[\\s\\S]")
                i += 3
                continue
            if pattern.startswith("[]", i):
                out.append("(?!)")
                i += 2
                continue
            in_class = True
            out.append(c)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):  # ECMA: "[]" inside cannot be literal
                out.append("\\]")
                i += 1
            i += 1
            continue
        if (
            c == "("
            and pattern.startswith("(?<", i)
            and not pattern.startswith(("(?<=", "(?<!"), i)
        ):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _min_length(items: Any, depth: int = 0) -> int:
    if depth > 200:
        raise _RegexTooHard
    total = 0
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN", "CATEGORY"):
            total += 1
        elif name == "BRANCH":
            total += min((_min_length(alt, depth + 1) for alt in av[1]), default=0)
        elif name == "SUBPATTERN":
            total += _min_length(av[3], depth + 1)
        elif name == "ATOMIC_GROUP":
            total += _min_length(av, depth + 1)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            total += av[0] * _min_length(av[2], depth + 1)
    return total


_FRIENDLY = _LETTERS + "0123456789" + _LETTERS.upper() + "-_ .,:;!?@#$%&*+=/()[]{}'\"~^`|<>\\"
_SPACES = " \t\n\r\f\v"


def _category_has(category: str, ch: str) -> bool:
    if category.endswith("DIGIT"):
        hit = "0" <= ch <= "9"
    elif category.endswith("WORD"):
        hit = ch.isascii() and (ch.isalnum() or ch == "_")
    elif category.endswith("SPACE"):
        hit = ch in _SPACES or ch in "\u00a0\u2028\u2029\ufeff"
    else:
        return False
    return not hit if "_NOT_" in category else hit


def _class_has(items: Any, ch: str) -> bool:
    negate = False
    hit = False
    point = ord(ch)
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            hit = hit or av == point
        elif name == "RANGE":
            hit = hit or av[0] <= point <= av[1]
        elif name == "CATEGORY":
            hit = hit or _category_has(str(av), ch)
    return hit != negate


class _RegexGen:
    """Walks a `re._parser` tree and writes a string it matches (search semantics)."""

    def __init__(self, run: _Run, mode: str, need: int) -> None:
        self.run = run
        self.limit = run.max_chars + 64  # longer output could never be used
        self.rng = run.rng
        self.mode = mode
        self.need = need
        self.groups: dict[int, str] = {}
        self.steps = 0

    def seq(self, items: Any) -> str:
        return "".join(self.node(op, av) for op, av in items)

    def node(self, op: Any, av: Any) -> str:
        self.steps += 1
        if self.steps > 5000:
            raise _RegexTooHard
        name = str(op)
        if name == "LITERAL":
            return chr(av)
        if name == "NOT_LITERAL":
            return self.pick(lambda ch: ord(ch) != av)
        if name == "ANY":
            return self.pick(lambda ch: ch != "\n")
        if name == "IN":
            return self.class_char(av)
        if name == "CATEGORY":
            return self.pick(lambda ch: _category_has(str(av), ch))
        if name == "BRANCH":
            return self.seq(self.choose(av[1]))
        if name == "SUBPATTERN":
            text = self.seq(av[3])
            if av[0]:
                self.groups[av[0]] = text
            return text
        if name == "ATOMIC_GROUP":
            return self.seq(av)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return self.repeat(av[0], av[1], av[2])
        if name == "AT" or name == "ASSERT_NOT":
            return ""
        if name == "ASSERT":
            if av[0] != 1:
                return ""
            saved = self.mode
            self.mode = "short"
            try:
                return self.seq(av[1])
            finally:
                self.mode = saved
        if name == "GROUPREF":
            return self.groups.get(av, "")
        if name == "GROUPREF_EXISTS":
            group, yes, no = av
            return self.seq(yes if group in self.groups else (no or []))
        raise _RegexTooHard

    def choose(self, alternatives: list[Any]) -> Any:
        if self.mode == "short":
            lengths = [_min_length(alt) for alt in alternatives]
            shortest = min(lengths)
            return self.rng.choice(
                [a for a, n in zip(alternatives, lengths, strict=True) if n == shortest]
            )
        return self.rng.choice(alternatives)

    def pick(self, allowed: Callable[[str], bool]) -> str:
        letters = list(_LETTERS)
        self.rng.shuffle(letters)
        for ch in letters:
            if allowed(ch):
                return ch
        for ch in _FRIENDLY + "é߀中\u00a0":
            if allowed(ch):
                return ch
        for point in range(0x80, 0x3000):
            if allowed(chr(point)):
                return chr(point)
        raise _RegexTooHard

    def class_char(self, items: Any) -> str:
        if any(str(op) == "NEGATE" for op, _ in items):
            return self.pick(lambda ch: _class_has(items, ch))
        options: list[tuple[str, Any]] = [(str(op), av) for op, av in items]
        letter_options = [
            o for o in options if o[0] == "RANGE" and o[1][0] <= 0x7A and o[1][1] >= 0x61
        ]
        if letter_options and self.rng.random() < 0.7:
            options = letter_options
        kind, av = self.rng.choice(options)
        if kind == "LITERAL":
            return chr(av)
        if kind == "RANGE":
            lo, hi = av
            if lo <= 0x61 and hi >= 0x7A:
                return self.rng.choice(_LETTERS)
            point = self.rng.randint(lo, min(hi, lo + 25))
            return chr(lo if 0xD800 <= point <= 0xDFFF else point)
        if kind == "CATEGORY":
            category = str(av)
            if category == "CATEGORY_DIGIT":
                return self.rng.choice("0123456789")
            if category == "CATEGORY_SPACE":
                return " "
            return self.pick(lambda ch: _category_has(category, ch))
        raise _RegexTooHard

    def repeat(self, lo: int, hi: int, body: Any) -> str:
        if lo > self.limit or lo * _min_length(body) > self.limit:
            raise _RegexTooHard
        unbounded = hi >= 65535
        top = lo + 64 if unbounded else hi
        if self.mode in ("short", "fill"):
            count = lo
        else:
            count = lo + self.rng.randint(0, min(top - lo, 3 if unbounded else 4))
        word = self.word_body(body)
        if word is not None:
            if self.mode == "natural":
                fits = [w for w in _WORDS if lo <= len(w) <= top]
                if fits and self.rng.random() < 0.8:
                    count = len(self.rng.choice(fits))
            if self.mode == "fill" and self.need > 0:
                grow = min(top - count, self.need)
                count += grow
                self.need -= grow
            return word(self.run._letters(count))
        parts = [self.seq(body) for _ in range(count)]
        if sum(len(part) for part in parts) > self.limit:
            raise _RegexTooHard
        while self.mode == "fill" and self.need > 0 and count < top:
            piece = self.seq(body)
            if not piece:
                break
            parts.append(piece)
            count += 1
            self.need -= len(piece)
        return "".join(parts)

    def word_body(self, body: Any) -> Callable[[str], str] | None:
        """When the repeated item is one character class that holds every lower-case (or
        upper-case) letter, a way to fill it with letters from words."""
        items = list(body)
        if len(items) != 1:
            return None
        name = str(items[0][0])
        if name == "ANY":
            return lambda text: text
        if name != "IN":
            return None
        av = items[0][1]
        if all(_class_has(av, ch) for ch in _LETTERS):
            return lambda text: text
        if all(_class_has(av, ch) for ch in _LETTERS.upper()):
            return lambda text: text.upper()
        return None


# -- formats -------------------------------------------------------------------------------------


def _format_string(fmt: str, rng: random.Random, lo: int, hi: int) -> str | None:
    """A string of format `fmt` with a length in lo..hi, or None."""
    if lo > hi:
        return None
    make = _FORMAT_MAKERS.get(fmt)
    if make is None:
        return None
    natural = make(rng, None)
    if natural is not None and lo <= len(natural) <= hi:
        return natural
    size = len(natural) if natural is not None else lo
    target = lo if size < lo else hi
    for length in (target, target + 1, target - 1, target + 2):
        if lo <= length <= hi:
            text = make(rng, length)
            if text is not None and len(text) == length:
                return text
    return None


def _fill(rng: random.Random, length: int) -> str:
    out = ""
    while len(out) < length:
        out += rng.choice(_WORDS)
    return out[: max(length, 0)]


def _digits(rng: random.Random, length: int) -> str:
    if length <= 0:
        return ""
    return str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(length - 1))


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2000, 2030):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _make_date(rng: random.Random, length: int | None) -> str | None:
    return _date(rng) if length in (None, 10) else None


def _make_time(rng: random.Random, length: int | None) -> str | None:
    clock = f"{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}:{rng.randint(0, 59):02d}"
    if length is None or length == 9:
        return clock + "Z"
    if length == 14:
        return clock + rng.choice(("+02:00", "-05:00", "+09:30"))
    if length >= 11:
        return clock + "." + "".join(rng.choice("0123456789") for _ in range(length - 10)) + "Z"
    return None


def _make_date_time(rng: random.Random, length: int | None) -> str | None:
    time = _make_time(rng, None if length is None else length - 11)
    return None if time is None else f"{_date(rng)}T{time}"


def _make_duration(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return rng.choice(("P3D", "PT15M", "P1Y2M", "PT2H30M", "P1DT12H", "P2W"))
    if length < 3:
        return None
    return "P" + _digits(rng, length - 2) + rng.choice("DWMY")


def _labels(rng: random.Random, length: int) -> str:
    """A dotted host name of exactly `length` characters (labels of at most 63 letters)."""
    count = -(-(length + 1) // 64)
    letters = length - (count - 1)
    sizes = [letters // count + (1 if i < letters % count else 0) for i in range(count)]
    return ".".join(_fill(rng, size) for size in sizes)


def _make_hostname(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"{rng.choice(_WORDS)}.example.com"
    if length < 1 or length > 253:
        return None
    if length <= 4:
        return _fill(rng, length)
    return _labels(rng, length - 4) + "." + rng.choice(("com", "org", "net"))


def _make_email(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"{rng.choice(_WORDS)}@example.com"
    if length < 3 or length > 254:
        return None
    domain = min(length - 2, max(11, length - 1 - 64))
    local = length - 1 - domain
    if local > 64:
        return None
    host = _make_hostname(rng, domain) if domain != 11 else "example.com"
    return None if host is None else f"{_fill(rng, local)}@{host}"


def _make_ipv4(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return rng.choice((f"192.168.{rng.randint(0, 9)}.{rng.randint(10, 99)}", "10.0.0.1"))
    if not 7 <= length <= 15:
        return None
    digits = [1, 1, 1, 1]
    spare = length - 7
    for index in range(4):
        grow = min(2, spare)
        digits[index] += grow
        spare -= grow
    pick = {1: (1, 9), 2: (10, 99), 3: (100, 255)}
    return ".".join(str(rng.randint(*pick[d])) for d in digits)


def _make_ipv6(rng: random.Random, length: int | None) -> str | None:
    def group(size: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(size - 1)) + "1"

    if length is None:
        return f"2001:db8::{rng.randint(1, 99)}"
    if 3 <= length <= 6:
        return "::" + group(length - 2)
    if 7 <= length <= 10:
        return "fe80::" + group(length - 6)
    if 11 <= length <= 14:
        return "2001:db8::" + group(length - 10)
    if 15 <= length <= 39:
        sizes = [1] * 8
        spare = length - 15
        for index in range(8):
            grow = min(3, spare)
            sizes[index] += grow
            spare -= grow
        return ":".join(group(size) for size in sizes)
    return None


def _path(rng: random.Random, length: int) -> str:
    """A URI path of exactly `length` characters (at least 1), "/" then words."""
    return "/" + _fill(rng, length - 1)


def _make_uri(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"https://example.com/{rng.choice(_WORDS)}"
    if length >= 20:
        return "https://example.com" + _path(rng, length - 19)
    if length >= 5:
        return "urn:" + _fill(rng, length - 4)
    if length >= 3:
        return "x:" + _fill(rng, length - 2)
    return None


def _make_uri_reference(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return rng.choice(
            (f"/docs/{rng.choice(_WORDS)}", f"https://example.com/{rng.choice(_WORDS)}")
        )
    if length == 0:
        return ""
    return _path(rng, length)


def _make_uri_template(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return "https://example.com/users/{id}"
    if length >= 7:
        return _path(rng, length - 5) + "/{id}"
    if length >= 3:
        return "{" + _fill(rng, length - 2) + "}"
    return None


def _make_uuid(rng: random.Random, length: int | None) -> str | None:
    if length not in (None, 36):
        return None
    hexes = f"{rng.getrandbits(128):032x}"
    variant = "89ab"[rng.randint(0, 3)]
    return f"{hexes[:8]}-{hexes[8:12]}-4{hexes[13:16]}-{variant}{hexes[17:20]}-{hexes[20:]}"


def _make_json_pointer(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"/{rng.choice(_WORDS)}/0"
    if length == 0:
        return ""
    return _path(rng, length)


def _make_relative_json_pointer(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"1/{rng.choice(_WORDS)}"
    if length == 1:
        return "0"
    if length == 2:
        return "0#"
    if length >= 3:
        return "1/" + _fill(rng, length - 2)
    return None


def _make_regex(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return "^[a-z]+$"
    if length <= 0:
        return ""
    if length <= 2:
        return _fill(rng, length)
    return "^" + _fill(rng, length - 2) + "$"


_FORMAT_MAKERS: dict[str, Callable[[random.Random, int | None], str | None]] = {
    "date": _make_date,
    "time": _make_time,
    "date-time": _make_date_time,
    "duration": _make_duration,
    "email": _make_email,
    "idn-email": _make_email,
    "hostname": _make_hostname,
    "idn-hostname": _make_hostname,
    "ipv4": _make_ipv4,
    "ipv6": _make_ipv6,
    "uri": _make_uri,
    "iri": _make_uri,
    "uri-reference": _make_uri_reference,
    "iri-reference": _make_uri_reference,
    "uri-template": _make_uri_template,
    "uuid": _make_uuid,
    "json-pointer": _make_json_pointer,
    "relative-json-pointer": _make_relative_json_pointer,
    "regex": _make_regex,
}
