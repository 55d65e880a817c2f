"""`uuid`, `json-pointer`, `relative-json-pointer` and `regex` (ECMA 262, by `regress`)."""

from __future__ import annotations

import re

# -- identifiers and pointers --------------------------------------------------------------------

# RFC 4122 3: the 8-4-4-4-12 hex form only (no braces, "urn:uuid:" or missing dashes), any
# version or variant nibble.
_UUID_RE = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
# RFC 6901 3: "~" only as "~0" or "~1".
_JSON_POINTER = r"(?:/(?:[^~/]|~[01])*)*"
_JSON_POINTER_RE = re.compile(_JSON_POINTER)
# draft-bhutton-relative-json-pointer-00 (2020-12): an ASCII non-negative integer without
# leading zeros, an optional index manipulation, then "#" or a JSON pointer.
_RELATIVE_JSON_POINTER_RE = re.compile(
    rf"(?:0|[1-9][0-9]*)(?:[+-][1-9][0-9]*)?(?:#|{_JSON_POINTER})"
)


def _is_uuid(instance: str) -> bool:
    return _UUID_RE.fullmatch(instance) is not None


def _is_json_pointer(instance: str) -> bool:
    return _JSON_POINTER_RE.fullmatch(instance) is not None


def _is_relative_json_pointer(instance: str) -> bool:
    return _RELATIVE_JSON_POINTER_RE.fullmatch(instance) is not None


def _is_regex(instance: str) -> bool:
    import regress

    try:
        # Unicode mode, as JSON Schema 2020-12 core 6.4 asks: the ECMA 262 grammar without the
        # Annex B web-compatibility leniency (which takes "\a" and other unknown escapes).
        # regress refuses Python-only syntax ("(?P<n>...)", "(?#...)", "(?i)") in any mode.
        regress.Regex(instance, "u")
    except (regress.RegressError, UnicodeError, ValueError, OverflowError):
        return False
    return True
