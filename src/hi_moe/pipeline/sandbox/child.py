"""What runs inside the sandbox, around the program: standard library only, because it runs under
whatever Python the sandbox has (a Modal image has no hi_moe). The harness passes this file's
source with `python -I -c`, so nothing of it has to exist in the sandbox beforehand.

Protocol: stdin carries a 10-digit length, a `marshal`-encoded header of that length (plain
dicts, strings and numbers: marshal is built in, so the child imports nothing to read it),
then `secret_len` raw bytes. The header says what to write into the working directory, which
limits to apply and what to run. Nothing secret is ever in argv, the environment or a file.

Two modes:

- ``script``: run one file as ``__main__``; its exit status is the result.
- ``verdict``: in a worker thread, import ``solution.py`` as the module ``solution`` (so ``if
  __name__ == "__main__"`` blocks do not run), execute ``checks.py`` in a copy of its namespace
  (with the builtins as they were before the solution ran), call ``check(<entry_point>)`` when
  there is one; then, in the main thread, which never runs the program's code, write the
  first half of the secret (the marker) on its own line of stdout and leave with
  ``os._exit(0)``, so no atexit hook or thread of the program runs after it.
  Anything else (an exception, ``SystemExit``, ``os._exit``, a signal, a timeout) leaves the
  marker unwritten: the harness reads "passed" from the marker, never from the exit status.
  On failure the marker is wiped first, then a one-line JSON report prefixed with the second
  half of the secret goes to stderr, so the harness can tell the runner's report from text the
  program printed.

While the program runs, an audit hook refuses what would let it read the marker out of this
interpreter: frames (``sys._getframe``, ``tb_frame``, ``gi_frame``...), tracing and profiling
hooks, ``gc`` referrer walks, ``ctypes`` and opening ``/proc/<pid>/mem``. The process is also
non-dumpable, so another process of the same user cannot read its memory. This is defence in
depth, not a proof: the program shares the interpreter with its checks, see the README's
threat model.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing would cost every run 13 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

HEADER_DIGITS = 10
MARKER_LEN = 32
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECBIT_LOCKED_ALL = 0x2F  # NOROOT, NO_SETUID_FIXUP and KEEP_CAPS_LOCKED, each with its lock bit
CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = 126  # x86-64; other machines resolve it through libc's capset()

_FRAME_EVENTS = frozenset(
    {"sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.addaudithook"}
)
_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
_HOOK_EVENTS = ("sys.settrace", "sys.setprofile", "sys._settraceallthreads",
                "sys._setprofileallthreads", "sys.monitoring", "ctypes.", "gc.get_")  # fmt: skip
_BLOCKED_MODULES = frozenset({"ctypes", "_ctypes", "_testcapi", "_testinternalcapi", "cffi"})


def _is_process_dir(path: str) -> bool:
    """/proc/<pid>, /proc/self or /proc/thread-self, or a task's directory under one: opening
    one gives a directory fd through which its `mem` could be opened relative to it."""
    parts = path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "proc":
        return False
    if not (parts[1].isdigit() or parts[1] in ("self", "thread-self")):
        return False
    rest = parts[2:]
    if rest[:1] == ["task"]:
        rest = rest[2:] if len(rest) >= 2 else []
    return rest in ([], ["mem"], ["pagemap"])


class Refused(ValueError):
    """Raised by the guard. A ValueError, because the standard library treats a ValueError
    from sys._getframe as "no frames on this platform" (namedtuple, typing, logging do)."""


def _read_exact(into: bytearray | memoryview) -> None:
    view = memoryview(into)
    got = 0
    while got < len(view):
        n = os.readv(0, [view[got:]])
        if n == 0:
            raise SystemExit("sandbox child: stdin ended early")
        got += n


def _read_request() -> tuple[dict[str, Any], bytearray]:
    size = bytearray(HEADER_DIGITS)
    _read_exact(size)
    header = bytearray(int(size))
    _read_exact(header)
    request: dict[str, Any] = marshal.loads(bytes(header))
    secret = bytearray(int(request.get("secret_len", 0)))
    _read_exact(secret)  # straight into a bytearray: no str or bytes copy to linger
    return request, secret


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _harden(request: dict[str, Any]) -> None:
    import resource

    for name, value in request.get("rlimits", {}).items():
        limit = getattr(resource, name)
        _soft, hard = resource.getrlimit(limit)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(limit, (value, value))
    try:
        libc = _libc()
    except (ImportError, OSError):
        return  # no ctypes here: the limits above still hold
    parent = request.get("parent_pid")
    if parent is not None:
        # Die with the harness. The check after prctl closes the race where it died first.
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(70)
    if request.get("drop_capabilities") and os.geteuid() == 0:
        _drop_capabilities(libc)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # Non-dumpable: another process of this user (a child the program starts, say) cannot
    # read this one's memory or environment through /proc.
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _drop_capabilities(libc: Any) -> None:
    """Root without capabilities, for good: an empty bounding set and NOROOT, so exec'ing a
    program gives none back, and no capability left to read another process's memory."""
    import ctypes

    libc.prctl(PR_SET_SECUREBITS, SECBIT_LOCKED_ALL, 0, 0, 0)
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable, twice: all empty
    capset = getattr(libc, "capset", None)
    if capset is not None:
        capset(header, data)
    else:
        libc.syscall(SYS_CAPSET, header, data)


