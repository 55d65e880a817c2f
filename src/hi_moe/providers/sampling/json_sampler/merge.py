"""Merging the keywords of one expansion into a `_Merged`: types intersected, bounds tightened,
`enum` and `const` intersected; and the proofs that no value of a kind can satisfy them."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _Expansion, _Merged, _RunBase, _Sub
from hi_moe.providers.sampling.json_sampler._common import (
    _ANNOTATIONS,
    _FORMATS,
    _TYPE_KINDS,
    _both,
    _canon,
    _count,
    _n,
    _short,
    _where,
)

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


def _finite_fraction(value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Fraction(value)


def _decimal_step(value: Any) -> Fraction | None:
    """`multipleOf` as the decimal its author wrote: 0.01 is 1/100."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value <= 0:
            return None
        return Fraction(repr(value))
    return Fraction(value) if value > 0 else None


def _kinds_of_type(types: Any) -> set[str] | None:
    names = [types] if isinstance(types, str) else types
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    if not all(n in _TYPE_KINDS for n in names):
        return None
    return {kind for n in names for kind in _TYPE_KINDS[n]}


class _Merge(_RunBase):
    """Merging keywords, and what the merged keywords rule out."""

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
