"""Supervising one local sandboxed process: feeding its stdin, capturing its output within
limits, and noticing its exit.

The supervisor runs in a worker thread with a selector over the child's pipes and a pidfd, so
that it notices the child's exit even while a descendant keeps the pipes open (asyncio's
subprocess on 3.11 waits for the pipes to close before `wait()` returns). Output is read in
chunks into a `Capture` that stops at its limit, so the harness's memory stays flat however
much the program prints; past the limit, or at the deadline, the whole tree is killed and the
call returns without waiting for pipes to close.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hi_moe.pipeline.sandbox.base import Limits, SandboxRun

__all__ = ["Capture", "supervise"]

CHUNK = 64 * 1024
DRAIN_AFTER_EXIT_S = 0.2
"""How long output is still read after the program's main process exited (its descendants
may still be writing); then they are killed."""
REAP_TIMEOUT_S = 5.0


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
