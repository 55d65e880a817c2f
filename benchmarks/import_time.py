"""How long `import hi_moe` takes, side by side with baselines, in fresh processes.

    python benchmarks/import_time.py [--runs 21]

Each statement runs in its own fresh interpreter, interleaved round by round so that machine
noise hits every statement alike; the figure is the median wall time of the import itself
(interpreter start-up excluded), and its ratio to `import openai` and `import litellm`.
LiteLLM is imported from the venv `provider_overhead.py` makes for it (it caps `openai<3`),
with `LITELLM_LOCAL_MODEL_COST_MAP=True`: otherwise its import fetches a price list from the
network. Target: `import hi_moe` ≤ 0.15 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
from pathlib import Path

TIMER = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
TARGET_S = 0.15
LITELLM_PYTHON = Path.home() / ".cache" / "hi_moe-bench" / "litellm" / "bin" / "python"


def time_import(python: str, stmt: str) -> float:
    out = subprocess.run(
        [python, "-c", TIMER.format(stmt=stmt)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    here = sys.executable
    statements = {
        "import json (baseline)": (here, "import json"),
        "import hi_moe": (here, "import hi_moe"),
        "from hi_moe import CompletionRequest, MockProvider": (
            here,
            "from hi_moe import CompletionRequest; from hi_moe.providers import MockProvider",
        ),
    }
    if importlib.util.find_spec("openai") is not None:
        statements["import openai"] = (here, "import openai")
    if LITELLM_PYTHON.exists():
        statements["import litellm (its own venv)"] = (str(LITELLM_PYTHON), "import litellm")
    else:
        print(f"no {LITELLM_PYTHON}: run benchmarks/provider_overhead.py once to create it")
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(args.runs):
        for name, (python, stmt) in statements.items():
            samples[name].append(time_import(python, stmt))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ours = medians["import hi_moe"]
    print(f"median over {args.runs} fresh processes (python {sys.version.split()[0]})")
    for name, median in medians.items():
        print(f"  {name:<55} {median * 1000:8.1f} ms")
    for other in ("import openai", "import litellm (its own venv)"):
        if other in medians:
            print(f"import hi_moe / {other} = {ours / medians[other]:.3f}")
    verdict = "meets" if ours <= TARGET_S else "MISSES"
    print(f"import hi_moe = {ours:.4f} s: {verdict} the {TARGET_S} s target")


if __name__ == "__main__":
    main()
