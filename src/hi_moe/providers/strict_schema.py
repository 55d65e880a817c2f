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

from hi_moe.errors import InvalidConstraint

__all__ = ["drop_optional_nulls", "to_strict"]

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


def _strict(node: Any, path: str) -> Any:
    if not isinstance(node, dict):
        raise _refuse("a boolean schema", path)
    for keyword, name in _REFUSED.items():
        if keyword in node:
            raise _refuse(name, path)
    out = {key: value for key, value in node.items() if key not in _CHECKED_LOCALLY}
    if "oneOf" in out:  # exclusive-or is checked locally; anyOf is what strict mode offers
        out["anyOf"] = out.pop("oneOf")
    for key in _SUBSCHEMA_MAPS:
        if key in out:
            out[key] = {
                name: _strict(sub, f"{path}/{key}/{name}") for name, sub in out[key].items()
            }
    for key in _SUBSCHEMA_LISTS:
        if key in out:
            out[key] = [_strict(sub, f"{path}/{key}/{i}") for i, sub in enumerate(out[key])]
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"], f"{path}/items")
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
    root_type = schema.get("type")
    if root_type != "object" and not ("properties" in schema and root_type is None):
        raise _refuse("a root that is not an object (wrap the value in an object)", "")
    return dict(_strict(copy.deepcopy(schema), ""))


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
