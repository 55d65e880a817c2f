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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.util
import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from hi_moe.constraints import json_check
from hi_moe.errors import ConstraintViolation, InvalidConstraint
from hi_moe.types import Choice, Constraint, Grammar, JsonSchema, Regex, constraint_key, exact_key

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

# A byte-level vocabulary: token i is byte i, and one stop token after them. Grammars compile
# against it in microseconds, and the mock samples valid outputs byte by byte from it.
STOP_TOKEN_ID = 256

# XGrammar prefixes every message with "[hh:mm:ss] /path/to/file.cc:123: "; users need the rest.
_CPP_PREFIX = re.compile(r"^(?:\[[\d:]+\]\s*)?\S+\.(?:cc|h|cpp):\d+:\s*")
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


@functools.cache
def _xgrammar() -> Any:
    import xgrammar  # 2-3 s: only on the first constraint that needs it

    return xgrammar


def locally_checked(kind: str) -> bool:
    """Whether outputs of this constraint kind can be checked here, not only by the server."""
    return kind != "grammar" or grammar_engine_available()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


@functools.cache
def _compiler() -> Any:
    xgr = _xgrammar()
    vocab = [bytes([i]) for i in range(256)] + [b"</s>"]
    info = xgr.TokenizerInfo(vocab, xgr.VocabType.RAW, stop_token_ids=[STOP_TOKEN_ID])
    return xgr.GrammarCompiler(info, max_threads=1)


def _parser_message(message: str) -> str:
    lines = [_CPP_PREFIX.sub("", line).strip() for line in message.strip().splitlines()]
    return " ".join(line for line in lines if line) or "rejected by the parser"


# XGrammar writes its warnings ("pattern combined with minLength/maxLength is not supported;
# ignoring minLength/maxLength") from C++ straight to file descriptor 2. Capturing them means
# pointing fd 2 elsewhere for the compile: one compile at a time, and whatever else was written
# meanwhile is passed on.
_stderr_lock = threading.Lock()


def _capturing_stderr(compile_: Callable[[], T]) -> tuple[T, list[str]]:
    with _stderr_lock, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            result = compile_()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        captured = sink.read().decode("utf-8", "replace").splitlines()
    warnings: list[str] = []
    others: list[str] = []
    for line in captured:
        (warnings if "Warning:" in line else others).append(line)
    if others:
        os.write(2, ("\n".join(others) + "\n").encode("utf-8", "replace"))
    return result, [_parser_message(line).removeprefix("Warning: ") for line in warnings]


def _compiled(constraint: Constraint) -> tuple[Any, tuple[str, ...]]:
    # Keyed as written: property order shapes the grammar, and so what the mock samples.
    return _compile(exact_key(constraint))


@functools.lru_cache(maxsize=256)
def _compile(key: tuple[Constraint, str]) -> tuple[Any, tuple[str, ...]]:
    constraint = key[0]
    compiler = _compiler()

    def compile_() -> Any:
        match constraint:
            case JsonSchema(schema=schema):
                return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
            case Grammar(ebnf=ebnf):
                return compiler.compile_grammar(ebnf)
            case Regex(pattern=pattern):
                return compiler.compile_regex(pattern)
            case Choice(options=options):
                alternatives = " | ".join(json.dumps(option) for option in options)
                return compiler.compile_grammar(f"root ::= {alternatives}")
        raise TypeError(f"not a constraint: {constraint!r}")

    try:
        compiled, warnings = _capturing_stderr(compile_)
    except RuntimeError as error:  # XGrammar reports every parse failure as RuntimeError
        raise InvalidConstraint(constraint.kind, _parser_message(str(error))) from None
    except UnicodeDecodeError as error:
        # XGrammar can cut a multi-byte character in its message, and then the message itself
        # fails to decode; the bytes are still there.
        raw = bytes(error.object).decode("utf-8", "replace")
        raise InvalidConstraint(constraint.kind, _parser_message(raw)) from None
    except (OverflowError, ValueError, TypeError) as error:  # values C++ cannot take
        raise InvalidConstraint(constraint.kind, f"XGrammar cannot take it: {error}") from None
    return compiled, tuple(warnings)


def compile_constraint(constraint: Constraint) -> Any:
    """The XGrammar `CompiledGrammar` for a constraint, cached by its content.

    Needs the `grammar` extra. Raises `InvalidConstraint` with the parser's message.
    """
    return _compiled(constraint)[0]


