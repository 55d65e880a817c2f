"""Arrays: `prefixItems`/`items`/`additionalItems`, `contains` with its counts,
`unevaluatedItems`, the size bounds and `uniqueItems`."""

from __future__ import annotations

from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _Expansion, _Merged, _RunBase, _Sub
from hi_moe.providers.sampling.json_sampler._common import _canon, _count, _n, _NoValue, _where


class _Arrays(_RunBase):
    """Generating arrays."""

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
