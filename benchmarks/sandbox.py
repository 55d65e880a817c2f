"""What a sandboxed run costs, against a bare `python -c pass` subprocess run side by side.

    python benchmarks/sandbox.py [--runs 20] [--rounds 5]

Per round, each leg runs `--runs` times back to back, legs interleaved; each ratio is the
median over rounds of (leg median / bare median) in the same round, since this machine's
speed drifts. Legs: a bare `subprocess.run([python, "-c", "pass"])` (the baseline), then a
script that does nothing through each local backend, then a verdict (import a solution, run
one assert, print the marker) through each. The process and bubblewrap backends run the same
child; the difference between them is what isolation costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from hi_moe.pipeline.sandbox import (
    BubblewrapBackend,
    Limits,
    ProcessBackend,
    Program,
    SandboxBackend,
    bubblewrap_problem,
    check_solution,
)

SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(2, 3) == 5\n"


def legs(backends: list[SandboxBackend]) -> dict[str, Callable[[], Awaitable[None]]]:
    async def bare() -> None:
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", "pass"], check=True)

    found: dict[str, Callable[[], Awaitable[None]]] = {"bare python -c pass": bare}
    for backend in backends:

        async def script(backend: SandboxBackend = backend) -> None:
            run = await backend.run(Program.script("pass"), Limits())
            assert run.ok, run.stderr

        async def verdict(backend: SandboxBackend = backend) -> None:
            found_verdict = await check_solution(backend, SOLUTION, TESTS)
            assert found_verdict.passed, found_verdict.summary

        found[f"{backend.name}: script"] = script
        found[f"{backend.name}: verdict"] = verdict
    return found


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    backends: list[SandboxBackend] = [ProcessBackend(warn=False)]
    if (problem := bubblewrap_problem()) is None:
        backends.append(BubblewrapBackend())
    else:
        print(f"bubblewrap left out: {problem}")
    chosen = legs(backends)
    times: dict[str, list[float]] = {name: [] for name in chosen}
    ratios: dict[str, list[float]] = {name: [] for name in chosen}
    for leg in chosen.values():  # warm up: page cache, the bubblewrap probe
        await leg()
    for _ in range(args.rounds):
        medians = {}
        for name, leg in chosen.items():
            samples = []
            for _ in range(args.runs):
                started = time.perf_counter()
                await leg()
                samples.append(time.perf_counter() - started)
            medians[name] = statistics.median(samples)
            times[name] += samples
        for name in chosen:
            ratios[name].append(medians[name] / medians["bare python -c pass"])
    print(f"{'leg':<24} {'median':>9} {'p90':>9}  ratio to bare (range over rounds)")
    for name in chosen:
        ordered = sorted(times[name])
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"{name:<24} {statistics.median(ordered) * 1000:7.1f} ms {p90 * 1000:7.1f} ms  "
              f"{statistics.median(ratios[name]):.2f} ({min(ratios[name]):.2f}-"
              f"{max(ratios[name]):.2f})")  # fmt: skip
    if len(backends) == 2:
        pair = [
            b / p
            for b, p in zip(ratios["bubblewrap: verdict"], ratios["process: verdict"], strict=True)
        ]
        print(f"bubblewrap / process (verdict) = {statistics.median(pair):.2f}")
    for backend in backends:
        ratio = statistics.median(ratios[f"{backend.name}: verdict"])
        print(f"{backend.name} verdict / bare = {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
