"""The rules every provider keeps are enforced by the base class, whatever the backend does."""

from __future__ import annotations

import pytest

from hi_moe import Choice, Completion, CompletionRequest, Grammar, JsonSchema, Regex
from hi_moe.errors import (
    ConstraintViolation,
    InvalidConstraint,
    UnknownAdapter,
    UnsupportedConstraint,
)
from hi_moe.providers.base import Capabilities, Health, InferenceProvider
from tests.support import requires_grammar


class CannedBackend(InferenceProvider):
    """A backend that answers `text` whatever it is asked, and counts the calls it gets."""

    name = "canned"
    capabilities = Capabilities(constraint_kinds=frozenset({"json_schema", "regex"}))

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    async def _complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        return Completion(text=self.text, provider=self.name, model="canned-1")

    async def adapters(self) -> list[str]:
        return []

    async def health(self) -> Health:
        return Health(provider=self.name, status="ok")


async def test_unconstrained_text_passes_through() -> None:
    backend = CannedBackend("anything at all")
    completion = await backend.complete(CompletionRequest.from_prompt("hi"))
    assert completion.text == "anything at all"
    assert completion.parsed is None


async def test_an_unsupported_kind_fails_before_the_backend_is_called() -> None:
    backend = CannedBackend("yes")
    with pytest.raises(UnsupportedConstraint, match="'canned' cannot enforce choice"):
        await backend.complete(CompletionRequest.from_prompt("hi", constraint=Choice(["yes"])))
    assert backend.calls == 0


async def test_a_malformed_constraint_fails_before_the_backend_is_called() -> None:
    backend = CannedBackend("{}")
    with pytest.raises(InvalidConstraint):
        await backend.complete(
            CompletionRequest.from_prompt("hi", constraint=JsonSchema({"type": 7}))
        )
    assert backend.calls == 0


async def test_an_adapter_on_a_provider_without_adapters_is_unknown() -> None:
    backend = CannedBackend("x")
    with pytest.raises(UnknownAdapter):
        await backend.complete(CompletionRequest.from_prompt("hi", adapter="python-lora"))
    assert backend.calls == 0


async def test_a_backend_that_ignores_the_constraint_is_caught_fail_closed() -> None:
    # What vLLM does with the removed guided_* fields: 200, with unconstrained text.
    backend = CannedBackend("Sure! Here is the JSON you asked for.")
    request = CompletionRequest.from_prompt("hi", constraint=JsonSchema({"type": "object"}))
    with pytest.raises(ConstraintViolation) as caught:
        await backend.complete(request)
    assert caught.value.text == "Sure! Here is the JSON you asked for."
    assert backend.calls == 1


async def test_json_outputs_come_back_parsed() -> None:
    backend = CannedBackend('{"answer": 42}')
    schema = JsonSchema({"type": "object", "properties": {"answer": {"type": "integer"}}})
    completion = await backend.complete(CompletionRequest.from_prompt("hi", constraint=schema))
    assert completion.parsed == {"answer": 42}


async def test_the_default_stream_is_one_checked_chunk() -> None:
    backend = CannedBackend("abc")
    request = CompletionRequest.from_prompt("hi", constraint=Regex("[a-c]+"))
    assert [chunk async for chunk in backend.stream(request)] == ["abc"]
    backend.text = "abd"
    with pytest.raises(ConstraintViolation):
        _ = [chunk async for chunk in backend.stream(request)]


@requires_grammar
async def test_a_grammar_is_validated_even_when_the_kind_is_supported() -> None:
    class GrammarBackend(CannedBackend):
        capabilities = Capabilities()

    backend = GrammarBackend("x")
    with pytest.raises(InvalidConstraint):
        await backend.complete(CompletionRequest.from_prompt("hi", constraint=Grammar("root ::=")))
    assert backend.calls == 0
