"""Objects: required and optional properties, dependencies, `propertyNames`,
`patternProperties`, `additionalProperties`/`unevaluatedProperties` and the size bounds."""

from __future__ import annotations

from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _Expansion, _Merged, _RunBase, _Sub
from hi_moe.providers.sampling.json_sampler._common import (
    _DEFAULT_BASE,
    _escape,
    _n,
    _NoValue,
    _where,
)

_KEYS = (
    "name id value kind note label count code tag title status size color score level mode "
    "role city owner group"
).split()

_STRING_SUB = _Sub({"type": "string", "maxLength": 40}, _DEFAULT_BASE, "", 2020, ())


class _Objects(_RunBase):
    """Generating objects, and which property names they may hold."""

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
