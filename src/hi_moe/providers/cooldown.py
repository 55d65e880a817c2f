"""Cooldowns for `FallbackProvider`'s members: LiteLLM-style circuit breakers.

A member that failed `failures` times within `window_s` is skipped for `cooldown_s` (at once
when nothing listens at its endpoint: `ProviderUnreachable` is not a blip that the next call
may miss); after that one call probes it (half-open) while the others still skip it, and the
probe's outcome closes or re-opens the breaker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hi_moe.errors import HiMoeError, ProviderUnreachable

__all__ = ["Breaker", "Cooldown"]


@dataclass(frozen=True)
class Cooldown:
    """When to stop asking a failing member for a while."""

    failures: int = 3
    """Failures within `window_s` that open the breaker."""
    window_s: float = 60.0
    cooldown_s: float = 30.0
    """How long an open breaker skips the member before one probe call is let through."""
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)


class Breaker:
    """One member's health: closed (asked), open (skipped), half-open (one probe asked)."""

    def __init__(self, policy: Cooldown) -> None:
        self.policy = policy
        self.failures: deque[float] = deque()
        self.open_until: float | None = None
        self.probing = False
        self.why = ""
        """The failure that opened the breaker, said when the member is skipped."""

    def wait_s(self) -> float:
        """Seconds until this member may be asked; 0 when it may be asked now."""
        if self.open_until is None:
            return 0.0
        left = self.open_until - self.policy.clock()
        if left > 0:
            return left
        return self.policy.cooldown_s if self.probing else 0.0  # one probe at a time

    def begin(self) -> bool:
        """Take the member for a call; True when the call is the half-open probe."""
        if self.open_until is not None:
            self.probing = True
            return True
        return False

    def failed(self, probe: bool, error: HiMoeError | None = None) -> None:
        now = self.policy.clock()
        if probe:
            self.probing = False
        self.failures.append(now)
        while self.failures and now - self.failures[0] > self.policy.window_s:
            self.failures.popleft()
        if (
            probe
            or isinstance(error, ProviderUnreachable)
            or (len(self.failures) >= self.policy.failures)
        ):
            self.failures.clear()
            self.open_until = now + self.policy.cooldown_s
            self.why = error.message if error is not None else ""

    def succeeded(self, probe: bool) -> None:
        # Successes in between do not forgive failures: `failures` within `window_s` open the
        # breaker however many calls succeeded around them. A probe that succeeds closes it.
        if probe or self.open_until is not None:
            self.failures.clear()
            self.open_until = None
            self.probing = False

    def settle(self, verdict: HiMoeError | bool | None, probe: bool) -> None:
        """Record a call's outcome: True healthy, a `ProviderError` failing, None no verdict on
        health (cancelled, or the request's own fault)."""
        if verdict is True:
            self.succeeded(probe)
        elif isinstance(verdict, HiMoeError):
            self.failed(probe, verdict)
        elif probe:
            self.probing = False
