"""XGrammar, the engine vLLM constrains decoding with: compile a constraint, match an output.

Everything here needs the `grammar` extra and imports XGrammar on first use (2-3 s). Compiles
are cached by the constraint as written (`exact_key`): property order shapes the grammar.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from hi_moe.errors import InvalidConstraint
from hi_moe.types import (
    Choice,
    Constraint,
    ConstraintVisitor,
    Grammar,
    JsonSchema,
    Regex,
    exact_key,
)

__all__ = ["STOP_TOKEN_ID", "accepts", "compile_constraint", "compiled", "unenforced"]

T = TypeVar("T")

# A byte-level vocabulary: token i is byte i, and one stop token after them. Grammars compile
# against it in microseconds, and the mock samples valid outputs byte by byte from it.
STOP_TOKEN_ID = 256

# XGrammar prefixes every message with "[hh:mm:ss] /path/to/file.cc:123: "; users need the rest.
_CPP_PREFIX = re.compile(r"^(?:\[[\d:]+\]\s*)?\S+\.(?:cc|h|cpp):\d+:\s*")


@functools.cache
def _xgrammar() -> Any:
    import xgrammar  # 2-3 s: only on the first constraint that needs it

    return xgrammar


@functools.cache
def _compiler() -> Any:
    xgr = _xgrammar()
    vocab = [bytes([i]) for i in range(256)] + [b"</s>"]
    info = xgr.TokenizerInfo(vocab, xgr.VocabType.RAW, stop_token_ids=[STOP_TOKEN_ID])
    return xgr.GrammarCompiler(info, max_threads=1)


def parser_message(message: str) -> str:
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
    return result, [parser_message(line).removeprefix("Warning: ") for line in warnings]


def compiled(constraint: Constraint) -> tuple[Any, tuple[str, ...]]:
    # Keyed as written: property order shapes the grammar, and so what the mock samples.
    return _compile(exact_key(constraint))


class _XGrammarCompile(ConstraintVisitor[Any]):
    """Each kind as XGrammar compiles it (what vLLM does with `structured_outputs`)."""

    def __init__(self, compiler: Any) -> None:
        self.compiler = compiler

    def json_schema(self, constraint: JsonSchema) -> Any:
        return self.compiler.compile_json_schema(
            json.dumps(constraint.schema), any_whitespace=False
        )

    def grammar(self, constraint: Grammar) -> Any:
        return self.compiler.compile_grammar(constraint.ebnf)

    def regex(self, constraint: Regex) -> Any:
        return self.compiler.compile_regex(constraint.pattern)

    def choice(self, constraint: Choice) -> Any:
        alternatives = " | ".join(json.dumps(option) for option in constraint.options)
        return self.compiler.compile_grammar(f"root ::= {alternatives}")


@functools.lru_cache(maxsize=256)
def _compile(key: tuple[Constraint, str]) -> tuple[Any, tuple[str, ...]]:
    constraint = key[0]
    engine = _XGrammarCompile(_compiler())
    try:
        compiled, warnings = _capturing_stderr(lambda: engine.visit(constraint))
    except RuntimeError as error:  # XGrammar reports every parse failure as RuntimeError
        raise InvalidConstraint(constraint.kind, parser_message(str(error))) from None
    except UnicodeDecodeError as error:
        # XGrammar can cut a multi-byte character in its message, and then the message itself
        # fails to decode; the bytes are still there.
        raw = bytes(error.object).decode("utf-8", "replace")
        raise InvalidConstraint(constraint.kind, parser_message(raw)) from None
    except (OverflowError, ValueError, TypeError) as error:  # values C++ cannot take
        raise InvalidConstraint(constraint.kind, f"XGrammar cannot take it: {error}") from None
    return compiled, tuple(warnings)


class _Unenforced(ConstraintVisitor[tuple[str, ...]]):
    """What XGrammar compiles of each kind but will not enforce (its warnings)."""

    def json_schema(self, constraint: JsonSchema) -> tuple[str, ...]:
        return compiled(constraint)[1]

    def grammar(self, constraint: Grammar) -> tuple[str, ...]:
        return compiled(constraint)[1]

    def regex(self, constraint: Regex) -> tuple[str, ...]:
        return compiled(constraint)[1]

    def choice(self, constraint: Choice) -> tuple[str, ...]:
        return ()  # literal strings: nothing to refuse or leave out, so not worth a compile


def unenforced(constraint: Constraint) -> tuple[str, ...]:
    """vLLM's question: will XGrammar compile it (`InvalidConstraint` if not), and what will it
    not enforce."""
    return _Unenforced().visit(constraint)


def compile_constraint(constraint: Constraint) -> Any:
    """The XGrammar `CompiledGrammar` for a constraint, cached by its content.

    Needs the `grammar` extra. Raises `InvalidConstraint` with the parser's message.
    """
    return compiled(constraint)[0]


def accepts(constraint: Constraint, text: str) -> bool:
    xgr = _xgrammar()
    matcher = xgr.GrammarMatcher(compile_constraint(constraint))
    return bool(matcher.accept_string(text) and matcher.is_completed())
