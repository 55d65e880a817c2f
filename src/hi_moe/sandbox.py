"""Run generated Python in a child process, never in the harness.

The child gets a fresh temporary directory as its working directory, an environment with
nothing inherited (no API keys can leak into generated code), no stdin, its own process group
(so a timeout kills whatever it forked), and resource limits on memory, CPU time, file size and
core dumps. The parent enforces the wall-clock timeout, so nothing hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxResult", "run_python", "run_python_async"]

OUTPUT_LIMIT = 8 * 1024
FILE_SIZE_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    timeout_s: float = 0.0

    @property
    def summary(self) -> str:
        """A short reason, fit to feed back to a model."""
        if self.timed_out:
            return f"timed out after {self.timeout_s:.1f} s"
        if self.passed:
            return "passed"
        code = self.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (memory or CPU limit?)" if -code in (signal.SIGKILL, signal.SIGXCPU) else ""
            return f"killed by {name}{hint}"
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no error message"
        return f"exit {code}: {last}"


def _truncate(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    if len(text) <= OUTPUT_LIMIT:
        return text
    return f"[... {len(text) - OUTPUT_LIMIT} characters cut ...]\n" + text[-OUTPUT_LIMIT:]


def _limits(memory_mb: int, cpu_s: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child, between fork and exec
        import resource

        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


@contextlib.contextmanager
def _prepared(program: str) -> Iterator[tuple[list[str], str, dict[str, str]]]:
    """The command, working directory and environment for one run; the directory is removed
    afterwards."""
    with tempfile.TemporaryDirectory(prefix="hi-moe-sandbox-") as workdir:
        script = Path(workdir) / "program.py"
        script.write_text(program, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        yield [sys.executable, "-I", "-B", str(script)], workdir, env


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_python(program: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> SandboxResult:
    """Run `program` in the sandbox and wait for it, at most `timeout_s`."""
    started = time.monotonic()
    with _prepared(program) as (command, workdir, env):
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_limits(memory_mb, int(timeout_s) + 1),
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            stdout, stderr = process.communicate()
            timed_out = True
        finally:
            _kill_group(process.pid)  # anything it forked dies with it
    return _result(process.returncode, stdout, stderr, timed_out, started, timeout_s)


async def run_python_async(
    program: str, *, timeout_s: float = 10.0, memory_mb: int = 1024
) -> SandboxResult:
    """`run_python` without blocking the event loop."""
    started = time.monotonic()
    with _prepared(program) as (command, workdir, env):
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_limits(memory_mb, int(timeout_s) + 1),
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
            timed_out = False
        except TimeoutError:
            _kill_group(process.pid)
            stdout, stderr = await process.communicate()
            timed_out = True
        finally:
            _kill_group(process.pid)
    return _result(process.returncode, stdout, stderr, timed_out, started, timeout_s)


def _result(
    code: int | None,
    stdout: bytes,
    stderr: bytes,
    timed_out: bool,
    started: float,
    timeout_s: float,
) -> SandboxResult:
    return SandboxResult(
        passed=code == 0 and not timed_out,
        returncode=code,
        stdout=_truncate(stdout),
        stderr=_truncate(stderr),
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        timeout_s=timeout_s,
    )
