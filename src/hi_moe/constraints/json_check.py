"""Checking a JSON output against its schema: RFC 8259 JSON, the whole JSON Schema.

`parse` reads text as strict JSON: duplicate keys, non-finite numbers (`NaN`, `Infinity`,
`1e400`), lone surrogates and anything else RFC 8259 forbids are errors. One fault alone is
repaired: raw control characters inside strings (XGrammar's JSON grammar, which vLLM uses, lets
them through under `maxLength`). The value is then unambiguous, and the caller gets it back with
canonical text (`canonical`) to return instead of the broken text.

`validator` builds the checker for a schema: its own draft (`$schema`, 2020-12 by default),
every `format` asserted (`hi_moe.constraints.formats`), `pattern` and `patternProperties` with
ECMA 262 semantics (the `regress` engine, as JSON Schema specifies, not Python's `re`), the
draft-7 `dependencies` keyword still honoured under 2019-09 and 2020-12 (real schemas mix
drafts), and draft-7 `contentEncoding`/`contentMediaType` asserted. A schema it cannot check
(malformed, a remote `$ref`, a pattern no engine parses) is refused as `InvalidConstraint`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hi_moe.errors import InvalidConstraint

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from hi_moe.types import JsonSchema

__all__ = ["NotJson", "Parsed", "first_error", "parse", "validator"]

_CONTROL_CHARACTER = "Invalid control character"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJson(ValueError):
    """The text is not RFC 8259 JSON; the message says why."""


@dataclass(frozen=True)
class Parsed:
    value: Any
    canonical: str | None = None
    """Set when the text was repaired (raw control characters in strings): the value written
    as compact JSON, which the caller returns instead of the text it was given."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise NotJson(f"duplicate key {key[:80]!r}")
        found[key] = value
    return found


def _number(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise NotJson(f"number {text[:40]} is out of range (it would be infinite)")
    return value


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def _load(text: str, *, strict: bool) -> Any:
    return json.loads(
        text,
        strict=strict,
        object_pairs_hook=_pairs,
        parse_float=_number,
        parse_constant=_constant,
    )


def parse(text: str) -> Parsed:
    """The JSON value of `text`, strictly; `NotJson` says what is wrong otherwise."""
    repaired = False
    try:
        try:
            value = _load(text, strict=True)
        except json.JSONDecodeError as error:
            if not error.msg.startswith(_CONTROL_CHARACTER):
                raise
            value = _load(text, strict=False)  # any other fault still raises
            repaired = True
    except NotJson:
        raise
    except RecursionError:
        raise NotJson("nested too deeply to read") from None
    except ValueError as error:  # JSONDecodeError, or an integer past Python's digit limit
        raise NotJson(str(error)) from None
    if _has_lone_surrogate(value):
        raise NotJson("a string holds an unpaired surrogate (\\ud800-\\udfff)")
    if not repaired:
        return Parsed(value)
    canonical = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Parsed(value, canonical)


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# -- the validator ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def ecma_regex(pattern: str) -> Any:
    """A compiled ECMA 262 regex: Unicode mode as JSON Schema asks, else the legacy grammar
    (real schemas use escapes such as `\\-` outside classes, which Unicode mode forbids)."""
    import regress

    try:
        return regress.Regex(pattern, "u")
    except regress.RegressError:
        pass
    try:
        return regress.Regex(pattern)
    except regress.RegressError as error:
        raise InvalidConstraint("json_schema", f"pattern {pattern[:80]!r}: {error}") from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and ecma_regex(pattern).find(instance) is None:
        yield ValidationError(f"{instance[:80]!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = ecma_regex(pattern)
        for key, value in instance.items():
            if regex.find(key) is not None:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """jsonschema's own, with `patternProperties` matched the ECMA way."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = [ecma_regex(p) for p in schema.get("patternProperties", {})]
    extras = [
        key
        for key in instance
        if key not in declared and not any(r.find(key) is not None for r in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        listed = ", ".join(repr(extra) for extra in sorted(extras)[:5])
        yield ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


def _content(validator: Any, _value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """Draft 7 lets a validator assert string content; fail closed and do."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string"):
        return
    data: bytes | None = instance.encode("utf-8", "surrogatepass")
    if schema.get("contentEncoding") == "base64":
        try:
            data = base64.b64decode(instance, validate=True)
        except (binascii.Error, ValueError):
            yield ValidationError(f"{instance[:60]!r} is not base64")
            return
    if schema.get("contentMediaType") == "application/json" and data is not None:
        try:
            json.loads(data)
        except ValueError:
            yield ValidationError("the content is not a JSON document")


@functools.cache
def _checker_for(base: type[Any]) -> type[Any]:
    from jsonschema import Draft7Validator, validators

    keywords: dict[str, Any] = {"pattern": _pattern}
    if "patternProperties" in base.VALIDATORS:
        keywords["patternProperties"] = _pattern_properties
        keywords["additionalProperties"] = _additional_properties
    if "dependentRequired" in base.VALIDATORS and "dependencies" not in base.VALIDATORS:
        keywords["dependencies"] = Draft7Validator.VALIDATORS["dependencies"]
    if "dependentRequired" not in base.VALIDATORS:  # draft 7 and earlier
        keywords["contentEncoding"] = _content
        keywords["contentMediaType"] = lambda v, value, instance, schema: (
            iter(()) if "contentEncoding" in schema else _content(v, value, instance, schema)
        )
    extended: type[Any] = validators.extend(base, keywords)
    return extended


def _remote_refs(schema: Any) -> Iterator[str]:
    """`$ref`s to another document: not one this schema defines (with `$id`, resolved against
    the base URI where it stands), nor a metaschema jsonschema ships."""
    from urllib.parse import urldefrag, urljoin

    from jsonschema_specifications import REGISTRY

    known = {uri.rstrip("#") for uri in REGISTRY}
    ids: set[str] = set()
    refs: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        item, base = stack.pop()
        if isinstance(item, dict):
            declared = item.get("$id", item.get("id"))
            if isinstance(declared, str):
                base = urljoin(base, declared)
                ids.add(urldefrag(base).url)
            if isinstance(item.get("$ref"), str):
                refs.append((item["$ref"], base))
            stack.extend((v, base) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, base) for v in item)
    for ref, base in refs:
        document = urldefrag(urljoin(base, ref)).url
        if document and document not in ids and document not in known:
            yield ref


