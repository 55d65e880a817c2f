"""Primary provider down (nothing listens at its endpoint): routed steps complete on the
fallback, and the run's summary says so."""

from __future__ import annotations

import pytest

from hi_moe.pipeline import PipelineSettings, ProgressMonitor
from hi_moe.providers import MockProvider
from hi_moe.retry import RetryPolicy
from hi_moe.serving import free_port
from tests.support import requires

pytestmark = [pytest.mark.integration, requires("openai", "openai")]


async def test_steps_complete_on_the_fallback_when_the_primary_is_down() -> None:
    from hi_moe.providers.modal_vllm import ModalVLLMProvider

    down = ModalVLLMProvider(
        f"http://127.0.0.1:{free_port()}",  # a port nothing listens on
        startup_timeout_s=0.5,
        retry=RetryPolicy(max_attempts=2, backoff_s=0.01),
    )
    backup = MockProvider(adapters=["python-lora", "math-lora"])
    monitor = ProgressMonitor(
        {"modal": down, "mock": backup},
        PipelineSettings(fallbacks=["mock"], max_steps=3, max_goal_chars=40),
        primary="modal",
    )
    async with down:
        result = await monitor.run("Add two numbers.")
    assert result.status == "succeeded", result.reason
    assert {step.provider for step in result.steps.values()} == {"mock"}
    summary = result.summary()
    for step in summary["steps"]:
        assert any("modal unavailable" in note for note in step["notes"]), step
    assert backup.requests  # the plan and every step were asked of the fallback
