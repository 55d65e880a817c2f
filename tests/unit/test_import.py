"""`import hi_moe` stays light: heavy libraries load only where they are used."""

from __future__ import annotations

import json

from tests.support import run_python

HEAVY = ["openai", "xgrammar", "torch", "modal", "vllm", "transformers", "pydantic", "typer"]


def loaded_after(code: str) -> set[str]:
    out = run_python(
        code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_hi_moe_imports_nothing_heavy() -> None:
    assert loaded_after("import hi_moe") == set()


def test_using_the_mock_without_constraints_imports_no_backend_library() -> None:
    loaded = loaded_after(
        """
import asyncio
from hi_moe import Choice, CompletionRequest, JsonSchema
from hi_moe.providers import MockProvider
mock = MockProvider()
asyncio.run(mock.complete(CompletionRequest.from_prompt("hi")))
asyncio.run(mock.complete(CompletionRequest.from_prompt("hi", constraint=Choice(["a", "b"]))))
"""
    )
    assert loaded & {"openai", "xgrammar", "torch", "modal", "vllm", "transformers"} == set()


def test_public_names_resolve_lazily() -> None:
    out = run_python(
        """
import hi_moe
from hi_moe import (Message, CompletionRequest, Completion, Usage, JsonSchema, Grammar, Regex,
                    Choice, InferenceProvider, Settings, load_provider)
from hi_moe.providers import MockProvider
from hi_moe.errors import (HiMoeError, InvalidConstraint, UnsupportedConstraint,
                           ConstraintViolation, UnknownAdapter, ProviderError, ConfigError)
assert issubclass(MockProvider, InferenceProvider)
assert set(hi_moe.__all__) <= set(dir(hi_moe))
try:
    hi_moe.Nope
except AttributeError as error:
    print("missing:", error)
"""
    )
    assert "missing: module 'hi_moe' has no attribute 'Nope'" in out
