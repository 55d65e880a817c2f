"""`hi-moe batch TASKS.jsonl`: many tasks at once against one provider, resumable, results as
JSON lines (the work is `hi_moe.pipeline.batch`'s; this is the command, its progress bar, and
the results file)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from hi_moe.cli.common import (
    AsJson,
    ConfigOption,
    ProviderOption,
    load_settings,
    mock_notice,
    nonempty,
    read_text,
)
from hi_moe.cli.failures import INTERRUPTED, err, fail
from hi_moe.cli.runs import demo_mock, task_from_json
from hi_moe.config import load_providers
from hi_moe.cost.account import usd
from hi_moe.errors import ConfigError
from hi_moe.pipeline import Journal, MetricsLog
from hi_moe.pipeline.batch import (
    Batch,
    BatchSummary,
    BatchTask,
    Pending,
    TaskResult,
    batch_id_of,
    prepare,
)
from hi_moe.telemetry import sink_from_settings

__all__ = ["ResultsFile", "read_tasks", "register"]

MAX_TASKS_BYTES = 64 << 20
"""A tasks file: thousands of tasks with their tests fit; a mistaken multi-GB file does not."""


def register(app: typer.Typer) -> None:
    app.command()(batch)


def read_tasks(path: Path) -> list[BatchTask]:
    """One task per line, each checked as `hi-moe run --task-file` checks a JSON task, with
    an optional distinct `id`; blank lines are skipped. A usage error naming the line."""
    text = read_text(path, "TASKS", limit=MAX_TASKS_BYTES)
    items: list[BatchTask] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise typer.BadParameter(
                f"{where} is not JSON ({error.msg} at column {error.colno}); each line is a "
                'JSON object {"prompt", "tests", "entry_point", "id"}',
                param_hint="TASKS",
            ) from None
        task = task_from_json(data, where, "TASKS")
        if task.id is not None and not task.id.strip():
            raise typer.BadParameter(f"{where}: the id is empty", param_hint="TASKS")
        item = BatchTask(number, task)
        if item.key in seen:
            raise typer.BadParameter(
                f"{where}: the id {item.key!r} is line {seen[item.key]}'s too; ids name one task",
                param_hint="TASKS",
            )
        seen[item.key] = number
        items.append(item)
    return items


class ResultsFile:
    """A batch's results as JSON lines, one flushed line per task as it ends, so a killed
    batch loses no finished task's line. Opened again (to resume), it keeps what is there and
    drops a line torn by a kill; a task whose line is there is not written twice."""

    def __init__(self, path: Path, batch_id: str) -> None:
        self.written: set[str] = set()
        keep = 0
        if path.exists():
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1  # past the last whole line
            for number, raw in enumerate(data[:keep].splitlines(), start=1):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = None
                run_id = line.get("run_id") if isinstance(line, dict) else None
                if not isinstance(run_id, str):
                    raise ConfigError(f"{path} line {number} is not a result of hi-moe batch")
                if not run_id.startswith(f"{batch_id}/"):
                    raise ConfigError(
                        f"{path} holds results of another batch ({run_id.split('/')[0]}); "
                        "give another --out, or remove it"
                    )
                self.written.add(run_id)
        self._stream: TextIO = path.open("r+" if path.exists() else "w", encoding="utf-8")
        self._stream.seek(keep)
        self._stream.truncate()

    def write(self, result: TaskResult) -> None:
        if result.run_id not in self.written:
            write_line(self._stream, result)
            self.written.add(result.run_id)

    def close(self) -> None:
        self._stream.close()


def write_line(stream: TextIO, result: TaskResult) -> None:
    stream.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
    stream.flush()


class BatchProgress:
    """Tasks done, failed and running: a progress bar on a terminal, a line per finished task
    otherwise. A failed task is always a line of its own, with its reason."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.done = self.failed = self.running = 0
        self._progress: Progress | None = None
        self._bar: Any = None

    def __enter__(self) -> BatchProgress:
        if self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("tasks"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.__enter__()
            self._bar = self._progress.add_task("tasks", total=self.total, counts=self._counts())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, error, tb)

    def _counts(self) -> str:
        return f"{self.failed} failed, {self.running} running"

    def started(self, pending: Pending) -> None:
        self.running += 1
        self._update()

    def finished(self, result: TaskResult) -> None:
        if result.origin != "journal":
            self.running -= 1
        self.done += 1
        self.failed += result.status != "succeeded"
        self._update()
        origin = {"journal": " (journaled)", "resumed": " (resumed)", "ran": ""}[result.origin]
        reason = f": {result.reason}" if result.status != "succeeded" else ""
        if self._progress is None or reason:
            self.console.print(
                f"task {escape(result.id)} {result.status}{origin}{escape(reason)}; "
                f"{result.tokens} tokens, {result.wall_s:.2f} s "
                f"[{self.done}/{self.total} done, {self._counts()}]",
                highlight=False,
                soft_wrap=True,
            )

    def _update(self) -> None:
        if self._progress is not None:
            self._progress.update(self._bar, completed=self.done, counts=self._counts())


