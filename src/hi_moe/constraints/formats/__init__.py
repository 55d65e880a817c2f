"""A strict `jsonschema.FormatChecker`: JSON Schema `format` asserted to the letter of the RFCs.

jsonschema's own checkers are lenient or wrong for many formats (measured against the official
JSON Schema Test Suite, `optional/format`): its `time` is the draft-3 `%H:%M:%S` one, leap
seconds and trailing newlines are misjudged, `email` only looks for an "@", `hostname` takes a
trailing dot and bogus A-labels, IRIs with a compressed IPv6 host are refused, `duration`,
`uuid`, `uri-template` and `relative-json-pointer` accept or refuse the wrong strings, and
`regex` is Python's `re` rather than ECMA 262. `format_checker` starts from jsonschema's checker
(every format it knows) and replaces those with this package's implementations: `dates`
(RFC 3339), `uris` (URIs, IRIs and URI templates), `names` (host names and e-mail addresses)
and `identifiers` (UUIDs, JSON pointers, regexes). Where a library is right (`idna` for IDNA
2008 labels, `regress` for ECMA 262 patterns, the standard library's `ipaddress` behind
jsonschema's `ipv4`/`ipv6`) it is used.

Every checker passes non-strings (formats apply to strings only) and never raises: a string
that cannot be judged (a lone surrogate, a pattern too deep for the engine) is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jsonschema

from hi_moe.constraints.formats.dates import _is_date, _is_date_time, _is_duration, _is_time
from hi_moe.constraints.formats.identifiers import (
    _is_json_pointer,
    _is_regex,
    _is_relative_json_pointer,
    _is_uuid,
)
from hi_moe.constraints.formats.names import (
    _is_email,
    _is_hostname,
    _is_idn_email,
    _is_idn_hostname,
)
from hi_moe.constraints.formats.uris import (
    _is_iri,
    _is_iri_reference,
    _is_uri,
    _is_uri_reference,
    _is_uri_template,
)

__all__ = ["CHECKED_FORMATS", "format_checker"]

_Check = Callable[[str], bool]

_OWN: dict[str, _Check] = {
    "date": _is_date,
    "date-time": _is_date_time,
    "duration": _is_duration,
    "email": _is_email,
    "hostname": _is_hostname,
    "idn-email": _is_idn_email,
    "idn-hostname": _is_idn_hostname,
    "iri": _is_iri,
    "iri-reference": _is_iri_reference,
    "json-pointer": _is_json_pointer,
    "regex": _is_regex,
    "relative-json-pointer": _is_relative_json_pointer,
    "time": _is_time,
    "uri": _is_uri,
    "uri-reference": _is_uri_reference,
    "uri-template": _is_uri_template,
    "uuid": _is_uuid,
}

CHECKED_FORMATS: tuple[str, ...] = tuple(sorted({*jsonschema.FormatChecker.checkers, *_OWN}))
"""Every format `format_checker` asserts: the ones above plus jsonschema's remaining ones
(`ipv4`/`ipv6`, checked by the standard library's `ipaddress`, and the draft-3 `color`)."""


def _strings_only(check: _Check) -> Callable[[object], bool]:
    def checker(instance: object) -> bool:
        return not isinstance(instance, str) or check(instance)

    checker.__name__ = check.__name__
    checker.__doc__ = check.__doc__
    return checker


@functools.cache
def format_checker() -> jsonschema.FormatChecker:
    """The strict checker, built once: jsonschema's, with its wrong checkers replaced."""
    checker = jsonschema.FormatChecker()
    for name, check in _OWN.items():
        checker.checks(name)(_strings_only(check))
    return checker
