"""The official JSON Schema Test Suite, through the output check every provider uses.

Every case of draft 2020-12 and draft 7, the optional ones and the format assertions included:
each instance is written as JSON text and given to `constraints.check`, as a server's output
would be. A `valid: false` instance that passes is an output the library would have returned
although it breaks its schema; a `valid: true` one that fails is a retry wasted on a good
output. Both fail the test.

Out of scope, counted and printed: cases that `$ref` the suite's remote server
(http://localhost:1234/...), which the check refuses to fetch (`InvalidConstraint`, before any
request); and, by design, the 2020-12 cases saying an invalid format is "only an annotation
by default": this library asserts `format`, so those instances are rejected.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hi_moe import constraints
from hi_moe.errors import ConstraintViolation, InvalidConstraint
from hi_moe.types import JsonSchema

SUITE = Path(__file__).resolve().parents[3] / "shared" / "data" / "json-schema-test-suite" / "tests"
DRAFTS = {
    "draft2020-12": "https://json-schema.org/draft/2020-12/schema",
    "draft7": "http://json-schema.org/draft-07/schema#",
}
REMOTE = ("http://localhost:1234", "https://localhost:1234")
ANNOTATION_ONLY = "only an annotation by default"


@dataclass(frozen=True)
class Instance:
    draft: str
    file: str
    case: str
    test: str
    schema: Any
    data: Any
    valid: bool

    @property
    def id(self) -> str:
        return f"{self.draft}/{self.file}: {self.case} / {self.test}"


def _schema_for(draft: str, schema: Any) -> dict[str, Any]:
    """The case's schema, declaring its draft (the suite leaves it implied by the folder);
    a boolean schema wrapped as the one branch of an allOf."""
    if not isinstance(schema, dict):
        return {"$schema": DRAFTS[draft], "allOf": [schema]}
    return schema if "$schema" in schema else {"$schema": DRAFTS[draft], **schema}


def _instances() -> tuple[list[Instance], Counter[str]]:
    found: list[Instance] = []
    skipped: Counter[str] = Counter()
    for draft in DRAFTS:
        for path in sorted((SUITE / draft).rglob("*.json")):
            file = str(path.relative_to(SUITE / draft))
            for case in json.loads(path.read_text(encoding="utf-8")):
                if any(prefix in json.dumps(case["schema"]) for prefix in REMOTE):
                    skipped["remote $ref"] += len(case["tests"])
                    continue
                for test in case["tests"]:
                    found.append(
                        Instance(draft, file, case["description"], test["description"],
                                 _schema_for(draft, case["schema"]), test["data"], test["valid"])
                    )  # fmt: skip
    return found, skipped


INSTANCES, SKIPPED = _instances()


def _verdict(instance: Instance) -> bool:
    constraint = JsonSchema(instance.schema)
    try:
        constraints.check(constraint, json.dumps(instance.data))
    except ConstraintViolation:
        return False
    return True


def test_the_suite_is_all_there() -> None:
    """Guards against a moved data folder silently testing nothing."""
    assert len(INSTANCES) > 3000
    assert {i.draft for i in INSTANCES} == set(DRAFTS)
    assert any(i.file.startswith("optional/format/") for i in INSTANCES)


def test_every_verdict_matches_the_suite() -> None:
    wrong_accepts: list[str] = []
    wrong_rejects: list[str] = []
    asserted_formats = 0
    checked = 0
    for instance in INSTANCES:
        try:
            verdict = _verdict(instance)
        except InvalidConstraint as error:
            wrong_rejects.append(f"{instance.id}: schema refused: {error}")
            continue
        checked += 1
        if ANNOTATION_ONLY in instance.test and instance.valid and not verdict:
            asserted_formats += 1  # stricter by design: formats are asserted
            continue
        if verdict and not instance.valid:
            wrong_accepts.append(instance.id)
        elif not verdict and instance.valid:
            wrong_rejects.append(instance.id)
    print(
        f"\nJSON Schema Test Suite: {checked} instances checked, {len(wrong_accepts)} invalid "
        f"accepted, {len(wrong_rejects)} valid rejected; {asserted_formats} annotation-only "
        f"format cases asserted by design; skipped: {dict(SKIPPED)}"
    )
    assert wrong_accepts == [], f"{len(wrong_accepts)} invalid instances accepted"
    assert wrong_rejects == [], f"{len(wrong_rejects)} valid instances rejected"


@pytest.mark.parametrize("draft", list(DRAFTS))
def test_remote_refs_are_refused_before_sending(draft: str) -> None:
    schema = {"$schema": DRAFTS[draft], "$ref": "http://localhost:1234/integer.json"}
    with pytest.raises(InvalidConstraint, match="another document"):
        constraints.validate_local(JsonSchema(schema))
