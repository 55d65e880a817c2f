"""The constraint engine: validate a constraint before sending, check an output after.

Every provider validates before any network call and checks every output, so a malformed
constraint never reaches a server and an output that breaks its constraint is never returned
as if valid (vLLM silently ignores constraint fields it does not know, and answers 200 with
unconstrained text).

- **Checking is always the whole contract**, whatever the backend enforced: JSON is RFC 8259
  JSON valid under the whole JSON Schema, formats included (`constraints.json_check`); regexes and
  EBNF grammars are matched with XGrammar, the engine vLLM uses (the `grammar` extra). Without
  XGrammar regexes fall back to Python's `re`, and EBNF outputs cannot be checked at all:
  `locally_checked("grammar")` is then False, and providers refuse grammars unless the user
  trusts the server for them.
- **Validation asks each backend's own question.** `validate` here is the local part (can the
  output be checked) plus, where XGrammar is installed, vLLM's question (will XGrammar compile
  it); what XGrammar compiles but will not enforce (its warnings) comes back in the report's
  `unenforced`, logged once per constraint. Providers add their own dialect on top
  (`InferenceProvider.validate_constraint`).
- **Nothing slow runs on the event loop**: `in_worker` runs a validation or check in a thread,
  bounded in time (`compile_timeout_s`), shared by concurrent callers and cached by content.

What each constraint kind means here is said once per engine, as a `ConstraintVisitor`
(`hi_moe.types` says why): `_LocalValidation`, `_OutputCheck` and `_Heavy` below, the XGrammar
compile in `grammar_engine`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.util
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from hi_moe.constraints import json_check
from hi_moe.constraints.grammar_engine import (
    STOP_TOKEN_ID,
    compile_constraint,
    unenforced,
)
from hi_moe.constraints.grammar_engine import (
    _compile as _compile,  # the cache itself: the constraint benchmark clears it
)
from hi_moe.constraints.grammar_engine import _compiler as _compiler
from hi_moe.constraints.grammar_engine import accepts as _accepts
from hi_moe.errors import ConstraintViolation, InvalidConstraint
from hi_moe.types import (
    Choice,
    Constraint,
    ConstraintVisitor,
    Grammar,
    JsonSchema,
    Regex,
    constraint_key,
)

__all__ = [
    "COMPILE_TIMEOUT_S",
    "GRAMMAR_EXTRA_HINT",
    "STOP_TOKEN_ID",
    "Checked",
    "ConstraintReport",
    "check",
    "check_in_worker",
    "check_output",
    "compile_constraint",
    "grammar_engine_available",
    "in_worker",
    "locally_checked",
    "validate",
    "validate_local",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

GRAMMAR_EXTRA_HINT = "install the grammar extra: pip install 'hi-moe[grammar]'"
COMPILE_TIMEOUT_S = 30.0
"""Default bound on one validation (an XGrammar compile of a large schema takes seconds)."""
CHECK_IN_THREAD_CHARS = 16_384
"""Outputs at least this long are checked in a worker thread."""
MATCHED_IN_THREAD_CHARS = 1024
"""Outputs at least this long are matched against a grammar or regex in a worker thread (the
matcher takes them byte by byte)."""

_warned: set[str] = set()


@dataclass(frozen=True)
class ConstraintReport:
    """What validating a constraint found, for one backend's dialect."""

    kind: str
    dialect: str
    """Whose question was asked: "local" (can it be checked here), "xgrammar" (vLLM: will
    XGrammar compile it), "openai" (can it be made strict), "mock" (can it be sampled)."""
    unenforced: tuple[str, ...] = ()
    """What the backend will not enforce while generating: only the local check does, so an
    output that breaks it is caught and retried, at the cost of that retry."""


@dataclass(frozen=True)
class Checked:
    """An output that satisfies its constraint."""

    text: str
    """The text to return: the output itself, or canonical JSON where raw control characters
    in its strings were the only fault."""
    parsed: Any = None
    """The JSON value, for JSON schemas."""


