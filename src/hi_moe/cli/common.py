"""What the command groups share: the options every command takes, loading the settings,
reading the files named on the command line, and the mock provider's notice."""

from __future__ import annotations

import enum
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.markup import escape

from hi_moe.cli.failures import err
from hi_moe.config import Settings, provider_names
from hi_moe.providers.mock import MockProvider

__all__ = [
    "MOCK_NOTICE",
    "AsJson",
    "ConfigOption",
    "LogLevel",
    "ProviderOption",
    "configure_logging",
    "load_settings",
    "mock_notice",
    "nonempty",
    "read_text",
]

MAX_FILE_BYTES = 1 << 20
"""Task, schema and grammar files: far above any real one, far below what would hurt."""

MOCK_NOTICE = MockProvider.notice


def nonempty(value: str | None) -> str | None:
    """A typer callback: an option given as '' (or blanks) is a usage error, not a default."""
    if value is not None and not value.strip():
        raise typer.BadParameter("must not be empty")
    return value


def _known_provider(value: str | None) -> str | None:
    # Checked here so the message names the flag the user typed, not HI_MOE_PROVIDER.
    if value is not None and value not in provider_names():
        known = ", ".join(provider_names())
        raise typer.BadParameter(f"unknown provider {value!r}; known: {known}")
    return value


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: hi_moe.toml, or $HI_MOE_CONFIG)."),
]
ProviderOption = Annotated[
    str | None,
    typer.Option(
        "--provider", "-p", callback=_known_provider, help="Provider name; overrides the settings."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


class LogLevel(enum.StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def configure_logging(level: LogLevel | str) -> None:
    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:  # one unwrapped line per record, for files and pipes
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=str(level).upper(), handlers=[handler], force=True)


def load_settings(config: Path | None, provider: str | None = None) -> Settings:
    overrides: dict[str, Any] = {"provider": provider} if provider else {}
    return Settings.load(config, **overrides)


def mock_notice(settings: Settings) -> None:
    """Say so when the answers will come from the mock: they are samples, not solutions."""
    if settings.provider == "mock":
        err.print(f"[yellow]{escape(MOCK_NOTICE)}[/yellow]", highlight=False)


def read_text(path: Path, option: str, *, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a file named by `option`; a usage error (naming the option) when it is
    too large, not text, or empty."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise typer.BadParameter(
            f"cannot read {path}: {error.strerror or error}", param_hint=option
        ) from None
    if len(data) > limit:
        raise typer.BadParameter(f"{path} is too large (over {limit} bytes)", param_hint=option)
    if b"\0" in data:
        raise typer.BadParameter(f"{path} is a binary file, not text", param_hint=option)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise typer.BadParameter(
            f"{path} is not UTF-8 text (byte {error.start})", param_hint=option
        ) from None
    if not text.strip():
        raise typer.BadParameter(f"{path} is empty", param_hint=option)
    return text
