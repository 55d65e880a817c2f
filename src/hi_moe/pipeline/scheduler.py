"""Which ready step goes next, when the server can hold only a few LoRA adapters at once.

vLLM batches only the adapters that fit in its `--max-loras` slots; a request for another
adapter waits for a slot or evicts one, and interleaving adapters (A, B, C, D, A, ...) makes it
swap on nearly every batch. The server cannot see what comes next; the harness can. So the
Fleet hands its ready steps to an `AdapterScheduler` as tickets and starts the ones it grants:

1. a ticket waiting longer than `max_wait_s` goes first, whatever its adapter (no starvation);
2. while fewer adapters are in flight than there are slots, or when the oldest ticket's
   adapter is resident (in flight, or among the last `slots` used) or is the base model (no
   slot), the oldest ticket goes: first come, first served, as without a scheduler;
3. when every slot is busy, tickets whose adapter is resident go, the adapter with the most
   steps in flight first: a loaded adapter drains, and its wave fills up to `max_parallel`,
   before another is loaded;
4. otherwise nothing: the next finished step frees room and the choice is made again.

Ties go to the oldest ticket, in the order given, so with one adapter (or enough slots for all)
the order is first come, first served. One scheduler can serve many runs at once (`hi-moe
batch`): `max_parallel` is then a global bound and steps of different runs on the same adapter
share a wave. Each run's own Fleet bound still holds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["AdapterScheduler", "AdapterStats", "Ticket"]


@dataclass(eq=False)
class Ticket:
    """A ready step waiting for the scheduler; `on_grant` is called when it may start."""

    adapter: str | None
    on_grant: Callable[[Ticket], None]
    ready_at: float
    order: int
    granted_at: float | None = None
    run: str = ""
    """Which run it belongs to: for its own bound on steps in flight, and its switch count."""
    run_limit: int | None = None


@dataclass
class AdapterStats:
    """What one adapter saw: requests granted, their queue waits, and how many of its steps
    were in flight together at each grant (the batch it joined)."""

    requests: int = 0
    waits_s: list[float] = field(default_factory=list)
    occupancy: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        waits = sorted(self.waits_s)
        p95 = waits[min(len(waits) - 1, int(0.95 * len(waits)))] if waits else 0.0
        return {
            "requests": self.requests,
            "mean_wait_s": round(sum(waits) / len(waits), 4) if waits else 0.0,
            "p95_wait_s": round(p95, 4),
            "mean_batch": round(sum(self.occupancy) / len(self.occupancy), 2)
            if self.occupancy
            else 0.0,
        }


class AdapterScheduler:
    """Grants ready steps so that they fit the server's LoRA slots (see the module docstring).

    `slots`: adapters the server holds at once (vLLM's `--max-loras`); `max_parallel`: steps in
    flight at once across every run it serves; `max_wait_s`: how long a ticket may wait before
    it goes next regardless.
    """

    def __init__(
        self,
        *,
        slots: int,
        max_parallel: int,
        max_wait_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1 or max_parallel < 1:
            raise ValueError("slots and max_parallel must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self.slots = slots
        self.max_parallel = max_parallel
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._waiting: list[Ticket] = []
        self._in_flight: dict[str | None, int] = defaultdict(int)
        self._resident: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._run_in_flight: dict[str, int] = defaultdict(int)
        self._timer: asyncio.TimerHandle | None = None
        self._order = 0
        self.stats: dict[str | None, AdapterStats] = defaultdict(AdapterStats)
        self.switches: dict[str, int] = defaultdict(int)
        """Per run: how often one of its steps brought an adapter into a slot."""

    # -- what the Fleet calls ---------------------------------------------------------------

    def submit(
        self,
        adapter: str | None,
        on_grant: Callable[[Ticket], None],
        *,
        run: str = "",
        run_limit: int | None = None,
    ) -> Ticket:
        """Queue a ready step; `on_grant(ticket)` runs (synchronously) when it may start.
        `run_limit` bounds the steps of `run` in flight at once (its Fleet's `max_parallel`)."""
        self._order += 1
        ticket = Ticket(adapter, on_grant, self.clock(), self._order, run=run, run_limit=run_limit)
        self._waiting.append(ticket)
        self.dispatch()
        return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """Forget a ticket that was not granted (its run stopped)."""
        if ticket.granted_at is None and ticket in self._waiting:
            self._waiting.remove(ticket)
            self._wake_at_the_bound()

    def finished(self, ticket: Ticket) -> None:
        """A granted step is done (however it ended): its room goes to the next."""
        assert ticket.granted_at is not None, "finished() on a ticket never granted"
        self._in_flight[ticket.adapter] -= 1
        self._run_in_flight[ticket.run] -= 1
        self.dispatch()

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def waiting(self) -> int:
        return len(self._waiting)

    def dispatch(self) -> None:
        """Grant as many waiting tickets as the bounds allow, in the policy's order."""
        while self._waiting and self.in_flight < self.max_parallel:
            ticket = self._next()
            if ticket is None:
                break
            self._grant(ticket)
        self._wake_at_the_bound()

    def _wake_at_the_bound(self) -> None:
        # A ticket held back for its slot must go when its wait reaches the bound, even if no
        # step finishes and none arrives meanwhile (one long step of the loaded adapter).
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting or self.in_flight >= self.max_parallel:
            return  # the next finished step dispatches again
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # driven synchronously (a clock of its own): no timers
        due = self._waiting[0].ready_at + self.max_wait_s - self.clock()
        if due > 0:  # past it and still waiting: its run is at its own bound, which a
            self._timer = loop.call_later(due, self.dispatch)  # finished step lifts

    def summary(self) -> dict[str, object]:
        return {
            "adapters": {
                name or "(base)": stats.summary()
                for name, stats in sorted(self.stats.items(), key=lambda item: item[0] or "")
            },
            "switches": dict(self.switches),
        }

    # -- the policy ----------------------------------------------------------------------------

    def _next(self) -> Ticket | None:
        now = self.clock()
        waiting = [
            t
            for t in self._waiting
            if t.run_limit is None or self._run_in_flight[t.run] < t.run_limit
        ]
        if not waiting:
            return None
        oldest = waiting[0]  # tickets are kept in the order they came
        if now - oldest.ready_at >= self.max_wait_s:
            return oldest
        loaded = sum(1 for name, n in self._in_flight.items() if name is not None and n > 0)
        if loaded < self.slots or oldest.adapter is None or oldest.adapter in self._resident:
            # A free slot (or one no step is using) costs nothing to fill: first come, first
            # served, as without a scheduler.
            return oldest
        fits = [t for t in waiting if t.adapter is None or t.adapter in self._resident]
        if fits:
            # Every slot is busy: drain what is loaded, the adapter with the most in flight
            # first (it is the batch being built), then the oldest ticket.
            return min(fits, key=lambda t: (-self._in_flight[t.adapter], t.order))
        return None

    def _grant(self, ticket: Ticket) -> None:
        self._waiting.remove(ticket)
        now = self.clock()
        ticket.granted_at = now
        adapter = ticket.adapter
        if adapter is not None:
            if adapter not in self._resident:
                self.switches[ticket.run] += 1
                self._resident[adapter] = None
                while len(self._resident) > self.slots:
                    # Evict the least recently used adapter that nothing is using.
                    idle = next(
                        (name for name in self._resident if self._in_flight[name] == 0), None
                    )
                    if idle is None:
                        break  # a starved ticket overcommitted the slots; it will pass
                    del self._resident[idle]
            else:
                self._resident.move_to_end(adapter)
        self._in_flight[adapter] += 1
        self._run_in_flight[ticket.run] += 1
        stats = self.stats[adapter]
        stats.requests += 1
        stats.waits_s.append(now - ticket.ready_at)
        stats.occupancy.append(self._in_flight[adapter])
        ticket.on_grant(ticket)
