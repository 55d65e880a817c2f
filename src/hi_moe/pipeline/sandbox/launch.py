"""Starting local sandboxed processes: the part the bubblewrap and process backends share.

Here: the child's command line, the resource limits it sets on itself, the request it reads on
stdin, the long-lived threads supervisors run in, and removing a run's directory. Supervising
the process (`supervisor`: its pipes, output limit, deadline) and killing its tree (`killing`:
process group, /proc scan, pids cgroup) live next door and are re-exported from here.
"""

from __future__ import annotations

import contextlib
import marshal
import math
import os
import sys
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from hi_moe.pipeline.sandbox.base import Limits, Program, SandboxRun
from hi_moe.pipeline.sandbox.killing import (
    PidsCgroup,
    kill_descendants,
    kill_group,
    pids_cgroups_available,
)
from hi_moe.pipeline.sandbox.supervisor import Capture, supervise

__all__ = [
    "MB",
    "Capture",
    "PidsCgroup",
    "child_command",
    "child_source",
    "encode_request",
    "in_thread",
    "kill_descendants",
    "kill_group",
    "nproc_limit",
    "pids_cgroups_available",
    "remove_tree",
    "rlimits",
    "supervise",
]

MB = 1024 * 1024


@cache
def child_source() -> str:
    return (Path(__file__).with_name("child.py")).read_text(encoding="utf-8")


def child_command(python: str = sys.executable) -> list[str]:
    """The child's command line: isolated mode (no environment variables, user site or cwd on
    sys.path), no bytecode files, unbuffered output so the program's prints come before the
    runner's marker."""
    return [python, "-I", "-B", "-u", "-c", child_source()]


def rlimits(limits: Limits, *, processes: int | None = None) -> dict[str, int]:
    """Resource limits the child sets on itself before the program runs (not `preexec_fn`,
    which is unsafe in a threaded harness)."""
    return {
        "RLIMIT_AS": limits.memory_mb * MB,
        "RLIMIT_CPU": math.ceil(limits.timeout_s) + 1,
        "RLIMIT_FSIZE": limits.file_size_mb * MB,
        "RLIMIT_CORE": 0,
        "RLIMIT_NPROC": processes if processes is not None else nproc_limit(limits.max_processes),
    }


def nproc_limit(extra: int) -> int:
    """RLIMIT_NPROC counts every process and thread of the real user, the harness's own
    included: allow what the user runs now plus `extra`. (The kernel does not apply it to
    root; a pids cgroup does the job there.)"""
    return _tasks_of_user(os.getuid()) + extra


def _tasks_of_user(uid: int) -> int:
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def encode_request(program: Program, limits: Limits, **extra: Any) -> bytes:
    """The bytes the child reads from stdin: length, marshal'd header, then the secret."""
    header: dict[str, Any] = {
        "mode": program.mode,
        "files": dict(program.files),
        "main": program.main,
        "checks": program.checks,
        "entry_point": program.entry_point,
        "secret_len": len(program.secret),
        **extra,
    }
    body = marshal.dumps(header, 4)  # format 4: read by every Python 3 since 3.4
    return f"{len(body):010d}".encode() + body + program.secret


_executor_lock = threading.Lock()
_executor: Any = None


def _pool() -> Any:
    """The threads supervisors run in. Long-lived on purpose: the child's PR_SET_PDEATHSIG
    fires when the thread that started it ends."""
    global _executor
    with _executor_lock:
        if _executor is None:
            from concurrent.futures import ThreadPoolExecutor

            _executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="hi-moe-sandbox")
        return _executor


async def in_thread(run: Callable[[threading.Event], SandboxRun]) -> SandboxRun:
    """`run(cancel)` in a supervisor thread. Cancelling the caller sets `cancel` and still
    waits for the thread, so the program's tree is dead before the cancellation goes on."""
    import asyncio

    cancel = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(_pool(), run, cancel)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(Exception):
            await future
        raise


def remove_tree(path: str) -> None:
    """Remove a run's directory even where the program took away its own permissions."""
    import shutil

    for root, _dirs, _files in os.walk(path):
        # Through an fd opened without following links: a directory the program swapped for
        # a symlink to /etc must not have /etc's mode changed.
        with contextlib.suppress(OSError):
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
    shutil.rmtree(path, ignore_errors=True)
