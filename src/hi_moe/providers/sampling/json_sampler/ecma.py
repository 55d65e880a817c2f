"""ECMA 262 regex syntax that Python's `re` lacks, rewritten so that Python can parse a pattern
for generation."""

from __future__ import annotations

import re
import warnings
from typing import Any

_UNICODE_CLASSES = {
    "l": "A-Za-z",
    "letter": "A-Za-z",
    "alphabetic": "A-Za-z",
    "alpha": "A-Za-z",
    "lu": "A-Z",
    "uppercase_letter": "A-Z",
    "uppercase": "A-Z",
    "ll": "a-z",
    "lowercase_letter": "a-z",
    "lowercase": "a-z",
    "n": "0-9",
    "nd": "0-9",
    "number": "0-9",
    "decimal_number": "0-9",
    "digit": "0-9",
    "p": "!,.:;?",
    "punctuation": "!,.:;?",
    "z": " ",
    "zs": " ",
    "white_space": " ",
    "space_separator": " ",
}


def _python_regex(pattern: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError, MemoryError):
        return None


def _unicode_class(name: str, negated: bool) -> str:
    key = name.split("=")[-1].lower()
    members = _UNICODE_CLASSES.get(key, "a-z")
    if negated:
        return "0-9 " if members != "0-9" else "A-Za-z"
    return members


def _ecma_to_python(pattern: str) -> str:
    """ECMA 262 syntax Python's `re` lacks, rewritten for generation: `\\p{..}`, `\\u{..}`,
    `\\cX`, `(?<name>`, `\\k<name>`, `[^]` and `[]`."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "pP" and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 3)
                if end > 0:
                    members = _unicode_class(pattern[i + 3 : end], e == "P")
                    out.append(members if in_class else f"[{members}]")
                    i = end + 1
                    continue
            if e == "u" and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 3)
                digits = pattern[i + 3 : end] if end > 0 else ""
                if digits and all(ch in "0123456789abcdefABCDEF" for ch in digits):
                    point = int(digits, 16)
                    if point <= 0x10FFFF:
                        out.append(f"\\U{point:08x}")
                        i = end + 1
                        continue
            if e == "c" and i + 2 < n and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
                out.append(f"\\x{ord(pattern[i + 2]) % 32:02x}")
                i += 3
                continue
            if e == "k" and pattern.startswith("<", i + 2):
                end = pattern.find(">", i + 3)
                if end > 0:
                    out.append(f"(?P={pattern[i + 3 : end]})")
                    i = end + 1
                    continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c in "[&~|" or (c == "-" and pattern.startswith("-", i + 1)):
                out.append("\\" + c)
                i += 1
                continue
            out.append(c)
            i += 1
            continue
        if c == "[":
            if pattern.startswith("[^]", i):
                out.append("[\\s\\S]")
                i += 3
                continue
            if pattern.startswith("[]", i):
                out.append("(?!)")
                i += 2
                continue
            in_class = True
            out.append(c)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):  # ECMA: "[]" inside cannot be literal
                out.append("\\]")
                i += 1
            i += 1
            continue
        if (
            c == "("
            and pattern.startswith("(?<", i)
            and not pattern.startswith(("(?<=", "(?<!"), i)
        ):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)
