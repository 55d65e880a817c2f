"""Every body ModalVLLMProvider sends parses in vLLM's own request class, with the constraint
in `structured_outputs`: a field vLLM ignored would still be answered 200, unconstrained."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
import pytest

from hi_moe import Choice, CompletionRequest, Grammar, JsonSchema, Message, Regex
from hi_moe.errors import ConstraintViolation
from hi_moe.types import Constraint
from tests.support import requires
from tests.unit.vllm_stub import URL, chat_body, vllm_routes

pytestmark = [pytest.mark.integration, requires("vllm", "server"), requires("openai", "openai")]

CASES: list[tuple[Constraint | None, str, Any]] = [
    (None, "", None),
    (JsonSchema({"type": "object", "properties": {"n": {"type": "integer"}}}), "json", None),
    (Grammar('root ::= "a" | "b"'), "grammar", 'root ::= "a" | "b"'),
    (Regex("[0-9]{2}"), "regex", "[0-9]{2}"),
    (Choice(["yes", "no"]), "choice", ["yes", "no"]),
]


async def sent_bodies(requests: list[CompletionRequest]) -> list[dict[str, Any]]:
    from hi_moe.providers.modal_vllm import ModalVLLMProvider

    with vllm_routes() as router:
        chat = router.post("/v1/chat/completions").respond(json=chat_body("x"))
        async with httpx.AsyncClient() as client:
            provider = ModalVLLMProvider(URL, api_key="k", http_client=client)
            for request in requests:
                # Only the body sent matters here; the stub's answer fits no constraint.
                with contextlib.suppress(ConstraintViolation):
                    await provider.complete(request)
        return [json.loads(call.request.content) for call in chat.calls]


@pytest.mark.parametrize("adapter", [None, "python-lora"])
async def test_every_body_parses_in_vllms_chat_completion_request(adapter: str | None) -> None:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    requests = [
        CompletionRequest(
            messages=[
                Message(role="system", content="Be brief."),
                Message(role="user", content="Hi"),
            ],
            adapter=adapter,
            constraint=constraint,
            max_tokens=16,
            temperature=0.3,
            top_p=0.9,
            stop=["\n\n"],
            seed=11,
        )
        for constraint, _, _ in CASES
    ]
    bodies = await sent_bodies(requests)
    assert len(bodies) == len(CASES)
    for body, (constraint, key, value) in zip(bodies, CASES, strict=True):
        parsed = ChatCompletionRequest.model_validate(body)
        # Nothing we send lands in vLLM's catch-all for unknown fields.
        assert parsed.model_extra in (None, {}), parsed.model_extra
        assert parsed.model == (adapter or "tiny-base")
        assert parsed.max_completion_tokens == 16
        assert parsed.seed == 11
        assert parsed.stop == ["\n\n"]
        outputs = parsed.structured_outputs
        if constraint is None:
            assert outputs is None
            continue
        assert outputs is not None
        expected = constraint.schema if isinstance(constraint, JsonSchema) else value
        assert getattr(outputs, key) == expected
        others = {"json", "grammar", "regex", "choice"} - {key}
        assert all(getattr(outputs, other) is None for other in others)
