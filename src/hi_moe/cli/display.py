"""A live view of a run for the terminal, driven by the pipeline's events."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from hi_moe.pipeline.events import Event

__all__ = ["RunDisplay"]

_STYLE = {
    "waiting": "dim",
    "running": "yellow",
    "retrying": "yellow",
    "done": "green",
    "resumed": "green",
    "failed": "red",
    "skipped": "dim",
}


class RunDisplay:
    """An event sink: a table of steps (domain, where it runs, status, attempts, tokens) that
    updates in place on a terminal, and plain lines otherwise. Use as a context manager."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, dict[str, Any]] = {}
        self.headline = "planning"
        self._live: Live | None = None

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def __call__(self, event: Event) -> None:
        row = self.rows.get(event.step_id or "")
        data = event.data
        if event.kind == "planned":
            self.rows = {
                step["id"]: {
                    "domain": step["domain"],
                    "goal": step["goal"],
                    "where": "",
                    "status": "waiting",
                    "attempts": 0,
                    "tokens": 0,
                }
                for step in data.get("plan", {}).get("steps", [])
            }
            self.headline = f"{len(self.rows)} steps"
        elif row is not None and event.kind in ("step_started", "step_retried"):
            adapter = data.get("adapter") or "base"
            row.update(
                where=f"{data.get('provider')}/{adapter}",
                status="running" if event.kind == "step_started" else "retrying",
                attempts=data.get("attempt", 0),
            )
        elif row is not None and event.kind == "step_finished":
            row.update(status="done", tokens=data.get("tokens", 0))
        elif row is not None and event.kind == "step_resumed":
            row.update(status="resumed")
        elif row is not None and event.kind == "step_failed":
            row.update(status="failed")
        elif row is not None and event.kind == "step_skipped":
            row.update(status="skipped")
        if self._live is not None:
            self._live.update(self._table())
        elif event.kind not in ("request",):
            where = f" {event.step_id}" if event.step_id else ""
            detail = f": {event.detail}" if event.detail else ""
            self.console.print(f"[dim]{event.kind}{where}{detail}[/dim]", highlight=False)

    def _table(self) -> Table:
        table = Table(title=self.headline, title_justify="left", expand=False)
        for column in ("step", "domain", "provider/adapter", "status", "tries", "tokens", "goal"):
            table.add_column(column)
        for step_id, row in self.rows.items():
            style = _STYLE.get(row["status"], "")
            table.add_row(
                step_id,
                row["domain"],
                row["where"],
                f"[{style}]{row['status']}[/{style}]" if style else row["status"],
                str(row["attempts"]),
                str(row["tokens"]),
                row["goal"][:50],
            )
        return table
