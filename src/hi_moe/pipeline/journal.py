"""The run journal: SQLite, one row per run and per finished step, so a killed run resumes
without asking for finished steps again, and one per provider request (its timing, tokens and
cost: what `hi-moe report` draws, for finished, failed and interrupted runs alike).

Every write is its own committed transaction (WAL mode): a SIGKILL loses at most the step
being written, never a committed one, and never leaves the file corrupt.

A run records the process that owns it (host, pid, and the pid's start time, so a reused pid
is not mistaken for it): each write claims the run for the writing process. A run still
`running` whose owner is gone was killed: its record's `state` is `interrupted`, and
`ProgressMonitor.resume` continues it. Journals written before these columns existed get them
added when opened; their runs' owners are unknown, so they stay `running`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, computed_field

from hi_moe.errors import ConfigError
from hi_moe.pipeline.plan import Plan, Task
from hi_moe.pipeline.result import StepResult

__all__ = ["Journal", "RunRecord", "RunState", "RunStatus"]

RunStatus: TypeAlias = Literal["running", "succeeded", "failed"]
"""What the journal stores."""
RunState: TypeAlias = Literal["running", "interrupted", "succeeded", "failed"]
"""What a reader sees: `running` whose owner process is gone is `interrupted`."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    plan TEXT,
    plan_version INTEGER NOT NULL DEFAULT 0,
    answer TEXT,
    summary TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    plan_version INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    result TEXT NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (run_id, plan_version, step_id)
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step_id TEXT,
    data TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_run ON requests (run_id, id);
"""
# Columns added after the first release, with their types: added to older journals on open.
_ADDED_COLUMNS = {"owner_host": "TEXT", "owner_pid": "INTEGER", "owner_start": "TEXT"}


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    task: Task
    status: RunStatus
    plan: Plan | None
    plan_version: int
    answer: str | None
    summary: dict[str, Any] | None
    created: float
    updated: float
    owner_host: str | None = None
    owner_pid: int | None = None
    owner_alive: bool | None = None
    """Whether the owning process was alive when this record was read; None: cannot tell (no
    owner recorded, or another host)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> RunState:
        return (
            "interrupted" if self.status == "running" and self.owner_alive is False else self.status
        )


class Journal:
    """Runs and their finished steps in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    try:
                        db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as error:
                        if "duplicate column" not in str(error):  # another process was first
                            raise

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: cheap next to an LLM request, and safe across processes.
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill
            with db:  # one transaction, committed on success
                yield db

    def start_run(self, run_id: str, task: Task) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, task, status, created, updated) "
                "VALUES (?, ?, 'running', ?, ?)",
                (run_id, task.model_dump_json(), now, now),
            )
            _claim(db, run_id)

    def claim(self, run_id: str) -> None:
        """Record this process as the one running `run_id` (before resuming it)."""
        with self._connect() as db:
            _claim(db, run_id)

    def take_over(self, run_id: str) -> RunRecord | None:
        """The run, claimed for this process to resume; None if there is no such run.
        `ConfigError` if another process that is alive runs it: two processes resuming one run
        would ask for its steps twice."""
        record = self.load_run(run_id)
        if record is None:
            return None
        if record.status == "running" and record.owner_alive and record.owner_pid != os.getpid():
            raise ConfigError(
                f"run {run_id} is still running (pid {record.owner_pid} on {record.owner_host})"
            )
        if record.status == "running":
            self.claim(run_id)
        return record

    def save_plan(self, run_id: str, plan: Plan, version: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET plan = ?, plan_version = ?, status = 'running', updated = ? "
                "WHERE run_id = ?",
                (plan.model_dump_json(), version, time.time(), run_id),
            )
            _claim(db, run_id)

    def finish_step(self, run_id: str, version: int, result: StepResult) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps (run_id, plan_version, step_id, result, finished) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, version, result.step_id, result.model_dump_json(), time.time()),
            )
            _claim(db, run_id)

    def record_request(self, run_id: str, record: dict[str, Any]) -> None:
        """One provider request of the run: the `request` event's data (`RunRecorder`)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO requests (run_id, step_id, data, at) VALUES (?, ?, ?, ?)",
                (run_id, record.get("step"), json.dumps(record, default=str), time.time()),
            )

    def requests(self, run_id: str) -> list[dict[str, Any]]:
        """The run's requests in the order they finished, resumed sessions included."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT data FROM requests WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def finished_steps(self, run_id: str, version: int) -> dict[str, StepResult]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT result FROM steps WHERE run_id = ? AND plan_version = ?",
                (run_id, version),
            ).fetchall()
        results = (StepResult.model_validate_json(row[0]) for row in rows)
        return {result.step_id: result for result in results}

    def finish_run(
        self, run_id: str, status: RunStatus, answer: str | None, summary: dict[str, Any]
    ) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = ?, answer = ?, summary = ?, updated = ? WHERE run_id = ?",
                (status, answer, json.dumps(summary, default=str), time.time(), run_id),
            )

    def load_run(self, run_id: str) -> RunRecord | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _record(row) if row is not None else None

    def runs(self, limit: int = 50) -> list[RunRecord]:
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM runs ORDER BY created DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_record(row) for row in rows]

    def integrity_ok(self) -> bool:
        with self._connect() as db:
            return bool(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")


_COLUMNS = (
    "run_id, task, status, plan, plan_version, answer, summary, created, updated, "
    "owner_host, owner_pid, owner_start"
)


def _claim(db: sqlite3.Connection, run_id: str) -> None:
    db.execute(
        "UPDATE runs SET owner_host = ?, owner_pid = ?, owner_start = ? WHERE run_id = ?",
        (socket.gethostname(), os.getpid(), _started(os.getpid()), run_id),
    )


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its state field on (Linux); None elsewhere or when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # the name in parentheses may hold spaces


def _started(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None  # field 22


def _alive(host: str | None, pid: int | None, started: str | None) -> bool | None:
    if host is None or pid is None or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc to look closer: the pid exists
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return started is None or _started(pid) == started  # else the pid was reused


def _record(row: tuple[Any, ...]) -> RunRecord:
    run_id, task, status, plan, version, answer, summary, created, updated = row[:9]
    host, pid, started = row[9:]
    return RunRecord(
        run_id=run_id,
        task=Task.model_validate_json(task),
        status=status,
        plan=Plan.model_validate_json(plan) if plan else None,
        plan_version=version,
        answer=answer,
        summary=json.loads(summary) if summary else None,
        created=created,
        updated=updated,
        owner_host=host,
        owner_pid=pid,
        owner_alive=_alive(host, pid, started) if status == "running" else None,
    )
