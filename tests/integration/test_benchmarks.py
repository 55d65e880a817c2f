"""Every benchmark under benchmarks/ still runs and prints its figures.

These runs are small (a few requests, one round) so they take seconds: they check that each
script works from a fresh clone and reports every ratio it promises, not what the ratios are
(figures are measured by running the scripts at full size, never by a timed test).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import VLLMServer
from tests.support import requires

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[0-9][0-9,]*(\.[0-9]+)?"


def run_benchmark(script: str, *args: str, timeout_s: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def assert_figures(out: str, *patterns: str) -> None:
    for pattern in patterns:
        found = re.search(pattern.replace("#", NUMBER), out, re.MULTILINE)
        assert found, f"no {pattern!r} in:\n{out}"


def test_fleet_scheduling_prints_makespan_and_per_step_overhead() -> None:
    out = run_benchmark("fleet_scheduling.py")
    assert_figures(
        out,
        r"makespan # ms, critical path # ms, ratio #",
        r"overhead # ms per step",
    )


@requires("openai", "openai")
def test_import_time_prints_hi_moe_against_openai() -> None:
    out = run_benchmark("import_time.py", "--runs", "2")
    assert_figures(out, r"import hi_moe / import openai = #", r"import hi_moe = # s")


@requires("openai", "openai")
def test_provider_overhead_prints_hi_moe_against_the_raw_sdk() -> None:
    # LiteLLM's leg builds a venv of its own from PyPI: left out of a test run.
    out = run_benchmark(
        "provider_overhead.py", "--requests", "200", "--rounds", "1", "--no-litellm"
    )
    assert_figures(out, r"raw .* # +# +#", r"hi_moe .* # +# +#", r"hi_moe / raw \(req/s\) = #")


@requires("openai", "openai")
def test_vllm_fleet_prints_every_comparison_and_the_prefix_cache_rate(
    vllm_server: VLLMServer,
) -> None:
    out = run_benchmark(
        "vllm_fleet.py",
        *("--steps", "4", "--parallel", "2", "--rounds", "1"),
        *("--url", vllm_server.url, "--api-key", vllm_server.api_key),
    )
    assert_figures(
        out,
        r"the Fleet had at most 2 requests in flight",
        r"fleet / raw = # \(rounds #-#\)",
        r"fleet / sequential = #",
        r"fleet, code grammar / raw, code grammar = #",
        r"fleet, code grammar / fleet = #",
        r"prefix cache, first \(cold\) Fleet run: #% of # prompt tokens",
    )


@requires("openai", "openai")
def test_adapter_waves_prints_each_leg_and_both_ratios_last(vllm_server: VLLMServer) -> None:
    out = run_benchmark(
        "adapter_waves.py",
        *("--steps", "4", "--parallel", "2", "--rounds", "1", "--max-tokens", "8"),
        *("--adapters", ",".join(vllm_server.tiny.adapters)),
        *("--url", vllm_server.url, "--api-key", vllm_server.api_key),
    )
    assert_figures(
        out,
        r"max_lora=# in its /metrics",
        *(rf"^  {leg} +# +#" for leg in ("aware", "naive", "one adapter")),
        r"aware / naive = # \(rounds #-#\)",
        r"aware / one adapter = # \(rounds #-#\)",
    )
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"adapter_waves: aware/naive=# aware/one_adapter=#".replace("#", NUMBER), last
    ), last


@requires("xgrammar", "grammar")
def test_constraint_checks_print_their_share_of_latency_and_the_cache_cost(
    vllm_server: VLLMServer,
) -> None:
    out = run_benchmark(
        "constraint_checks.py",
        *("--requests", "3", "--repeats", "10", "--corpus-limit", "20", "--stall-rounds", "1"),
        *("--url", vllm_server.url, "--api-key", vllm_server.api_key),
    )
    kinds = ("json_schema", "grammar", "regex", "choice")
    assert_figures(
        out,
        r"validate \+ check / request latency = #%",
        r"compile times over # schemas",
        r"p99 +# ms",
        r"event-loop stall = # ms .*with schemas / without = #",
        *(rf"{kind} +# +# +# +#%" for kind in kinds),
        *(rf"{kind} +# +# +# +#$" for kind in kinds),
    )


def test_sandbox_prints_each_backend_against_a_bare_subprocess() -> None:
    out = run_benchmark("sandbox.py", "--runs", "2", "--rounds", "1")
    assert_figures(
        out,
        r"bare python -c pass +# ms",
        r"process: verdict +# ms +# ms +#",
        r"bubblewrap: verdict +# ms +# ms +#",
        r"bubblewrap / process \(verdict\) = #",
        r"bubblewrap verdict / bare = #",
    )


def test_batch_throughput_prints_batch_against_a_loop_of_hi_moe_run() -> None:
    out = run_benchmark("batch_throughput.py", "--tasks", "2", "--rounds", "1")
    assert_figures(
        out,
        r"round 1: batch # s, loop # s, ratio #",
        r"batch: # tasks/s",
        r"loop of hi-moe run: # tasks/s",
    )
    assert re.search(
        r"batch_throughput: batch/sequential=#".replace("#", NUMBER), out.splitlines()[-1]
    )
