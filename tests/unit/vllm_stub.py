"""A respx-mocked vLLM server: the routes and bodies vLLM 0.32 answers with (facts.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import respx

URL = "https://vllm.example.test"
BASE = "tiny-base"
ADAPTERS = ("python-lora", "math-lora")


def models_body(adapters: tuple[str, ...] = ADAPTERS) -> dict[str, Any]:
    entries = [{"id": BASE, "object": "model", "parent": None, "root": "/models/tiny"}]
    entries += [
        {"id": name, "object": "model", "parent": BASE, "root": f"/adapters/{name}"}
        for name in adapters
    ]
    return {"object": "list", "data": entries}


def chat_body(
    text: str = "hello", *, model: str = BASE, finish_reason: str = "stop"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def error_body(message: str, *, code: int, param: str | None = None) -> dict[str, Any]:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(code, "Error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def sse(*chunks: dict[str, Any]) -> bytes:
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def stream_chunks(pieces: list[str], *, model: str = BASE) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in pieces
    ]
    chunks.append(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    )
    chunks.append(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces), "total_tokens": 0},
        }
    )
    return chunks


@contextmanager
def vllm_routes(adapters: tuple[str, ...] = ADAPTERS) -> Iterator[respx.MockRouter]:
    """/health and /v1/models answered; tests add /v1/chat/completions themselves."""
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        router.get("/health", name="health").mock(return_value=httpx.Response(200))
        router.get("/v1/models", name="models").mock(
            return_value=httpx.Response(200, json=models_body(adapters))
        )
        yield router


def sent_json(route: respx.Route, call: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[call].request.content)
    return body
