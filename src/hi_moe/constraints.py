"""The constraint engine: validate a constraint before sending, check an output after.

Every provider calls `validate()` before any network call and `check()` on every output, so a
malformed constraint never reaches a server and an output that breaks its constraint is never
returned as if valid (vLLM silently ignores constraint fields it does not know, and answers 200
with unconstrained text).

XGrammar, the engine vLLM itself uses, does the work when the `grammar` extra is installed: it
parses EBNF grammars and regexes with vLLM's own dialect and tells whether a JSON schema can be
turned into a grammar. JSON outputs are checked with `jsonschema`, which is independent of
whitespace and key order. Without XGrammar, regexes fall back to Python's `re` and EBNF grammars
are not checked at all; a warning says so once per kind.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from hi_moe.errors import ConstraintViolation, InvalidConstraint
from hi_moe.types import Choice, Constraint, Grammar, JsonSchema, Regex

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = [
    "GRAMMAR_EXTRA_HINT",
    "STOP_TOKEN_ID",
    "check",
    "compile_constraint",
    "grammar_engine_available",
    "locally_checked",
    "validate",
]

log = logging.getLogger(__name__)

GRAMMAR_EXTRA_HINT = "install the grammar extra: pip install 'hi-moe[grammar]'"

# A byte-level vocabulary: token i is byte i, and one stop token after them. Grammars compile
# against it in microseconds, and the mock samples valid outputs byte by byte from it.
STOP_TOKEN_ID = 256

# XGrammar prefixes every error with "[hh:mm:ss] /path/to/file.cc:123: "; users need the rest.
_CPP_PREFIX = re.compile(r"^(?:\[[\d:]+\]\s*)?\S+\.(?:cc|h|cpp):\d+:\s*")
_warned: set[str] = set()


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
    """Whether outputs of this constraint kind are checked here, not only by the server."""
    return kind != "grammar" or grammar_engine_available()


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        log.warning("%s; %s", message, GRAMMAR_EXTRA_HINT)


@functools.cache
def _compiler() -> Any:
    xgr = _xgrammar()
    vocab = [bytes([i]) for i in range(256)] + [b"</s>"]
    info = xgr.TokenizerInfo(vocab, xgr.VocabType.RAW, stop_token_ids=[STOP_TOKEN_ID])
    return xgr.GrammarCompiler(info, max_threads=1)


def _parser_message(message: str) -> str:
    lines = [_CPP_PREFIX.sub("", line).strip() for line in message.strip().splitlines()]
    return " ".join(line for line in lines if line) or "rejected by the parser"


@functools.lru_cache(maxsize=256)
def compile_constraint(constraint: Constraint) -> Any:
    """The XGrammar `CompiledGrammar` for a constraint, cached by its content.

    Needs the `grammar` extra. Raises `InvalidConstraint` with the parser's message.
    """
    compiler = _compiler()
    try:
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
    except RuntimeError as error:  # XGrammar reports every parse failure as RuntimeError
        raise InvalidConstraint(constraint.kind, _parser_message(str(error))) from None
    except UnicodeDecodeError as error:
        # XGrammar can cut a multi-byte character in its message, and then the message itself
        # fails to decode; the bytes are still there.
        raw = bytes(error.object).decode("utf-8", "replace")
        raise InvalidConstraint(constraint.kind, _parser_message(raw)) from None
    raise TypeError(f"not a constraint: {constraint!r}")


@functools.lru_cache(maxsize=256)
def _json_validator(constraint: JsonSchema) -> Validator:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    schema = constraint.schema
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        raise InvalidConstraint(
            "json_schema", f"{error.message} (at /{where})" if where else error.message
        ) from None
    validator: Validator = cls(schema)
    return validator


@functools.lru_cache(maxsize=256)
def _python_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InvalidConstraint("regex", str(error)) from None


def validate(constraint: Constraint) -> None:
    """Raise `InvalidConstraint` (with the parser's message) if the constraint is malformed.

    With XGrammar this is the same parse vLLM will do, so a constraint that passes here will
    not be rejected by the server as invalid. Results are cached by content.
    """
    if isinstance(constraint, Choice):
        return  # its options were validated on construction; nothing to parse
    if isinstance(constraint, JsonSchema):
        _json_validator(constraint)
    if grammar_engine_available():
        compile_constraint(constraint)
    elif isinstance(constraint, Regex):
        _warn_once("regex", "regexes are parsed and checked with Python's re, not XGrammar")
        _python_regex(constraint.pattern)
    elif isinstance(constraint, Grammar):
        _warn_once("grammar", "EBNF grammars are neither validated nor checked locally")


def _accepts(constraint: Constraint, text: str) -> bool:
    xgr = _xgrammar()
    matcher = xgr.GrammarMatcher(compile_constraint(constraint))
    return bool(matcher.accept_string(text) and matcher.is_completed())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check(constraint: Constraint, text: str, *, finish_reason: str | None = None) -> Any:
    """Return the parsed value (JSON schemas) or None if `text` satisfies the constraint.

    Raise `ConstraintViolation` with the text attached otherwise.
    """

    def violation(reason: str) -> ConstraintViolation:
        return ConstraintViolation(constraint, text, reason, finish_reason=finish_reason)

    match constraint:
        case JsonSchema():
            from jsonschema.exceptions import best_match

            validator = _json_validator(constraint)
            try:
                # strict=False: under a maxLength, XGrammar's JSON grammar (vLLM's) lets raw
                # control characters (a tab, \x1e) into strings, which strict JSON forbids.
                # The value is still unambiguous, and rejecting what the server's own grammar
                # allowed would only waste a retry.
                value = json.loads(text, strict=False, parse_constant=_reject_constant)
            except ValueError as error:
                raise violation(f"not valid JSON: {error}") from None
            worst = best_match(validator.iter_errors(value))
            if worst is not None:
                where = "/".join(str(part) for part in worst.absolute_path)
                raise violation(f"{worst.message} (at /{where})")
            return value
        case Choice(options=options):
            if text not in options:
                raise violation(f"{text[:80]!r} is not one of {options}")
            return None
        case Regex(pattern=pattern):
            if grammar_engine_available():
                matched = _accepts(constraint, text)
            else:
                matched = _python_regex(pattern).fullmatch(text) is not None
            if not matched:
                raise violation(f"does not match /{pattern}/")
            return None
        case Grammar():
            if grammar_engine_available():
                if not _accepts(constraint, text):
                    raise violation("not in the grammar's language")
            else:
                _warn_once("grammar", "EBNF grammars are neither validated nor checked locally")
            return None
    raise TypeError(f"not a constraint: {constraint!r}")
