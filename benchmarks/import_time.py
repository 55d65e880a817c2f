"""How long `import hi_moe` takes, side by side with baselines, in fresh processes.

    python benchmarks/import_time.py [--runs 21]

Each statement runs in its own fresh interpreter, interleaved round by round so that machine
noise hits every statement alike; the figure is the median wall time of the import itself
(interpreter start-up excluded), and its ratio to `import json` and `import openai`.
Target: `import hi_moe` ≤ 0.15 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys

TIMER = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
TARGET_S = 0.15


def time_import(stmt: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", TIMER.format(stmt=stmt)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    statements = {
        "import json (baseline)": "import json",
        "import hi_moe": "import hi_moe",
        "from hi_moe import CompletionRequest, MockProvider": (
            "from hi_moe import CompletionRequest; from hi_moe.providers import MockProvider"
        ),
    }
    for module in ("openai", "litellm"):
        if importlib.util.find_spec(module) is not None:
            statements[f"import {module}"] = f"import {module}"
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(args.runs):
        for name, stmt in statements.items():
            samples[name].append(time_import(stmt))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ours = medians["import hi_moe"]
    print(f"median over {args.runs} fresh processes (python {sys.version.split()[0]})")
    for name, median in medians.items():
        print(f"  {name:<55} {median * 1000:8.1f} ms")
    if "import openai" in medians:
        print(f"import hi_moe / import openai = {ours / medians['import openai']:.3f}")
    verdict = "meets" if ours <= TARGET_S else "MISSES"
    print(f"import hi_moe = {ours:.4f} s: {verdict} the {TARGET_S} s target")


if __name__ == "__main__":
    main()
