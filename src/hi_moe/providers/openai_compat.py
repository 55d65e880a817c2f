"""The one OpenAI-compatible request path, shared by the vLLM and OpenAI providers.

A request goes: `_body` builds the chat-completions body → `RetryPolicy.call` runs the attempts
→ the openai SDK (its own retries off) posts it → `translate_error` turns SDK errors and server
error bodies into the error tree → `_read_completion` turns the response body into a
`Completion`, which `InferenceProvider.complete` then checks against the constraint.

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

import email.utils
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from hi_moe.errors import (
    AuthenticationError,
    BadResponse,
    HiMoeError,
    InvalidConstraint,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from hi_moe.providers.base import InferenceProvider
from hi_moe.retry import RetryPolicy
from hi_moe.types import Completion, CompletionRequest, Constraint, FinishReason, Usage

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAICompatibleProvider", "translate_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_FINISH_REASONS = frozenset(get_args(FinishReason))
# vLLM's words for a constraint it could not parse (facts.md): "Invalid grammar
# specification." and "Failed to transform <kind> into a grammar: ...".
_CONSTRAINT_MESSAGES = ("invalid grammar specification", "into a grammar", "invalid json schema")
# Exceptions a malformed or truncated body raises inside the SDK, outside its own error tree.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError)


def server_message(error: openai.APIStatusError) -> str:
    """The server's own words: vLLM and OpenAI put them in {"error": {"message": ...}}, and
    FastAPI's own errors (an unknown route, say) in {"detail": ...}."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    if isinstance(body, str) and body:
        return body
    return f"HTTP {error.status_code}"


def error_param(error: openai.APIStatusError) -> str | None:
    body = error.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    param = inner.get("param") if isinstance(inner, dict) else None
    return param if isinstance(param, str) else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(moment.timestamp() - time.time(), 0.0)


