"""Commands that check rather than ask: doctor (does the server enforce what it claims?) and
check-schema (what each backend does with a JSON schema)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from hi_moe import constraints
from hi_moe.cli.common import AsJson, ConfigOption, ProviderOption, load_settings, read_text
from hi_moe.cli.failures import validation_message
from hi_moe.config import load_provider
from hi_moe.errors import HiMoeError
from hi_moe.ops.doctor import Check, diagnose
from hi_moe.providers.mock import validate_for_mock
from hi_moe.providers.strict_schema import validate_for_openai
from hi_moe.types import Constraint, JsonSchema

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command()(doctor)
    app.command("check-schema")(check_schema)


def doctor(
    as_json: AsJson = False, config: ConfigOption = None, provider: ProviderOption = None
) -> None:
    """Prove the configured provider works as it claims: healthy, authenticated, really
    enforcing each constraint kind, each adapter applied. One line per check; exit status 1
    when any fails."""
    settings = load_settings(config, provider)

    def show(check: Check) -> None:
        if not as_json:
            typer.echo(check.line())

    async def go() -> list[Check]:
        async with load_provider(settings) as chosen:
            return await diagnose(chosen, on_check=show)

    checks = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def check_schema(
    schema_file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A JSON Schema, as JSON.")
    ],
    as_json: AsJson = False,
) -> None:
    """Each backend's verdict on a JSON schema: whether it takes it, and what it will not
    enforce (only the local check does, so outputs breaking it are retried). Exit status 1
    when the schema cannot be used at all (malformed, or a remote $ref), 2 for a bad file."""
    text = read_text(schema_file, "SCHEMA_FILE")
    try:
        schema = JsonSchema(json.loads(text))
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"{schema_file} is not JSON: {error}") from None
    except ValidationError as error:
        raise typer.BadParameter(f"not a JSON schema: {validation_message(error)}") from None
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