@functools.lru_cache(maxsize=256)
def _python_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise InvalidConstraint("regex", str(error)) from None


def validate_local(constraint: Constraint) -> ConstraintReport:
    """Refuse what cannot be checked here: a malformed schema (or one with a remote `$ref`),
    a regex or grammar that does not parse. `InvalidConstraint` with the parser's message."""
    match constraint:
        case JsonSchema():
            json_check.validator(constraint)
        case Regex(pattern=pattern):
            if grammar_engine_available():
                compile_constraint(constraint)
            else:
                _python_regex(pattern)
        case Grammar():
            if grammar_engine_available():
                compile_constraint(constraint)
    return ConstraintReport(constraint.kind, "local")


def validate(constraint: Constraint) -> ConstraintReport:
    """The local validation, then vLLM's question: will XGrammar compile it (where XGrammar
    is installed; it is the parse vLLM does, so what passes here is not refused there as
    malformed). Its warnings say what it will compile but not enforce; each is logged once."""
    local = validate_local(constraint)
    if not grammar_engine_available():
        return local
    if isinstance(constraint, Choice):
        return ConstraintReport(constraint.kind, "xgrammar")
    warnings = _compiled(constraint)[1]
    for warning in warnings:
        _warn_once(
            f"{constraint!r}:{warning}",
            f"XGrammar will not enforce part of a {constraint.kind} constraint ({warning}); "
            "outputs are still checked against all of it, and retried when they break it",
        )
    return ConstraintReport(constraint.kind, "xgrammar", warnings)


def _accepts(constraint: Constraint, text: str) -> bool:
    xgr = _xgrammar()
    matcher = xgr.GrammarMatcher(compile_constraint(constraint))
    return bool(matcher.accept_string(text) and matcher.is_completed())


def check_output(constraint: Constraint, text: str, *, finish_reason: str | None = None) -> Checked:
    """The output to return if `text` satisfies the constraint; `ConstraintViolation` (with
    the text attached) otherwise."""

    def violation(reason: str) -> ConstraintViolation:
        return ConstraintViolation(constraint, text, reason, finish_reason=finish_reason)

    match constraint:
        case JsonSchema():
            try:
                parsed = json_check.parse(text)
            except json_check.NotJson as error:
                raise violation(f"not valid JSON: {error}") from None
            problem = json_check.first_error(constraint, parsed.value)
            if problem is not None:
                raise violation(problem)
            return Checked(parsed.canonical or text, parsed.value)
        case Choice(options=options):
            if text not in options:
                raise violation(f"{text[:80]!r} is not one of {options}")
        case Regex(pattern=pattern):
            if grammar_engine_available():
                matched = _accepts(constraint, text)
            else:
                matched = _python_regex(pattern).fullmatch(text) is not None
            if not matched:
                raise violation(f"does not match /{pattern}/")
        case Grammar():
            if not grammar_engine_available():
                # Providers refuse grammars they cannot check unless the user trusts the
                # server; this is that case.
                _warn_once(
                    "grammar:trusted",
                    "EBNF outputs are not checked locally (trusted to the server); "
                    + GRAMMAR_EXTRA_HINT,
                )
            elif not _accepts(constraint, text):
                raise violation("not in the grammar's language")
        case _:
            raise TypeError(f"not a constraint: {constraint!r}")
    return Checked(text)


def check(constraint: Constraint, text: str, *, finish_reason: str | None = None) -> Any:
    """The parsed value (JSON schemas) or None when `text` satisfies the constraint;
    `ConstraintViolation` otherwise. `check_output` also gives the text to return."""
    return check_output(constraint, text, finish_reason=finish_reason).parsed


def heavy(constraint: Constraint, text: str) -> bool:
    """Whether checking `text` is worth a thread hop: long outputs, large schemas (a check
    walks the schema as much as the output), and long text a grammar matcher walks byte by
    byte."""
    if len(text) >= CHECK_IN_THREAD_CHARS:
        return True
    if isinstance(constraint, JsonSchema):
        return len(constraint_key(constraint)) >= CHECK_IN_THREAD_CHARS
    return not isinstance(constraint, Choice) and len(text) >= 1024


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
