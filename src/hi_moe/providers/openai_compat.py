"""The one OpenAI-compatible request path, shared by the vLLM and OpenAI providers.

A request goes: `_body` builds the chat-completions body → `RetryPolicy.call` runs the attempts
(each one: `_before_request` waits for readiness, the model name is looked up, the body is
posted) → the openai SDK (its own retries off) posts it → `sdk_errors.translate_error` turns
SDK errors and server error bodies into the error tree → `_read_completion` turns the response
body into a `Completion` (read field by field in `chat_body`), which `InferenceProvider.complete`
then checks against the constraint. The whole call runs under one deadline (`hi_moe.deadline`);
no stage has a retry loop of its own.

Errors are mapped where they happen: transport failures and server statuses where the request
is sent, a body of the wrong shape where it is read (`BadResponse`). An exception from our own
code (a `KeyError`, a `TypeError`) is a bug: it propagates as it is, never retried as a fault.

The body is posted with the SDK's `client.post` (its documented way to send any request), not
`chat.completions.create`: `create` re-walks the body against its TypedDicts and builds a
pydantic `ChatCompletion` from the answer, which together cost about half the SDK's CPU per
request (benchmarks/provider_overhead.py). The SDK still does everything else: base
URL, auth and headers, timeouts, connection pooling and its error types. What `_body` builds
is exactly what goes on the wire.

Subclasses say only what differs: which model name a request goes to, how a constraint is
expressed on the wire, and what a 404 on the model means.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from hi_moe.errors import BadResponse, ConfigError, HiMoeError
from hi_moe.providers.base import InferenceProvider
from hi_moe.providers.chat_body import chat_fields, chunk_fields
from hi_moe.providers.retry import RetryPolicy
from hi_moe.providers.sdk_errors import (
    UNDECODABLE,
    error_param,
    stream_faults,
    translatable,
    translate_error,
)
from hi_moe.types import Completion, CompletionRequest, Constraint, FinishReason, Usage, exact_key

__all__ = ["OpenAICompatibleProvider", "error_param", "translate_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class OpenAICompatibleProvider(InferenceProvider):
    """Chat completions over the openai SDK. Subclasses: `ModalVLLMProvider`,
    `OpenAIJSONProvider`."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        headers: Mapping[str, str] | None = None,
        http_client: Any | None = None,
        request_timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """
        Args:
            http_client: an `httpx.AsyncClient` (or the SDK's httpx2 client) to send through,
                e.g. one with respx mocking or custom limits. The caller closes it. By default
                the SDK's own pooled client is used, and closed by `aclose()`.
        """
        try:
            import openai
        except ImportError:
            raise ConfigError(
                f"the {self.name} provider needs the openai SDK: pip install 'hi-moe[openai]'",
                setting="HI_MOE_PROVIDER",
            ) from None

        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            # The SDK insists on a key; a server without --api-key ignores the placeholder.
            api_key=api_key or "no-key",
            max_retries=0,  # retries live in RetryPolicy only
            timeout=request_timeout_s,
            default_headers=dict(headers or {}),
            http_client=http_client,
        )
        self._owns_http_client = http_client is None
        self._encoded_constraints: dict[tuple[Constraint, str], bytes] = {}
        self.request_timeout_s = request_timeout_s
        self.retry = retry or RetryPolicy()
        self.deadline_s = self.retry.deadline_s

    # -- what subclasses say ------------------------------------------------------------------

    async def _model_for(self, request: CompletionRequest, seconds_left: float) -> str:
        """The `model` field for this request (a lookup gets at most `seconds_left`)."""
        raise NotImplementedError

    def _constraint_fields(self, constraint: Constraint) -> dict[str, Any]:
        """Body fields that enforce `constraint`."""
        raise NotImplementedError

    async def _before_request(self, timeout_s: float | None = None) -> None:
        """Called before each attempt is sent (to wait out a cold start, say), with at most
        `timeout_s` to spend."""

    def _after_failure(self, error: HiMoeError) -> None:
        """Called with each attempt's mapped error (to forget readiness after a 503, say)."""

    async def _translate(self, error: Exception, request: CompletionRequest) -> HiMoeError:
        return translate_error(error, provider=self.name, constraint=request.constraint)

    def _postprocess(self, request: CompletionRequest, text: str) -> str:
        """Adjust raw output text before it is checked (OpenAI's strict-mode nulls)."""
        return text

    # -- the request path ---------------------------------------------------------------------

    def _body(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            # vLLM deprecates `max_tokens` and newer OpenAI models refuse it; both take this.
            "max_completion_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.constraint is not None:
            body.update(self._constraint_fields(request.constraint))
        return body

    def _encode(self, request: CompletionRequest, model: str, **extra: Any) -> bytes:
        """`_body` as JSON bytes, with `extra` fields. The constraint's part (a schema can be
        megabytes) is serialized once per constraint, in the validation worker (`_warm`), not
        per request on the event loop."""
        constraint = request.constraint
        body = self._body(request.model_copy(update={"constraint": None}), model) | extra
        head: str = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        if constraint is None:
            return head.encode()
        return b"".join((head[:-1].encode(), b",", self._constraint_json(constraint), b"}"))

    def _constraint_json(self, constraint: Constraint) -> bytes:
        key = exact_key(constraint)  # the body says the schema as the caller wrote it
        found = self._encoded_constraints.get(key)
        if found is None:
            found = json.dumps(
                self._constraint_fields(constraint), separators=(",", ":"), ensure_ascii=False
            )[1:-1].encode()
            if len(self._encoded_constraints) >= 256:
                self._encoded_constraints.clear()
            self._encoded_constraints[key] = found
        return found

    def _warm(self, constraint: Constraint) -> None:
        self._constraint_json(constraint)

    async def _post(self, body: bytes, timeout_s: float, *, stream: bool = False) -> Any:
        """POST /chat/completions: the HTTP response, or with `stream` the SDK's chunk stream."""
        import httpx2

        # `security` as `create` sends it: the bearer key, not an admin key.
        options: Any = {"timeout": timeout_s, "security": {"bearer_auth": True}}
        if stream:
            import openai
            from openai.types.chat import ChatCompletionChunk

            return await self._client.post(
                "/chat/completions",
                content=body,
                options=options,
                cast_to=ChatCompletionChunk,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
        # Whichever httpx the transport uses, the SDK hands back its response as it came.
        return await self._client.post(
            "/chat/completions", content=body, options=options, cast_to=httpx2.Response
        )

    async def _send(
        self,
        request: CompletionRequest,
        body_for: Callable[[float], Awaitable[bytes]],
        read: Callable[[Any], T],
        *,
        stream: bool = False,
    ) -> T:
        """Send with retries. Each attempt waits for readiness, builds its body (`body_for`
        may look the model up) and posts it; `read` turns the response into a result inside
        the attempt, so a malformed body is retried like any other transient fault."""
        timeout = request.timeout_s or self.request_timeout_s

        async def attempt(seconds_left: float) -> T:
            try:
                await self._before_request(seconds_left)
                body = await body_for(seconds_left)
                try:
                    response = await self._post(body, min(timeout, seconds_left), stream=stream)
                except translatable() as error:
                    raise await self._translate(error, request) from error
                return read(response)
            except HiMoeError as error:
                self._after_failure(error)
                raise

        return await self.retry.call(attempt, what=f"{self.name} chat completion")

    async def _complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        await self._before_request()  # a cold start is waited for once, before the attempts

        async def body_for(seconds_left: float) -> bytes:
            return self._encode(request, await self._model_for(request, seconds_left))

        return await self._send(
            request, body_for, lambda response: self._read_completion(request, response, started)
        )

    def _read_completion(
        self, request: CompletionRequest, response: Any, started: float
    ) -> Completion:
        """The `Completion` in a chat-completions response; `BadResponse` for a body that is
        not JSON or not of the documented shape."""
        try:
            data = response.json()
        except UNDECODABLE as error:
            raise BadResponse(
                f"malformed response: {type(error).__name__}: {error}", provider=self.name
            ) from None
        text, finish, usage, model, body_id = chat_fields(data, self.name)
        header_id = response.headers.get("x-request-id")
        return Completion(
            text=self._postprocess(request, text),
            finish_reason=finish,
            usage=usage,
            provider=self.name,
            model=model,
            adapter=request.adapter,
            latency_s=time.perf_counter() - started,
            request_id=header_id or body_id,
        )

    async def _stream(self, request: CompletionRequest) -> AsyncIterator[str | Completion]:
        started = time.perf_counter()
        await self._before_request()

        async def body_for(seconds_left: float) -> bytes:
            model = await self._model_for(request, seconds_left)
            return self._encode(request, model, stream=True, stream_options={"include_usage": True})

        stream: Any = await self._send(request, body_for, lambda response: response, stream=True)
        finish_reason: FinishReason = "stop"
        usage = Usage()
        model, request_id = "", None
        try:
            async for chunk in stream:
                fields = chunk_fields(chunk, self.name)
                model = fields.model or model
                request_id = request_id or fields.id
                usage = fields.usage or usage
                finish_reason = fields.finish_reason or finish_reason
                if fields.text:
                    yield fields.text
        except stream_faults() as error:
            raise await self._translate(error, request) from error
        finally:
            await stream.close()
        yield Completion(
            text="",
            finish_reason=finish_reason,
            usage=usage,
            provider=self.name,
            model=model,
            adapter=request.adapter,
            latency_s=time.perf_counter() - started,
            request_id=request_id,
        )

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        timeout_s: float,
        cast_to: type[Any] = object,
    ) -> Any:
        """A request outside chat completions (/v1/models, /health, adapter loading), with
        the same headers, pool and error mapping. `path` is relative to /v1 or absolute."""
        try:
            if method == "GET":
                return await self._client.get(path, cast_to=cast_to, options={"timeout": timeout_s})
            return await self._client.post(
                path, body=body, cast_to=str, options={"timeout": timeout_s}
            )
        except translatable() as error:
            raise translate_error(error, provider=self.name) from error

    async def aclose(self) -> None:
        if self._owns_http_client:
            await self._client.close()