def _write_files(files: dict[str, str]) -> None:
    for name, text in files.items():
        if os.path.isabs(name) or ".." in name.split("/"):
            raise SystemExit(f"sandbox child: refusing file name {name!r}")
        directory = os.path.dirname(name)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(name, "w", encoding="utf-8") as handle:
            handle.write(text)


def _forget_ctypes() -> None:
    """ctypes was only for the set-up above: the program must import it afresh (refused)."""
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]


def _install_guard() -> Callable[[], None]:
    """Refuse introspection that could reach the marker; returns the switch that lifts it."""
    on = [True]
    realpath = os.path.realpath
    fsdecode = os.fsdecode

    def guard(event: str, args: tuple[Any, ...]) -> None:
        if not on[0]:
            return
        if event in _FRAME_EVENTS:
            raise Refused(f"{event} is not available in the sandbox")
        if event == "object.__getattr__":
            if len(args) > 1 and args[1] in _FRAME_ATTRIBUTES:
                raise Refused(f"{args[1]} is not available in the sandbox")
            return
        if event.startswith(_HOOK_EVENTS):
            raise Refused(f"{event} is not available in the sandbox")
        if event == "import" and args and str(args[0]).partition(".")[0] in _BLOCKED_MODULES:
            raise ImportError(f"{args[0]} is not available in the sandbox")
        if event == "open" and args and isinstance(args[0], str | bytes):
            path = fsdecode(args[0]).rstrip("/")
            if path.rpartition("/")[2] in ("mem", "pagemap") or _is_process_dir(realpath(path)):
                raise PermissionError(f"{path}: not available in the sandbox")

    sys.addaudithook(guard)

    def lift() -> None:
        on[0] = False

    return lift


def _run_script(request: dict[str, Any]) -> None:
    """`main` as `__main__`, as `python main.py` would (runpy would cost 10 ms to import)."""
    import types

    path = os.path.abspath(request["main"])
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    sys.argv = [request["main"], *request.get("args", [])]
    exec(compile(source, path, "exec"), module.__dict__)


def _verdict(request: dict[str, Any], secret: bytearray) -> None:
    """Run the checks in a worker thread; only this (main) thread holds the marker.

    The program never runs a line in this thread: Python runs signal handlers here, with the
    frame they interrupted as an argument (the one way to a frame that no audit hook sees),
    and only this thread may install one. Started with `_thread`, the worker has no Thread
    object whose target or arguments `threading.enumerate()` would show the program. After
    the worker is done, this thread allocates nothing (so no finalizer of the program runs
    here) until the marker is written or wiped.
    """
    import _thread

    # Everything used after the program has run is bound before it runs: the program may
    # replace module attributes (os.write, builtins.exec...), not these locals.
    write, exit_now = os.write, os._exit
    zeros = bytes(MARKER_LEN)
    marker = memoryview(secret)[:MARKER_LEN]
    token = bytes(secret[MARKER_LEN:])
    outcome: list[Any] = []  # [True] when the checks ran to the end, else [stage, error]
    done = _thread.allocate_lock()
    done.acquire()
    lift = _install_guard()
    try:
        _thread.start_new_thread(_check_in_worker, (request, outcome, done))
        done.acquire()
    except BaseException as interrupted:  # noqa: BLE001 - KeyboardInterrupt from the program
        outcome[:] = ["wait", interrupted]
    if outcome and outcome[0] is True:
        write(1, b"\n")
        write(1, marker)
        write(1, b"\n")
        exit_now(0)
    marker[:] = zeros  # before anything else: a failed run never holds the marker
    lift()
    stage, error = outcome if len(outcome) == 2 else ("check", RuntimeError("no outcome"))
    _report(write, token, stage, error, request["checks"])
    exit_now(1)


