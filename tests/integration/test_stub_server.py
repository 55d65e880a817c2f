"""Against a real HTTP server that ignores constraints: the client's check fails closed."""

from __future__ import annotations

import pytest

from hi_moe import Choice, CompletionRequest, JsonSchema, Regex
from hi_moe.errors import ConstraintViolation
from hi_moe.types import Constraint
from tests.servers.openai_stub import running
from tests.support import requires

pytestmark = [pytest.mark.integration, requires("openai", "openai")]

ANSWER = "Sure! Here is some text that satisfies nothing."


@pytest.mark.parametrize(
    "constraint",
    [
        Choice(["yes", "no"]),
        Regex("[0-9]+"),
        JsonSchema({"type": "object", "properties": {"a": {"type": "integer"}}}),
    ],
    ids=["choice", "regex", "json"],
)
async def test_a_200_that_breaks_the_constraint_is_a_violation_every_time(
    constraint: Constraint,
) -> None:
    from hi_moe.providers.modal_vllm import ModalVLLMProvider

    with running(ANSWER) as url:
        async with ModalVLLMProvider(url) as provider:
            request = CompletionRequest.from_prompt("Answer.", constraint=constraint)
            for _ in range(20):
                with pytest.raises(ConstraintViolation) as caught:
                    await provider.complete(request)
                assert caught.value.text == ANSWER
                assert caught.value.retryable
            unconstrained = await provider.complete(CompletionRequest.from_prompt("Answer."))
            assert unconstrained.text == ANSWER
