"""`hi-moe report RUN_ID`: one run from the journal as a self-contained HTML page (its plan as
a DAG, a timeline of every provider request, tables per step and per provider, the cost, the
task and the answer), for finished, failed and interrupted runs alike.

    from hi_moe.report import write_report
    path = write_report(Journal("runs.sqlite"), run_id)   # None: no such run
"""

from __future__ import annotations

from pathlib import Path

from hi_moe.pipeline.journal import Journal
from hi_moe.report.data import ReportData, gather, report_path, usd
from hi_moe.report.html import render

__all__ = ["ReportData", "gather", "render", "report_path", "usd", "write_report"]


def write_report(journal: Journal, run_id: str, out: Path | None = None) -> Path | None:
    """Write the report of `run_id` to `out` (by default `report_path`) and return where; None
    when the journal has no such run. The file is written whole or not at all."""
    data = gather(journal, run_id)
    if data is None:
        return None
    path = out if out is not None else report_path(journal.path, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(render(data), encoding="utf-8")
    partial.replace(path)
    return path
