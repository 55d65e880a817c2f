"""A strict `jsonschema.FormatChecker`: JSON Schema `format` asserted to the letter of the RFCs.

jsonschema's own checkers are lenient or wrong for many formats (measured against the official
JSON Schema Test Suite, `optional/format`): its `time` is the draft-3 `%H:%M:%S` one, leap
seconds and trailing newlines are misjudged, `email` only looks for an "@", `hostname` takes a
trailing dot and bogus A-labels, IRIs with a compressed IPv6 host are refused, `duration`,
`uuid`, `uri-template` and `relative-json-pointer` accept or refuse the wrong strings, and
`regex` is Python's `re` rather than ECMA 262. `format_checker` starts from jsonschema's checker
(every format it knows) and replaces those with the implementations below; where a library is
right (`idna` for IDNA 2008 labels, `regress` for ECMA 262 patterns, the standard library's
`ipaddress` behind jsonschema's `ipv4`/`ipv6`) it is used.

Every checker passes non-strings (formats apply to strings only) and never raises: a string
that cannot be judged (a lone surrogate, a pattern too deep for the engine) is refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import jsonschema

__all__ = ["CHECKED_FORMATS", "format_checker"]

_Check = Callable[[str], bool]

# -- dates and times: RFC 3339 section 5.6 --------------------------------------------------------

_DATE = r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
# RFC 3339 5.6 allows lower-case "z" (and "t", below) as well; time-offset is mandatory there,
# so a local time without "Z" or a numeric offset is not an RFC 3339 time.
_TIME = (
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)
_DATE_RE = re.compile(_DATE)
_TIME_RE = re.compile(_TIME)
_DATE_TIME_RE = re.compile(_DATE + "[Tt]" + _TIME)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _date_fields_ok(match: re.Match[str]) -> bool:
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    if not 1 <= month <= 12:
        return False
    # RFC 3339 5.7 / Appendix C: the Gregorian leap-year rule, year 0000 included (which
    # `datetime.date` cannot represent, hence not `date.fromisoformat`).
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 1 <= day <= _DAYS_IN_MONTH[month - 1] + (month == 2 and leap)


def _time_fields_ok(match: re.Match[str]) -> bool:
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
    if hour > 23 or minute > 59 or second > 60:
        return False
    offset = 0
    if match["sign"]:
        off_hour, off_minute = int(match["off_hour"]), int(match["off_minute"])
        if off_hour > 23 or off_minute > 59:
            return False
        offset = (off_hour * 60 + off_minute) * (1 if match["sign"] == "+" else -1)
    if second == 60:
        # RFC 3339 5.7: a leap second is the last second of a UTC day, so second 60 needs the
        # time, moved to UTC by its offset, to be 23:59. Which days carry one is the IERS's
        # call, announced months ahead, so the date itself is not judged.
        return (hour * 60 + minute - offset) % (24 * 60) == 23 * 60 + 59
    return True


def _is_date(instance: str) -> bool:
    match = _DATE_RE.fullmatch(instance)
    return match is not None and _date_fields_ok(match)


def _is_time(instance: str) -> bool:
    match = _TIME_RE.fullmatch(instance)
    return match is not None and _time_fields_ok(match)


def _is_date_time(instance: str) -> bool:
    match = _DATE_TIME_RE.fullmatch(instance)
    return match is not None and _date_fields_ok(match) and _time_fields_ok(match)


# RFC 3339 Appendix A, verbatim: integers only (no fraction, sign or exponent), the units in
# order with each present one followed only by the next smaller (years-days needs months,
# hours-seconds needs minutes), a "T" only before at least one time unit, and weeks alone.
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DUR_DATE = r"(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)"
_DURATION_RE = re.compile(rf"P(?:{_DUR_DATE}(?:{_DUR_TIME})?|{_DUR_TIME}|[0-9]+W)")


def _is_duration(instance: str) -> bool:
    return _DURATION_RE.fullmatch(instance) is not None


# -- IP addresses: RFC 3986 section 3.2.2 (the RFC 4291 text form) ------------------------------

# dec-octet: no leading zeros, 0-255.
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])"
_IPV4 = rf"{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"


def _ipv6_pattern() -> str:
    """RFC 3986's IPv6address ABNF: nine alternatives, by how many groups precede "::"."""
    options = [rf"(?:{_H16}:){{6}}{_LS32}", rf"::(?:{_H16}:){{5}}{_LS32}"]
    tails = [rf"(?:{_H16}:){{{n}}}{_LS32}" for n in (4, 3, 2, 1)]
    tails += [_LS32, _H16, ""]
    for before, tail in enumerate(tails):
        head = rf"(?:(?:{_H16}:){{0,{before}}}{_H16})?" if before else rf"(?:{_H16})?"
        options.append(rf"{head}::{tail}")
    return "(?:" + "|".join(options) + ")"


