"""The search for a value: the schema flattened into conjunctions, one per way through the
choice points (`allOf` and references followed; `anyOf`, `oneOf` and `if`/`then`/`else`
explored depth first in a random order), then a value of an allowed type built for each
until one holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _Expansion, _Merged, _RunBase, _Sub
from hi_moe.providers.sampling.json_sampler._common import _ANNOTATIONS, _NoValue, _reasons, _where

_MAX_DEPTH = 24  # levels of nested values
_MAX_CHOICES = 48  # nested anyOf/oneOf/if choice points on one path
_MAX_EXPANSIONS = 24  # alternatives tried per subschema

_DEFAULT_WEIGHTS = {"string": 5, "number": 4, "boolean": 1, "object": 1, "array": 1, "null": 1}


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


def _kind_name(kind: str) -> str:
    return {"int": "integer", "frac": "number"}.get(kind, kind)


def _hint_group(name: str) -> str:
    return "number" if name in ("integer", "number", "fraction") else name


class _Generate(_RunBase):
    """Expansions of the choice points, and generation by kind."""

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
