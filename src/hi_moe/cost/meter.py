"""Time in flight, split among the requests that share it: how a GPU's seconds are apportioned.

A GPU-priced server (vLLM on Modal) is billed by the second while it works, however many
requests it batches. While `k` requests are in flight together each is charged `1/k` of every
second, so the shares of any set of overlapping requests add up to exactly the time at least one
was in flight: nothing is charged twice, and nothing while requests run is left uncharged.

The meter keeps a "virtual clock" that advances by `dt / k` while `k` requests are in flight; a
request's share is the clock's advance between its start and its end (the trick fair queueing
uses). That is exact for any overlap and O(1) per request. One meter per provider object: the
runs of a batch that share a provider share its meter.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

__all__ = ["SHARE_FIELDS", "InFlight", "InFlightMeter", "apportion", "current_request", "watching"]

Clock = Callable[[], float]
SHARE_FIELDS = ("busy_share_s", "cold_share_s", "cold_wait_s")
"""`InFlight.shares()`'s names: the fields by which completions, hops and errors carry them."""


class InFlightMeter:
    """Shares of one provider's busy time, per request."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._in_flight = 0
        self._virtual = 0.0
        self._at = clock()
        self.busy_s = 0.0
        """Seconds during which at least one request was in flight (the shares' sum)."""

    def _advance(self) -> float:
        now = self._clock()
        if self._in_flight:
            self._virtual += (now - self._at) / self._in_flight
            self.busy_s += now - self._at
        self._at = now
        return self._virtual

    @contextmanager
    def request(self) -> Iterator[InFlight]:
        """Meter one request for as long as the block runs (also when it raises); inside it,
        `current_request()` is this request."""
        span = self.begin()
        token = _CURRENT.set(span)
        try:
            yield span
        except asyncio.CancelledError:
            span.cancelled = True
            raise
        finally:
            _CURRENT.reset(token)
            self.finish(span)

    def begin(self) -> InFlight:
        """A request goes in flight (`finish` it; `request()` does both around a block)."""
        span = InFlight(self, self._advance())
        self._in_flight += 1
        if (watcher := _WATCHING.get()) is not None:
            watcher.append(span)
        return span

    def finish(self, span: InFlight) -> None:
        """The request is no longer in flight (again: nothing)."""
        if span.end is None:
            span.end = self._advance()
            span.ended_at = self._clock()
            self._in_flight -= 1

    def clock(self) -> float:
        """The virtual clock now (advanced to this instant)."""
        return self._advance()


class InFlight:
    """One metered request: its share so far, and the part of it spent on a cold start."""

    def __init__(self, meter: InFlightMeter, start: float) -> None:
        self._meter = meter
        self.start = start
        self.end: float | None = None
        self._cold_until: float | None = None
        self._began = meter._clock()
        self.ended_at: float | None = None
        self.cancelled = False
        """Whether it ended by being cancelled (no answer came back to anyone)."""
        self.cold_wait_s = 0.0
        """Wall-clock seconds it waited for a cold server (its share of them: `cold_share_s`)."""

    @property
    def share_s(self) -> float:
        """Its share of the provider's busy time (final once the request ended)."""
        end = self.end if self.end is not None else self._meter.clock()
        return end - self.start

    def shares(self) -> dict[str, float]:
        """What it occupied, under the field names a `Completion`, a `Hop` and a `HiMoeError`
        carry it by."""
        return dict(
            zip(SHARE_FIELDS, (self.share_s, self.cold_share_s, self.cold_wait_s), strict=True)
        )

    @property
    def wall_s(self) -> float:
        """Wall-clock seconds it has been (or was) in flight."""
        return (self.ended_at if self.ended_at is not None else self._meter._clock()) - self._began

    @property
    def cold_share_s(self) -> float:
        """The part of `share_s` spent waiting for a cold server to come up."""
        return 0.0 if self._cold_until is None else self._cold_until - self.start

    def cold_start_over(self) -> None:
        """Called by a provider when the wait for its cold server ended: the share until now
        was cold-start time (which a price may charge differently)."""
        self._cold_until = self._meter.clock()
        self.cold_wait_s = self._meter._clock() - self._began


_CURRENT: contextvars.ContextVar[InFlight | None] = contextvars.ContextVar(
    "hi_moe_in_flight", default=None
)


def current_request() -> InFlight | None:
    """The metered request this task is in, if any (for a provider's cold-start wait)."""
    return _CURRENT.get()


_WATCHING: contextvars.ContextVar[list[InFlight] | None] = contextvars.ContextVar(
    "hi_moe_watching", default=None
)


@contextmanager
def watching() -> Iterator[list[InFlight]]:
    """The requests metered inside the block (in this task), in the order they began: what a
    caller whose call was cancelled reads to charge the request that was in flight."""
    flights: list[InFlight] = []
    token = _WATCHING.set(flights)
    try:
        yield flights
    finally:
        _WATCHING.reset(token)


def apportion(spans: Sequence[tuple[float, float]]) -> list[float]:
    """Each `(start, end)` request's share of the time the requests were in flight, as
    `InFlightMeter` charges it live: while `k` are in flight, each gets `1/k` of every second.
    The shares add up to the length of the spans' union. For intervals known after the fact
    (a journal's, say)."""
    if any(end < start for start, end in spans):
        raise ValueError("a span ends before it starts")
    # At one instant, ends before starts: a request that ends as another begins shares nothing.
    timed = [(i, start, end) for i, (start, end) in enumerate(spans) if end > start]
    changes = sorted(
        [(start, 1, i) for i, start, _ in timed] + [(end, 0, i) for i, _, end in timed]
    )
    shares = [0.0] * len(spans)
    virtual, at, in_flight = 0.0, 0.0, 0
    began: dict[int, float] = {}
    for when, starts, i in changes:
        if in_flight:
            virtual += (when - at) / in_flight
        at = when
        if starts:
            began[i] = virtual
            in_flight += 1
        else:
            shares[i] = virtual - began.pop(i)
            in_flight -= 1
    return shares
