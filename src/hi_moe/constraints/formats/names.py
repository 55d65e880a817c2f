"""`hostname`, `idn-hostname`, `email` and `idn-email`: RFC 1123 and IDNA 2008 (RFC 5890-5893)
host names, RFC 5321 mailboxes and their RFC 6531 internationalized form."""

from __future__ import annotations

import re

from hi_moe.constraints.formats.uris import _IPV4, _IPV4_RE

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
