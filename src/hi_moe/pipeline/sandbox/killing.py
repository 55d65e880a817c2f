"""Killing a local run's process tree: its process group, what a scan of /proc finds of its
session and descendants, or everything in the pids cgroup it was started in."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Sequence
from functools import cache
from pathlib import Path

__all__ = ["PidsCgroup", "kill_descendants", "kill_group", "pids_cgroups_available"]


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _stat(pid: str) -> tuple[int, int, int] | None:
    """(ppid, process group, session) of a process, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[1]), int(fields[2]), int(fields[3])


def kill_descendants(leader: int, rounds: int = 3) -> int:
    """SIGKILL every process in the leader's session or process group, or descended from it
    while its parent chain is intact. A process that double-forked into a new session and was
    reparented escapes this scan: only a pids cgroup or a pid namespace catches that."""
    killed = 0
    for _ in range(rounds):
        table: dict[int, tuple[int, int, int]] = {}
        with contextlib.suppress(OSError):
            for name in os.listdir("/proc"):
                if name.isdigit() and (row := _stat(name)) is not None:
                    table[int(name)] = row
        ours = {leader}
        for pid, (_ppid, group, session) in table.items():
            if session == leader or group == leader:
                ours.add(pid)
        grew = True
        while grew:
            grew = False
            for pid, (ppid, _group, _session) in table.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    grew = True
        victims = [pid for pid in ours if pid in table and pid != os.getpid()]
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


class PidsCgroup:
    """A pids cgroup for one run, where the machine lets us make one (cgroup v1's pids
    hierarchy, or v2 where the pids controller is delegated to our cgroup). It bounds the
    number of processes (a fork bomb stops at `pids.max`, for root too, whom RLIMIT_NPROC
    spares) and lets us find and kill every process of the run, double-forked or not."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup | None:
        parent = _pids_parent()
        if parent is None:
            return None
        path = parent / f"hi-moe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
        except OSError:
            return None
        try:
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv`, started inside this cgroup: a shell joins it, then execs, before anything
        of the run can fork."""
        join = 'echo $$ > "$0" && exec "$@"'
        return ["/bin/sh", "-c", join, str(self.path / "cgroup.procs"), *argv]

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split()]

    def kill_all(self, timeout_s: float = 2.0) -> None:
        kill_file = self.path / "cgroup.kill"  # v2: one write kills the lot
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        until = time.monotonic() + timeout_s
        while (pids := self.pids()) and time.monotonic() < until:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        """The directory goes once its last process is reaped; a few tries, then left behind
        (empty, harmless) rather than waited for."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


@cache
def _pids_parent() -> Path | None:
    """Where this process may make pids cgroups, probed once; None when nowhere."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _hierarchy, controllers, where = line.split(":", 2)
        relative = where.lstrip("/")
        if "pids" in controllers.split(","):
            candidates.append(Path("/sys/fs/cgroup/pids") / relative)
        elif controllers == "":
            candidates.append(Path("/sys/fs/cgroup") / relative)
    for parent in candidates:
        probe = parent / f"hi-moe-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            if (probe / "pids.max").exists() and os.access(probe / "cgroup.procs", os.W_OK):
                return parent
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
    return None


def pids_cgroups_available() -> bool:
    return _pids_parent() is not None
