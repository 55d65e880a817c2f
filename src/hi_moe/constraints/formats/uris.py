"""`uri`, `uri-reference`, `iri`, `iri-reference` and `uri-template`: RFC 3986, RFC 3987 and
RFC 6570 level 4, straight from their ABNF; with the IP address forms of RFC 3986 section
3.2.2 that hosts (and e-mail address literals) use."""

from __future__ import annotations

import re

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
