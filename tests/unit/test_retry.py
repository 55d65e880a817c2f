"""RetryPolicy: what is retried, how long it waits, and when it stops."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from hi_moe.errors import (
    ConstraintViolation,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from hi_moe.providers.retry import RetryPolicy
from hi_moe.types import Choice


class Script:
    """An attempt function that raises the given errors in turn, then returns 'done'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    async def __call__(self, seconds_left: float) -> str:
        self.calls.append(seconds_left)
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def recording() -> tuple[RetryPolicy, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return RetryPolicy(max_attempts=5, backoff_s=1.0, max_backoff_s=4.0, sleep=sleep), waits


async def test_retryable_errors_are_retried_until_success() -> None:
    policy, waits = recording()
    script = Script(ProviderUnavailable("503"), ProviderTimeout("slow"))
    assert await policy.call(script) == "done"
    assert len(script.calls) == 3
    assert len(waits) == 2


async def test_retry_after_replaces_the_backoff() -> None:
    policy, waits = recording()
    script = Script(RateLimited("429", retry_after=2.5), RateLimited("429", retry_after=0.0))
    await policy.call(script)
    assert waits == [2.5, 0.0]


async def test_backoff_is_jittered_below_an_exponential_cap() -> None:
    policy, waits = recording()
    script = Script(*[ProviderUnavailable("503") for _ in range(4)])
    await policy.call(script)
    assert [wait <= cap for wait, cap in zip(waits, [1, 2, 4, 4], strict=True)] == [True] * 4
    assert len(set(waits)) > 1  # jitter: not the same wait every time


@pytest.mark.parametrize(
    "error",
    [
        RequestRejected("400", status_code=400),
        ConstraintViolation(Choice(["a"]), "b", "not a choice", finish_reason="length"),
        ProviderUnavailable("gave up", retryable=False),
    ],
)
async def test_errors_that_say_not_retryable_are_raised_at_once(error: Exception) -> None:
    policy, waits = recording()
    script = Script(error)
    with pytest.raises(type(error)) as caught:
        await policy.call(script)
    assert caught.value is error
    assert len(script.calls) == 1
    assert waits == []


async def test_the_last_error_is_raised_unwrapped_after_the_last_attempt() -> None:
    policy, _ = recording()
    errors = [ProviderUnavailable(f"503 #{i}") for i in range(5)]
    with pytest.raises(ProviderUnavailable) as caught:
        await policy.call(Script(*errors))
    assert caught.value is errors[-1]


async def test_the_deadline_bounds_the_whole_call_in_real_time() -> None:
    policy = RetryPolicy(max_attempts=1000, deadline_s=0.6, backoff_s=0.05, max_backoff_s=0.1)
    script = Script(*[ProviderUnavailable("503") for _ in range(1000)])
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        await policy.call(script)
    assert time.monotonic() - started < 1.5
    assert 2 <= len(script.calls) < 1000
    # Each attempt is told how much of the deadline is left, and it only shrinks.
    assert script.calls == sorted(script.calls, reverse=True)
    assert all(0 < left <= 0.6 for left in script.calls)


async def test_a_wait_that_wakes_past_the_deadline_raises_the_last_real_error() -> None:
    # A loaded machine wakes late from a wait that fitted the deadline; that must neither start
    # an attempt past the deadline nor replace the server's error with one made up here.
    async def oversleep(seconds: float) -> None:
        await asyncio.sleep(seconds + 0.3)

    policy = RetryPolicy(
        max_attempts=10, deadline_s=0.2, backoff_s=0.01, max_backoff_s=0.01, sleep=oversleep
    )
    errors = [ProviderUnavailable(f"503 #{i}") for i in range(10)]
    script = Script(*errors)
    with pytest.raises(ProviderUnavailable) as caught:
        await policy.call(script)
    assert len(script.calls) == 1
    assert caught.value is errors[0]
    assert caught.value.retryable


async def test_a_first_attempt_that_succeeds_leaves_no_garbage_cycles() -> None:
    # Cycles are freed only by the cyclic GC; at hundreds of requests per second that GC work
    # showed up as ~10% less throughput (benchmarks/provider_overhead.py).
    import gc

    policy = RetryPolicy()
    await policy.call(Script())  # anything imported or cached lazily happens here
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            assert await policy.call(Script()) == "done"
        gc.collect()
        left = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


async def test_the_replayed_first_failure_counts_as_an_attempt_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # whatever an in-process CLI test left the root logger at
    policy, waits = recording()
    script = Script(ProviderUnavailable("down"), ProviderUnavailable("still down"))
    assert await policy.call(script, what="probe") == "done"
    assert len(script.calls) == 3  # the replay is not sent again
    assert len(waits) == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "probe failed (attempt 1 of 5)",
        "probe failed (attempt 2 of 5)",
    ]
