"""`hi-moe run` (plan a task, run its steps, check and print the answer) and `hi-moe runs`
(the journaled runs, or one of them)."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hi_moe.cli.common import (
    AsJson,
    ConfigOption,
    ProviderOption,
    load_settings,
    mock_notice,
    nonempty,
    read_text,
)
from hi_moe.cli.display import RunDisplay
from hi_moe.cli.failures import INTERRUPTED, UsageError, err, fail, validation_message
from hi_moe.config import Settings, load_providers
from hi_moe.cost.account import RunCost, usd
from hi_moe.pipeline import Event, Journal, MetricsLog, RunRecord, RunResult, Task
from hi_moe.pipeline.demo import demo_responder
from hi_moe.providers.base import InferenceProvider
from hi_moe.providers.mock import MockProvider
from hi_moe.telemetry import sink_from_settings

__all__ = ["demo_mock", "read_task", "register", "task_from_json"]


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(runs)


def read_task(prompt: str | None, task_file: Path | None) -> Task:
    """The task from the TASK argument or --task-file: plain text, or a JSON object when the
    file ends in .json or starts with `{` or `[` (so a truncated JSON file is an error, not a
    prompt). A usage error, naming what is wrong, otherwise."""
    if prompt is not None and task_file is not None:
        raise UsageError("give a TASK or --task-file, not both")
    if task_file is None:
        if prompt is None:
            raise UsageError(
                'missing TASK: say what to do (hi-moe run "Add two numbers"), or give '
                "--task-file FILE, or --resume RUN_ID"
            )
        if not prompt.strip():
            raise typer.BadParameter("the task is empty", param_hint="TASK")
        return Task(prompt=prompt)
    text = read_text(task_file, "--task-file")
    if task_file.suffix.lower() != ".json" and text.lstrip()[0] not in "{[":
        return Task(prompt=text)  # a plain-text task
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(
            f"{task_file} is not JSON ({error}); a task file is plain text, or a JSON object "
            '{"prompt", "tests", "entry_point"}',
            param_hint="--task-file",
        ) from None
    return task_from_json(data, str(task_file), "--task-file")


def task_from_json(data: object, where: str, param_hint: str) -> Task:
    """A task from parsed JSON (a task file, or one line of `hi-moe batch`'s file), or a usage
    error starting with `where`."""
    if not isinstance(data, dict):
        raise typer.BadParameter(
            f'{where} holds JSON but not an object {{"prompt", "tests", "entry_point"}}',
            param_hint=param_hint,
        )
    try:
        task = Task.model_validate(data)
    except ValidationError as error:
        known = ", ".join(Task.model_fields)
        raise typer.BadParameter(
            f"{where}: {validation_message(error)} (known keys: {known})", param_hint=param_hint
        ) from None
    if not task.prompt.strip():
        raise typer.BadParameter(f"{where}: the prompt is empty", param_hint=param_hint)
    _check_tests(task, where, param_hint)
    return task


def _check_tests(task: Task, where: str, param_hint: str) -> None:
    """Tests that cannot run would fail every attempt of every step: refuse them now."""
    if task.tests is None:
        return
    try:
        tree = ast.parse(task.tests)
    except SyntaxError as error:
        raise typer.BadParameter(
            f"{where}: the tests have a syntax error at line {error.lineno}: {error.msg}",
            param_hint=param_hint,
        ) from None
    defines_check = any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "check"
        for node in tree.body
    )
    if task.entry_point and not defines_check:
        raise typer.BadParameter(
            f"{where}: with entry_point, the tests define check(candidate), which is "
            f"called with the solution's {task.entry_point} (HumanEval style); without "
            "entry_point, plain asserts run against the solution's names",
            param_hint=param_hint,
        )


def run(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Argument(help="What to do, in words.")] = None,
    task_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help='A text file, or JSON {"prompt", "tests", "entry_point"}.',
        ),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue the journaled run RUN_ID.", callback=nonempty)
    ] = None,
    as_json: AsJson = False,
    quiet: Annotated[
        bool, typer.Option(help="Only the answer on stdout and errors on stderr.")
    ] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Plan TASK, route each step to its specialist, run the steps, check and print the answer.
    The run's id is printed when it starts: `--resume RUN_ID` continues a killed run."""
    if resume is not None and (task is not None or task_file is not None):
        raise UsageError("give a TASK or --task-file, or --resume RUN_ID, not both")
    chosen_task = None if resume else read_task(task, task_file)
    settings = load_settings(config, provider)
    pipeline = settings.pipeline
    otel = sink_from_settings(settings.otel)  # None unless [otel] is enabled
    journal = Journal(pipeline.journal)
    if resume is not None:
        _resumable(journal, resume)
    if quiet and ctx.obj and not ctx.obj.get("log_level_given"):
        logging.getLogger().setLevel(logging.ERROR)  # retries and cold starts are not errors
    if not quiet:
        mock_notice(settings)
    started: list[str] = [resume] if resume else []

    def remember(event: Event) -> None:
        if event.kind == "run_started" and not started:
            started.append(event.run_id)

    metrics = MetricsLog(pipeline.metrics) if pipeline.metrics else None
    sinks: list[Any] = [remember, *([metrics] if metrics else []), *([otel] if otel else [])]

    async def go() -> RunResult:
        from hi_moe.pipeline.monitor import ProgressMonitor  # 0.1 s of imports: not for --help

        async with AsyncExitStack() as stack:
            loaded = load_providers(settings)
            if settings.provider == "mock":
                loaded["mock"] = demo_mock(settings)
            providers = {name: await stack.enter_async_context(p) for name, p in loaded.items()}
            display = (
                None
                if quiet
                else stack.enter_context(
                    RunDisplay(err, journal=journal.path, metrics=metrics.path if metrics else None)
                )
            )
            monitor = ProgressMonitor(
                providers,
                pipeline,
                primary=settings.provider,
                journal=journal,
                on_event=[*sinks, *([display] if display else [])],
                prices=settings.prices,
            )
            if resume:
                journal.claim(resume)
                return await monitor.resume(resume)
            assert chosen_task is not None
            return await monitor.run(chosen_task)

    try:
        result = asyncio.run(go())
    except KeyboardInterrupt:
        resume_hint = f"; continue it with: hi-moe run --resume {started[0]}" if started else ""
        fail("interrupted", f"run {started[0] if started else 'not started'}{resume_hint}")
        raise typer.Exit(INTERRUPTED) from None
    finally:
        if otel is not None:
            otel.close()  # the spans are exported before the command exits
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps({"answer": result.answer, **summary}, indent=2))
    elif quiet:
        if result.answer is not None:
            Console().print(result.answer, markup=False, highlight=False, soft_wrap=True)
    else:
        _print_result(result, summary)
    if result.status != "succeeded":
        if quiet:
            fail("run failed", result.reason)
        raise typer.Exit(1)


