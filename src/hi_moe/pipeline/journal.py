"""The run journal: SQLite, one row per run and per finished step, so a killed run resumes
without asking for finished steps again.

Every write is its own committed transaction (WAL mode): a SIGKILL loses at most the step
being written, never a committed one, and never leaves the file corrupt.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from hi_moe.pipeline.plan import Plan, Task
from hi_moe.pipeline.result import StepResult

__all__ = ["Journal", "RunRecord", "RunStatus"]

RunStatus: TypeAlias = Literal["running", "succeeded", "failed"]

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
"""


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


class Journal:
    """Runs and their finished steps in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

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

    def save_plan(self, run_id: str, plan: Plan, version: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET plan = ?, plan_version = ?, status = 'running', updated = ? "
                "WHERE run_id = ?",
                (plan.model_dump_json(), version, time.time(), run_id),
            )

    def finish_step(self, run_id: str, version: int, result: StepResult) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps (run_id, plan_version, step_id, result, finished) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, version, result.step_id, result.model_dump_json(), time.time()),
            )

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


_COLUMNS = "run_id, task, status, plan, plan_version, answer, summary, created, updated"


def _record(row: tuple[Any, ...]) -> RunRecord:
    run_id, task, status, plan, version, answer, summary, created, updated = row
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
    )
