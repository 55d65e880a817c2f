"""Draw strings that satisfy a constraint: how `MockProvider` answers constrained requests.

- JSON schemas are sampled by `sampling.json_sampler` from the schema itself (values that read
  like data, formats included), every draw checked against the whole schema as the providers
  check outputs; where it finds nothing and XGrammar is installed, the XGrammar-compiled
  grammar is sampled instead and checked the same way.
- EBNF grammars and regexes are drawn from the XGrammar-compiled grammar over a byte-level
  vocabulary: at each step the grammar's token mask says which bytes may come next and the
  sampler picks one. Whatever comes out is in the grammar's language by construction.

Both are deterministic for a given `random.Random` state.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hi_moe import constraints
from hi_moe.constraints import json_check
from hi_moe.errors import ConstraintViolation, InvalidConstraint
from hi_moe.types import Choice, Constraint, ConstraintVisitor, Grammar, JsonSchema, Regex

__all__ = ["NeedsGrammarEngine", "SamplingFailed", "Unsatisfiable", "sample", "sample_text"]


class NeedsGrammarEngine(Exception):
    """The constraint can only be sampled with XGrammar (the `grammar` extra)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class SamplingFailed(Exception):
    """No finite output was found: the grammar may admit none (e.g. `root ::= "a" root`)."""


class Unsatisfiable(SamplingFailed):
    """The constraint admits no output at all; the message says why."""


_WORDS = (
    "alpha bravo delta echo golf hotel kilo lima mike oscar papa romeo sierra tango "
    "victor yankee zulu amber birch cedar maple river stone cloud ember frost grove"
).split()


def sample_text(rng: random.Random, max_chars: int) -> str:
    """A short plain-text sentence of known words, at most `max_chars` long."""
    words: list[str] = []
    for _ in range(rng.randint(3, 12)):
        word = rng.choice(_WORDS)
        if len(" ".join([*words, word])) + 1 > max_chars:
            break
        words.append(word)
    return (" ".join(words) + ".") if words else ""


def sample(constraint: Constraint, rng: random.Random, *, max_chars: int) -> str:
    """A string that satisfies `constraint`, aiming well under `max_chars`.

    Raises `NeedsGrammarEngine` when only XGrammar can sample it and it is not installed,
    `Unsatisfiable` when nothing satisfies it, and `SamplingFailed` when no short enough
    output was found.
    """
    return _Sampler(rng, max_chars).visit(constraint)


class _Sampler(ConstraintVisitor[str]):
    """How each kind is drawn: options picked, schemas sampled as data, grammars walked."""

    def __init__(self, rng: random.Random, max_chars: int) -> None:
        self.rng = rng
        self.max_chars = max_chars

    def json_schema(self, constraint: JsonSchema) -> str:
        return _sample_json(constraint, self.rng, self.max_chars)

    def grammar(self, constraint: Grammar) -> str:
        return self._from_grammar(constraint)

    def regex(self, constraint: Regex) -> str:
        return self._from_grammar(constraint)

    def choice(self, constraint: Choice) -> str:
        return self.rng.choice(constraint.options)

    def _from_grammar(self, constraint: Grammar | Regex) -> str:
        if not constraints.grammar_engine_available():
            raise NeedsGrammarEngine(f"{constraint.kind} constraints")
        return _sample_from_grammar(constraint, self.rng, self.max_chars)


def _sample_json(constraint: JsonSchema, rng: random.Random, max_chars: int) -> str:
    from hi_moe.providers.sampling import json_sampler

    def accept(value: Any) -> str | None:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            return f"not JSON: {error}"
        try:
            if json_check.parse(text).value != value:  # what JSON cannot carry exactly
                return "does not survive a JSON round trip"
        except json_check.NotJson as error:  # NaN, infinity
            return str(error)
        return json_check.first_error(constraint, value)

    try:
        value = json_sampler.sample_json(constraint.schema, rng, accept=accept, max_chars=max_chars)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except json_sampler.Unsatisfiable as error:
        raise Unsatisfiable(str(error)) from None
    except json_sampler.CannotSample as error:
        reason = str(error)
    if not constraints.grammar_engine_available():
        raise SamplingFailed(reason)
    for _ in range(_ATTEMPTS):
        try:
            text = _sample_from_grammar(constraint, rng, max_chars)
        except InvalidConstraint as error:  # XGrammar's limits are not the mock's verdict
            raise SamplingFailed(f"{reason}; XGrammar cannot compile it ({error})") from None
        try:
            constraints.check(constraint, text)
        except ConstraintViolation:
            continue
        return text
    raise SamplingFailed(f"{reason}; nor did XGrammar's grammar give a valid draw")


def sampleable(constraint: Constraint, *, max_chars: int = 8000) -> None:
    """Raise as `sample` would if the mock could not answer `constraint` (one draw, fixed
    seed): the mock's dialect of validation."""
    sample(constraint, random.Random(0), max_chars=max_chars)


# -- XGrammar sampler -------------------------------------------------------------------------

_PRINTABLE = frozenset(range(0x20, 0x7F))
# Bytes that tend to end what is open: brackets and quotes, and lines and code fences.
_CLOSERS = frozenset(b"\"')]}\n`")
_ATTEMPTS = 8


def _allowed_tokens(bitmask: Any) -> list[int]:
    allowed: list[int] = []
    for word_index, word in enumerate(bitmask[0].tolist()):
        word &= 0xFFFFFFFF
        while word:
            low_bit = word & -word
            allowed.append(word_index * 32 + low_bit.bit_length() - 1)
            word ^= low_bit
    return [token for token in allowed if token <= constraints.STOP_TOKEN_ID]


def _sample_from_grammar(constraint: Constraint, rng: random.Random, max_chars: int) -> str:
    import xgrammar as xgr

    compiled = constraints.compile_constraint(constraint)
    bitmask = xgr.allocate_token_bitmask(1, constraints.STOP_TOKEN_ID + 1)
    for _ in range(_ATTEMPTS):
        matcher = xgr.GrammarMatcher(compiled)
        target = rng.randint(1, max(1, min(max_chars // 2, 80)))
        out = bytearray()
        while len(out) <= max_chars:
            matcher.fill_next_token_bitmask(bitmask)
            allowed = _allowed_tokens(bitmask)
            if not allowed:
                raise SamplingFailed("the grammar allows no continuation (unsatisfiable)")
            can_stop = constraints.STOP_TOKEN_ID in allowed
            if can_stop and (len(out) >= target or len(allowed) == 1):
                return out.decode("utf-8")
            choices = [token for token in allowed if token != constraints.STOP_TOKEN_ID]
            # Past the target length, closing brackets and quotes steer towards the end.
            pool = (len(out) >= target and [t for t in choices if t in _CLOSERS]) or [
                t for t in choices if t in _PRINTABLE
            ]
            token = rng.choice(pool or choices)
            if not matcher.accept_token(token):
                raise SamplingFailed(f"the grammar engine refused byte {token} it had allowed")
            out.append(token)
    raise SamplingFailed(
        f"no output of at most {max_chars} characters found in {_ATTEMPTS} attempts"
    )