def _resumable(journal: Journal, run_id: str) -> RunRecord:
    record = journal.load_run(run_id)
    if record is None:
        raise typer.BadParameter(f"no run {run_id!r} in {journal.path}", param_hint="--resume")
    if record.state == "running" and record.owner_alive:
        raise typer.BadParameter(
            f"run {run_id} is still running (pid {record.owner_pid} on {record.owner_host})",
            param_hint="--resume",
        )
    return record


def demo_mock(settings: Settings) -> InferenceProvider:
    """The mock, with plans that show a real run's shape (see `hi_moe.pipeline.demo`)."""
    mock = settings.mock
    return MockProvider(
        seed=mock.seed,
        adapters=mock.adapters,
        latency_s=mock.latency_s,
        respond=demo_responder(settings.pipeline.domains),
    )


def _print_result(result: RunResult, summary: dict[str, Any]) -> None:
    if result.answer is not None:
        Console().print(result.answer, markup=False, highlight=False, soft_wrap=True)
    else:
        err.print(f"[red]failed:[/red] {escape(result.reason)}", soft_wrap=True)
    table = Table(title=f"run {result.run_id}: {result.status}", title_justify="left")
    for column in ("step", "domain", "provider", "adapter", "status", "tries", "tokens", "cost"):
        table.add_column(column)
    for step in summary["steps"]:
        table.add_row(
            step["id"], step["domain"] or "", step["provider"] or "", step["adapter"] or "base",
            step["status"], str(step["attempts"]), str(step["tokens"]),
            usd(step["cost_usd"]),
        )  # fmt: skip
    err.print(table)
    for step in summary["steps"]:  # below the table: too long for a column
        for note in step["notes"]:
            err.print(f"{step['id']}: {escape(note)}", highlight=False)
    err.print(
        f"{summary['tokens']} tokens, {summary['wall_s']:.2f} s, "
        f"cost {escape(result.cost.describe())}"
        + (f"; resumed {', '.join(summary['resumed_steps'])}" if summary["resumed_steps"] else "")
        + "".join(f"\n{escape(note)}" for note in summary["notes"]),
        highlight=False,
    )


