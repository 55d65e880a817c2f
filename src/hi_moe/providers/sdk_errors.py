"""The openai SDK's errors (and httpx's) mapped onto hi_moe's error tree.

`translate_error` is the one mapping: transport failures and timeouts become retryable
`ProviderError`s, statuses their typed errors, a server's "cannot parse this constraint" an
`InvalidConstraint`. Anything else is not a transport fault but a bug, and is raised as
`TypeError`, never relabelled as something to retry.
"""

from __future__ import annotations

import email.utils
import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

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
from hi_moe.types import Constraint

if TYPE_CHECKING:
    import openai

__all__ = [
    "UNDECODABLE",
    "error_param",
    "retry_after",
    "server_message",
    "stream_faults",
    "translatable",
    "translate_error",
]

# vLLM's words for a constraint it could not parse (facts.md): "Invalid grammar
# specification." and "Failed to transform <kind> into a grammar: ...".
_CONSTRAINT_MESSAGES = ("invalid grammar specification", "into a grammar", "invalid json schema")
# What a body that is not JSON raises while it is decoded (inside the SDK for streams).
UNDECODABLE = (ValueError,)


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
    if isinstance(error, UNDECODABLE):
        return BadResponse(
            f"malformed response: {type(error).__name__}: {error}", provider=provider
        )
    raise TypeError(f"not a transport or body error: {error!r}") from error


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
    """What sending can raise that is not our bug: the SDK's errors and transport errors."""
    import openai

    return (openai.APIError, *_transport_errors())


@functools.cache
def stream_faults() -> tuple[type[Exception], ...]:
    """What reading a stream can raise besides: a chunk that is not JSON."""
    return (*translatable(), *UNDECODABLE)
