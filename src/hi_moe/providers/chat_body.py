"""Reading chat-completions answers: a body, or a stream's chunks, checked field by field.

A body of another shape is `BadResponse` (retryable: a proxy's error page, a truncated body),
never an exception from deep inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from hi_moe.errors import BadResponse
from hi_moe.types import FinishReason, Usage

__all__ = ["ChunkFields", "chat_fields", "chunk_fields"]

_FINISH_REASONS = frozenset(get_args(FinishReason))


def _finish_reason(value: object) -> FinishReason:
    if isinstance(value, str) and value in _FINISH_REASONS:
        return value  # type: ignore[return-value]
    return "stop"


def _malformed(provider: str, what: str) -> BadResponse:
    return BadResponse(f"malformed response: {what}", provider=provider)


def _count(value: object, provider: str, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _malformed(provider, f"{what} is {value!r}, not a token count")
    return value


def _usage(value: object, provider: str) -> Usage | None:
    if value is None:
        return None
    # A dict in a body; an SDK model (not validated) in a stream chunk.
    if isinstance(value, dict):
        fields = value
    elif hasattr(value, "__dict__"):
        fields = vars(value)
    else:
        raise _malformed(provider, f"usage is {type(value).__name__}, not an object")
    return Usage(
        prompt_tokens=_count(fields.get("prompt_tokens"), provider, "usage.prompt_tokens"),
        completion_tokens=_count(
            fields.get("completion_tokens"), provider, "usage.completion_tokens"
        ),
    )


def chat_fields(data: object, provider: str) -> tuple[str, FinishReason, Usage, str, str | None]:
    """Text, finish reason, usage, model and id of a chat-completions body, checked field by
    field: a body of another shape is `BadResponse`, never an exception from deep inside."""
    if not isinstance(data, dict):
        raise _malformed(provider, f"the body is {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _malformed(provider, "no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _malformed(provider, "the choice has no message")
    content = message.get("content")
    # A refusal (OpenAI) comes instead of content: it then fails the constraint check.
    text = content if content is not None else (message.get("refusal") or "")
    if not isinstance(text, str):
        raise _malformed(provider, f"message content is {type(text).__name__}, not text")
    usage = _usage(data.get("usage"), provider) or Usage()
    model = data.get("model")
    body_id = data.get("id")
    return (
        text,
        _finish_reason(choice.get("finish_reason")),
        usage,
        model if isinstance(model, str) else "",
        body_id if isinstance(body_id, str) else None,
    )


@dataclass(frozen=True)
class ChunkFields:
    text: str
    finish_reason: FinishReason | None
    usage: Usage | None
    model: str
    id: str | None


def chunk_fields(chunk: Any, provider: str) -> ChunkFields:
    """What one stream chunk says. The SDK builds chunks without validating them, so each
    field is checked here: a chunk of the wrong shape is `BadResponse`."""
    choices = getattr(chunk, "choices", None) or []
    if not isinstance(choices, list):
        raise _malformed(provider, "a chunk's choices are not a list")
    text, finish = "", None
    if choices:
        choice = choices[0]
        reason = getattr(choice, "finish_reason", None)
        finish = _finish_reason(reason) if reason is not None else None
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None) if delta is not None else None
        if content is not None and not isinstance(content, str):
            raise _malformed(provider, f"a chunk's content is {type(content).__name__}")
        text = content or ""
    model = getattr(chunk, "model", None)
    chunk_id = getattr(chunk, "id", None)
    return ChunkFields(
        text=text,
        finish_reason=finish,
        usage=_usage(getattr(chunk, "usage", None), provider),
        model=model if isinstance(model, str) else "",
        id=chunk_id if isinstance(chunk_id, str) else None,
    )
