"""Writing a string a regex matches: a walk of the pattern's `re._parser` tree that picks
friendly characters and word-like repetitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _RunBase
from hi_moe.providers.sampling.json_sampler._common import _WORDS, _fill

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class _RegexTooHard(Exception):
    pass


def _min_length(items: Any, depth: int = 0) -> int:
    if depth > 200:
        raise _RegexTooHard
    total = 0
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN", "CATEGORY"):
            total += 1
        elif name == "BRANCH":
            total += min((_min_length(alt, depth + 1) for alt in av[1]), default=0)
        elif name == "SUBPATTERN":
            total += _min_length(av[3], depth + 1)
        elif name == "ATOMIC_GROUP":
            total += _min_length(av, depth + 1)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            total += av[0] * _min_length(av[2], depth + 1)
    return total


_FRIENDLY = _LETTERS + "0123456789" + _LETTERS.upper() + "-_ .,:;!?@#$%&*+=/()[]{}'\"~^`|<>\\"
_SPACES = " \t\n\r\f\v"


def _category_has(category: str, ch: str) -> bool:
    if category.endswith("DIGIT"):
        hit = "0" <= ch <= "9"
    elif category.endswith("WORD"):
        hit = ch.isascii() and (ch.isalnum() or ch == "_")
    elif category.endswith("SPACE"):
        hit = ch in _SPACES or ch in "\u00a0\u2028\u2029\ufeff"
    else:
        return False
    return not hit if "_NOT_" in category else hit


def _class_has(items: Any, ch: str) -> bool:
    negate = False
    hit = False
    point = ord(ch)
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            hit = hit or av == point
        elif name == "RANGE":
            hit = hit or av[0] <= point <= av[1]
        elif name == "CATEGORY":
            hit = hit or _category_has(str(av), ch)
    return hit != negate


class _RegexGen:
    """Walks a `re._parser` tree and writes a string it matches (search semantics)."""

    def __init__(self, run: _RunBase, mode: str, need: int) -> None:
        self.limit = run.max_chars + 64  # longer output could never be used
        self.rng = run.rng
        self.mode = mode
        self.need = need
        self.groups: dict[int, str] = {}
        self.steps = 0

    def seq(self, items: Any) -> str:
        return "".join(self.node(op, av) for op, av in items)

    def node(self, op: Any, av: Any) -> str:
        self.steps += 1
        if self.steps > 5000:
            raise _RegexTooHard
        name = str(op)
        if name == "LITERAL":
            return chr(av)
        if name == "NOT_LITERAL":
            return self.pick(lambda ch: ord(ch) != av)
        if name == "ANY":
            return self.pick(lambda ch: ch != "\n")
        if name == "IN":
            return self.class_char(av)
        if name == "CATEGORY":
            return self.pick(lambda ch: _category_has(str(av), ch))
        if name == "BRANCH":
            return self.seq(self.choose(av[1]))
        if name == "SUBPATTERN":
            text = self.seq(av[3])
            if av[0]:
                self.groups[av[0]] = text
            return text
        if name == "ATOMIC_GROUP":
            return self.seq(av)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return self.repeat(av[0], av[1], av[2])
        if name == "AT" or name == "ASSERT_NOT":
            return ""
        if name == "ASSERT":
            if av[0] != 1:
                return ""
            saved = self.mode
            self.mode = "short"
            try:
                return self.seq(av[1])
            finally:
                self.mode = saved
        if name == "GROUPREF":
            return self.groups.get(av, "")
        if name == "GROUPREF_EXISTS":
            group, yes, no = av
            return self.seq(yes if group in self.groups else (no or []))
        raise _RegexTooHard

    def choose(self, alternatives: list[Any]) -> Any:
        if self.mode == "short":
            lengths = [_min_length(alt) for alt in alternatives]
            shortest = min(lengths)
            return self.rng.choice(
                [a for a, n in zip(alternatives, lengths, strict=True) if n == shortest]
            )
        return self.rng.choice(alternatives)

    def pick(self, allowed: Callable[[str], bool]) -> str:
        letters = list(_LETTERS)
        self.rng.shuffle(letters)
        for ch in letters:
            if allowed(ch):
                return ch
        for ch in _FRIENDLY + "é߀中\u00a0":
            if allowed(ch):
                return ch
        for point in range(0x80, 0x3000):
            if allowed(chr(point)):
                return chr(point)
        raise _RegexTooHard

    def class_char(self, items: Any) -> str:
        if any(str(op) == "NEGATE" for op, _ in items):
            return self.pick(lambda ch: _class_has(items, ch))
        options: list[tuple[str, Any]] = [(str(op), av) for op, av in items]
        letter_options = [
            o for o in options if o[0] == "RANGE" and o[1][0] <= 0x7A and o[1][1] >= 0x61
        ]
        if letter_options and self.rng.random() < 0.7:
            options = letter_options
        kind, av = self.rng.choice(options)
        if kind == "LITERAL":
            return chr(av)
        if kind == "RANGE":
            lo, hi = av
            if lo <= 0x61 and hi >= 0x7A:
                return self.rng.choice(_LETTERS)
            point = self.rng.randint(lo, min(hi, lo + 25))
            return chr(lo if 0xD800 <= point <= 0xDFFF else point)
        if kind == "CATEGORY":
            category = str(av)
            if category == "CATEGORY_DIGIT":
                return self.rng.choice("0123456789")
            if category == "CATEGORY_SPACE":
                return " "
            return self.pick(lambda ch: _category_has(category, ch))
        raise _RegexTooHard

    def repeat(self, lo: int, hi: int, body: Any) -> str:
        if lo > self.limit or lo * _min_length(body) > self.limit:
            raise _RegexTooHard
        unbounded = hi >= 65535
        top = lo + 64 if unbounded else hi
        if self.mode in ("short", "fill"):
            count = lo
        else:
            count = lo + self.rng.randint(0, min(top - lo, 3 if unbounded else 4))
        word = self.word_body(body)
        if word is not None:
            if self.mode == "natural":
                fits = [w for w in _WORDS if lo <= len(w) <= top]
                if fits and self.rng.random() < 0.8:
                    count = len(self.rng.choice(fits))
            if self.mode == "fill" and self.need > 0:
                grow = min(top - count, self.need)
                count += grow
                self.need -= grow
            return word(_fill(self.rng, count))
        parts = [self.seq(body) for _ in range(count)]
        if sum(len(part) for part in parts) > self.limit:
            raise _RegexTooHard
        while self.mode == "fill" and self.need > 0 and count < top:
            piece = self.seq(body)
            if not piece:
                break
            parts.append(piece)
            count += 1
            self.need -= len(piece)
        return "".join(parts)

    def word_body(self, body: Any) -> Callable[[str], str] | None:
        """When the repeated item is one character class that holds every lower-case (or
        upper-case) letter, a way to fill it with letters from words."""
        items = list(body)
        if len(items) != 1:
            return None
        name = str(items[0][0])
        if name == "ANY":
            return lambda text: text
        if name != "IN":
            return None
        av = items[0][1]
        if all(_class_has(av, ch) for ch in _LETTERS):
            return lambda text: text
        if all(_class_has(av, ch) for ch in _LETTERS.upper()):
            return lambda text: text.upper()
        return None
