"""How well the Fleet schedules a DAG, side by side with what is possible.

    python benchmarks/fleet_scheduling.py

1. A 64-step random DAG, each step one MockProvider request with 50 ms latency, unbounded
   parallelism: the makespan against the critical path (the least time any schedule needs).
   Target ≤ 1.05.
2. 10,000 independent steps with no latency: the Fleet's cost per step against awaiting the
   same step function directly in a loop (the baseline), run in the same process.
   Target ≤ 0.5 ms per step.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Mapping

from hi_moe.pipeline import Fleet, Plan, Step, StepResult
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest

LATENCY_S = 0.05


def random_dag(n: int, seed: int = 0) -> Plan:
    rng = random.Random(seed)
    steps = []
    for i in range(n):
        earlier = [f"s{j}" for j in range(max(0, i - 8), i)]
        deps = tuple(sorted(rng.sample(earlier, k=min(len(earlier), rng.randint(0, 2)))))
        steps.append(Step(id=f"s{i}", goal="g", domain="python", depends_on=deps))
    return Plan(steps=tuple(steps))


async def makespan_ratio(runs: int = 5) -> tuple[float, float, float]:
    plan = random_dag(64)
    critical = plan.critical_path({s.id: LATENCY_S for s in plan.steps})
    mock = MockProvider(latency_s=LATENCY_S)
    request = CompletionRequest.from_prompt("x", max_tokens=4)

    async def run(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        await mock.complete(request)
        return StepResult(step_id=step.id, status="done")

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await Fleet(max_parallel=64).run(plan, run)
        times.append(time.perf_counter() - started)
    makespan = statistics.median(times)
    return makespan, critical, makespan / critical


async def overhead_per_step(n: int = 10_000, runs: int = 5) -> tuple[float, float, float]:
    plan = Plan(steps=tuple(Step(id=f"s{i}", goal="g", domain="python") for i in range(n)))

    async def run(step: Step, inputs: Mapping[str, StepResult]) -> StepResult:
        return StepResult(step_id=step.id, status="done")

    fleet_times, loop_times = [], []
    for _ in range(runs):  # interleaved, so noise hits both alike
        started = time.perf_counter()
        for step in plan.steps:
            await run(step, {})
        loop_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        await Fleet(max_parallel=64).run(plan, run)
        fleet_times.append(time.perf_counter() - started)
    fleet, loop = statistics.median(fleet_times), statistics.median(loop_times)
    return fleet, loop, (fleet - loop) / n


async def main() -> None:
    makespan, critical, ratio = await makespan_ratio()
    print(f"64-step DAG, 50 ms steps: makespan {makespan * 1000:.1f} ms, critical path "
          f"{critical * 1000:.1f} ms, ratio {ratio:.3f} (target <= 1.05)")  # fmt: skip
    fleet, loop, per_step = await overhead_per_step()
    print(f"10,000 steps, no latency: Fleet {fleet * 1000:.0f} ms, direct loop {loop * 1000:.0f} "
          f"ms, overhead {per_step * 1000:.3f} ms per step (target <= 0.5 ms)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