def _check_in_worker(request: dict[str, Any], outcome: list[Any], done: Any) -> None:
    """Import the solution as a module, run the checks, say how it went: [True] only when
    every check ran to the end. Runs in the worker thread, where the program's code runs."""
    import builtins
    import types

    compile_, exec_ = compile, exec
    pristine = dict(vars(builtins))
    entry_point = request.get("entry_point")
    out, err = sys.stdout, sys.stderr
    stage = "import"
    try:
        path = os.path.abspath("solution.py")
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        # An import, by hand (importlib.util would cost the child 3 ms more to load).
        module = types.ModuleType("solution")
        module.__file__ = path
        sys.modules["solution"] = module
        exec_(compile_(source, path, "exec"), module.__dict__)
        stage = "checks"
        namespace = dict(vars(module))
        namespace.update(__name__="checks", __file__="checks.py", __builtins__=pristine)
        exec_(compile_(request["checks"], "checks.py", "exec"), namespace)
        if entry_point:
            stage = "check"
            if "check" not in namespace:
                raise NameError("the tests define no check(candidate) function")
            if entry_point not in namespace:
                raise NameError(f"the solution defines no {entry_point!r}")
            namespace["check"](namespace[entry_point])
        stage = "flush"
        for stream in (out, err):
            stream.flush()
        outcome[:] = [True]
    except BaseException as error:  # noqa: BLE001 - every way out of the checks is a failure
        outcome[:] = [stage, error]
    finally:
        done.release()


def _report(
    write: Callable[[int, bytes], int],
    token: bytes,
    stage: str,
    error: BaseException,
    checks: str,
) -> None:
    """One line for the harness: what failed, where in the program's own files. Only the
    program's files are named; the runner's own frames are left out."""
    import json
    import linecache
    import traceback

    # The checks never touch the disk (the program could read them there): give the
    # traceback their lines from memory.
    linecache.cache["checks.py"] = (len(checks), None, checks.splitlines(True), "checks.py")

    try:
        message = str(error)
    except BaseException:  # noqa: BLE001 - the program's __str__ is untrusted
        message = "<the exception could not be printed>"
    frames: list[list[object]] = []
    try:
        for frame in traceback.extract_tb(error.__traceback__):
            if os.path.basename(frame.filename) in ("solution.py", "checks.py"):
                frames.append([os.path.basename(frame.filename), frame.lineno, frame.name,
                               (frame.line or "")[:160]])  # fmt: skip
    except BaseException:  # noqa: BLE001 - a tampered traceback is no reason to hang
        frames = []
    report = {
        "stage": stage,
        "type": type(error).__name__,
        "message": message[:500],
        "frames": frames[-4:],
    }
    if isinstance(error, SystemExit):
        report["message"] = f"exit({error.code!r})"[:100]
    line = token + b" " + json.dumps(report).encode("utf-8", "replace") + b"\n"
    try:  # noqa: SIM105 - contextlib would cost every run its import
        write(2, line)
    except OSError:
        pass  # stderr closed by the program: still "failed"


def main() -> None:
    request, secret = _read_request()
    _harden(request)
    _forget_ctypes()
    _write_files(request.get("files", {}))
    if request["mode"] == "verdict":
        _verdict(request, secret)
    else:
        _run_script(request)


if __name__ == "__main__":
    main()
