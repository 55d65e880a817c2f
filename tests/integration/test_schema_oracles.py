"""Independent oracles for the JSON check and the mock's sampler.

- hypothesis-jsonschema generates instances from a schema on its own reading of JSON Schema:
  every one, written as JSON text, must pass `constraints.check` (a rejection is a retry the
  library would waste on a good output).
- `MockProvider`'s answers must pass `jsonschema`'s own validator with its format checker (the
  library's checker is stricter, so this is the weaker, independent bar), and the library's.

The schemas are the JSON Schema Test Suite's (draft 7, which hypothesis-jsonschema reads, for
the first oracle; both drafts for the second) and the SchemaStore schemas of the benchmark's
corpus where check-jsonschema is installed.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from jsonschema.validators import validator_for

from hi_moe import constraints
from hi_moe.errors import ConstraintViolation, InvalidConstraint, UnsupportedConstraint
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest, JsonSchema
from tests.support import requires

SUITE = Path(__file__).resolve().parents[3] / "shared" / "data" / "json-schema-test-suite" / "tests"
DRAFT7 = "http://json-schema.org/draft-07/schema#"
# jsonschema's own `time` checker is draft 3's %H:%M:%S, which refuses RFC 3339 times with an
# offset: left out of the independent bar (the library's own check still holds the sample).
JSONSCHEMA_WRONG = {"time"}


def _suite_schemas(draft: str, optional: bool = False) -> list[tuple[str, dict[str, Any]]]:
    found = []
    root = SUITE / draft
    paths = sorted(root.rglob("*.json")) if optional else sorted(root.glob("*.json"))
    for path in paths:
        for i, case in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            schema = case["schema"]
            if "localhost:1234" in json.dumps(schema) or not isinstance(schema, dict):
                continue
            if not any(t["valid"] for t in case["tests"]):
                continue  # unsatisfiable, or nothing valid to generate
            if draft == "draft7":
                schema = {"$schema": DRAFT7, **schema}
            found.append((f"{draft}/{path.relative_to(root)}#{i}", schema))
    return found


def _corpus() -> list[tuple[str, dict[str, Any]]]:
    try:
        import check_jsonschema
    except ImportError:
        return []
    vendor = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor"
    return [
        (p.stem, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(vendor.glob("*.json"))
    ]


# Where hypothesis-jsonschema reads JSON Schema otherwise than the official suite, which sides
# with the library: it matches patterns with Python's `re` (Unicode \d, \w, \s; ECMA 262's are
# ASCII), and treats draft 7's contentMediaType as an annotation (the suite asserts it).
ORACLE_DISAGREES = ("draft7/optional/ecmascript-regex.json", "draft7/optional/content.json")
ORACLE_SCHEMAS = [
    (name, schema)
    for name, schema in _suite_schemas("draft7", optional=True)
    if not name.startswith(ORACLE_DISAGREES)
]


def _checker(name: str, constraint: JsonSchema, rejected: list[str]) -> Callable[[Any], None]:
    def check(instance: Any) -> None:
        text = json.dumps(instance)
        try:
            constraints.check(constraint, text)
        except ConstraintViolation as violation:
            rejected.append(f"{name}: {text[:160]} rejected: {violation.reason}")

    return check


@requires("hypothesis_jsonschema", "dev")
def test_what_hypothesis_jsonschema_generates_passes_the_check() -> None:
    from hypothesis_jsonschema import from_schema

    unreadable: list[str] = []
    rejected: list[str] = []
    tried = 0
    for name, schema in ORACLE_SCHEMAS:
        try:
            strategy = from_schema(schema)
        except Exception as error:  # noqa: BLE001 - its refusals are its limits, not ours
            unreadable.append(f"{name}: {type(error).__name__}")
            continue

        check = _checker(name, JsonSchema(schema), rejected)
        run = settings(max_examples=15, derandomize=True, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))(given(strategy)(check))  # fmt: skip
        try:
            run()
        except Exception as error:  # noqa: BLE001 - a schema it cannot satisfy, say
            unreadable.append(f"{name}: {type(error).__name__}: {str(error)[:120]}")
        else:
            tried += 1
    print(f"\nhypothesis-jsonschema: {tried} draft-7 suite schemas drawn from, "
          f"{len(unreadable)} it cannot generate for, {len(rejected)} rejected")  # fmt: skip
    for line in unreadable[:10]:
        print("  cannot generate:", line)
    assert rejected == []
    assert tried >= 0.8 * len(ORACLE_SCHEMAS), unreadable


SAMPLED_SCHEMAS = [
    *_suite_schemas("draft2020-12", optional=True),
    *_suite_schemas("draft7", optional=True),
    *_corpus(),
]


def _independent(schema: dict[str, Any]) -> Any:
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    formats = jsonschema.FormatChecker(formats=())
    formats.checkers = {
        k: v for k, v in cls.FORMAT_CHECKER.checkers.items() if k not in JSONSCHEMA_WRONG
    }
    return cls(schema, format_checker=formats)


def test_mock_samples_pass_an_independent_validator() -> None:
    sampled = refused = 0
    failures: list[str] = []
    refusals: list[str] = []
    unreadable: set[str] = set()

    async def run() -> None:
        nonlocal sampled, refused
        for name, schema in SAMPLED_SCHEMAS:
            constraint = JsonSchema(schema)
            independent = _independent(schema)
            for seed in range(3):
                mock = MockProvider(seed=seed)
                request = CompletionRequest.from_prompt(
                    f"sample {random.Random(seed).random()}", constraint=constraint,
                    max_tokens=4000,
                )  # fmt: skip
                try:
                    done = await mock.complete(request)
                except (InvalidConstraint, UnsupportedConstraint) as error:
                    refused += 1
                    refusals.append(f"{name}: {error}")
                    break
                sampled += 1
                try:
                    valid = independent.is_valid(done.parsed)
                except re.error:  # an ECMA 262 pattern Python's re cannot read: no second bar
                    unreadable.add(name)
                    continue
                if not valid:
                    worst = jsonschema.exceptions.best_match(independent.iter_errors(done.parsed))
                    failures.append(f"{name}: {done.text[:120]} ({worst.message if worst else ''})")

    asyncio.run(run())
    print(f"\nmock samples: {sampled} drawn from {len(SAMPLED_SCHEMAS)} satisfiable schemas, "
          f"{refused} refused, {len(failures)} failed the independent validator "
          f"({len(unreadable)} schemas it cannot read)")  # fmt: skip
    for line in refusals[:20]:
        print("  refused:", line[:200])
    assert failures == []
    assert refused <= 0.03 * len(SAMPLED_SCHEMAS), refusals
