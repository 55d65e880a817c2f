"""Running generated code, which is hostile until proven otherwise.

- `SandboxBackend` (`base`) runs a `Program` within `Limits` and returns a `SandboxRun`; what
  it contains is in its `isolation`. `BubblewrapBackend` isolates (namespaces, no network, no
  view of the user's files or the harness), `ProcessBackend` only limits, and
  `ModalSandboxBackend` runs each program in a gVisor container on Modal.
- `load_backend(SandboxSettings)` picks one by configuration (`[pipeline.sandbox]`).
- `check_solution` (`verdict`) says whether a solution passed its tests, from a marker the
  program cannot forge, with a scrubbed `summary` fit to feed back to a model.

`child` is what runs inside the sandbox; `launch` starts and supervises local processes.
"""

from __future__ import annotations

from hi_moe.pipeline.sandbox.base import (
    ISOLATING,
    Isolation,
    Limits,
    Program,
    SandboxBackend,
    SandboxRun,
)
from hi_moe.pipeline.sandbox.bubblewrap import BubblewrapBackend, bubblewrap_problem
from hi_moe.pipeline.sandbox.choose import load_backend
from hi_moe.pipeline.sandbox.modal_sandbox import ModalSandboxBackend
from hi_moe.pipeline.sandbox.process import ProcessBackend
from hi_moe.pipeline.sandbox.settings import SandboxSettings
from hi_moe.pipeline.sandbox.verdict import Verdict, check_solution

__all__ = [
    "ISOLATING",
    "BubblewrapBackend",
    "Isolation",
    "Limits",
    "ModalSandboxBackend",
    "ProcessBackend",
    "Program",
    "SandboxBackend",
    "SandboxRun",
    "SandboxSettings",
    "Verdict",
    "bubblewrap_problem",
    "check_solution",
    "load_backend",
    "run_script",
]


async def run_script(
    source: str, *, limits: Limits | None = None, backend: SandboxBackend | None = None
) -> SandboxRun:
    """Run `source` as `__main__` in `backend` (by default the one `load_backend()` picks)."""
    chosen = backend or load_backend()
    return await chosen.run(Program.script(source), limits or Limits())
