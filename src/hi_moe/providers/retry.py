"""The one retry layer: tenacity around a provider call, nothing stacked underneath.

The openai SDK is built with `max_retries=0`, so a request is retried here and only here:
exponential backoff with full jitter, a server's `Retry-After` honoured, bounded both by a number
of attempts and by a total deadline that no attempt or wait may cross. Only errors that say
`retryable` are retried: 5xx, 408, 429, timeouts, resets and malformed bodies, never other 4xx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from hi_moe import deadline
from hi_moe.errors import ProviderError, ProviderNotReady, ProviderTimeout, ProviderUnreachable

__all__ = ["RetryPolicy"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _retryable(error: BaseException) -> bool:
    # A server that stayed cold for a whole startup wait, or one where nothing listens, is
    # not asked again here: the caller (a FallbackProvider, the next step) decides what to do
    # with the time left.
    return (
        isinstance(error, ProviderError)
        and error.retryable
        and not isinstance(error, ProviderNotReady | ProviderUnreachable)
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed provider call."""

    max_attempts: int = 4
    """Attempts in all, the first included."""
    deadline_s: float = 300.0
    """No attempt starts, and no wait ends, later than this after the first attempt began."""
    backoff_s: float = 0.5
    """Scale of the exponential backoff; each wait is drawn uniformly below its bound."""
    max_backoff_s: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, repr=False, compare=False
    )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        hint = getattr(error, "retry_after", None)
        if isinstance(hint, int | float) and hint >= 0:
            return float(hint)  # the server knows best when it will have room
        backoff = wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s)
        return float(backoff(state))

    async def call(self, attempt: Callable[[float], Awaitable[T]], *, what: str = "request") -> T:
        """Run `attempt(seconds_left)` until it succeeds, fails for good, or time runs out.

        `seconds_left` is what remains of the deadline (this policy's, or the call's from
        `hi_moe.deadline` when sooner): an attempt must not wait longer. The last error is
        raised as it was (no wrapper), so callers see the typed error.
        """
        started = time.monotonic()
        budget = min(self.deadline_s, deadline.seconds_left())
        if budget <= 0:
            raise ProviderTimeout(f"{what}: the call's deadline passed before it was sent")
        # The first attempt, which nearly always succeeds, runs without tenacity: its objects
        # form reference cycles (about 40 per call) that only the cyclic GC frees, and at a few
        # hundred requests per second that cost about 10% of throughput
        # (benchmarks/provider_overhead.py). A failure is replayed into tenacity as its first
        # attempt, so the waits, logs and bounds are those of a tenacity-only loop.
        try:
            return await attempt(budget)
        except ProviderError as error:
            if not _retryable(error) or self.max_attempts <= 1:
                raise
            replay: list[ProviderError] = [error]
            last = error

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.2f s",
                what, state.attempt_number, self.max_attempts, error, wait,
            )  # fmt: skip

        spent = time.monotonic() - started
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts)
            | stop_before_delay(max(budget - spent, 0.0)),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=before_sleep,
            sleep=self.sleep,
            reraise=True,
        )
        async for state in retrying:
            with state:
                if replay:
                    raise replay.pop()
                left = budget - (time.monotonic() - started)
                if left <= 0:
                    # No wait that would cross the deadline is taken, but a busy event loop can
                    # wake late from one that fit: still no attempt starts past the deadline,
                    # and the caller sees the last real error, not one made up here.
                    break
                try:
                    return await attempt(left)
                except ProviderError as error:
                    last = error
                    raise
        raise last
