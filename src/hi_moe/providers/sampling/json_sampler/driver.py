"""`sample_json`: the attempts, each a fresh search over the schema, until the caller's
`accept` passes a value; and `_Run`, one call's state with every part of the sampler."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _Sub
from hi_moe.providers.sampling.json_sampler._common import (
    _DEFAULT_BASE,
    CannotSample,
    Unsatisfiable,
    _dumps,
    _NoValue,
    _OutOfFuel,
)
from hi_moe.providers.sampling.json_sampler.arrays import _Arrays
from hi_moe.providers.sampling.json_sampler.checker import _Checker
from hi_moe.providers.sampling.json_sampler.generate import _Generate
from hi_moe.providers.sampling.json_sampler.merge import _Merge
from hi_moe.providers.sampling.json_sampler.numbers import _Numbers
from hi_moe.providers.sampling.json_sampler.objects import _Objects
from hi_moe.providers.sampling.json_sampler.patterns import _Patterns
from hi_moe.providers.sampling.json_sampler.refs import _draft_of, _join, _Refs
from hi_moe.providers.sampling.json_sampler.strings import _Strings

_FUEL = 40_000  # search steps per attempt


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


class _Run(_Generate, _Merge, _Numbers, _Strings, _Patterns, _Arrays, _Objects, _Checker, _Refs):
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

    def attempt(self) -> tuple[Any, str | None]:
        self.fuel = _FUEL
        self.active.clear()
        self.check_depth = 0
        value = self.gen([self.root], [], 0, at_root=True)
        return value, _dumps(value)
