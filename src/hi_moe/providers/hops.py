"""The record of one `FallbackProvider` call: the members passed over, and why."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hi_moe.errors import ConstraintViolation, HiMoeError, ProviderUnavailable
from hi_moe.types import Hop, Usage

if TYPE_CHECKING:
    from hi_moe.providers.base import InferenceProvider
    from hi_moe.providers.cooldown import Breaker

__all__ = ["HopSink", "Member", "Trail"]

log = logging.getLogger("hi_moe.providers.fallback")  # where these warnings always came from

HopSink = Callable[[Hop], None]


@dataclass
class Member:
    """One provider in a chain: its label there, and its health."""

    label: str
    provider: InferenceProvider
    breaker: Breaker


class Trail:
    """The hops of one call, reported to a sink as they happen."""

    def __init__(self, sink: HopSink | None) -> None:
        self._hops: list[Hop] = []
        self._sink = sink
        self.refused: HiMoeError | None = None
        """The first "cannot take this request": raised when nothing else happened."""
        self.failed_with: HiMoeError | None = None
        """The last real failure."""
        self.cooling: list[tuple[str, float]] = []

    def admits(self, member: Member, lack: HiMoeError | None) -> bool:
        """Whether `member` may be asked: it can take the request and is not cooling down."""
        if lack is not None:
            self.skip(member.label, lack.message)
            self.refused = self.refused or lack
            return False
        if (wait := member.breaker.wait_s()) > 0:
            self.cooling.append((member.label, wait))
            why = f" after: {member.breaker.why}" if member.breaker.why else ""
            self.skip(member.label, f"cooling down for {wait:.1f} s{why}")
            return False
        return True

    def cannot_take(self, label: str, error: HiMoeError, started: float) -> None:
        self.refused = self.refused or error
        self._record(label, error, started)

    def hops(self) -> tuple[Hop, ...]:
        return tuple(self._hops)

    def skip(self, label: str, why: str) -> None:
        self._add(Hop(provider=label, error="skipped", message=why))

    def failed(self, label: str, error: HiMoeError, started: float) -> None:
        self.failed_with = error
        log.warning("%s failed (%s); trying the next provider", label, error)
        self._record(label, error, started)

    def _record(self, label: str, error: HiMoeError, started: float) -> None:
        violation = error if isinstance(error, ConstraintViolation) else None
        self._add(
            Hop(
                provider=label,
                error=type(error).__name__,
                message=str(error),
                usage=(violation.usage if violation else None) or Usage(),
                model=violation.model if violation else None,
                latency_s=time.perf_counter() - started,
                busy_share_s=error.busy_share_s,
                cold_share_s=error.cold_share_s,
                cold_wait_s=error.cold_wait_s,
            )
        )

    def _add(self, hop: Hop) -> None:
        self._hops.append(hop)
        if self._sink is not None:
            try:
                self._sink(hop)
            except Exception:  # a broken event sink must not break the call
                log.exception("hop sink %r failed", self._sink)

    def give_up(self, name: str) -> HiMoeError:
        """The error a call ends with when no member answered, carrying the hops."""
        error, cooling = self.failed_with or self.refused, self.cooling
        if error is None:
            waits = ", ".join(f"{label} for {wait:.0f} s" for label, wait in cooling)
            error = ProviderUnavailable(
                "every provider that could take the request is cooling down after repeated "
                f"failures ({waits or 'no provider could take it'})",
                provider=name,
                retry_after=min((wait for _, wait in cooling), default=None),
            )
        error.hops = self.hops()
        return error
