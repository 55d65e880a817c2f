"""OpenAIJSONProvider on the wire (respx): strict JSON schemas only, adapters by config."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from hi_moe import Choice, CompletionRequest, Grammar, JsonSchema, Regex, Settings, load_provider
from hi_moe.errors import (
    AuthenticationError,
    ConfigError,
    ConstraintViolation,
    InvalidConstraint,
    RateLimited,
    UnknownAdapter,
    UnsupportedConstraint,
)
from hi_moe.providers.retry import RetryPolicy
from hi_moe.types import Constraint
from tests.support import requires
from tests.unit.vllm_stub import chat_body, error_body, sent_json

pytestmark = requires("openai", "openai")

URL = "https://api.openai.test/v1"
KEY = "sk-openai-unit-9z8y7x"
PERSON = JsonSchema(
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0},
            "email": {"type": "string"},
        },
        "required": ["name", "age"],
    },
    name="person",
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as chosen:
        yield chosen


@pytest.fixture
def api() -> Any:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


def make(client: httpx.AsyncClient, **fields: Any) -> Any:
    from hi_moe.providers.openai_json import OpenAIJSONProvider

    fields.setdefault("adapters", {"python": "ft:gpt-4o-mini:acme:python:abc"})
    return OpenAIJSONProvider("gpt-4o-mini", KEY, base_url=URL, http_client=client, **fields)


def ask(constraint: Constraint | None = None, **fields: Any) -> CompletionRequest:
    return CompletionRequest.from_prompt("Describe someone.", constraint=constraint, **fields)


async def test_a_json_schema_is_sent_as_strict_response_format(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = api.post("/chat/completions").respond(
        json=chat_body('{"name": "Ada", "age": 36, "email": null}', model="gpt-4o-mini")
    )
    completion = await make(client).complete(ask(PERSON, max_tokens=50))
    body = sent_json(chat)
    assert body["model"] == "gpt-4o-mini"
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "person",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer", "minimum": 0},
                    "email": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
                "required": ["name", "age", "email"],
                "additionalProperties": False,
            },
        },
    }
    # The null strict mode forced into the optional field is gone again.
    assert completion.parsed == {"name": "Ada", "age": 36}
    assert json.loads(completion.text) == {"name": "Ada", "age": 36}
    assert api.calls.last.request.headers["authorization"] == f"Bearer {KEY}"


async def test_a_non_strict_schema_is_sent_as_written(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = api.post("/chat/completions").respond(json=chat_body('{"x": 1}'))
    loose = JsonSchema({"type": "object", "additionalProperties": True}, strict=False)
    await make(client).complete(ask(loose))
    assert sent_json(chat)["response_format"]["json_schema"] == {
        "name": loose.name,
        "schema": {"type": "object", "additionalProperties": True},
        "strict": False,
    }


async def test_what_strict_mode_drops_is_still_checked_locally(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    api.post("/chat/completions").respond(json=chat_body('{"name": "' + "x" * 30 + '", "age": 1}'))
    with pytest.raises(ConstraintViolation, match="too long"):
        await make(client).complete(ask(PERSON))


@pytest.mark.parametrize(
    "constraint", [Grammar('root ::= "a"'), Regex("[a-z]+"), Choice(["a", "b"])]
)
async def test_grammar_regex_and_choice_are_refused_before_any_request(
    api: respx.MockRouter, client: httpx.AsyncClient, constraint: Constraint
) -> None:
    with pytest.raises(UnsupportedConstraint) as caught:
        await make(client).complete(ask(constraint))
    assert caught.value.kind == constraint.kind
    assert caught.value.provider == "openai"
    assert "modal" in str(caught.value)
    assert api.calls.call_count == 0


async def test_a_schema_strict_mode_cannot_express_is_refused_before_any_request(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    array_root = JsonSchema({"type": "array", "items": {"type": "integer"}})
    with pytest.raises(InvalidConstraint, match="root that is not an object"):
        await make(client).complete(ask(array_root))
    assert api.calls.call_count == 0


async def test_adapters_map_to_configured_models_and_others_are_unknown(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = api.post("/chat/completions").respond(json=chat_body("def f(): pass"))
    provider = make(client)
    assert await provider.adapters() == ["python"]
    completion = await provider.complete(ask(adapter="python"))
    assert sent_json(chat)["model"] == "ft:gpt-4o-mini:acme:python:abc"
    assert completion.adapter == "python"
    with pytest.raises(UnknownAdapter) as caught:
        await provider.complete(ask(adapter="math"))
    assert caught.value.available == ("python",)
    assert chat.call_count == 1


async def test_a_refusal_fails_the_constraint_instead_of_passing_as_json(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    body = chat_body()
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "I can't."}
    api.post("/chat/completions").respond(json=body)
    with pytest.raises(ConstraintViolation) as caught:
        await make(client).complete(ask(PERSON))
    assert caught.value.text == "I can't."


async def test_errors_map_like_every_openai_compatible_provider(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    chat = api.post("/chat/completions")
    chat.side_effect = [
        httpx.Response(
            429, json=error_body("Rate limit", code=429), headers={"retry-after-ms": "1500"}
        ),
        httpx.Response(401, json=error_body("Incorrect API key provided: sk-op***7x", code=401)),
    ]
    provider = make(client, retry=RetryPolicy(max_attempts=3, sleep=sleep))
    with pytest.raises(AuthenticationError):
        await provider.complete(ask())
    assert waits == [1.5]
    chat.side_effect = None
    chat.respond(429, json=error_body("Rate limit", code=429), headers={"retry-after": "2"})
    with pytest.raises(RateLimited) as caught:
        await make(client, retry=RetryPolicy(max_attempts=1)).complete(ask())
    assert caught.value.retry_after == 2.0


async def test_health_asks_for_the_configured_model(
    api: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    api.get("/models/gpt-4o-mini").respond(json={"id": "gpt-4o-mini", "object": "model"})
    assert (await make(client).health()).ok
    api.get("/models/gpt-4o-mini").respond(401, json=error_body("bad key", code=401))
    health = await make(client).health()
    assert health.status == "down"
    assert "bad key" in (health.detail or "")


def test_a_missing_key_names_both_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from hi_moe.providers.openai_json import OpenAIJSONProvider

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as caught:
        OpenAIJSONProvider("gpt-4o-mini")
    assert caught.value.setting == "HI_MOE_OPENAI__API_KEY"


def test_settings_build_the_provider_without_showing_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HI_MOE_PROVIDER", "openai")
    monkeypatch.setenv("HI_MOE_OPENAI__MODEL", "gpt-4o-mini")
    monkeypatch.setenv("HI_MOE_OPENAI__API_KEY", KEY)
    monkeypatch.setenv("HI_MOE_OPENAI__ADAPTERS", '{"math": "ft:gpt-4o-mini:acme:math:x"}')
    with caplog.at_level(logging.DEBUG):
        settings = Settings()
        provider = load_provider(settings)
    assert provider.name == "openai"
    assert getattr(provider, "adapter_models", None) == {"math": "ft:gpt-4o-mini:acme:math:x"}
    for text in (repr(provider), repr(settings), str(settings.model_dump()), caplog.text):
        assert KEY not in text