def runs(
    run_id: Annotated[
        str | None, typer.Argument(help="Show this run: its task, steps and answer.")
    ] = None,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    config: ConfigOption = None,
) -> None:
    """List journaled runs, newest first (a killed run is `interrupted`), or show one."""
    settings = load_settings(config)
    journal = Journal(settings.pipeline.journal)
    if run_id is not None:
        _show_run(journal, run_id, as_json)
        return
    records = journal.runs(limit)
    if as_json:
        listed = [
            {
                **json.loads(r.model_dump_json()),
                "cost_usd": _usd_of(r),
                "report": _report_of(journal, r.run_id),
            }
            for r in records
        ]
        typer.echo(json.dumps(listed, indent=2))
        return
    table = Table(title=f"runs in {journal.path}", title_justify="left")
    for column in ("run", "status", "steps", "cost", "task", "report"):
        # Ids and paths wrap, never cut: they are there to be copied.
        table.add_column(column, overflow="fold" if column in ("run", "report") else "ellipsis")
    for record in records:
        steps = str(len(record.plan.steps)) if record.plan else "-"
        table.add_row(
            record.run_id, record.state, steps, _cost_text(record),
            escape(record.task.prompt[:60]), escape(_report_of(journal, record.run_id)),
        )  # fmt: skip
    Console().print(table)


def _usd_of(record: RunRecord) -> float | None:
    cost = RunCost.of_summary(record.summary)
    return None if cost is None else cost.usd


def _cost_text(record: RunRecord) -> str:
    cost = RunCost.of_summary(record.summary)
    if cost is None:
        return "—"
    unpriced = cost.unpriced_requests
    return usd(cost.usd) + (f" + {unpriced} unpriced" if unpriced else "")


def _report_of(journal: Journal, run_id: str) -> str:
    """The run's report, if written where `hi-moe report` writes it, else the command that
    writes it."""
    from hi_moe.report.data import report_path

    path = report_path(journal.path, run_id)
    return str(path) if path.exists() else f"hi-moe report {run_id}"


def _show_run(journal: Journal, run_id: str, as_json: bool) -> None:
    record = journal.load_run(run_id)
    if record is None:
        raise typer.BadParameter(f"no run {run_id!r} in {journal.path}", param_hint="RUN_ID")
    finished = journal.finished_steps(run_id, record.plan_version) if record.plan else {}
    if as_json:
        shown = json.loads(record.model_dump_json())
        shown["finished_steps"] = [json.loads(r.model_dump_json()) for r in finished.values()]
        typer.echo(json.dumps(shown, indent=2))
        return
    out = Console()
    out.print(f"run {record.run_id}: {record.state}", highlight=False)
    out.print(f"task: {escape(record.task.prompt)}", highlight=False)
    table = Table("step", "domain", "goal", "status", "provider/adapter", "tries", "tokens", "cost")
    for step in record.plan.steps if record.plan else ():
        done = finished.get(step.id)
        where = f"{done.provider}/{done.adapter or 'base'}" if done else ""
        table.add_row(
            step.id, step.domain, escape(step.goal[:50]), done.status if done else "not finished",
            where, str(done.attempts) if done else "", str(done.usage.total_tokens) if done else "",
            usd(done.cost_usd) if done else "",
        )  # fmt: skip
    if record.plan:
        out.print(table)
    else:
        out.print("not planned yet")
    if _usd_of(record) is not None:
        out.print(f"cost: {_cost_text(record)}; report: {escape(_report_of(journal, run_id))}")
    if record.answer is not None:
        out.print(record.answer, markup=False, highlight=False)
    if record.state == "interrupted":
        out.print(f"interrupted: continue it with hi-moe run --resume {record.run_id}")
