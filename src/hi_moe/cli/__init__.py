"""The `hi-moe` command: one module per command group, registered here.

- `provider`: providers, complete, health, adapters, load-adapter, unload-adapter
- `checks`: doctor, check-schema
- `runs`: run, runs
- `report`: report (one run as a self-contained HTML page)
- `serve`: serve-local, sandbox
- `bench`: bench humaneval
- `batch`: batch (many tasks at once, resumable, results as JSON lines)
- `failures`: one line and an exit status for every failure (0, 1 failed, 2 bad usage)
- `common`: the shared options, settings and file reading; `display`: a run's live view
"""

from __future__ import annotations

from typing import Annotated

import typer

from hi_moe.cli import batch, checks, provider, report, runs, serve
from hi_moe.cli.bench import bench_app
from hi_moe.cli.common import LogLevel, configure_logging
from hi_moe.cli.failures import OneLineErrors

__all__ = ["app", "main"]

app = typer.Typer(
    name="hi-moe",
    help="One inference interface for LLM harnesses: vLLM + LoRA specialists, OpenAI, mock.",
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            "--log-level",
            envvar="HI_MOE_LOG_LEVEL",
            case_sensitive=False,
            help="What to log to stderr: retries and cold starts are warnings; debug adds "
            "every request the openai SDK and httpx send (never their keys).",
        ),
    ] = LogLevel.warning,
) -> None:
    configure_logging(log_level)
    source = ctx.get_parameter_source("log_level")
    # `run --quiet` silences warnings unless a level was asked for.
    ctx.obj = {"log_level_given": source is not None and source.name != "DEFAULT"}


for group in (provider, checks, runs, report, batch, serve):
    group.register(app)
app.add_typer(bench_app, name="bench")


def main() -> None:
    app()
