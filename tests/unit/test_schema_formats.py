"""`hi_moe.constraints.formats` against the JSON Schema Test Suite's format assertions.

Every case of every file under `optional/format` for draft 2020-12 and draft 7, valid and
invalid instances alike; then checkers fed hostile strings (none may raise), and the list of
asserted formats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema.validators import validator_for

from hi_moe.constraints.formats import CHECKED_FORMATS, format_checker

SUITE = Path(__file__).resolve().parents[3] / "shared" / "data" / "json-schema-test-suite" / "tests"
DRAFTS = {
    "draft2020-12": "https://json-schema.org/draft/2020-12/schema",
    "draft7": "http://json-schema.org/draft-07/schema#",
}


@dataclass(frozen=True)
class Instance:
    draft: str
    file: str
    case: str
    test: str
    schema: dict[str, Any]
    data: Any
    valid: bool

    @property
    def id(self) -> str:
        return f"{self.draft}/{self.file}: {self.case} / {self.test}"


def _instances() -> list[Instance]:
    found: list[Instance] = []
    for draft, meta_schema in DRAFTS.items():
        for path in sorted((SUITE / draft / "optional" / "format").glob("*.json")):
            for case in json.loads(path.read_text(encoding="utf-8")):
                # The suite leaves the draft implied by the folder; say it, so draft 7 cases
                # are checked by the draft 7 validator.
                schema = {"$schema": meta_schema, **case["schema"]}
                for test in case["tests"]:
                    found.append(
                        Instance(
                            draft,
                            path.name,
                            case["description"],
                            test["description"],
                            schema,
                            test["data"],
                            test["valid"],
                        )
                    )
    return found


INSTANCES = _instances()


def test_the_suite_is_there() -> None:
    for draft in DRAFTS:
        files = {i.file for i in INSTANCES if i.draft == draft}
        assert {"date-time.json", "hostname.json", "uri.json"} <= files, (SUITE, draft)


@pytest.mark.parametrize("instance", INSTANCES, ids=[i.id for i in INSTANCES])
def test_suite_instance(instance: Instance) -> None:
    validator = validator_for(instance.schema)(instance.schema, format_checker=format_checker())
    assert validator.is_valid(instance.data) is instance.valid, instance.data


def test_the_checker_is_built_once() -> None:
    assert format_checker() is format_checker()


def test_checked_formats() -> None:
    expected = {
        "date",
        "date-time",
        "time",
        "duration",
        "email",
        "idn-email",
        "hostname",
        "idn-hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "iri",
        "iri-reference",
        "uri-template",
        "uuid",
        "json-pointer",
        "relative-json-pointer",
        "regex",
    }
    assert expected <= set(CHECKED_FORMATS)
    assert list(CHECKED_FORMATS) == sorted(set(CHECKED_FORMATS))
    assert set(CHECKED_FORMATS) == set(format_checker().checkers)


HOSTILE = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "\ud83d",
    "\udc00@example.com",
    "a@\ud800.example",
    "http://example.com/\ud800",
    "xn--\ud800",
    "\u200f",
    "\u202e",
    "\u200fexample.com",
    "http://example.com/\u200f",
    "\ufeff",
    "\U0010ffff",
    "\x85",
    "\u2028",
    "\n",
    "\r\n",
    "a\nb",
    "x" * 1_000_000,
    "a." * 200_000,
    "1" * 1_000_000,
    "xn--" + "a" * 100_000,
    "xn--",
    "XN--",
    "xn--" + "-" * 60,
    "xn--9999999999999999999999999",
    "xn--zzzzzzzzzzzzzzzzzzzzzzzzzz",
    "." * 1000,
    "@" * 1000,
    "[" * 1000,
    "{" * 10_000,
    "%" * 1000,
    "\\" * 1000,
    "(" * 100_000,
    ")" * 1000,
    "a@[IPv6:",
    "a@[",
    "a@[]",
    "P" + "1" * 1_000_000 + "D",
    "a\u0301" * 1000,
    "\u05d0" * 100,
    "\u0627.\u0661" * 50,
    "\u0640\u07fa",
    '"' * 1000 + "@example.com",
    '"\\' * 1000 + '"@example.com',
    "{" + "a" * 100_000 + "}",
    "{a:" + "9" * 1000 + "}",
    "0" + "/a" * 100_000,
    "/~" * 100_000,
    "http://" + "a" * 1_000_000,
    "http://[" + ":" * 1000 + "]",
    "//" + "@" * 1000,
    "2020-01-01T00:00:00." + "0" * 1_000_000 + "Z",
    "9" * 30 + "-01-01",
    "::" * 1000,
    "1:" * 100_000,
    "0." * 100_000,
    "\U0001f600" * 1000,
    "\U0001d7cf\U0001d7d7\U0001d7d0.\U0001d7cf",
    "\u0661",
    "(?<" + "a" * 100_000 + ">x)",
    "\\p{" + "L" * 10_000 + "}",
    "a{1," + "9" * 100 + "}",
    "\x1b[31m",
]


@pytest.mark.parametrize("name", CHECKED_FORMATS)
def test_no_checker_raises_on_hostile_strings(name: str) -> None:
    checker = format_checker()
    for text in HOSTILE:
        checker.conforms(text, name)  # a FormatError is turned into False; anything else raises


@pytest.mark.parametrize(
    ("name", "text", "valid"),
    [
        # RFC 5321 4.1.3: "::" stands for two groups at least.
        ("email", "a@[IPv6:1::2:3:4:5:6:7]", False),
        ("email", "a@[IPv6:1::2:3:4:5:6]", True),
        ("email", "a@[IPv6:1:2:3::4:1.2.3.4]", True),
        ("email", "a" * 65 + "@example.com", False),
        ("email", "a@[x:1]", False),
        # DNS is case-insensitive, A-labels included.
        ("hostname", "XN--BCHER-KVA.DE", True),
        # RFC 5893: one right-to-left label makes every label follow the Bidi rule.
        ("hostname", "1a.xn--4dbc5h", False),
        ("idn-hostname", "m\u00fcnchen\u3002de", True),
        ("iri", "http://example.com/\u200f", False),
        ("uri", "http://[fe80::1%25eth0]/", False),
        ("date", "0000-02-29", True),
        ("date", "1900-02-29", False),
        ("relative-json-pointer", "0+1/foo", True),
        ("relative-json-pointer", "1+01", False),
        ("regex", "\ud800", False),
        ("uri-template", "{=var}", True),
    ],
)
def test_rules_beyond_the_suite(name: str, text: str, valid: bool) -> None:
    assert format_checker().conforms(text, name) is valid


@pytest.mark.parametrize("name", CHECKED_FORMATS)
def test_non_strings_pass(name: str) -> None:
    values: list[object] = [12, 13.7, {}, [], False, None]
    for value in values:
        assert format_checker().conforms(value, name)
