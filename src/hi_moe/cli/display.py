"""A live view of a run for the terminal, driven by the pipeline's events."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
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
    """An event sink: a spinner saying what the run is doing (planning, steps done) over a
    table of steps (domain, where it runs, status, attempts, tokens) that updates in place on
    a terminal, and plain lines otherwise. When the run starts it says the run's id (to resume
    it if killed) and where its journal and metrics go. Use as a context manager."""

    def __init__(self, console: Console, *, journal: object = None, metrics: object = None) -> None:
        self.console = console
        self.journal = journal
        self.metrics = metrics
        self.rows: dict[str, dict[str, Any]] = {}
        self.headline = "planning"
        self.finished = False
        self._spinner = Spinner("dots", style="yellow")
        self._live: Live | None = None

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            # A callable renderable: the spinner moves between events too.
            self._live = Live(
                console=self.console, get_renderable=self._render, refresh_per_second=8
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished = True
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)

    def _render(self) -> RenderableType:
        if self.finished:
            return self._table() if self.rows else Group()
        self._spinner.update(text=self.headline)
        return Group(self._spinner, self._table()) if self.rows else self._spinner

    def _progress(self) -> str:
        done = sum(row["status"] in ("done", "resumed") for row in self.rows.values())
        running = sum(row["status"] in ("running", "retrying") for row in self.rows.values())
        return f"steps: {done}/{len(self.rows)} done, {running} running"

    def __call__(self, event: Event) -> None:
        row = self.rows.get(event.step_id or "")
        data = event.data
        if event.kind == "run_started":
            self._started(event)
            return
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
            self.headline = self._progress()
        elif event.kind in ("plan_rejected", "replanned"):
            self.headline = "planning again"
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
        if self.rows and event.kind != "planned" and self.headline != "planning again":
            self.headline = self._progress()
        if self._live is not None:
            self._live.refresh()
        elif event.kind not in ("request",):
            where = f" {event.step_id}" if event.step_id else ""
            detail = f": {event.detail}" if event.detail else ""
            self.console.print(
                f"[dim]{escape(event.kind + where + detail)}[/dim]", highlight=False, soft_wrap=True
            )

    def _started(self, event: Event) -> None:
        resuming = event.detail.startswith("resuming")
        self.console.print(
            f"run [bold]{escape(event.run_id)}[/bold] {'resumed' if resuming else 'started'}; if "
            f"it is stopped, continue it with: hi-moe run --resume {escape(event.run_id)}",
            highlight=False,
            soft_wrap=True,
        )
        where = [
            f"{name}: {path}"
            for name, path in (("journal", self.journal), ("metrics", self.metrics))
            if path
        ]
        if where:
            self.console.print(
                f"[dim]{escape('; '.join(where))}[/dim]", highlight=False, soft_wrap=True
            )
        if self._live is not None:
            self._live.refresh()

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
