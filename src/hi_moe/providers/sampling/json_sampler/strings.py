"""Strings: from a `format` generator, a `pattern`, `contentMediaType`/`contentEncoding`, or
words; and the check of encoded content."""

from __future__ import annotations

import json
from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _Merged, _RunBase
from hi_moe.providers.sampling.json_sampler._common import (
    _WORDS,
    _dumps,
    _n,
    _NoValue,
    _reasons,
    _where,
)
from hi_moe.providers.sampling.json_sampler.formats import _format_string


def _content_ok(value: str, encoding: Any, media: Any) -> bool | None:
    import base64
    import binascii

    data: bytes = value.encode("utf-8", "surrogatepass")
    if encoding == "base64":
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
    if media == "application/json":
        try:
            json.loads(data)
        except (ValueError, RecursionError):
            return False
    return True


class _Strings(_RunBase):
    """Generating strings within the length bounds, patterns and formats."""

    def _gen_string(self, merged: _Merged) -> str:
        cap = max(0, self.max_chars - 2)
        lo = merged.min_len
        if lo > cap:
            raise _NoValue(
                f"minLength {_n(lo)} {_where(merged.min_len_path)} is more than max_chars allows",
                False,
            )
        hi = cap if merged.max_len is None else min(merged.max_len, cap)
        formats = merged.formats
        patterns = merged.patterns
        plans: list[tuple[str, Any]] = []
        if merged.media is not None or merged.encoding is not None:
            plans += [("content", None)] * 2
        plans += [("format", f) for f in formats for _ in range(3)]
        plans += [("pattern", (p, i)) for p in patterns for i in range(5)]
        if not formats and not patterns and merged.media is None and merged.encoding is None:
            plans += [("words", None)] * 3
        if not formats:
            plans.append(("words", None))
        notes: list[str] = []
        for plan, arg in plans:
            self.spend()
            text: str | None
            if plan == "content":
                text = self._content_string(merged, lo, hi)
            elif plan == "format":
                text = _format_string(arg, self.rng, lo, hi)
                if text is None:
                    notes.append(
                        f"format {arg!r} cannot be written in {_n(lo)}..{_n(hi)} characters"
                    )
            elif plan == "pattern":
                text = self._pattern_string(arg[0], lo, hi, arg[1])
            else:
                text = self._text_between(lo, hi)
            if text is None or not lo <= len(text) <= hi:
                continue
            if all(self._pattern_ok(p, text) for p in patterns):
                return text
        raise _NoValue(_reasons(notes) or "no string satisfying the patterns was found", False)

    def _text_between(self, lo: int, hi: int) -> str | None:
        if lo > hi:
            return None
        word = self.rng.choice(_WORDS)
        if lo <= len(word) <= hi:
            return word
        return self._text(lo if len(word) < lo else hi)

    def _text(self, length: int) -> str:
        """`length` characters of words and spaces."""
        if length <= 0:
            return ""
        fitting = [w for w in _WORDS if len(w) == length]
        if fitting:
            return self.rng.choice(fitting)
        words: list[str] = []
        total = 0
        while total < length:
            word = self.rng.choice(_WORDS)
            words.append(word)
            total += len(word) + 1
        text = " ".join(words)[:length]
        return text[:-1] + "s" if text.endswith(" ") else text

    def _content_string(self, merged: _Merged, lo: int, hi: int) -> str | None:
        import base64

        raw = _dumps({"name": self.rng.choice(_WORDS)}) if merged.media else None
        if merged.media is not None and merged.media != "application/json":
            raw = self.rng.choice(_WORDS)
        if raw is None:
            raw = self.rng.choice(_WORDS)
        for text in (raw, "{}", "1"):
            if merged.encoding == "base64":
                text = base64.b64encode(text.encode()).decode()
            if lo <= len(text) <= hi:
                return text
        return None