@functools.cache
def grammar_engine_available() -> bool:
    """Whether XGrammar is installed (the `grammar` extra). Does not import it."""
    try:
        return importlib.util.find_spec("xgrammar") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def locally_checked(kind: str) -> bool:
    """Whether outputs of this constraint kind can be checked here, not only by the server."""
    return kind != "grammar" or grammar_engine_available()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


@functools.lru_cache(maxsize=256)
def _python_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise InvalidConstraint("regex", str(error)) from None


class _LocalValidation(ConstraintVisitor[None]):
    """Whether outputs of each kind can be checked here: `InvalidConstraint` if not."""

    def json_schema(self, constraint: JsonSchema) -> None:
        json_check.validator(constraint)

    def grammar(self, constraint: Grammar) -> None:
        if grammar_engine_available():  # without it, refused or trusted by the provider
            compile_constraint(constraint)

    def regex(self, constraint: Regex) -> None:
        if grammar_engine_available():
            compile_constraint(constraint)
        else:
            _python_regex(constraint.pattern)

    def choice(self, constraint: Choice) -> None:
        pass  # distinct non-empty strings, as its type already insists


def validate_local(constraint: Constraint) -> ConstraintReport:
    """Refuse what cannot be checked here: a malformed schema (or one with a remote `$ref`),
    a regex or grammar that does not parse. `InvalidConstraint` with the parser's message."""
    _LocalValidation().visit(constraint)
    return ConstraintReport(constraint.kind, "local")


def validate(constraint: Constraint) -> ConstraintReport:
    """The local validation, then vLLM's question: will XGrammar compile it (where XGrammar
    is installed; it is the parse vLLM does, so what passes here is not refused there as
    malformed). Its warnings say what it will compile but not enforce; each is logged once."""
    local = validate_local(constraint)
    if not grammar_engine_available():
        return local
    warnings = unenforced(constraint)
    for warning in warnings:
        _warn_once(
            f"{constraint!r}:{warning}",
            f"XGrammar will not enforce part of a {constraint.kind} constraint ({warning}); "
            "outputs are still checked against all of it, and retried when they break it",
        )
    return ConstraintReport(constraint.kind, "xgrammar", warnings)


class _OutputCheck(ConstraintVisitor["Checked | str"]):
    """One output against each kind: what to return, or why it breaks the constraint."""

    def __init__(self, text: str) -> None:
        self.text = text

    def json_schema(self, constraint: JsonSchema) -> Checked | str:
        try:
            parsed = json_check.parse(self.text)
        except json_check.NotJson as error:
            return f"not valid JSON: {error}"
        problem = json_check.first_error(constraint, parsed.value)
        return (
            problem if problem is not None else Checked(parsed.canonical or self.text, parsed.value)
        )

    def grammar(self, constraint: Grammar) -> Checked | str:
        if not grammar_engine_available():
            # Providers refuse grammars they cannot check unless the user trusts the server;
            # this is that case.
            _warn_once(
                "grammar:trusted",
                "EBNF outputs are not checked locally (trusted to the server); "
                + GRAMMAR_EXTRA_HINT,
            )
        elif not _accepts(constraint, self.text):
            return "not in the grammar's language"
        return Checked(self.text)

    def regex(self, constraint: Regex) -> Checked | str:
        if grammar_engine_available():
            matched = _accepts(constraint, self.text)
        else:
            matched = _python_regex(constraint.pattern).fullmatch(self.text) is not None
        return Checked(self.text) if matched else f"does not match /{constraint.pattern}/"

    def choice(self, constraint: Choice) -> Checked | str:
        if self.text in constraint.options:
            return Checked(self.text)
        return f"{self.text[:80]!r} is not one of {constraint.options}"


