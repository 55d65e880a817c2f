"""Commands that ask the configured provider one thing: providers, complete, health, adapters,
load-adapter, unload-adapter."""

from __future__ import annotations

import asyncio
import json
import sys
import time
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
from hi_moe.cli.failures import UsageError, validation_message
from hi_moe.config import load_provider, provider_class, provider_names
from hi_moe.errors import ConfigError
from hi_moe.providers.base import Health
from hi_moe.types import Choice, CompletionRequest, Constraint, Grammar, JsonSchema, Regex

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command()(providers)
    app.command()(complete)
    app.command()(health)
    app.command()(adapters)
    app.command("load-adapter")(load_adapter)
    app.command("unload-adapter")(unload_adapter)


def providers(as_json: AsJson = False) -> None:
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
        raise UsageError("give at most one of --json-schema, --grammar, --regex, --choice")
    given_all = (json_schema, grammar, regex, choice)
    try:
        if json_schema is not None:
            text = read_text(json_schema, "--json-schema")
            try:
                return JsonSchema(json.loads(text))
            except json.JSONDecodeError as error:
                raise typer.BadParameter(
                    f"{json_schema} is not JSON: {error}", param_hint="--json-schema"
                ) from None
        if grammar is not None:
            return Grammar(read_text(grammar, "--grammar"))
        if regex is not None:
            return Regex(regex)
        if choice is not None:
            options = [option.strip() for option in choice.split(",") if option.strip()]
            if not options:
                raise typer.BadParameter(
                    "give the allowed outputs, comma-separated", param_hint="--choice"
                )
            return Choice(options)
    except ValidationError as error:
        hint = next(o for o, v in zip(_KINDS, given_all, strict=True) if v)
        raise typer.BadParameter(validation_message(error), param_hint=hint) from None
    return None


_KINDS = ("--json-schema", "--grammar", "--regex", "--choice")


def complete(
    prompt: Annotated[str, typer.Argument(help="The user message.", callback=nonempty)],
    adapter: Annotated[
        str | None, typer.Option(help="LoRA specialist to use.", callback=nonempty)
    ] = None,
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
    request = CompletionRequest.from_prompt(
        prompt,
        system=system,
        adapter=adapter,
        constraint=_constraint(json_schema, grammar, regex, choice),
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
    )
    settings = load_settings(config, provider)

    async def go() -> None:
        async with load_provider(settings) as chosen:
            if stream:
                async for chunk in chosen.stream(request):
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                sys.stdout.write("\n")
                mock_notice(settings)
                return
            completion = await chosen.complete(request)
        # After the answer: a request that fails gets its one error line, not a notice too.
        mock_notice(settings)
        typer.echo(completion.model_dump_json(indent=2) if as_json else completion.text)

    asyncio.run(go())


def health(
    as_json: AsJson = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Ask again until it is ready, for up to this many seconds (a server "
            "still starting).",
        ),
    ] = 0.0,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Check the configured provider; exit status 0 only when it is ready."""
    settings = load_settings(config, provider)

    async def go() -> Health:
        deadline = time.monotonic() + wait
        while True:
            async with load_provider(settings) as chosen:
                result = await chosen.health()
            if result.ok or time.monotonic() >= deadline:
                return result
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    result = asyncio.run(go())
    if as_json:
        typer.echo(result.model_dump_json())
    else:
        detail = f" ({result.detail})" if result.detail else ""
        typer.echo(f"{result.provider}: {result.status}{detail}")
    if not result.ok:
        raise typer.Exit(1)


def adapters(
    as_json: AsJson = False, config: ConfigOption = None, provider: ProviderOption = None
) -> None:
    """List the LoRA adapters the configured provider serves."""
    settings = load_settings(config, provider)

    async def go() -> list[str]:
        async with load_provider(settings) as chosen:
            return await chosen.adapters()

    names = asyncio.run(go())
    typer.echo(json.dumps(names) if as_json else "\n".join(names))


def load_adapter(
    name: Annotated[str, typer.Argument(help="Name to serve it under.", callback=nonempty)],
    path: Annotated[str, typer.Argument(help="The adapter's directory, as the server sees it.")],
    replace: Annotated[bool, typer.Option(help="Reload an adapter of that name.")] = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Load a LoRA adapter into the running server, without a restart."""
    settings = load_settings(config, provider)

    async def go() -> None:
        async with load_provider(settings) as chosen:
            loader = getattr(chosen, "load_adapter", None)
            if not chosen.capabilities.runtime_adapters or loader is None:
                raise ConfigError(f"{chosen.name} cannot load adapters at runtime")
            await loader(name, path, replace=replace)

    asyncio.run(go())
    typer.echo(f"loaded {name}")


def unload_adapter(
    name: Annotated[str, typer.Argument(callback=nonempty)],
    config: ConfigOption = None,
    provider: ProviderOption = None,
) -> None:
    """Unload a LoRA adapter from the running server."""
    settings = load_settings(config, provider)

    async def go() -> None:
        async with load_provider(settings) as chosen:
            unloader = getattr(chosen, "unload_adapter", None)
            if not chosen.capabilities.runtime_adapters or unloader is None:
                raise ConfigError(f"{chosen.name} cannot unload adapters at runtime")
            await unloader(name)

    asyncio.run(go())
    typer.echo(f"unloaded {name}")
