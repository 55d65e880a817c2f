"""`ProcessBackend`: a plain child process, hardened as far as a plain process goes.

What it does: a fresh temporary directory as working directory, HOME and TMPDIR; an empty
environment; its own session; resource limits (address space, CPU, file size, processes, no
core dumps) set by the child itself before the program runs; capabilities dropped for good
when the harness runs as root; the harness marked non-dumpable, so `/proc/<harness>/environ`
and its memory are unreadable to the program; the process tree killed at the deadline (with a
pids cgroup where the machine allows one: then a double-forked daemon dies too, and a fork
bomb stops at the limit).

What it does not: the program runs as the harness's user, so it can read and write that
user's files, open network connections and signal the harness. Use bubblewrap for that.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from typing import ClassVar

from hi_moe.pipeline.sandbox.base import Isolation, Limits, Program, SandboxBackend, SandboxRun
from hi_moe.pipeline.sandbox.launch import (
    PidsCgroup,
    child_command,
    encode_request,
    in_thread,
    kill_descendants,
    kill_group,
    pids_cgroups_available,
    remove_tree,
    rlimits,
    supervise,
)

__all__ = ["ProcessBackend", "mark_harness_non_dumpable"]

log = logging.getLogger("hi_moe.pipeline.sandbox")

WARNING = (
    "hi_moe sandbox: generated code runs in the 'process' backend: resource limits and a "
    "clean environment, but it runs as your user, so it can read and write your files, reach "
    "the network and signal this process. Install bubblewrap (apt-get install bubblewrap) for "
    "isolation, or set [pipeline.sandbox] require_isolation = true to refuse to run without it."
)
_warned = threading.Event()
_dumpable_lock = threading.Lock()
_made_non_dumpable = False


def mark_harness_non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0) on this process: a same-user child can no longer read its
    /proc/<pid>/environ or memory (nor can a debugger attach without privileges). Once per
    process; False where it cannot be done (no prctl)."""
    global _made_non_dumpable
    with _dumpable_lock:
        if _made_non_dumpable:
            return True
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _made_non_dumpable = libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE
        except (ImportError, OSError, AttributeError):
            _made_non_dumpable = False
        return _made_non_dumpable


class ProcessBackend(SandboxBackend):
    name: ClassVar[str] = "process"
    never_isolates: ClassVar[frozenset[Isolation]] = frozenset({"files", "network", "harness"})

    def __init__(self, python: str = sys.executable, *, warn: bool = True) -> None:
        self.python = python
        self.non_dumpable = mark_harness_non_dumpable()
        self.uses_cgroup = pids_cgroups_available()
        contained: set[Isolation] = {"secrets"} if self.non_dumpable else set()
        if self.uses_cgroup:
            contained.add("processes")
        self.isolation = frozenset(contained)
        if warn and not _warned.is_set():
            _warned.set()
            log.warning(WARNING)

    async def run(self, program: Program, limits: Limits) -> SandboxRun:
        return await in_thread(lambda cancel: self.run_sync(program, limits, cancel))

    def run_sync(
        self, program: Program, limits: Limits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        workdir = tempfile.mkdtemp(prefix="hi-moe-sandbox-")
        cgroup = PidsCgroup.create(limits.max_processes + 1) if self.uses_cgroup else None
        argv = child_command(self.python)
        if cgroup is not None:
            argv = cgroup.wrap(argv)
        request = encode_request(
            program,
            limits,
            rlimits=rlimits(limits),
            parent_pid=os.getpid(),
            drop_capabilities=True,
        )
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir,
               "TMPDIR": workdir}  # fmt: skip

        def kill_tree(pid: int) -> None:
            kill_group(pid)
            if cgroup is not None:
                cgroup.kill_all()
            else:
                kill_descendants(pid)

        try:
            return supervise(
                argv,
                request,
                limits=limits,
                backend=self.name,
                kill_tree=kill_tree,
                env=env,
                cwd=workdir,
                cancel=cancel,
            )
        finally:
            if cgroup is not None:
                cgroup.remove()
            remove_tree(workdir)
