"""Primary provider down (nothing listens at its endpoint): routed steps complete on the
fallback, and the run's summary says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hi_moe.ops.serving import free_port
from hi_moe.pipeline import PipelineSettings, ProgressMonitor
from hi_moe.providers import MockProvider
from hi_moe.providers.retry import RetryPolicy
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
    for step in summary["steps"]:  # found down, then skipped while it cools down
        assert any(
            note.startswith(("modal unavailable", "modal skipped")) for note in step["notes"]
        ), step
    assert backup.requests  # the plan and every step were asked of the fallback


def cli(*args: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    clean.update(
        HI_MOE_PIPELINE__JOURNAL=str(tmp_path / "journal.sqlite"),
        HI_MOE_PIPELINE__METRICS=str(tmp_path / "metrics.jsonl"),
        **env,
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hi_moe.cli", *args],
        capture_output=True, text=True, timeout=60, env=clean, cwd=tmp_path, check=False,
    )  # fmt: skip
    return done, time.monotonic() - started


def test_hi_moe_run_finishes_on_the_fallback_within_seconds_and_says_so(tmp_path: Path) -> None:
    # Paired with the same run on the mock alone: both pay for importing XGrammar (5 s here,
    # 15 s on a busy machine), which is not what is measured; the dead endpoint is. Before,
    # it cost the 900 s startup wait; now it costs the openai import and one refused
    # connection, which a loaded machine stretches to several seconds.
    (tmp_path / "alone").mkdir()
    alone, baseline = cli("run", "Add two numbers", tmp_path=tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    done, took = cli(
        "run", "Add two numbers",
        tmp_path=tmp_path,
        HI_MOE_PROVIDER="vllm",
        HI_MOE_MODAL__ENDPOINT=f"http://127.0.0.1:{free_port()}",
        HI_MOE_PIPELINE__FALLBACKS='["mock"]',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert took < baseline + 15, f"took {took:.1f} s, {baseline:.1f} s on the mock alone"
    # Found down by the adapter survey, the primary is not asked again: no failed call.
    assert "trying the next provider" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # The summary says which provider answered and why: the primary was not there.
    assert "vllm unavailable" in done.stderr or "vllm skipped" in done.stderr, done.stderr
    assert "nothing listens there" in done.stderr
    assert " mock " in done.stderr  # the steps table names the fallback


def test_hi_moe_complete_on_a_dead_endpoint_exits_1_within_seconds_with_one_line(
    tmp_path: Path,
) -> None:
    done, took = cli(
        "complete", "hello",
        tmp_path=tmp_path,
        HI_MOE_PROVIDER="vllm",
        HI_MOE_MODAL__ENDPOINT=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert took < 10, f"took {took:.1f} s"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ProviderUnreachable:")]
    assert len(errors) == 1, done.stderr
    assert "nothing listens there" in errors[0]
    assert "Traceback" not in done.stderr


def test_hi_moe_adapters_on_a_dead_endpoint_exits_1_within_seconds(tmp_path: Path) -> None:
    done, took = cli(
        "adapters",
        tmp_path=tmp_path,
        HI_MOE_PROVIDER="modal",  # the old name still works
        HI_MOE_MODAL__ENDPOINT=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert took < 10, f"took {took:.1f} s"
    assert "Traceback" not in done.stderr
