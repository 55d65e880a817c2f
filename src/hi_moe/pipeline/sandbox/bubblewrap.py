"""`BubblewrapBackend`: the program in its own namespaces, with bubblewrap (`bwrap`, the tool
Flatpak uses; Debian/Ubuntu package `bubblewrap`).

The sandbox gets new user, pid, network, ipc, uts and cgroup namespaces, no further user
namespaces, no capabilities and a new session; it dies with the harness. Its filesystem is
built, not inherited: /usr (and the /bin, /lib... links), the dynamic linker's cache and the
Python installation, read-only; a fresh /proc showing only its own processes; a minimal /dev;
size-limited tmpfs for /tmp, HOME (/home/sandbox) and the program's directory (/sandbox).
Nothing of the user's files, the harness's environment or the host's processes is visible,
and there is no network (only an unconfigured loopback). The namespace's init is killed at
the deadline, which kills every process the program made, `setsid()` or not.

Limits: the child sets RLIMIT_AS/CPU/FSIZE/NPROC/CORE on itself. When the harness runs as root,
whom RLIMIT_NPROC spares, the number of processes is bounded by a pids cgroup instead, where
the machine lets us make one (`bounds_processes` says whether it is bounded at all).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from hi_moe.pipeline.sandbox.base import ISOLATING, Limits, Program, SandboxBackend, SandboxRun
from hi_moe.pipeline.sandbox.launch import (
    MB,
    PidsCgroup,
    child_command,
    encode_request,
    in_thread,
    kill_group,
    nproc_limit,
    pids_cgroups_available,
    rlimits,
    supervise,
)

__all__ = ["BubblewrapBackend", "bubblewrap_problem"]

WORKDIR = "/sandbox"
HOME = "/home/sandbox"
SANDBOX_UID = 65534  # "nobody" inside; outside it is still the harness's own uid
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
INFO_TIMEOUT_S = 2.0
_CHILD_PID = re.compile(rb'"child-pid"\s*:\s*(\d+)')


class BubblewrapBackend(SandboxBackend):
    name: ClassVar[str] = "bubblewrap"
    isolation = ISOLATING

    def __init__(self, bwrap: str | None = None, python: str = sys.executable) -> None:
        found = bwrap or shutil.which("bwrap")
        if found is None:
            from hi_moe.errors import ConfigError

            raise ConfigError(
                "the bubblewrap sandbox needs bwrap: apt-get install bubblewrap",
                setting="HI_MOE_PIPELINE__SANDBOX__BACKEND",
            )
        self.bwrap = found
        self.python = python
        # The pid namespace already kills every process of a run; a pids cgroup is only
        # needed to bound their number for root, whom RLIMIT_NPROC spares. (Being in one
        # costs each run about 14 ms here, so it is not used where it adds nothing.)
        self.uses_cgroup = os.geteuid() == 0 and pids_cgroups_available()

    def argv(self, limits: Limits, info_fd: int) -> list[str]:
        """The whole `bwrap` command line for one run (tested as data, see the module doc)."""
        size = str(limits.disk_mb * MB)
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            "--hostname", "sandbox",
            "--clearenv",
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "HOME", HOME,
            "--setenv", "TMPDIR", "/tmp",
            "--setenv", "LANG", "C.UTF-8",
            "--proc", "/proc",
            "--dev", "/dev",
        ]  # fmt: skip
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for path in ETC_FILES:
            args += ["--ro-bind-try", path, path]
        for path in ("/tmp", HOME, WORKDIR):
            args += ["--size", size, "--tmpfs", path]
        # After the tmpfs mounts: a venv under /tmp (a fresh clone's, say) lands on top.
        for path in python_roots(self.python):
            args += ["--ro-bind", path, path]
        args += ["--chdir", WORKDIR, "--info-fd", str(info_fd), "--"]
        return args + child_command(self.python)

    @property
    def bounds_processes(self) -> bool:
        """Whether a fork bomb stops at `Limits.max_processes` here."""
        return self.uses_cgroup or os.geteuid() != 0

    async def run(self, program: Program, limits: Limits) -> SandboxRun:
        return await in_thread(lambda cancel: self.run_sync(program, limits, cancel))

    def run_sync(
        self, program: Program, limits: Limits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        info_read, info_write = os.pipe()
        # bwrap and its init are two processes more than the program's own.
        cgroup = PidsCgroup.create(limits.max_processes + 2) if self.uses_cgroup else None
        argv = self.argv(limits, info_write)
        if cgroup is not None:
            argv = cgroup.wrap(argv)
        request = encode_request(
            program, limits, rlimits=rlimits(limits, processes=nproc_limit(limits.max_processes))
        )
        init: list[int] = []  # a pidfd for the namespace's init, once bwrap says its pid
        open_fds = [info_read, info_write]  # each closed exactly once: fd numbers get reused

        def on_start(process: subprocess.Popen[bytes]) -> None:
            open_fds.remove(info_write)
            os.close(info_write)
            pidfd = _init_pidfd(info_read, process.pid)
            if pidfd is not None:
                init.append(pidfd)

        def kill_tree(pid: int) -> None:
            kill_group(pid)  # bwrap itself: --die-with-parent takes its init down with it
            for pidfd in init:  # and the init directly, in case that signal is lost
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if cgroup is not None:
                cgroup.kill_all()

        try:
            return supervise(
                argv,
                request,
                limits=limits,
                backend=self.name,
                kill_tree=kill_tree,
                env={},
                pass_fds=(info_write,),
                on_start=on_start,
                cancel=cancel,
            )
        finally:
            for fd in (*init, *open_fds):
                os.close(fd)
            if cgroup is not None:
                cgroup.remove()


def _init_pidfd(info_fd: int, bwrap_pid: int) -> int | None:
    """bwrap writes the namespace init's pid as JSON on the info fd; hold it as a pidfd (a pid
    alone could be reused by an unrelated process by the time it is killed)."""
    data = b""
    while not _CHILD_PID.search(data):
        ready, _, _ = select.select([info_fd], [], [], INFO_TIMEOUT_S)
        if not ready:
            return None
        chunk = os.read(info_fd, 4096)
        if not chunk:
            break
        data += chunk
    found = _CHILD_PID.search(data)
    if found is None:
        return None
    pid = int(found.group(1))
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:  # the pid is still bwrap's child, not a recycled one
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        if int(stat[stat.rfind(b")") + 2 :].split()[1]) == bwrap_pid:
            return pidfd
    except (OSError, ValueError, IndexError):
        pass
    os.close(pidfd)
    return None


def python_roots(python: str) -> list[str]:
    """Directories the sandbox needs read-only to run `python`: its installation and the venv
    (outside /usr, which is bound anyway), outermost first, none inside another."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        str(Path(os.path.realpath(python)).parent.parent),
        str(Path(python).absolute().parent.parent),
    }
    return _outermost(p for p in candidates if os.path.isdir(p))


def _outermost(paths: Iterable[str]) -> list[str]:
    chosen: list[str] = []
    covered = [p for p in SYSTEM_DIRS if not os.path.islink(p)]
    for path in sorted({os.path.abspath(p) for p in paths}, key=len):
        if path == "/" or any(path == c or path.startswith(c + "/") for c in (*covered, *chosen)):
            continue
        chosen.append(path)
    return chosen


@functools.cache
def bubblewrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox programs on this machine, or None when it can: probed once
    per process by running a real program in it (bwrap may be installed yet refused user
    namespaces, as in some containers)."""
    try:
        backend = BubblewrapBackend()
    except Exception as error:  # noqa: BLE001 - whatever stops it, the answer is "cannot"
        return str(error)
    try:
        run = backend.run_sync(Program.script("print('sandboxed')"), Limits(timeout_s=20.0))
    except OSError as error:
        return f"bwrap could not start: {error}"
    if run.stdout.strip() == "sandboxed" and run.ok:
        return None
    detail = (run.stderr.strip().splitlines() or [run.summary])[-1][:200]
    return f"bwrap did not run a program ({run.summary}): {json.dumps(detail)}"
