"""Starting and supervising a local sandboxed process: the part the bubblewrap and process
backends share.

The supervisor runs in a worker thread with a selector over the child's pipes and a pidfd, so
that it notices the child's exit even while a descendant keeps the pipes open (asyncio's
subprocess on 3.11 waits for the pipes to close before `wait()` returns). Output is read in
chunks into a `Capture` that stops at its limit, so the harness's memory stays flat however
much the program prints; past the limit, or at the deadline, the whole tree is killed and the
call returns without waiting for pipes to close.
"""

from __future__ import annotations

import contextlib
import marshal
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from hi_moe.pipeline.sandbox.base import Limits, Program, SandboxRun

__all__ = [
    "Capture",
    "PidsCgroup",
    "child_command",
    "encode_request",
    "in_thread",
    "kill_descendants",
    "kill_group",
    "pids_cgroups_available",
    "remove_tree",
    "rlimits",
    "supervise",
]

MB = 1024 * 1024
CHUNK = 64 * 1024
DRAIN_AFTER_EXIT_S = 0.2
"""How long output is still read after the program's main process exited (its descendants
may still be writing); then they are killed."""
REAP_TIMEOUT_S = 5.0


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


class Capture:
    """stdout and stderr, at most `limit` bytes together; `add` says False once past it.
    One growing buffer per stream, decoded once: about twice the limit at the peak."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.exceeded = False

    def add(self, stream: str, chunk: bytes) -> bool:
        room = self.limit - self.size
        if len(chunk) > room:
            chunk = chunk[: max(room, 0)]
            self.exceeded = True
        if chunk:
            self.buffers[stream] += chunk
            self.size += len(chunk)
        return not self.exceeded

    def text(self, stream: str) -> str:
        return self.buffers[stream].decode("utf-8", errors="replace")


def supervise(
    argv: Sequence[str],
    stdin: bytes,
    *,
    limits: Limits,
    backend: str,
    kill_tree: Callable[[int], None],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    pass_fds: Sequence[int] = (),
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    cancel: threading.Event | None = None,
) -> SandboxRun:
    """Run `argv`, feed it `stdin`, capture its output within `limits` and kill its tree with
    `kill_tree(pid)` when it is done, past the deadline, over the output limit or cancelled."""
    started = time.monotonic()
    deadline = started + limits.timeout_s
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,  # setsid in the child, done by _posixsubprocess: thread-safe
        pass_fds=tuple(pass_fds),
        close_fds=True,
    )
    capture = Capture(limits.output_bytes)
    timed_out = False
    try:
        if on_start is not None:
            on_start(process)
        timed_out = _pump(process, stdin, capture, deadline, cancel)
    finally:
        kill_tree(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):  # unkillable: do not hang
            process.wait(REAP_TIMEOUT_S)
        _drain(process, capture)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
    return SandboxRun(
        backend=backend,
        returncode=process.returncode,
        stdout=capture.text("stdout"),
        stderr=capture.text("stderr"),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        output_exceeded=capture.exceeded,
        timeout_s=limits.timeout_s,
    )


def _pump(
    process: subprocess.Popen[bytes],
    stdin: bytes,
    capture: Capture,
    deadline: float,
    cancel: threading.Event | None,
) -> bool:
    """Move bytes until the program is done; True when it ran past the deadline."""
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    selector = selectors.DefaultSelector()
    pidfd = _pidfd(process.pid)
    try:
        readers = {process.stdout.fileno(): "stdout", process.stderr.fileno(): "stderr"}
        for fd, name in readers.items():
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ, name)
        pending = memoryview(stdin)
        writer = process.stdin.fileno()
        os.set_blocking(writer, False)
        selector.register(writer, selectors.EVENT_WRITE, "stdin")
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ, "exit")
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                return True
            if cancel is not None and cancel.is_set():
                return False
            if exited_at is None and (pidfd is None and process.poll() is not None):
                exited_at = now
            if exited_at is not None and (not readers or now - exited_at >= DRAIN_AFTER_EXIT_S):
                return False
            wait = deadline - now
            if exited_at is not None:
                wait = min(wait, exited_at + DRAIN_AFTER_EXIT_S - now)
            if pidfd is None or cancel is not None:
                wait = min(wait, 0.05)
            for key, _ in selector.select(max(wait, 0.0)):
                if key.data == "exit":
                    selector.unregister(key.fd)
                    exited_at = time.monotonic()
                elif key.data == "stdin":
                    pending = _feed(process.stdin, pending, selector)
                else:
                    chunk = _read(key.fd)
                    if chunk is None:
                        continue
                    if not chunk:
                        selector.unregister(key.fd)
                        readers.pop(key.fd, None)
                    elif not capture.add(key.data, chunk):
                        return False
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)


def _feed(stdin: Any, pending: memoryview, selector: selectors.BaseSelector) -> memoryview:
    fd = stdin.fileno()
    try:
        written = os.write(fd, pending[:CHUNK])
    except BlockingIOError:
        return pending
    except OSError:  # the child is gone or closed stdin: nothing more to give
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(fd)
        with contextlib.suppress(OSError):
            stdin.close()  # through the file object, which owns the fd: closed exactly once
    return pending


def _read(fd: int) -> bytes | None:
    """A chunk; b"" at end of file; None when nothing is there yet."""
    try:
        return os.read(fd, CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _drain(process: subprocess.Popen[bytes], capture: Capture) -> None:
    """What is still in the pipes once the tree is dead, without waiting for a writer."""
    for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
        if stream is None or stream.closed:
            continue
        fd = stream.fileno()
        os.set_blocking(fd, False)
        while not capture.exceeded:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                break
            if not chunk or not capture.add(name, chunk):
                break


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


# -- killing a tree ----------------------------------------------------------------------------


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


def pids_cgroups_available() -> bool:
    return _pids_parent() is not None