def batch(
    ctx: typer.Context,
    tasks_file: Annotated[
        Path,
        typer.Argument(
            metavar="TASKS",
            exists=True,
            dir_okay=False,
            help='JSON lines: a task object {"prompt", "tests", "entry_point", "id"} a line.',
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", dir_okay=False, help="Write the results here (default: stdout), one line each."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks running at once.")] = 4,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue the journaled batch BATCH_ID.", callback=nonempty),
    ] = None,
    as_json: AsJson = False,
    quiet: Annotated[
        bool, typer.Option(help="Only the results on stdout (or --out) and errors on stderr.")
    ] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Run every task of TASKS concurrently against one provider, steps of different tasks on
    the same adapter batched together (with `lora_slots` set). Results are JSON lines in the
    order tasks finish. The batch's id is printed first: the same command, or `--resume
    BATCH_ID`, continues a stopped batch without redoing finished tasks or steps."""
    items = read_tasks(tasks_file)
    settings = load_settings(config, provider)
    pipeline = settings.pipeline
    otel = sink_from_settings(settings.otel)  # None unless [otel] is enabled
    journal = Journal(pipeline.journal)
    batch_id = resume or batch_id_of(items)
    try:
        pending = prepare(journal, batch_id, items)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--resume" if resume else "TASKS") from None
    if resume is not None and all(p.state == "new" for p in pending):
        raise typer.BadParameter(
            f"no run of batch {resume!r} in {journal.path}", param_hint="--resume"
        )
    try:
        results = ResultsFile(out, batch_id) if out is not None else None
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--out") from None
    if quiet and ctx.obj and not ctx.obj.get("log_level_given"):
        logging.getLogger().setLevel(logging.ERROR)  # retries and cold starts are not errors
    resume_hint = f"hi-moe batch {tasks_file} --resume {batch_id}"
    if not quiet:
        counts = {s: sum(p.state == s for p in pending) for s in ("finished", "interrupted")}
        err.print(
            f"batch [bold]{escape(batch_id)}[/bold]: {len(items)} tasks ({counts['finished']} "
            f"finished, {counts['interrupted']} to resume); if it is stopped, continue it "
            f"with: {escape(resume_hint)}",
            highlight=False,
            soft_wrap=True,
        )
        mock_notice(settings)
    progress = BatchProgress(err, len(items))

    def on_result(result: TaskResult) -> None:
        if results is not None:
            results.write(result)
        else:
            write_line(sys.stdout, result)
        if not quiet:
            progress.finished(result)

    async def go() -> BatchSummary:
        async with AsyncExitStack() as stack:
            loaded = load_providers(settings)
            if settings.provider == "mock":
                loaded["mock"] = demo_mock(settings)
            providers = {name: await stack.enter_async_context(p) for name, p in loaded.items()}
            if not quiet:
                stack.enter_context(progress)
            runner = Batch(
                providers,
                pipeline,
                journal,
                batch_id=batch_id,
                concurrency=concurrency,
                primary=settings.provider,
                on_event=[
                    *([MetricsLog(pipeline.metrics)] if pipeline.metrics else []),
                    *([otel] if otel else []),
                ],
                on_start=progress.started,
                on_result=on_result,
                prices=settings.prices,
            )
            return await runner.run(pending)

    try:
        summary = asyncio.run(go())
    except KeyboardInterrupt:
        fail("interrupted", f"batch {batch_id}; continue it with: {resume_hint}")
        raise typer.Exit(INTERRUPTED) from None
    finally:
        if results is not None:
            results.close()
        if otel is not None:
            otel.close()  # the spans are exported before the command exits
    if as_json:
        typer.echo(json.dumps(summary.to_json()))
    if not quiet:
        _print_summary(summary, out)
    if summary.failed:
        if quiet:
            fail("batch failed", f"{summary.failed} of {summary.tasks} tasks failed")
        raise typer.Exit(1)


def _print_summary(summary: BatchSummary, out: Path | None) -> None:
    parts = [
        f"batch {summary.batch_id}: {summary.succeeded} of {summary.tasks} tasks succeeded, "
        f"{summary.failed} failed",
        f"{summary.from_journal} from the journal, {summary.resumed} resumed",
        f"{summary.tokens} tokens, {summary.wall_s:.2f} s, {summary.tasks_per_s:.2f} tasks/s",
        f"cost {usd(summary.cost_usd)}"
        + (f" ({summary.unpriced} tasks partly unpriced)" if summary.unpriced else ""),
    ]
    if summary.adapter_switches is not None:
        parts.append(f"{summary.adapter_switches} adapter switches")
    err.print("; ".join(escape(p) for p in parts), highlight=False, soft_wrap=True)
    if summary.bugs:
        fail("internal error (a bug in hi-moe)", f"in {summary.bugs} tasks; logged above")
    if out is not None:
        err.print(f"results: {escape(str(out))}", highlight=False, soft_wrap=True)
