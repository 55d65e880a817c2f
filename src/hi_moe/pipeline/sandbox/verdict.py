"""Verdicts that cannot be faked: did a solution pass its tests?

`check_solution` sends the solution and its tests to a backend in "verdict" mode (see
`sandbox.child`): a runner imports the solution as a module, runs the checks, and only
then prints a per-run random marker. Passed means that marker came back, on its own line of
stdout, within the time and output limits. The exit status means nothing: `sys.exit(0)`,
`os._exit(0)`, an atexit hook or an excepthook that exits 0 all leave the marker unprinted,
and text that merely looks like a marker is not the marker.

`summary` is what may be fed back to the model: short, from the runner's own report (the
exception and the lines of the program's files it went through), scrubbed of secrets, never
the program's free output.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from hi_moe.pipeline.sandbox.base import Limits, Program, SandboxBackend, SandboxRun
from hi_moe.pipeline.sandbox.child import MARKER_LEN
from hi_moe.pipeline.sandbox.scrub import redact

__all__ = ["SUMMARY_CHARS", "Verdict", "check_solution", "verdict_from"]

SUMMARY_CHARS = 400
_STAGES = {
    "import": "while importing the solution",
    "checks": "in the tests",
    "check": "in check()",
    "flush": "after the tests",
}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    summary: str
    """Why it failed ("passed" when it did): short and scrubbed, fit to show a model."""
    run: SandboxRun
    """The raw run, for debugging. Its output is the program's: do not feed it back."""


async def check_solution(
    backend: SandboxBackend,
    solution: str,
    tests: str,
    *,
    entry_point: str | None = None,
    limits: Limits | None = None,
) -> Verdict:
    """Run `tests` against `solution` in `backend`. With `entry_point`, the tests define
    `check(candidate)` and are called as `check(<entry_point>)` (HumanEval's convention);
    otherwise they are plain statements (asserts) run in the solution's namespace."""
    marker = secrets.token_hex(MARKER_LEN // 2).encode()
    token = secrets.token_hex(16).encode()
    program = Program(
        files={"solution.py": solution},
        mode="verdict",
        checks=tests,
        entry_point=entry_point,
        secret=marker + token,
    )
    run = await backend.run(program, limits or Limits())
    return verdict_from(run, marker, token)


def verdict_from(run: SandboxRun, marker: bytes, token: bytes) -> Verdict:
    """Read a verdict-mode run: passed only when the marker line is there and the run stayed
    within its limits."""
    # A whole line, found in place: no copy of output that may be megabytes long.
    printed = re.search(f"^{re.escape(marker.decode())}$", run.stdout, re.MULTILINE) is not None
    if printed and not run.timed_out and not run.output_exceeded:
        return Verdict(True, "passed", run)
    return Verdict(False, _summary(run, token.decode()), run)


def _summary(run: SandboxRun, token: str) -> str:
    if run.timed_out:
        text = f"timed out after {run.timeout_s:.1f} s"
    elif run.output_exceeded:
        text = "printed more than the output limit, so it was stopped"
    elif (report := _report(run.stderr, token)) is not None:
        text = _describe(report)
    elif run.signal is not None:
        hint = " (memory or CPU limit?)" if run.signal in ("SIGKILL", "SIGXCPU") else ""
        text = f"killed by {run.signal}{hint} before the tests finished"
    else:
        text = (
            f"the program ended (exit status {run.returncode}) before the tests finished; "
            "do not exit, the tests must run to the end"
        )
    text = redact(text)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."


def _report(stderr: str, token: str) -> dict[str, Any] | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith(token + " "):
            try:
                found = json.loads(line[len(token) + 1 :])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None


def _describe(report: dict[str, Any]) -> str:
    kind = str(report.get("type", "Error"))[:60]
    message = str(report.get("message", "")).strip()
    stage = _STAGES.get(str(report.get("stage")), "")
    if kind == "SystemExit":
        head = f"SystemExit ({message}) {stage}: do not exit, the tests must run to the end"
    else:
        head = f"{kind}: {message}" if message else kind
        head = f"{head} ({stage})" if stage else head
    frames = report.get("frames") or []
    where = []
    for frame in frames[-2:]:
        if isinstance(frame, list) and len(frame) == 4:
            file, line, _name, code = frame
            where.append(f"{file} line {line}: {str(code).strip()}")
    return head + ("; at " + "; ".join(where) if where else "")
