"""The sampler's own validator: every value built is checked against its whole subschema, with
a verdict of True, False or None ("cannot tell"); only its False is trusted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _RunBase, _Sub
from hi_moe.providers.sampling.json_sampler._common import (
    _FORMATS,
    _TYPE_KINDS,
    _canon,
    _count,
    _is_number,
    _multiple_ok,
    _NoValue,
)
from hi_moe.providers.sampling.json_sampler.strings import _content_ok

_CHECK_DEPTH = 80  # nested checks before the validator says "cannot tell"


def _equal(one: Any, two: Any) -> bool:
    return bool(_canon(one) == _canon(two))


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


class _Checker(_RunBase):
    """Checking a value against subschemas."""

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
