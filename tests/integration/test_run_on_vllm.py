"""`hi-moe run` end to end on the real vLLM test server (tiny random model, two adapters):
the plan is asked for under the plan schema and enforced by the server's XGrammar, and every
step goes to its domain's adapter."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import VLLMServer

pytestmark = pytest.mark.integration

ADAPTERS = {"python": "python-lora", "math": "math-lora"}


def test_hi_moe_run_completes_on_the_real_server(vllm_server: VLLMServer, tmp_path: Path) -> None:
    # The model is random: small bounds let its constrained output end within max_tokens.
    config = tmp_path / "hi_moe.toml"
    config.write_text(
        f"""
provider = "modal"

[modal]
endpoint = "{vllm_server.url}"
request_timeout_s = 60

[pipeline]
domains = ["python", "math"]
adapters = {json.dumps(ADAPTERS).replace(":", " =")}
max_steps = 2
max_goal_chars = 24
plan_max_tokens = 256
step_max_tokens = {{ code = 160, text = 32, json = 96 }}
code_max_lines = 3
code_line_chars = 24
json_max_chars = 24
journal = "{tmp_path / "journal.sqlite"}"
metrics = "{tmp_path / "metrics.jsonl"}"

[prices.providers.modal]
gpu = "A100-80GB"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    env["HI_MOE_MODAL__API_KEY"] = vllm_server.api_key
    done = subprocess.run(
        [sys.executable, "-m", "hi_moe", "run", "Add two numbers.", "--json", "--quiet",
         "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    print(json.dumps(report, indent=1))  # shown with -s: what the random model planned
    assert report["status"] == "succeeded"
    assert report["answer"] is not None
    assert "offline mock" not in done.stderr
    for step in report["steps"]:
        assert step["provider"] == "modal"
        assert step["adapter"] == ADAPTERS[step["domain"]]
        assert step["notes"] == []
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    plans = [m for m in metrics if m["kind"] == "request" and m["domain"] == "plan"]
    # Every plan the server produced parsed under the plan schema: XGrammar enforced it.
    assert plans
    assert all(m["error"] is None and m["completion_tokens"] > 0 for m in plans)
    steps = [m for m in metrics if m["kind"] == "request" and m["domain"] != "plan"]
    assert {m["adapter"] for m in steps} <= set(ADAPTERS.values())
    assert len(steps) >= len(report["steps"])
    # Priced by GPU time: every request's share of the server's busy time, at the A100's price.
    requests = [m for m in metrics if m["kind"] == "request"]
    assert all(m["cost_basis"] == "gpu_time" and m["gpu_s"] > 0 for m in requests)
    cost = report["cost"]
    assert cost["requests"] == len(requests)
    assert cost["gpu_s"] == pytest.approx(sum(m["gpu_s"] for m in requests), rel=1e-3)
    assert cost["usd"] == pytest.approx(cost["gpu_s"] * 0.000694, rel=1e-3)
    assert cost["usd"] == pytest.approx(sum(m["cost_usd"] for m in requests), rel=1e-6)
    # And the run's report draws every one of those requests.
    out = tmp_path / "report.html"
    drawn = subprocess.run(
        [sys.executable, "-m", "hi_moe", "report", report["run_id"], "--out", str(out),
         "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    page = out.read_text(encoding="utf-8")
    assert page.count('<g class="attempt') == len(requests)
    assert page.count('<g class="dag-node') == len(report["steps"])


async def test_concurrent_requests_share_the_server_s_gpu_time_exactly(
    vllm_server: VLLMServer,
) -> None:
    from hi_moe.providers import VLLMProvider
    from hi_moe.types import CompletionRequest, Message

    request = CompletionRequest(
        messages=[Message.user("Count to ten.")], max_tokens=48, temperature=0.0
    )
    async with VLLMProvider(vllm_server.url, api_key=vllm_server.api_key) as provider:
        await provider.complete(request)  # warm: the readiness wait is not part of the figure
        before = provider.meter.busy_s
        completions = await asyncio.gather(*(provider.complete(request) for _ in range(8)))
        busy = provider.meter.busy_s - before
    shares = [c.busy_share_s for c in completions]
    assert sum(shares) == pytest.approx(busy, rel=1e-6)  # charged once, all of it
    # They were batched together: each is charged well under its own time in flight.
    assert sum(shares) < 0.5 * sum(c.latency_s for c in completions)
    assert all(c.cold_share_s == 0.0 for c in completions)