def translate_error(
    error: Exception, *, provider: str, constraint: Constraint | None = None
) -> HiMoeError:
    """Map an exception from `translatable()` onto the error tree."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return ProviderTimeout("no answer within the request timeout", provider=provider)
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        return ProviderUnavailable(f"cannot reach the server{detail}", provider=provider)
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = server_message(error)
        details: dict[str, Any] = {
            "provider": provider,
            "status_code": status,
            "request_id": error.request_id,
            "retry_after": retry_after(error.response.headers),
        }
        if status in (401, 403):
            return AuthenticationError(f"not authorised: {message}", **details)
        if status == 408:
            return ProviderTimeout(message, **details)
        if status == 429:
            return RateLimited(message, **details)
        if status >= 500:
            return ProviderUnavailable(message, **details)
        lowered = message.lower()
        if constraint is not None and any(words in lowered for words in _CONSTRAINT_MESSAGES):
            return InvalidConstraint(constraint.kind, f"rejected by the server: {message}")
        return RequestRejected(message, **details)
    if isinstance(error, _timeouts()):
        return ProviderTimeout(f"no answer in time: {type(error).__name__}", provider=provider)
    if isinstance(error, _transport_errors()):
        return ProviderUnavailable(
            f"connection failed: {type(error).__name__}: {error}", provider=provider
        )
    return BadResponse(f"malformed response: {type(error).__name__}: {error}", provider=provider)


@functools.cache
def _transport_errors() -> tuple[type[Exception], ...]:
    """httpx's and httpx2's transport errors: the SDK wraps them while sending, not while
    a stream is read."""
    import httpx

    errors: list[type[Exception]] = [httpx.TransportError]
    try:
        import httpx2
    except ImportError:
        pass
    else:
        errors.append(httpx2.TransportError)
    return tuple(errors)


@functools.cache
def _timeouts() -> tuple[type[Exception], ...]:
    import httpx

    errors: list[type[Exception]] = [httpx.TimeoutException]
    try:
        import httpx2
    except ImportError:
        pass
    else:
        errors.append(httpx2.TimeoutException)
    return tuple(errors)


@functools.cache
def translatable() -> tuple[type[Exception], ...]:
    """Every exception `translate_error` maps: the SDK's, transport errors, malformed bodies."""
    import openai

    return (openai.APIError, *_transport_errors(), *_MALFORMED)


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
        import openai

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
        self._encoded_constraints: dict[Constraint, bytes] = {}
        self.request_timeout_s = request_timeout_s
        self.retry = retry or RetryPolicy()

    # -- what subclasses say ------------------------------------------------------------------

    async def _model_for(self, request: CompletionRequest) -> str:
        """The `model` field for this request."""
        raise NotImplementedError

    def _constraint_fields(self, constraint: Constraint) -> dict[str, Any]:
        """Body fields that enforce `constraint`."""
        raise NotImplementedError

    async def _before_request(self) -> None:
        """Called before each request is sent (e.g. to wait out a cold start)."""

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
        found = self._encoded_constraints.get(constraint)
        if found is None:
            found = json.dumps(
                self._constraint_fields(constraint), separators=(",", ":"), ensure_ascii=False
            )[1:-1].encode()
            if len(self._encoded_constraints) >= 256:
                self._encoded_constraints.clear()
            self._encoded_constraints[constraint] = found
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
        body: bytes,
        read: Callable[[Any], T],
        *,
        stream: bool = False,
    ) -> T:
        """Send with retries; `read` turns the response into a result inside the attempt, so a
        malformed body is retried like any other transient fault."""
        timeout = request.timeout_s or self.request_timeout_s

        async def attempt(seconds_left: float) -> T:
            try:
                response = await self._post(body, min(timeout, seconds_left), stream=stream)
            except translatable() as error:
                raise await self._translate(error, request) from error
            try:
                return read(response)
            except (IndexError, *_MALFORMED) as error:
                raise BadResponse(
                    f"malformed response: {type(error).__name__}: {error}", provider=self.name
                ) from error

        return await self.retry.call(attempt, what=f"{self.name} chat completion")

    async def _complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        await self._before_request()
        body = self._encode(request, await self._model_for(request))
        return await self._send(
            request, body, lambda response: self._read_completion(request, response, started)
        )

    def _read_completion(
        self, request: CompletionRequest, response: Any, started: float
    ) -> Completion:
        """The `Completion` in a chat-completions response; a body of the wrong shape raises
        one of `_MALFORMED` (pydantic's ValidationError is a ValueError)."""
        data = response.json()
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        # A refusal (OpenAI) comes instead of content: it then fails the constraint check.
        text = content if content is not None else (message.get("refusal") or "")
        if not isinstance(text, str):
            raise TypeError(f"message content is {type(text).__name__}, not text")
        usage = data.get("usage") or {}
        return Completion(
            text=self._postprocess(request, text),
            finish_reason=_finish_reason(choice.get("finish_reason")),
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            ),
            provider=self.name,
            model=data.get("model") or "",
            adapter=request.adapter,
            latency_s=time.perf_counter() - started,
            request_id=response.headers.get("x-request-id") or data.get("id"),
        )

    async def _stream(self, request: CompletionRequest) -> AsyncIterator[str | Completion]:
        started = time.perf_counter()
        await self._before_request()
        body = self._encode(
            request,
            await self._model_for(request),
            stream=True,
            stream_options={"include_usage": True},
        )
        stream: Any = await self._send(request, body, lambda response: response, stream=True)
        finish_reason: FinishReason = "stop"
        usage = Usage()
        model, request_id = "", None
        try:
            async for chunk in stream:
                model = chunk.model or model
                request_id = request_id or chunk.id
                if chunk.usage is not None:
                    usage = Usage(
                        prompt_tokens=chunk.usage.prompt_tokens,
                        completion_tokens=chunk.usage.completion_tokens,
                    )
                if chunk.choices:
                    choice = chunk.choices[0]
                    if choice.finish_reason is not None:
                        finish_reason = _finish_reason(choice.finish_reason)
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
        except translatable() as error:
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


def _finish_reason(value: str | None) -> FinishReason:
    if value in _FINISH_REASONS:
        return value  # type: ignore[return-value]
    return "stop"
