"""The seam: `SandboxBackend` runs a `Program` within `Limits` and returns a `SandboxRun`.

A backend only runs things and reports what happened; it never decides whether tests passed
(`hi_moe.pipeline.sandbox.verdict` does, from a marker the program cannot forge). Each backend says
what it isolates in `isolation`, so a harness can require isolation instead of hoping for it.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar, Literal

__all__ = [
    "ISOLATING",
    "Isolation",
    "Limits",
    "Program",
    "SandboxBackend",
    "SandboxRun",
]

Isolation = Literal["secrets", "files", "network", "processes", "harness"]
"""What a backend contains: the harness's environment and memory (`secrets`), the user's
files for reading and writing (`files`), the network (`network`), every process the program
starts dies with it (`processes`), and the harness cannot be signalled (`harness`)."""

ISOLATING: frozenset[Isolation] = frozenset({"secrets", "files", "network", "processes", "harness"})


@dataclass(frozen=True)
class Limits:
    """What one run may use. Every backend enforces every limit it can and names the rest in
    its docstring."""

    timeout_s: float = 10.0
    """Wall clock, from start to the last process killed."""
    memory_mb: int = 1024
    """Address space per process (RLIMIT_AS)."""
    output_bytes: int = 1_000_000
    """stdout and stderr together; past this the program is killed and the rest is cut."""
    max_processes: int = 64
    """Processes and threads the program may have at once."""
    file_size_mb: int = 16
    """Largest file it may write (RLIMIT_FSIZE)."""
    disk_mb: int = 64
    """Size of each writable filesystem where the backend makes its own (tmpfs)."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        for name in ("memory_mb", "output_bytes", "max_processes", "file_size_mb", "disk_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True)
class Program:
    """Python to run: `files` are written into an empty working directory, then `main` runs as
    `__main__` (mode "script"), or `solution.py` is imported and `checks` run against it (mode
    "verdict", built by `hi_moe.pipeline.sandbox.verdict`)."""

    files: Mapping[str, str]
    main: str = "program.py"
    mode: Literal["script", "verdict"] = "script"
    checks: str = ""
    entry_point: str | None = None
    secret: bytes = field(default=b"", repr=False)
    """Given to the child on stdin, never in argv, environment or files."""

    @classmethod
    def script(cls, source: str, *, files: Mapping[str, str] | None = None) -> Program:
        return cls(files={**(files or {}), "program.py": source})


@dataclass(frozen=True)
class SandboxRun:
    """What happened to one run. `stdout`/`stderr` hold at most `Limits.output_bytes`."""

    backend: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    output_exceeded: bool = False
    timeout_s: float = 0.0

    @property
    def signal(self) -> str | None:
        """The signal that ended it, by name, when one did."""
        code = self.returncode
        if code is None or code >= 0:
            return None
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"

    @property
    def ok(self) -> bool:
        """Exited by itself with status 0. Not a test verdict: see `sandbox.verdict`."""
        return self.returncode == 0 and not self.timed_out and not self.output_exceeded

    @property
    def summary(self) -> str:
        if self.timed_out:
            return f"timed out after {self.timeout_s:.1f} s"
        if self.output_exceeded:
            return "printed more than the output limit; stopped"
        if self.signal is not None:
            hint = " (memory or CPU limit?)" if self.signal in ("SIGKILL", "SIGXCPU") else ""
            return f"killed by {self.signal}{hint}"
        return f"exit {self.returncode}"


class SandboxBackend(ABC):
    """Runs untrusted Python. Subclasses: `BubblewrapBackend`, `ProcessBackend`,
    `ModalSandboxBackend`; `hi_moe.pipeline.sandbox.load_backend` picks one from settings."""

    name: ClassVar[str]
    isolation: frozenset[Isolation] = frozenset()
    """What this backend contains (see `Isolation`); what it does not is in `gaps`."""

    @property
    def gaps(self) -> frozenset[Isolation]:
        return ISOLATING - self.isolation

    @abstractmethod
    async def run(self, program: Program, limits: Limits) -> SandboxRun:
        """Run `program` within `limits`. Returns on time whatever the program does, with no
        process of it left alive (where `processes` is in `isolation`)."""

    async def aclose(self) -> None:  # noqa: B027 - optional: most backends hold nothing
        """Release what the backend holds (Modal: its app handle)."""

    async def __aenter__(self) -> SandboxBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(isolation={sorted(self.isolation)})"
