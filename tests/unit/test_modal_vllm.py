"""ModalVLLMProvider on the wire (respx): bodies, headers, adapters, errors, cold starts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from hi_moe import Choice, CompletionRequest, Grammar, JsonSchema, Regex
from hi_moe.errors import (
    AuthenticationError,
    BadResponse,
    ConfigError,
    ConstraintViolation,
    HiMoeError,
    InvalidConstraint,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnknownAdapter,
)
from hi_moe.providers.retry import RetryPolicy
from hi_moe.types import Completion, Constraint
from tests.support import requires
from tests.unit.vllm_stub import (
    BASE,
    URL,
    chat_body,
    error_body,
    models_body,
    sent_json,
    sse,
    stream_chunks,
    vllm_routes,
)

pytestmark = requires("openai", "openai")

API_KEY = "sk-vllm-unit-0f9e8d"
PROXY_KEY = "wk-proxy-unit-1a2b"
PROXY_SECRET = "ws-proxy-unit-3c4d"
SECRETS = (API_KEY, PROXY_KEY, PROXY_SECRET)


def no_sleep_policy(**fields: Any) -> tuple[RetryPolicy, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return RetryPolicy(sleep=sleep, **fields), waits


def make(client: httpx.AsyncClient, **fields: Any) -> Any:
    from hi_moe.providers.modal_vllm import ModalVLLMProvider

    fields.setdefault("retry", no_sleep_policy()[0])
    return ModalVLLMProvider(URL, api_key=API_KEY, http_client=client, **fields)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as chosen:
        yield chosen


@pytest.fixture
def server() -> Any:
    with vllm_routes() as router:
        yield router


def ask(constraint: Constraint | None = None, **fields: Any) -> CompletionRequest:
    return CompletionRequest.from_prompt("Say hi.", constraint=constraint, **fields)


# -- request bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "wire", "answer"),
    [
        (JsonSchema({"type": "object"}), {"json": {"type": "object"}}, "{}"),
        (Grammar('root ::= "a" | "b"'), {"grammar": 'root ::= "a" | "b"'}, "b"),
        (Regex("[0-9]{3}"), {"regex": "[0-9]{3}"}, "123"),
        (Choice(["yes", "no"]), {"choice": ["yes", "no"]}, "no"),
    ],
    ids=["json", "grammar", "regex", "choice"],
)
async def test_each_constraint_kind_is_sent_in_structured_outputs(
    server: respx.MockRouter,
    client: httpx.AsyncClient,
    constraint: Constraint,
    wire: dict[str, Any],
    answer: str,
) -> None:
    chat = server.post("/v1/chat/completions").respond(json=chat_body(answer))
    provider = make(client)
    completion = await provider.complete(
        ask(constraint, max_tokens=32, temperature=0.5, top_p=0.9, stop=["\n"], seed=7)
    )
    assert sent_json(chat) == {
        "model": BASE,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_completion_tokens": 32,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 7,
        "structured_outputs": wire,
    }
    assert completion.text == answer
    assert not any(key.startswith("guided_") for key in sent_json(chat))


async def test_equal_schemas_in_other_key_orders_go_on_the_wire_in_their_own_order(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    # Equal constraints hash alike, so they share cache entries; property order still shapes
    # what XGrammar generates, so what is sent must be each request's own order.
    chat = server.post("/v1/chat/completions").respond(json=chat_body('{"a":1,"b":2}'))
    provider = make(client)
    ab = JsonSchema({"type": "object", "properties": {"a": {}, "b": {}}})
    ba = JsonSchema({"type": "object", "properties": {"b": {}, "a": {}}})
    assert ab == ba
    assert hash(ab) == hash(ba)
    for constraint in (ab, ba, ab):
        await provider.complete(ask(constraint))
    orders = [
        list(sent_json(chat, i)["structured_outputs"]["json"]["properties"]) for i in (0, 1, 2)
    ]
    assert orders == [["a", "b"], ["b", "a"], ["a", "b"]]


async def test_an_adapter_goes_in_model_and_an_unconstrained_request_sends_no_constraint(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions").respond(json=chat_body(model="math-lora"))
    completion = await make(client).complete(ask(adapter="math-lora"))
    body = sent_json(chat)
    assert body["model"] == "math-lora"
    assert "structured_outputs" not in body
    assert "stop" not in body
    assert "seed" not in body
    assert completion.adapter == "math-lora"
    assert completion.model == "math-lora"
    assert completion.usage.total_tokens == 10
    assert completion.provider == "vllm"


async def test_bearer_and_modal_proxy_headers_go_on_every_request(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions").respond(json=chat_body())
    provider = make(client, proxy_key=PROXY_KEY, proxy_secret=PROXY_SECRET)
    await provider.complete(ask(adapter="python-lora"))
    for route in (server.routes["health"], server.routes["models"], chat):
        headers = route.calls[-1].request.headers
        assert headers["authorization"] == f"Bearer {API_KEY}"
        assert headers["modal-key"] == PROXY_KEY
        assert headers["modal-secret"] == PROXY_SECRET


def test_proxy_auth_needs_both_halves() -> None:
    from hi_moe.providers.modal_vllm import ModalVLLMProvider

    with pytest.raises(ConfigError) as caught:
        ModalVLLMProvider(URL, proxy_key=PROXY_KEY)
    assert caught.value.setting == "HI_MOE_MODAL__PROXY_SECRET"
    assert PROXY_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://x.modal.run", "https://x.modal.run"),
        ("https://x.modal.run/v1/", "https://x.modal.run"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_endpoints_are_normalised(endpoint: str, expected: str) -> None:
    from hi_moe.providers.modal_vllm import normalise_endpoint

    assert normalise_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["http://10.0.0.5:8000", "http://vllm.internal"])
def test_plain_http_to_another_host_is_refused_unless_allowed(endpoint: str) -> None:
    from hi_moe.providers.modal_vllm import normalise_endpoint

    with pytest.raises(ConfigError, match="plain http") as caught:
        normalise_endpoint(endpoint)
    assert caught.value.setting == "HI_MOE_MODAL__ALLOW_INSECURE_HTTP"
    assert normalise_endpoint(endpoint, allow_insecure_http=True) == endpoint


@pytest.mark.parametrize("endpoint", ["ftp://x", "x.modal.run", ""])
def test_a_malformed_endpoint_is_a_config_error(endpoint: str) -> None:
    from hi_moe.providers.modal_vllm import normalise_endpoint

    with pytest.raises(ConfigError):
        normalise_endpoint(endpoint)


# -- adapters ---------------------------------------------------------------------------------


async def test_adapters_are_the_models_whose_parent_is_the_base_and_are_cached(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    provider = make(client)
    assert await provider.adapters() == ["python-lora", "math-lora"]
    assert await provider.adapters() == ["python-lora", "math-lora"]
    assert server.routes["models"].call_count == 1


async def test_an_unknown_adapter_is_refused_after_one_fresh_look_without_a_completion(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions").respond(json=chat_body())
    provider = make(client)
    await provider.adapters()
    with pytest.raises(UnknownAdapter) as caught:
        await provider.complete(ask(adapter="sql-lora"))
    assert caught.value.available == ("math-lora", "python-lora")
    assert "math-lora" in str(caught.value)
    assert chat.call_count == 0
    assert server.routes["models"].call_count == 2  # cached, then refreshed once on the miss


async def test_an_adapter_loaded_elsewhere_is_found_on_refresh(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    server.post("/v1/chat/completions").respond(json=chat_body())
    provider = make(client)
    await provider.adapters()
    server.routes["models"].respond(json=models_body(("python-lora", "math-lora", "sql-lora")))
    completion = await provider.complete(ask(adapter="sql-lora"))
    assert completion.adapter == "sql-lora"


async def test_a_404_on_model_is_an_unknown_adapter(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    server.post("/v1/chat/completions").respond(
        404, json=error_body("The model `math-lora` does not exist.", code=404, param="model")
    )
    provider = make(client)
    with pytest.raises(UnknownAdapter) as caught:
        await provider.complete(ask(adapter="math-lora"))
    assert caught.value.adapter == "math-lora"


async def test_load_and_unload_adapter_send_vllms_bodies(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    load = server.post("/v1/load_lora_adapter").respond(200, text="Success")
    unload = server.post("/v1/unload_lora_adapter").respond(200, text="Success")
    provider = make(client)
    await provider.load_adapter("sql-lora", "/adapters/sql-lora")
    await provider.load_adapter("sql-lora", "/adapters/sql-lora-v2", replace=True)
    await provider.unload_adapter("sql-lora")
    assert sent_json(load, 0) == {
        "lora_name": "sql-lora",
        "lora_path": "/adapters/sql-lora",
        "load_inplace": False,
    }
    assert sent_json(load, 1)["load_inplace"] is True
    assert sent_json(unload) == {"lora_name": "sql-lora"}


async def test_unloading_an_adapter_that_is_not_there_names_those_that_are(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    server.post("/v1/unload_lora_adapter").respond(
        404, json=error_body("The lora adapter 'x' cannot be found.", code=404)
    )
    with pytest.raises(UnknownAdapter) as caught:
        await make(client).unload_adapter("x")
    assert caught.value.available == ("math-lora", "python-lora")


async def test_a_server_without_runtime_loading_says_how_to_enable_it(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    server.post("/v1/load_lora_adapter").respond(404, json={"detail": "Not Found"})
    with pytest.raises(RequestRejected, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
        await make(client).load_adapter("x", "/adapters/x")


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "retryable"),
    [
        (401, error_body("Unauthorized", code=401), {}, AuthenticationError, False),
        (403, error_body("Forbidden", code=403), {}, AuthenticationError, False),
        (408, error_body("Request Timeout", code=408), {}, ProviderTimeout, True),
        (429, error_body("Too many", code=429), {"retry-after": "7"}, RateLimited, True),
        (500, error_body("boom", code=500), {}, ProviderUnavailable, True),
        (503, {"detail": "starting"}, {}, ProviderUnavailable, True),
        (400, error_body("too long", code=400, param="max_tokens"), {}, RequestRejected, False),
        (422, {"detail": [{"msg": "bad"}]}, {}, RequestRejected, False),
    ],
)  # fmt: skip
async def test_each_error_status_maps_to_its_error(
    server: respx.MockRouter,
    client: httpx.AsyncClient,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    expected: type[HiMoeError],
    retryable: bool,
) -> None:
    chat = server.post("/v1/chat/completions").respond(
        status, json=body, headers={"x-request-id": "req-42", **headers}
    )
    policy, _ = no_sleep_policy(max_attempts=1)
    with pytest.raises(expected) as caught:
        await make(client, retry=policy).complete(ask())
    error: Any = caught.value
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.request_id == "req-42"
    assert error.provider == "vllm"
    assert chat.call_count == 1
    if status == 429:
        assert error.retry_after == 7.0


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (Grammar('root ::= "a"'), "Invalid grammar specification."),
        (Regex("a+"), "Failed to transform regex into a grammar: unsupported"),
    ],
)
async def test_the_server_refusing_a_constraint_is_an_invalid_constraint(
    server: respx.MockRouter, client: httpx.AsyncClient, constraint: Constraint, message: str
) -> None:
    server.post("/v1/chat/completions").respond(400, json=error_body(message, code=400))
    with pytest.raises(InvalidConstraint, match="rejected by the server") as caught:
        await make(client).complete(ask(constraint))
    assert caught.value.kind == constraint.kind
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(200, text="{not json"), BadResponse),
        (httpx.Response(200, json={"id": "x", "choices": []}), BadResponse),
        (httpx.Response(200, json=[chat_body()]), BadResponse),
        (httpx.Response(200, json={"choices": [{"message": None}]}), BadResponse),
        (httpx.Response(200, json={"choices": [{"message": {"content": 42}}]}), BadResponse),
        (httpx.Response(200, json=chat_body() | {"usage": {"prompt_tokens": "many"}}), BadResponse),
        (httpx.Response(200, json=chat_body() | {"usage": "none"}), BadResponse),
        (httpx.ConnectError("refused"), ProviderUnavailable),
        (httpx.RemoteProtocolError("peer closed connection"), ProviderUnavailable),
        (httpx.ReadTimeout("slow"), ProviderTimeout),
    ],
    ids=[
        "malformed",
        "no-choices",
        "a-list",
        "no-message",
        "content-not-text",
        "usage-not-int",
        "usage-not-object",
        "connect",
        "reset",
        "timeout",
    ],
)
async def test_transport_failures_and_malformed_bodies_are_retryable_errors(
    server: respx.MockRouter,
    client: httpx.AsyncClient,
    answer: httpx.Response | Exception,
    expected: type[HiMoeError],
) -> None:
    route = server.post("/v1/chat/completions")
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    policy, _ = no_sleep_policy(max_attempts=2)
    with pytest.raises(expected) as caught:
        await make(client, retry=policy).complete(ask())
    assert caught.value.retryable
    assert route.call_count == 2


async def test_the_completion_carries_the_servers_request_id_model_and_usage(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions")
    chat.side_effect = [
        httpx.Response(200, json=chat_body("a"), headers={"x-request-id": "req-7"}),
        httpx.Response(200, json=chat_body("b") | {"usage": None}),
        httpx.Response(200, json=chat_body("c", finish_reason="length")),
    ]
    provider = make(client)
    first, second, third = [await provider.complete(ask()) for _ in range(3)]
    assert (first.text, first.request_id, first.model) == ("a", "req-7", BASE)
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (7, 3)
    assert second.request_id == "chatcmpl-1"  # no header: the body's id
    assert second.usage.total_tokens == 0  # a server that sends no usage
    assert (third.text, third.finish_reason) == ("c", "length")


async def test_a_200_that_breaks_the_constraint_is_a_violation_every_time(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    # A server that ignored the constraint (e.g. an old field name) answers 200 regardless.
    server.post("/v1/chat/completions").respond(json=chat_body("definitely not a choice"))
    provider = make(client)
    for _ in range(5):
        with pytest.raises(ConstraintViolation) as caught:
            await provider.complete(ask(Choice(["yes", "no"])))
        assert caught.value.text == "definitely not a choice"


# -- retries ----------------------------------------------------------------------------------


async def test_429_waits_as_long_as_retry_after_says(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions")
    chat.side_effect = [
        httpx.Response(429, json=error_body("slow down", code=429), headers={"retry-after": "3"}),
        httpx.Response(
            429, json=error_body("slow down", code=429), headers={"retry-after-ms": "250"}
        ),
        httpx.Response(200, json=chat_body()),
    ]
    policy, waits = no_sleep_policy()
    completion = await make(client, retry=policy).complete(ask())
    assert completion.text == "hello"
    assert waits == [3.0, 0.25]


async def test_503_is_retried_with_bounded_jittered_backoff(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions")
    chat.side_effect = [httpx.Response(503)] * 3 + [httpx.Response(200, json=chat_body())]
    policy, waits = no_sleep_policy(max_attempts=4, backoff_s=0.5, max_backoff_s=30.0)
    await make(client, retry=policy).complete(ask())
    assert chat.call_count == 4
    assert len(waits) == 3
    for attempt, wait in enumerate(waits, start=1):
        assert 0 <= wait <= 0.5 * 2**attempt


async def test_400_is_never_retried(server: respx.MockRouter, client: httpx.AsyncClient) -> None:
    chat = server.post("/v1/chat/completions").respond(400, json=error_body("bad", code=400))
    policy, waits = no_sleep_policy(max_attempts=5)
    with pytest.raises(RequestRejected):
        await make(client, retry=policy).complete(ask())
    assert chat.call_count == 1
    assert waits == []


async def test_attempts_are_bounded_and_the_sdk_adds_none_of_its_own(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions").respond(503)
    policy, _ = no_sleep_policy(max_attempts=3)
    with pytest.raises(ProviderUnavailable):
        await make(client, retry=policy).complete(ask())
    assert chat.call_count == 3  # the SDK's own retries would make this 9


async def test_the_total_deadline_stops_retrying_even_with_attempts_left(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions").respond(
        429, json=error_body("later", code=429), headers={"retry-after": "0.4"}
    )
    provider = make(client, retry=RetryPolicy(max_attempts=100, deadline_s=1.0))
    with pytest.raises(RateLimited):
        await provider.complete(ask())
    assert 2 <= chat.call_count <= 4


async def test_a_request_never_waits_past_what_is_left_of_the_deadline(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    seen: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(float(request.extensions["timeout"]["read"]))
        return httpx.Response(503)

    server.post("/v1/chat/completions").mock(side_effect=record)
    policy, _ = no_sleep_policy(max_attempts=2, deadline_s=5.0)
    with pytest.raises(ProviderUnavailable):
        await make(client, retry=policy, request_timeout_s=60.0).complete(ask())
    assert seen
    assert all(timeout <= 5.0 for timeout in seen)


# -- cold starts ------------------------------------------------------------------------------


async def test_a_cold_server_is_waited_for_on_health_before_the_first_request(
    server: respx.MockRouter,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hi_moe.providers import readiness

    monkeypatch.setattr(readiness, "_POLL_INTERVAL_S", (0.01, 0.02))
    server.routes["health"].side_effect = [
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(200),
    ]
    chat = server.post("/v1/chat/completions").respond(json=chat_body())
    provider = make(client, startup_timeout_s=30.0, request_timeout_s=1.0)
    with caplog.at_level(logging.INFO, logger="hi_moe"):
        await provider.complete(ask())
        await provider.complete(ask())
    assert server.routes["health"].call_count == 3  # once ready, never probed again
    assert chat.call_count == 2
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "waiting up to 30 s" in messages
    assert "scaled-to-zero" in messages
    assert "is ready after" in messages


async def test_a_server_that_never_starts_fails_at_the_startup_deadline(
    server: respx.MockRouter, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hi_moe.providers import readiness

    monkeypatch.setattr(readiness, "_POLL_INTERVAL_S", (0.05, 0.1))
    server.routes["health"].respond(503)
    chat = server.post("/v1/chat/completions").respond(json=chat_body())
    provider = make(client, startup_timeout_s=0.5)
    with pytest.raises(ProviderTimeout, match="startup deadline"):
        await provider.complete(ask())
    assert chat.call_count == 0
    assert server.routes["health"].call_count >= 2


async def test_health_reports_starting_down_and_ok(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    provider = make(client)
    server.routes["health"].respond(503)
    assert (await provider.health()).status == "starting"
    server.routes["health"].mock(side_effect=httpx.ConnectError("refused"))
    assert (await provider.health()).status == "down"
    server.routes["health"].mock(side_effect=None, return_value=httpx.Response(200))
    health = await provider.health()
    assert health.ok
    assert health.latency_s is not None


# -- streaming --------------------------------------------------------------------------------


async def test_a_stream_yields_text_and_ends_with_usage_from_the_last_chunk(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    chat = server.post("/v1/chat/completions").respond(
        200,
        content=sse(*stream_chunks(["he", "ll", "o"], model="python-lora")),
        headers={"content-type": "text/event-stream"},
    )
    stream = make(client).stream(ask(adapter="python-lora"))
    pieces = [piece async for piece in stream]
    assert pieces == ["he", "ll", "o"]
    assert sent_json(chat)["stream_options"] == {"include_usage": True}
    completion = stream.completion
    assert completion is not None
    assert completion.text == "hello"
    assert completion.usage.prompt_tokens == 5
    assert completion.usage.completion_tokens == 3
    assert completion.model == "python-lora"


async def test_a_constrained_stream_that_breaks_its_constraint_raises_at_the_end(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    server.post("/v1/chat/completions").respond(
        200,
        content=sse(*stream_chunks(["ma", "ybe"])),
        headers={"content-type": "text/event-stream"},
    )
    stream = make(client).stream(ask(Choice(["yes", "no"])))
    with pytest.raises(ConstraintViolation):
        async for _ in stream:
            pass


# -- secrets ----------------------------------------------------------------------------------


async def test_secrets_appear_in_no_log_error_or_repr(
    server: respx.MockRouter, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    chat = server.post("/v1/chat/completions")
    chat.side_effect = [
        httpx.Response(503, json=error_body("overloaded", code=503)),
        httpx.Response(401, json=error_body("Unauthorized", code=401)),
    ]
    policy, _ = no_sleep_policy()
    provider = make(client, retry=policy, proxy_key=PROXY_KEY, proxy_secret=PROXY_SECRET)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as caught:
        await provider.complete(ask())
    seen = " ".join(
        [caplog.text, str(caught.value), repr(caught.value), repr(provider), str(caught.value.args)]
    )
    assert "overloaded" in caplog.text  # the retry was logged
    for secret in SECRETS:
        assert secret not in seen


# -- our bugs are not server faults -----------------------------------------------------------


@pytest.mark.parametrize("bug", [KeyError("model"), TypeError("unhashable"), AttributeError("x")])
async def test_an_exception_from_our_own_code_propagates_and_is_not_retried(
    server: respx.MockRouter,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    bug: Exception,
) -> None:
    chat = server.post("/v1/chat/completions").respond(json=chat_body("hi"))
    provider = make(client)
    calls = 0

    def broken(*args: Any, **kwargs: Any) -> Completion:
        nonlocal calls
        calls += 1
        raise bug

    monkeypatch.setattr(provider, "_read_completion", broken)
    with pytest.raises(type(bug)):
        await provider.complete(ask())
    assert calls == 1  # one attempt: a bug is not retried 4 times as a fault
    assert chat.call_count == 1


async def test_a_body_of_the_wrong_shape_is_bad_response_however_deep(
    server: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    weird = [
        [],
        {"choices": "x"},
        {"choices": [{"message": {"content": "hi"}, "finish_reason": ["stop"]}], "model": 3},
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": -1}},
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": True}},
    ]
    server.post("/v1/chat/completions").mock(
        side_effect=[httpx.Response(200, json=w) for w in weird]
    )
    provider = make(client, retry=no_sleep_policy(max_attempts=1)[0])
    outcomes = []
    for _ in weird:
        try:
            completion = await provider.complete(ask())
        except BadResponse:
            outcomes.append("BadResponse")
        else:
            outcomes.append(completion.text)
    # A finish reason or model of the wrong type is ignored, not fatal; everything else is typed.
    assert outcomes == ["BadResponse", "BadResponse", "hi", "BadResponse", "BadResponse"]
