"""`pattern`: ECMA 262 regexes compiled (the `regress` engine, else Python's `re`), searched,
and strings written from their parse tree."""

from __future__ import annotations

import importlib
import re
import warnings
from typing import Any

from hi_moe.providers.sampling.json_sampler._base import _RunBase
from hi_moe.providers.sampling.json_sampler._common import _WORDS, _fill
from hi_moe.providers.sampling.json_sampler.ecma import _ecma_to_python, _python_regex
from hi_moe.providers.sampling.json_sampler.regex_gen import _min_length, _RegexGen, _RegexTooHard

_PARSER: Any = importlib.import_module("re._parser")


class _Patterns(_RunBase):
    """Regexes by pattern (cached per run), and strings that match them."""

    def regex(self, pattern: str) -> Any:
        """A compiled ECMA 262 regex (the `regress` engine), else Python's, else None."""
        if pattern in self.regex_cache:
            return self.regex_cache[pattern]
        compiled: Any = None
        regress: Any
        try:
            import regress
        except ImportError:
            regress = None
        if regress is not None:
            for flags in ("u", ""):
                try:
                    compiled = ("ecma", regress.Regex(pattern, flags))
                    break
                except Exception:  # noqa: BLE001 - any refusal means "try the next flags"
                    continue
        if compiled is None:
            compiled = _python_regex(_ecma_to_python(pattern))
            compiled = None if compiled is None else ("python", compiled)
        self.regex_cache[pattern] = compiled
        return compiled

    def search(self, pattern: str, text: str) -> bool | None:
        compiled = self.regex(pattern)
        if compiled is None:
            return None
        try:
            if compiled[0] == "ecma":
                return compiled[1].find(text) is not None
            return compiled[1].search(text) is not None
        except Exception:  # noqa: BLE001 - an engine that cannot judge leaves it open
            return None

    def _pattern_ok(self, pattern: str, text: str) -> bool:
        """Both engines agree the text matches (ECMA 262, and Python's `re` that jsonschema
        uses by default), where each can read the pattern."""
        if self.search(pattern, text) is False:
            return False
        python = self._python_original(pattern)
        return python is None or python.search(text) is not None

    def _python_original(self, pattern: str) -> Any:
        key = "\x00py:" + pattern
        if key not in self.regex_cache:
            self.regex_cache[key] = _python_regex(pattern)
        return self.regex_cache[key]

    def _tree(self, pattern: str) -> Any:
        if pattern not in self.tree_cache:
            tree: Any = None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = _PARSER.parse(_ecma_to_python(pattern))
            except Exception:  # noqa: BLE001 - Python cannot parse every ECMA pattern
                tree = None
            self.tree_cache[pattern] = tree
        return self.tree_cache[pattern]

    def _pattern_string(self, pattern: str, lo: int, hi: int, attempt: int) -> str | None:
        tree = self._tree(pattern)
        if tree is None:
            return self._pattern_fallback(pattern, lo, hi, attempt)
        items = list(tree)
        modes = ("natural", "short", "fill", "natural", "fill")
        mode = modes[attempt % len(modes)]
        try:
            minimum = _min_length(items)
            need = max(0, lo - minimum)
            text = _RegexGen(self, mode, need).seq(items)
        except _RegexTooHard:
            return self._pattern_fallback(pattern, lo, hi, attempt)
        if len(text) < lo:
            first = items[0] if items else None
            last = items[-1] if items else None
            anchored_start = first is not None and str(first[0]) == "AT"
            anchored_end = last is not None and str(last[0]) == "AT"
            pad = _fill(self.rng, lo - len(text))
            if not anchored_end:
                text += pad
            elif not anchored_start:
                text = pad + text
        return text

    def _pattern_fallback(self, pattern: str, lo: int, hi: int, attempt: int) -> str | None:
        self.inexact = True
        literal = re.sub(r"\\.|[\^$.*+?()\[\]{}|]", "", pattern)
        options = [literal, self.rng.choice(_WORDS), str(self.rng.randint(0, 999)), ""]
        text = options[attempt % len(options)]
        if len(text) < lo:
            text += _fill(self.rng, lo - len(text))
        return text[: max(hi, 0)] if len(text) > hi else text