_IPV6 = _ipv6_pattern()
_IPV4_RE = re.compile(_IPV4)

# -- URIs and IRIs: RFC 3986 and RFC 3987 -------------------------------------------------------

_UCSCHAR = (
    "\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef"
    + "".join(f"{chr(plane << 16)}-{chr((plane << 16) | 0xFFFD)}" for plane in range(1, 14))
    + "\U000e1000-\U000efffd"
)
_IPRIVATE = "\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"
# RFC 3987 4.1: bidi formatting characters are never allowed in an IRI, although they lie
# inside ucschar.
_BIDI_FORMATTING = re.compile("[\u200e\u200f\u202a-\u202e]")


def _uri_regexes(iri: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(absolute, reference) for RFC 3986 URIs, or RFC 3987 IRIs, straight from the ABNF."""
    unreserved = r"A-Za-z0-9\-._~" + (_UCSCHAR if iri else "")
    sub_delims = r"!$&'()*+,;="
    pct = r"%[0-9A-Fa-f]{2}"

    def chars(extra: str) -> str:
        return rf"(?:[{unreserved}{sub_delims}{extra}]|{pct})"

    pchar = chars(":@")
    # IPvFuture stays ASCII in IRIs too (RFC 3987 reuses RFC 3986's IP-literal); "v" is
    # case-insensitive like every ABNF literal.
    ip_future = r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+"
    host = rf"(?:\[(?:{_IPV6}|{ip_future})\]|{chars('')}*)"
    authority = rf"(?:{chars(':')}*@)?{host}(?::[0-9]*)?"
    segment = f"{pchar}*"
    after_first = rf"(?:/{segment})*"
    abempty = rf"//{authority}{after_first}"
    absolute = rf"/(?:{pchar}+{after_first})?"
    rootless = rf"{pchar}+{after_first}"
    # A relative reference's first segment has no ":", or it would read as a scheme.
    noscheme = rf"{chars('@')}+{after_first}"
    query_extra = _IPRIVATE if iri else ""
    query = rf"(?:\?(?:{pchar}|[/?{query_extra}])*)?"
    fragment = rf"(?:#(?:{pchar}|[/?])*)?"
    absolute_uri = (
        rf"[A-Za-z][A-Za-z0-9+\-.]*:(?:{abempty}|{absolute}|{rootless}|){query}{fragment}"
    )
    relative_ref = rf"(?:{abempty}|{absolute}|{noscheme}|){query}{fragment}"
    return re.compile(absolute_uri), re.compile(rf"(?:{absolute_uri}|{relative_ref})")


_URI_RE, _URI_REFERENCE_RE = _uri_regexes(iri=False)
_IRI_RE, _IRI_REFERENCE_RE = _uri_regexes(iri=True)


def _is_uri(instance: str) -> bool:
    return _URI_RE.fullmatch(instance) is not None


def _is_uri_reference(instance: str) -> bool:
    return _URI_REFERENCE_RE.fullmatch(instance) is not None


def _is_iri(instance: str) -> bool:
    return _IRI_RE.fullmatch(instance) is not None and not _BIDI_FORMATTING.search(instance)


def _is_iri_reference(instance: str) -> bool:
    return _IRI_REFERENCE_RE.fullmatch(instance) is not None and not _BIDI_FORMATTING.search(
        instance
    )


# RFC 6570 section 2, level 4. Literals take the apostrophe: verified erratum 6937 corrects
# "%x26 / %x28-3B" to "%x26-3B" (the RFC's own 3.2.1 example relies on it).
_TEMPLATE_LITERAL = rf"[!#$&-;=?-\[\]_a-z~{_UCSCHAR}{_IPRIVATE}]|%[0-9A-Fa-f]{{2}}"
_VARCHAR = r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})"
# max-length is a positive integer below 10000 with no leading zero.
_VARSPEC = rf"{_VARCHAR}(?:\.?{_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\*)?"
_EXPRESSION = rf"\{{[+#./;?&=,!@|]?{_VARSPEC}(?:,{_VARSPEC})*\}}"
_URI_TEMPLATE_RE = re.compile(rf"(?:{_TEMPLATE_LITERAL}|{_EXPRESSION})*")


def _is_uri_template(instance: str) -> bool:
    return _URI_TEMPLATE_RE.fullmatch(instance) is not None


# -- host names: RFC 1123, RFC 5890-5893 (IDNA 2008) -------------------------------------------

_LDH_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# RFC 3490 3.1, kept by RFC 5890's lookup practice: the ideographic, full-width and half-width
# full stops separate labels in an internationalized name (not in an e-mail domain).
_IDN_SEPARATORS = re.compile("[.\u3002\uff0e\uff61]")
_DOT = re.compile(r"\.")
_MAX_NAME = 253  # RFC 1035 2.3.4: 255 octets on the wire, less the length octet and root
_RTL = frozenset({"R", "AL", "AN"})


def _u_label_of_a_label(label: str) -> str | None:
    """The U-label an ASCII "xn--" label stands for, or None when it is no valid A-label."""
    import idna

    try:
        # Lower-cases first (DNS is case-insensitive), rejects non-canonical Punycode
        # (RFC 5891 5.3) and checks the result as a U-label: NFC, hyphens, no leading mark,
        # PVALID code points, the CONTEXTJ/CONTEXTO rules of RFC 5892 and the Bidi rule.
        decoded = idna.ulabel(label)
    except (UnicodeError, ValueError):
        return None
    # RFC 5890 2.3.2.1: an A-label encodes a U-label, which has a non-ASCII character.
    return None if decoded.isascii() else decoded


def _a_label_of_u_label(label: str) -> str | None:
    import idna

    try:
        # The full IDNA 2008 label check, then Punycode, refused past 63 octets.
        return idna.alabel(label).decode("ascii")
    except (UnicodeError, ValueError):
        return None


def _bidi_domain_ok(u_labels: list[str]) -> bool:
    """RFC 5893 section 2: once any label holds a right-to-left character (a "Bidi domain
    name"), every label, plain ASCII ones included, must satisfy the Bidi rule."""
    import unicodedata

    import idna

    if not any(unicodedata.bidirectional(c) in _RTL for label in u_labels for c in label):
        return True
    try:
        for label in u_labels:
            idna.check_bidi(label, check_ltr=True)
    except (UnicodeError, ValueError):
        return False
    return True


def _host_name(instance: str, *, unicode: bool, separators: re.Pattern[str]) -> bool:
    # Each character costs at least one octet of the A-label form, so this bound is safe.
    if not instance or len(instance) > _MAX_NAME:
        return False
    if not unicode and not instance.isascii():
        return False
    u_labels: list[str] = []
    octets = -1
    for label in separators.split(instance):
        if not label.isascii():
            if not unicode:
                return False
            a_label = _a_label_of_u_label(label)
            if a_label is None:
                return False
            u_labels.append(label)
        elif label[:4].lower() == "xn--":
            u_label = _u_label_of_a_label(label)
            if u_label is None:
                return False
            a_label = label
            u_labels.append(u_label)
        else:
            # RFC 1123 2.1 LDH label (may start with a digit). "--" in positions 3-4 makes it a
            # reserved LDH label (RFC 5890 2.3.1), valid only as an "xn--" A-label.
            if _LDH_LABEL_RE.fullmatch(label) is None or label[2:4] == "--":
                return False
            a_label = label
            u_labels.append(label.lower())
        octets += len(a_label) + 1
    # Empty labels (leading, trailing or doubled dots) fail the checks above; a trailing dot
    # (the DNS root) is not part of a host name in RFC 1123's sense.
    return octets <= _MAX_NAME and _bidi_domain_ok(u_labels)


def _is_hostname(instance: str) -> bool:
    return _host_name(instance, unicode=False, separators=_DOT)


def _is_idn_hostname(instance: str) -> bool:
    return _host_name(instance, unicode=True, separators=_IDN_SEPARATORS)


# -- e-mail addresses: RFC 5321 section 4.1.2 Mailbox, RFC 6531 for idn-email -------------------

_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
# RFC 6532 3.2 UTF8-non-ascii: any non-ASCII scalar value (C1 controls and noncharacters
# included); surrogates are not scalar values and have no UTF-8 form.
_UTF8_NON_ASCII = "\u0080-\ud7ff\ue000-\U0010ffff"


def _local_part_regex(utf8: bool) -> re.Pattern[str]:
    extra = _UTF8_NON_ASCII if utf8 else ""
    atom = f"[{_ATEXT}{extra}]+"
    qtext = rf"[\x20\x21\x23-\x5b\x5d-\x7e{extra}]|\\[\x20-\x7e]"
    return re.compile(rf"{atom}(?:\.{atom})*|\"(?:{qtext})*\"")


_LOCAL_PART_RE = _local_part_regex(utf8=False)
_IDN_LOCAL_PART_RE = _local_part_regex(utf8=True)
_IPV6_LITERAL_PREFIX = "ipv6:"
_HEX = "[0-9A-Fa-f]{1,4}"
# RFC 5321 4.1.3 IPv6-addr: full, compressed, and both with an IPv4 tail.
_SMTP_IPV6_RE = re.compile(
    rf"{_HEX}(?::{_HEX}){{7}}"
    rf"|(?P<comp>(?:{_HEX}(?::{_HEX}){{0,5}})?::(?:{_HEX}(?::{_HEX}){{0,5}})?)"
    rf"|{_HEX}(?::{_HEX}){{5}}:{_IPV4}"
    rf"|(?P<v4comp>(?:{_HEX}(?::{_HEX}){{0,3}})?::(?:{_HEX}(?::{_HEX}){{0,3}}:)?){_IPV4}"
)


def _smtp_ipv6(text: str) -> bool:
    """RFC 5321's IPv6-addr is stricter than RFC 4291: its "::" stands for at least two
    groups, so at most six groups (four beside an IPv4 tail) may accompany it."""
    match = _SMTP_IPV6_RE.fullmatch(text)
    if match is None:
        return False
    for name, limit in (("comp", 6), ("v4comp", 4)):
        if match[name] is not None:
            return len(re.findall(_HEX, match[name])) <= limit
    return True


def _mailbox(instance: str, *, utf8: bool) -> bool:
    # RFC 5321 4.5.3.1: a path is at most 256 octets with its angle brackets.
    if not instance or len(instance) > 254:
        return False
    local, at, domain = instance.rpartition("@")
    if not at or not local or not domain:
        return False
    local_re = _IDN_LOCAL_PART_RE if utf8 else _LOCAL_PART_RE
    if local_re.fullmatch(local) is None:
        return False
    try:
        encoded = instance.encode("utf-8")
    except UnicodeError:
        return False
    # RFC 5321 4.5.3.1.1: the local part is at most 64 octets.
    if len(local.encode("utf-8")) > 64 or len(encoded) > 254:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal[:5].lower() == _IPV6_LITERAL_PREFIX:
            return _smtp_ipv6(literal[5:])
        # A General-address-literal needs a tag registered with IANA, and none is.
        return _IPV4_RE.fullmatch(literal) is not None
    if not utf8:
        return _host_name(domain, unicode=False, separators=_DOT)
    import unicodedata

    # RFC 6532 3.1 leaves normalization to whoever compares addresses, so a domain that
    # is not in NFC is judged by its NFC form; only "." separates labels in a mailbox.
    return _host_name(unicodedata.normalize("NFC", domain), unicode=True, separators=_DOT)


def _is_email(instance: str) -> bool:
    return _mailbox(instance, utf8=False)


def _is_idn_email(instance: str) -> bool:
    return _mailbox(instance, utf8=True)


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
