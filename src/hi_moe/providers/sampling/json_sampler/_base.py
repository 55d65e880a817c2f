"""The state of one `sample_json` call, shared by the parts of the sampler (each a mixin of
`driver._Run`), and the schema-in-context records they pass around.

`_RunBase` also declares the methods the parts call on one another, for the type checker; they
are defined in the part named in each comment.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from hi_moe.providers.sampling.json_sampler._common import _canon, _NoValue, _OutOfFuel

_KINDS = ("null", "boolean", "object", "array", "string", "int", "frac")


# -- schemas in context --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sub:
    """A subschema where it stands: base URI, path (for messages), draft, dynamic scope."""

    node: Any
    base: str
    path: str
    draft: int
    scope: tuple[str, ...]


@dataclass
class _Expansion:
    """One way through the choice points: dict subschemas that must all hold, and
    subschemas that must all fail."""

    members: list[_Sub]
    negs: list[_Sub]


@dataclass
class _Merged:
    """The keywords of an expansion, merged."""

    kinds: list[str] = field(default_factory=lambda: list(_KINDS))
    type_notes: list[str] = field(default_factory=list)
    consts: list[Any] | None = None
    const_note: str = ""
    lo: Fraction | None = None
    lo_excl: bool = False
    lo_note: tuple[str, str] = ("", "")
    hi: Fraction | None = None
    hi_excl: bool = False
    hi_note: tuple[str, str] = ("", "")
    steps: list[Fraction] = field(default_factory=list)
    raw_steps: list[Any] = field(default_factory=list)
    int_steps: bool = True
    min_len: int = 0
    min_len_path: str = ""
    max_len: int | None = None
    max_len_path: str = ""
    patterns: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    media: str | None = None
    encoding: str | None = None
    min_items: int = 0
    min_items_path: str = ""
    max_items: int | None = None
    max_items_path: str = ""
    unique: bool = False
    min_props: int = 0
    min_props_path: str = ""
    max_props: int | None = None
    max_props_path: str = ""
    hints: dict[str, int] = field(default_factory=dict)


class _RunBase:
    """What the parts of a run share: the generator, the budget and the caches."""

    rng: random.Random
    max_chars: int
    lean: bool
    too_long: int
    inexact: bool
    fuel: int
    excluded: set[Any]
    check_depth: int
    deep_hits: int
    active: set[tuple[int, str, int]]
    regex_cache: dict[str, Any]
    tree_cache: dict[str, Any]
    enum_cache: dict[int, tuple[list[Any], dict[Any, Any]]]
    resources: dict[str, tuple[Any, str, int]]
    anchors: dict[tuple[str, str], tuple[Any, str, int]]
    dynamic: dict[tuple[str, str], tuple[Any, str, int]]
    root: _Sub

    # -- bookkeeping

    def spend(self, steps: int = 1) -> None:
        self.fuel -= steps
        if self.fuel < 0:
            raise _OutOfFuel

    def exclude(self, value: Any) -> None:
        with contextlib.suppress(_NoValue):
            self.excluded.add(_canon(value))

    def is_excluded(self, value: Any) -> bool:
        try:
            return _canon(value) in self.excluded
        except _NoValue:
            return False

    if TYPE_CHECKING:
        # refs
        def child(self, parent: _Sub, node: Any, key: str) -> _Sub: ...
        def resolve(self, ref: str, sub: _Sub, keyword: str = "$ref") -> _Sub: ...
        def resolve_dynamic(self, ref: str, sub: _Sub) -> _Sub: ...

        # generate
        def gen(
            self, subs: list[_Sub], negs: list[_Sub], depth: int, at_root: bool = False
        ) -> Any: ...

        # merge
        def merge(self, exp: _Expansion) -> _Merged: ...
        def enum_keys(self, values: list[Any]) -> dict[Any, Any]: ...
        def _dead(self, kind: str, merged: _Merged) -> str | None: ...

        # numbers
        def _dead_number(self, kind: str, merged: _Merged) -> str | None: ...
        def _gen_number(self, kind: str, merged: _Merged) -> int | float: ...

        # strings
        def _gen_string(self, merged: _Merged) -> str: ...

        # patterns
        def search(self, pattern: str, text: str) -> bool | None: ...
        def _pattern_ok(self, pattern: str, text: str) -> bool: ...
        def _pattern_string(self, pattern: str, lo: int, hi: int, attempt: int) -> str | None: ...

        # arrays
        def _gen_array(self, merged: _Merged, exp: _Expansion, depth: int) -> list[Any]: ...

        # objects
        def _gen_object(
            self,
            merged: _Merged,
            exp: _Expansion,
            subs: list[_Sub],
            negs: list[_Sub],
            depth: int,
            at_root: bool,
        ) -> Any: ...

        # checker
        def check_all(self, value: Any, subs: list[_Sub], negs: list[_Sub]) -> bool | None: ...
        def check(self, value: Any, sub: _Sub) -> bool | None: ...
