"""`hi-moe report RUN_ID`: one journaled run as a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hi_moe.cli.common import ConfigOption, load_settings, nonempty
from hi_moe.pipeline import Journal

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command()(report)


def report(
    run_id: Annotated[
        str, typer.Argument(help="The run to show (see `hi-moe runs`).", callback=nonempty)
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            dir_okay=False,
            help="Where to write it (default: <journal dir>/reports/RUN_ID.html).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write a run's report: its plan as a DAG, a timeline of every request (retries,
    fallbacks, cold starts), its steps, providers, cost and answer, in one HTML file that loads
    nothing. Works for finished, failed and interrupted runs. Prints the path written."""
    from hi_moe.report import write_report  # not imported for --help

    settings = load_settings(config)
    journal = Journal(settings.pipeline.journal)
    written = write_report(journal, run_id, out)
    if written is None:  # bad usage, as for `hi-moe runs RUN_ID`: exit status 2
        raise typer.BadParameter(
            f"no run {run_id!r} in {journal.path} (see `hi-moe runs`)", param_hint="RUN_ID"
        )
    typer.echo(str(written))
