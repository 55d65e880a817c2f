"""The example harness runs as its docstring says, offline on the default provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "harness.py"


def test_the_example_harness_runs_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "Merge two sorted lists"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "run_finished" in done.stderr
    assert "offline mock provider" in done.stderr  # nobody mistakes a sample for an answer
    assert "s1: python-lora" in done.stdout
