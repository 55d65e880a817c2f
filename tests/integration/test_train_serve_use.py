"""Train, serve, use: the training code runs for real on CPU (the tiny model, without 4-bit),
the real vLLM test server loads the adapter it wrote, and the adapter changes the output. Then
the deployment check passes against that server, as it would against Modal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hi_moe import CompletionRequest
from hi_moe.ops.training import TrainConfig, train_lora, validate_lines
from hi_moe.providers.modal_vllm import ModalVLLMProvider
from tests.integration.conftest import VLLMServer

pytestmark = pytest.mark.integration


def lines() -> list[str]:
    return [
        json.dumps({"domain": "math", "prompt": f"What is {a} + {b}?", "answer": f"{a + b}"})
        for a in range(8)
        for b in range(4)
    ]


async def test_an_adapter_trained_here_is_served_and_changes_the_output(
    vllm_server: VLLMServer, provider: ModalVLLMProvider, tmp_path: Path
) -> None:
    examples, problems = validate_lines(lines())
    assert problems == []
    assert examples[0]["messages"][0]["role"] == "system"  # the specialist's prompt
    target = train_lora(
        vllm_server.tiny.model_dir,
        examples,
        tmp_path / "trained-math-lora",
        # The server was started with --max-lora-rank 8; a high rate makes a few steps count.
        TrainConfig(
            rank=8, max_steps=6, learning_rate=5e-3, quantize_4bit=False,
            batch_size=4, gradient_accumulation=1, max_length=256,
        ),
    )  # fmt: skip
    config = json.loads((target / "adapter_config.json").read_text())
    assert config["r"] == 8
    assert set(config["target_modules"]) >= {"q_proj", "v_proj", "gate_proj", "down_proj"}

    await provider.load_adapter("trained-math-lora", str(target))
    try:
        ask = CompletionRequest.from_prompt("What is 3 + 2?", max_tokens=16, temperature=0.0)
        base = await provider.complete(ask)
        trained = await provider.complete(ask.model_copy(update={"adapter": "trained-math-lora"}))
        assert trained.model == "trained-math-lora"
        assert trained.text != base.text
    finally:
        await provider.unload_adapter("trained-math-lora")


def test_the_deployment_check_passes_against_a_real_server(vllm_server: VLLMServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")} | {
        "HI_MOE_PROVIDER": "modal",
        "HI_MOE_MODAL__ENDPOINT": vllm_server.url,
        "HI_MOE_MODAL__API_KEY": vllm_server.api_key,
    }
    done = subprocess.run(
        [sys.executable, "-m", "hi_moe.ops.deployment_check"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   health: ok" in done.stdout
    listed = next(line for line in done.stdout.splitlines() if line.startswith("ok   adapters:"))
    assert sorted(listed.removeprefix("ok   adapters: ").split(", ")) == [
        "math-lora",
        "python-lora",
    ]
    assert done.stdout.count("ok   ") >= 5  # health, adapters, base, two adapters, grammar
    assert "FAIL" not in done.stdout