@functools.lru_cache(maxsize=512)
def validator(constraint: JsonSchema) -> Validator:
    """The checker for a schema, built once per schema content. `InvalidConstraint` when the
    schema is malformed or cannot be checked here."""
    from jsonschema import Draft202012Validator, SchemaError
    from jsonschema.validators import validator_for

    from hi_moe.constraints.formats import format_checker

    schema = constraint.schema
    base = validator_for(schema, default=Draft202012Validator)
    try:
        base.check_schema(schema, format_checker=_schema_formats())
    except SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        raise InvalidConstraint(
            "json_schema", f"{error.message} (at /{where})" if where else error.message
        ) from None
    except RecursionError:
        raise InvalidConstraint("json_schema", "nested too deeply to check") from None
    for ref in _remote_refs(schema):
        raise InvalidConstraint(
            "json_schema", f"$ref {ref[:120]!r} points to another document, which is not fetched"
        )
    for pattern in _patterns(schema):
        ecma_regex(pattern)
    built: Validator = _checker_for(base)(schema, format_checker=format_checker())
    return built


@functools.cache
def _schema_formats() -> Any:
    """The formats a schema itself is checked with: all but `regex`, which `ecma_regex`
    judges (Unicode mode, then the legacy grammar real schemas rely on)."""
    from jsonschema import FormatChecker

    from hi_moe.constraints.formats import format_checker

    checker = FormatChecker(formats=())
    checker.checkers = {k: v for k, v in format_checker().checkers.items() if k != "regex"}
    return checker


def _patterns(schema: Any) -> Iterator[str]:
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("pattern"), str):
                yield item["pattern"]
            if isinstance(item.get("patternProperties"), dict):
                yield from item["patternProperties"]
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(item)


def first_error(constraint: JsonSchema, value: Any) -> str | None:
    """Why `value` breaks the schema (the most relevant error, with where), or None."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    checker = validator(constraint)
    try:
        worst = best_match(checker.iter_errors(value))
    except RecursionError:
        return "nested too deeply to check"
    except Unresolvable as error:
        raise InvalidConstraint("json_schema", f"unresolvable $ref: {error}") from None
    if worst is None:
        return None
    where = "/".join(str(part) for part in worst.absolute_path)
    return f"{worst.message} (at /{where})"
