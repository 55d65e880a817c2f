"""Schemas in context: the index of a document's `$id`s and anchors, subschemas with their
base URI and dynamic scope, and `$ref`/`$dynamicRef` resolution (local JSON pointers, `$id`s,
`$anchor`s and `$dynamicAnchor`s of the document)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urljoin

from hi_moe.providers.sampling.json_sampler._base import _RunBase, _Sub
from hi_moe.providers.sampling.json_sampler._common import _NoValue, _where

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_METASCHEMA = re.compile(r"https?://json-schema\.org/")

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

_EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "maxProperties": 0}


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


class _Refs(_RunBase):
    """Finding subschemas: the index, `child` and the resolution of references."""

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
