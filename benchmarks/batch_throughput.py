"""`hi-moe batch` against what a user does without it: a loop of `hi-moe run`, one task each.

    python benchmarks/batch_throughput.py [--tasks 16] [--rounds 3] [--concurrency 8]
                                          [--url URL] [--lora-slots N]

Both legs run the same tasks on the same provider, each in a fresh journal: the mock by
default (offline), or the vLLM server at `--url` (`hi-moe serve-local --tiny` starts one; its
ready config is used). The batch leg is one process running every task with at most
`--concurrency` at once, sharing one scheduler; the sequential leg starts `hi-moe run` once per
task and waits for it, as a shell loop does. Rounds are interleaved (the order alternates) and
each round's ratio is paired within it: tasks/s of the batch / tasks/s of the loop. The loop
pays each process's start (imports, XGrammar among them) once per task, which is part of
what a user of the loop pays. Printed last: `batch_throughput: batch/sequential=X`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = (
    "Add two numbers",
    "Reverse a string",
    "Count the vowels in a word",
    "Sum a list of integers",
    "Find the largest of three numbers",
    "Check whether a year is a leap year",
    "Join words with commas",
    "Square every number in a list",
)


def tasks(n: int) -> list[str]:
    return [f"{GOALS[i % len(GOALS)]} (task {i})" for i in range(n)]


def environment(work: Path, url: str | None, lora_slots: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    env.update(
        HI_MOE_PIPELINE__JOURNAL=str(work / "journal.sqlite"),
        HI_MOE_PIPELINE__METRICS=str(work / "metrics.jsonl"),
    )
    if url is not None:
        env.update(HI_MOE_PROVIDER="vllm", HI_MOE_MODAL__ENDPOINT=url)
    if lora_slots is not None:
        env["HI_MOE_PIPELINE__LORA_SLOTS"] = str(lora_slots)
    return env


def hi_moe(*args: str, env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hi_moe.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode not in (0, 1):  # 1: some task failed, which the figures say
        raise SystemExit(f"hi-moe {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")


def batch_leg(prompts: list[str], concurrency: int, env: dict[str, str], cwd: Path) -> float:
    lines = cwd / "tasks.jsonl"
    lines.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    started = time.perf_counter()
    hi_moe(
        "batch", str(lines), "--out", str(cwd / "results.jsonl"),
        "--concurrency", str(concurrency), "--quiet", env=env, cwd=cwd,
    )  # fmt: skip
    wall = time.perf_counter() - started
    results = [json.loads(line) for line in (cwd / "results.jsonl").read_text().splitlines()]
    assert len(results) == len(prompts), f"{len(results)} results for {len(prompts)} tasks"
    return wall


def sequential_leg(prompts: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    for prompt in prompts:
        hi_moe("run", prompt, "--quiet", env=env, cwd=cwd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--url", default=None, help="a vLLM server (default: the mock)")
    parser.add_argument("--config", type=Path, default=None, help="hi_moe.toml for the server")
    parser.add_argument("--lora-slots", type=int, default=None)
    options = parser.parse_args()
    prompts = tasks(options.tasks)
    ratios, batch_walls, loop_walls = [], [], []
    for number in range(options.rounds):
        walls: dict[str, float] = {}
        legs = ["batch", "sequential"] if number % 2 == 0 else ["sequential", "batch"]
        for leg in legs:
            with tempfile.TemporaryDirectory() as scratch:
                work = Path(scratch)
                if options.config is not None:
                    (work / "hi_moe.toml").write_text(options.config.read_text())
                env = environment(work, options.url, options.lora_slots)
                walls[leg] = (
                    batch_leg(prompts, options.concurrency, env, work)
                    if leg == "batch"
                    else sequential_leg(prompts, env, work)
                )
        ratio = walls["sequential"] / walls["batch"]  # tasks/s batch over tasks/s loop
        ratios.append(ratio)
        batch_walls.append(walls["batch"])
        loop_walls.append(walls["sequential"])
        print(
            f"round {number + 1}: batch {walls['batch']:.1f} s, "
            f"loop {walls['sequential']:.1f} s, ratio {ratio:.2f}"
        )
    n = len(prompts)
    print(f"{n} tasks on {options.url or 'the mock'}, concurrency {options.concurrency}")
    print(f"batch: {n / statistics.median(batch_walls):.2f} tasks/s")
    print(f"loop of hi-moe run: {n / statistics.median(loop_walls):.2f} tasks/s")
    print(
        f"batch_throughput: batch/sequential={statistics.median(ratios):.2f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
