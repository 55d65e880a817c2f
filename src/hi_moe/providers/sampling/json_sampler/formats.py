"""Strings of each JSON Schema `format`, at their natural length or at a length asked for."""

from __future__ import annotations

import random
from collections.abc import Callable

from hi_moe.providers.sampling.json_sampler._common import _WORDS, _fill


def _format_string(fmt: str, rng: random.Random, lo: int, hi: int) -> str | None:
    """A string of format `fmt` with a length in lo..hi, or None."""
    if lo > hi:
        return None
    make = _FORMAT_MAKERS.get(fmt)
    if make is None:
        return None
    natural = make(rng, None)
    if natural is not None and lo <= len(natural) <= hi:
        return natural
    size = len(natural) if natural is not None else lo
    target = lo if size < lo else hi
    for length in (target, target + 1, target - 1, target + 2):
        if lo <= length <= hi:
            text = make(rng, length)
            if text is not None and len(text) == length:
                return text
    return None


def _digits(rng: random.Random, length: int) -> str:
    if length <= 0:
        return ""
    return str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(length - 1))


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2000, 2030):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _make_date(rng: random.Random, length: int | None) -> str | None:
    return _date(rng) if length in (None, 10) else None


def _make_time(rng: random.Random, length: int | None) -> str | None:
    clock = f"{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}:{rng.randint(0, 59):02d}"
    if length is None or length == 9:
        return clock + "Z"
    if length == 14:
        return clock + rng.choice(("+02:00", "-05:00", "+09:30"))
    if length >= 11:
        return clock + "." + "".join(rng.choice("0123456789") for _ in range(length - 10)) + "Z"
    return None


def _make_date_time(rng: random.Random, length: int | None) -> str | None:
    time = _make_time(rng, None if length is None else length - 11)
    return None if time is None else f"{_date(rng)}T{time}"


def _make_duration(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return rng.choice(("P3D", "PT15M", "P1Y2M", "PT2H30M", "P1DT12H", "P2W"))
    if length < 3:
        return None
    return "P" + _digits(rng, length - 2) + rng.choice("DWMY")


def _labels(rng: random.Random, length: int) -> str:
    """A dotted host name of exactly `length` characters (labels of at most 63 letters)."""
    count = -(-(length + 1) // 64)
    letters = length - (count - 1)
    sizes = [letters // count + (1 if i < letters % count else 0) for i in range(count)]
    return ".".join(_fill(rng, size) for size in sizes)


def _make_hostname(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"{rng.choice(_WORDS)}.example.com"
    if length < 1 or length > 253:
        return None
    if length <= 4:
        return _fill(rng, length)
    return _labels(rng, length - 4) + "." + rng.choice(("com", "org", "net"))


def _make_email(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"{rng.choice(_WORDS)}@example.com"
    if length < 3 or length > 254:
        return None
    domain = min(length - 2, max(11, length - 1 - 64))
    local = length - 1 - domain
    if local > 64:
        return None
    host = _make_hostname(rng, domain) if domain != 11 else "example.com"
    return None if host is None else f"{_fill(rng, local)}@{host}"


def _make_ipv4(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return rng.choice((f"192.168.{rng.randint(0, 9)}.{rng.randint(10, 99)}", "10.0.0.1"))
    if not 7 <= length <= 15:
        return None
    digits = [1, 1, 1, 1]
    spare = length - 7
    for index in range(4):
        grow = min(2, spare)
        digits[index] += grow
        spare -= grow
    pick = {1: (1, 9), 2: (10, 99), 3: (100, 255)}
    return ".".join(str(rng.randint(*pick[d])) for d in digits)


def _make_ipv6(rng: random.Random, length: int | None) -> str | None:
    def group(size: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(size - 1)) + "1"

    if length is None:
        return f"2001:db8::{rng.randint(1, 99)}"
    if 3 <= length <= 6:
        return "::" + group(length - 2)
    if 7 <= length <= 10:
        return "fe80::" + group(length - 6)
    if 11 <= length <= 14:
        return "2001:db8::" + group(length - 10)
    if 15 <= length <= 39:
        sizes = [1] * 8
        spare = length - 15
        for index in range(8):
            grow = min(3, spare)
            sizes[index] += grow
            spare -= grow
        return ":".join(group(size) for size in sizes)
    return None


def _path(rng: random.Random, length: int) -> str:
    """A URI path of exactly `length` characters (at least 1), "/" then words."""
    return "/" + _fill(rng, length - 1)


def _make_uri(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"https://example.com/{rng.choice(_WORDS)}"
    if length >= 20:
        return "https://example.com" + _path(rng, length - 19)
    if length >= 5:
        return "urn:" + _fill(rng, length - 4)
    if length >= 3:
        return "x:" + _fill(rng, length - 2)
    return None


def _make_uri_reference(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return rng.choice(
            (f"/docs/{rng.choice(_WORDS)}", f"https://example.com/{rng.choice(_WORDS)}")
        )
    if length == 0:
        return ""
    return _path(rng, length)


def _make_uri_template(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return "https://example.com/users/{id}"
    if length >= 7:
        return _path(rng, length - 5) + "/{id}"
    if length >= 3:
        return "{" + _fill(rng, length - 2) + "}"
    return None


def _make_uuid(rng: random.Random, length: int | None) -> str | None:
    if length not in (None, 36):
        return None
    hexes = f"{rng.getrandbits(128):032x}"
    variant = "89ab"[rng.randint(0, 3)]
    return f"{hexes[:8]}-{hexes[8:12]}-4{hexes[13:16]}-{variant}{hexes[17:20]}-{hexes[20:]}"


def _make_json_pointer(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"/{rng.choice(_WORDS)}/0"
    if length == 0:
        return ""
    return _path(rng, length)


def _make_relative_json_pointer(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return f"1/{rng.choice(_WORDS)}"
    if length == 1:
        return "0"
    if length == 2:
        return "0#"
    if length >= 3:
        return "1/" + _fill(rng, length - 2)
    return None


def _make_regex(rng: random.Random, length: int | None) -> str | None:
    if length is None:
        return "^[a-z]+$"
    if length <= 0:
        return ""
    if length <= 2:
        return _fill(rng, length)
    return "^" + _fill(rng, length - 2) + "$"


_FORMAT_MAKERS: dict[str, Callable[[random.Random, int | None], str | None]] = {
    "date": _make_date,
    "time": _make_time,
    "date-time": _make_date_time,
    "duration": _make_duration,
    "email": _make_email,
    "idn-email": _make_email,
    "hostname": _make_hostname,
    "idn-hostname": _make_hostname,
    "ipv4": _make_ipv4,
    "ipv6": _make_ipv6,
    "uri": _make_uri,
    "iri": _make_uri,
    "uri-reference": _make_uri_reference,
    "iri-reference": _make_uri_reference,
    "uri-template": _make_uri_template,
    "uuid": _make_uuid,
    "json-pointer": _make_json_pointer,
    "relative-json-pointer": _make_relative_json_pointer,
    "regex": _make_regex,
}