def check_output(constraint: Constraint, text: str, *, finish_reason: str | None = None) -> Checked:
    """The output to return if `text` satisfies the constraint; `ConstraintViolation` (with
    the text attached) otherwise."""
    verdict = _OutputCheck(text).visit(constraint)
    if isinstance(verdict, str):
        raise ConstraintViolation(constraint, text, verdict, finish_reason=finish_reason)
    return verdict


def check(constraint: Constraint, text: str, *, finish_reason: str | None = None) -> Any:
    """The parsed value (JSON schemas) or None when `text` satisfies the constraint;
    `ConstraintViolation` otherwise. `check_output` also gives the text to return."""
    return check_output(constraint, text, finish_reason=finish_reason).parsed


class _Heavy(ConstraintVisitor[bool]):
    """Whether checking a (not very long) text against each kind is worth a thread hop."""

    def __init__(self, text: str) -> None:
        self.text = text

    def json_schema(self, constraint: JsonSchema) -> bool:
        # A check walks the schema as much as the output.
        return len(constraint_key(constraint)) >= CHECK_IN_THREAD_CHARS

    def grammar(self, constraint: Grammar) -> bool:
        return len(self.text) >= MATCHED_IN_THREAD_CHARS

    def regex(self, constraint: Regex) -> bool:
        return len(self.text) >= MATCHED_IN_THREAD_CHARS

    def choice(self, constraint: Choice) -> bool:
        return False


def heavy(constraint: Constraint, text: str) -> bool:
    """Whether checking `text` is worth a thread hop: long outputs, large schemas, and text a
    grammar matcher walks byte by byte."""
    return len(text) >= CHECK_IN_THREAD_CHARS or _Heavy(text).visit(constraint)


# -- off the event loop ------------------------------------------------------------------------

# Two threads for validation (XGrammar releases the GIL while it compiles) and one for output
# checks (pure Python, holding the GIL): every Python thread that runs competes with the event
# loop for the GIL, so few of them keep the loop's stalls short.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="hi-moe-compile")
_checker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hi-moe-check")
_results: OrderedDict[Hashable, concurrent.futures.Future[Any]] = OrderedDict()
_results_lock = threading.Lock()
_RESULTS_KEPT = 1024


async def in_worker(key: Hashable, work: Callable[[], T], *, timeout_s: float, kind: str) -> T:
    """`work()` in a worker thread, at most once per `key` (concurrent callers share it, later
    ones get the cached result or error), waited for at most `timeout_s`. Past that the caller
    gets `InvalidConstraint` saying so; the work finishes in the background and is cached."""
    with _results_lock:
        future = _results.get(key)
        if future is None:
            future = _pool.submit(work)
            _results[key] = future
            while len(_results) > _RESULTS_KEPT:
                _results.popitem(last=False)
        else:
            _results.move_to_end(key)
    if future.done():
        return future.result()  # type: ignore[no-any-return]
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
    except TimeoutError:
        raise InvalidConstraint(
            kind,
            f"validating it took longer than {timeout_s:g} s (compile_timeout_s); a simpler "
            "constraint compiles faster, and this one is still being compiled and cached",
        ) from None


async def check_in_worker(
    constraint: Constraint, text: str, *, finish_reason: str | None, timeout_s: float
) -> Checked:
    """`check_output` in the checker thread, waited for at most `timeout_s`; past that the
    output counts as not checked, which fails closed (`ConstraintViolation`)."""
    future = _checker.submit(check_output, constraint, text, finish_reason=finish_reason)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except TimeoutError:
        raise ConstraintViolation(
            constraint, text, f"could not be checked in {timeout_s:g} s",
            finish_reason=finish_reason,
        ) from None  # fmt: skip


def precompile(constraints: list[Constraint]) -> None:
    """Start validating and compiling `constraints` in the background (the pipeline's fixed
    ones, when it is built), so the first request that needs one finds it ready."""
    for constraint in constraints:
        with _results_lock:
            key = ("validate", constraint)
            if key not in _results:
                _results[key] = _pool.submit(validate, constraint)
