"""Fit a JSON Schema to OpenAI's strict structured-output mode, and undo what that costs.

Strict mode enforces a subset of JSON Schema: every object closed (`additionalProperties:
false`) with every property required, the root an object, and no `allOf`, `not`,
`if`/`then`/`else`, `patternProperties` and the like. `to_strict` rewrites a schema into that
subset:
- an optional property becomes required but may be null; `drop_optional_nulls` removes those
  nulls from the answer again, so it matches the schema the caller wrote;
- validation keywords strict mode cannot enforce (string lengths, `uniqueItems`, property
  counts) are left out of what is sent: the full schema is still checked locally, so an answer
  that breaks them raises `ConstraintViolation` instead of passing;
- what cannot be expressed at all raises `InvalidConstraint` before anything is sent.
"""

from __future__ import annotations

import copy
from typing import Any

from hi_moe import constraints
from hi_moe.constraints import ConstraintReport
from hi_moe.errors import InvalidConstraint
from hi_moe.types import Constraint, JsonSchema

__all__ = ["drop_optional_nulls", "strict_gaps", "to_strict", "validate_for_openai"]

_REFUSED = {
    "allOf": "allOf",
    "not": "not",
    "if": "if/then/else",
    "then": "if/then/else",
    "else": "if/then/else",
    "dependentRequired": "dependentRequired",
    "dependentSchemas": "dependentSchemas",
    "patternProperties": "patternProperties",
    "propertyNames": "propertyNames",
    "unevaluatedProperties": "unevaluatedProperties",
    "unevaluatedItems": "unevaluatedItems",
    "contains": "contains",
}
# Enforced locally after the answer arrives, not by OpenAI.
_CHECKED_LOCALLY = {
    "minLength", "maxLength", "uniqueItems", "minProperties", "maxProperties",
    "minContains", "maxContains", "contentEncoding", "contentMediaType", "default", "examples",
}  # fmt: skip
# The string formats strict mode accepts; others are left out of what is sent (and still
# checked locally), since OpenAI refuses a schema naming a format it does not know.
_OPENAI_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6",
                   "uuid"}  # fmt: skip
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")


def _refuse(detail: str, path: str) -> InvalidConstraint:
    return InvalidConstraint(
        "json_schema", f"OpenAI strict mode cannot express {detail} (at {path or '/'})"
    )


def _allows_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return schema is True
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in schema.get("enum", [0]) or ("const" in schema and schema["const"] is None):
        return True
    return any(_allows_null(branch) for branch in schema.get("anyOf", []))


def _strict(node: Any, path: str, gaps: list[str]) -> Any:
    if not isinstance(node, dict):
        raise _refuse("a boolean schema", path)
    for keyword, name in _REFUSED.items():
        if keyword in node:
            raise _refuse(name, path)
    out = {key: value for key, value in node.items() if key not in _CHECKED_LOCALLY}
    gaps += [f"{key} at {path or '/'}" for key in node if key in _CHECKED_LOCALLY]
    if "format" in out and out["format"] not in _OPENAI_FORMATS:
        gaps.append(f"format {out.pop('format')!r} at {path or '/'}")
    if "oneOf" in out:  # exclusive-or is checked locally; anyOf is what strict mode offers
        out["anyOf"] = out.pop("oneOf")
        gaps.append(f"oneOf's exclusivity at {path or '/'}")
    for key in _SUBSCHEMA_MAPS:
        if key in out:
            out[key] = {
                name: _strict(sub, f"{path}/{key}/{name}", gaps) for name, sub in out[key].items()
            }
    for key in _SUBSCHEMA_LISTS:
        if key in out:
            out[key] = [_strict(sub, f"{path}/{key}/{i}", gaps) for i, sub in enumerate(out[key])]
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"], f"{path}/items", gaps)
    is_object = out.get("type") == "object" or "properties" in out
    if is_object:
        extra = out.get("additionalProperties", False)
        if extra is not False:
            raise _refuse("additionalProperties other than false", path)
        out["additionalProperties"] = False
        properties: dict[str, Any] = out.setdefault("properties", {})
        required = set(out.get("required", []))
        for name, sub in properties.items():
            if name not in required and not _allows_null(sub):
                properties[name] = {"anyOf": [sub, {"type": "null"}]}
        out["required"] = list(properties)
    return out


def to_strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema strict mode will accept, or `InvalidConstraint` saying why there is none."""
    return _convert(schema)[0]


def strict_gaps(schema: dict[str, Any]) -> tuple[str, ...]:
    """What `to_strict` leaves out, keyword and place: OpenAI does not enforce these, the
    local check does (an answer breaking one is retried)."""
    return _convert(schema)[1]


def _convert(schema: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    root_type = schema.get("type")
    if root_type != "object" and not ("properties" in schema and root_type is None):
        raise _refuse("a root that is not an object (wrap the value in an object)", "")
    gaps: list[str] = []
    return dict(_strict(copy.deepcopy(schema), "", gaps)), tuple(gaps)


def drop_optional_nulls(value: Any, schema: dict[str, Any]) -> Any:
    """Remove the nulls strict mode put in optional properties the caller's schema does not
    allow to be null, so the answer validates against that schema."""
    return _drop(value, schema, schema, depth=0)


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 32:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        node: Any = root
        for part in [p for p in ref[1:].split("/") if p]:
            node = (
                node.get(part.replace("~1", "/").replace("~0", "~"))
                if isinstance(node, dict)
                else None
            )
        schema, seen = node, seen + 1
    return schema


def _drop(value: Any, schema: Any, root: dict[str, Any], depth: int) -> Any:
    schema = _resolve(schema, root)
    if depth > 64 or not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        out = {}
        for key, item in value.items():
            sub = properties.get(key)
            if (
                item is None
                and key not in required
                and sub is not None
                and not _allows_null(_resolve(sub, root))
            ):
                continue
            out[key] = _drop(item, sub, root, depth + 1) if sub is not None else item
        for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
            resolved = _resolve(branch, root)
            if isinstance(resolved, dict) and "properties" in resolved:
                return _drop(out, resolved, root, depth + 1)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        prefix = schema.get("prefixItems", [])
        return [
            _drop(item, prefix[i] if i < len(prefix) else items, root, depth + 1)
            for i, item in enumerate(value)
        ]
    return value


def validate_for_openai(constraint: Constraint) -> ConstraintReport:
    """OpenAI's question: is the schema valid and can it be made strict (no XGrammar needed).
    The report lists what strict mode leaves to the local check."""
    constraints.validate_local(constraint)
    gaps: tuple[str, ...] = ()
    if isinstance(constraint, JsonSchema) and constraint.strict:
        gaps = strict_gaps(constraint.schema)  # refuses what strict mode cannot express
    return ConstraintReport(constraint.kind, "openai", gaps)
