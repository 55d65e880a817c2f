"""How `hi-moe` fails: one line on stderr and a documented exit status, never a traceback.

Exit statuses: 0 done; 1 a failed request or run (the provider answered with an error, the run
did not succeed, or a bug in hi-moe); 2 bad usage or configuration (nothing was sent: a bad
option, file, setting or constraint); 130 interrupted. A bug's traceback is logged at debug
level (`hi-moe --log-level debug ...`), so it can still be seen when asked for.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from hi_moe.errors import ConfigError, HiMoeError, InvalidConstraint, UnsupportedConstraint

__all__ = [
    "FAILED",
    "INTERRUPTED",
    "USAGE",
    "OneLineErrors",
    "UsageError",
    "err",
    "fail",
    "one_line",
    "validation_message",
]

FAILED = 1
USAGE = 2
INTERRUPTED = 130

log = logging.getLogger("hi_moe.cli")
err = Console(stderr=True)

# typer re-exports BadParameter but not its bases, which live in click (vendored as
# typer._click by recent typer): found through BadParameter, they work with either.
_click_errors = sys.modules[typer.BadParameter.__module__]
ClickException: type[Exception] = _click_errors.ClickException
UsageError: type[Exception] = _click_errors.UsageError
_NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    [_click_errors.NoArgsIsHelpError] if hasattr(_click_errors, "NoArgsIsHelpError") else []
)


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def fail(what: str, message: object = "") -> None:
    """Print `what: message` as one red-labelled line on stderr, never wrapped."""
    text = one_line(str(message))
    err.print(
        f"[red]{escape(what)}[/red]" + (f": {escape(text)}" if text else ""),
        highlight=False,
        soft_wrap=True,
    )


def validation_message(error: ValidationError) -> str:
    """A pydantic error as one phrase: the first problem, where it is, and how many more."""
    # An unknown key first: a misspelt one also shows up as the right one missing.
    problems = sorted(error.errors(), key=lambda problem: problem["type"] != "extra_forbidden")
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        text = f"unknown key {where!r}"
    elif first["type"] == "missing":
        text = f"missing key {where!r}"
    else:
        text = f"{where}: {first['msg']}" if where else first["msg"]
    more = len(problems) - 1
    return text + (f" (and {more} more)" if more else "")


def status_of(error: BaseException) -> int:
    """Print `error` as one line and return its exit status."""
    if isinstance(error, KeyboardInterrupt):
        fail("interrupted")
        return INTERRUPTED
    if isinstance(error, ConfigError):
        fail("config error", error)
        return USAGE
    if isinstance(error, InvalidConstraint | UnsupportedConstraint):
        # Refused before anything was sent: the option given cannot be used here.
        fail(type(error).__name__, error)
        return USAGE
    if isinstance(error, HiMoeError):
        fail(type(error).__name__, error)
        return FAILED
    if isinstance(error, ValidationError):
        fail("invalid request", validation_message(error))
        return USAGE
    if isinstance(error, OSError):  # a file or directory named in the options or settings
        fail("cannot use file", error)
        return USAGE
    log.debug("internal error", exc_info=error)
    fail(
        "internal error (a bug in hi-moe)",
        f"{type(error).__name__}: {error}; `hi-moe --log-level debug ...` shows the traceback",
    )
    return FAILED


class OneLineErrors(TyperGroup):
    """The root command: every failure below it becomes one line and an exit status."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise  # the command chose its status, or main() prints a usage error
        except (KeyboardInterrupt, Exception) as error:  # noqa: BLE001 - see status_of
            raise typer.Exit(status_of(error)) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            # Not standalone: typer would print usage errors as a boxed, multi-line panel.
            status = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except _NO_ARGS_IS_HELP as error:  # a bare group: its help, as click shows it
            cast(Any, error).show()
            status = cast(Any, error).exit_code
        except ClickException as error:
            status = _usage_failure(error)
        except typer.Abort:
            fail("aborted")
            status = FAILED
        if not standalone_mode:
            return status
        sys.exit(status if isinstance(status, int) else 0)


def _usage_failure(error: Exception) -> int:
    ctx = getattr(error, "ctx", None)
    message = getattr(error, "format_message", lambda: str(error))()
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    label = "usage error" if isinstance(error, UsageError) else "error"
    fail(label, f"{message}{hint}")
    return int(getattr(error, "exit_code", USAGE))
