"""One deadline per call, passed down to every stage.

A call's deadline is an absolute point on the monotonic clock, held in a context variable so
that it reaches every stage of the call (readiness wait, `/v1/models`, each retry, each HTTP
attempt) and every task the call starts, without threading an argument through each signature.
Scopes only ever shorten it: a stage can never grant itself more time than its caller has.

The Fleet opens a scope per step (its step timeout), `InferenceProvider.complete` one per call
(`CompletionRequest.deadline_s`, else the provider's own worst case): a provider call inside a
step therefore ends, with the provider's typed error, before the step's time is up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["current", "scope", "seconds_left"]

_deadline: ContextVar[float | None] = ContextVar("hi_moe_deadline", default=None)


def current() -> float | None:
    """The innermost deadline (`time.monotonic()` seconds), or None when there is none."""
    return _deadline.get()


def seconds_left(default: float = math.inf) -> float:
    """Seconds until the current deadline (never below 0), or `default` without one."""
    at = _deadline.get()
    if at is None:
        return default
    return max(at - time.monotonic(), 0.0)


@contextmanager
def scope(seconds: float | None) -> Iterator[float | None]:
    """Run the block under a deadline `seconds` from now, or the enclosing one if that is
    sooner; `None` keeps the enclosing deadline. Yields the deadline in force."""
    outer = _deadline.get()
    at = outer
    if seconds is not None:
        mine = time.monotonic() + seconds
        at = mine if outer is None else min(outer, mine)
    token = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(token)
