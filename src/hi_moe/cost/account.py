"""A run's account: every request's cost, by provider and by step, retries included."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hi_moe.cost.prices import Cost

__all__ = ["PLANNING", "CostAccount", "RunCost", "usd"]

PLANNING = "(plan)"
"""The step key planning requests are booked under."""


class RunCost(BaseModel):
    """What a run cost. `usd` is the sum over every request, retried and rejected ones
    included; requests no price covers are counted in `unpriced_requests`, not guessed."""

    model_config = ConfigDict(frozen=True)

    usd: float = 0.0
    gpu_s: float = 0.0
    requests: int = 0
    unpriced_requests: int = 0
    retry_usd: float = 0.0
    """The part of `usd` spent on attempts whose answer was not the one kept: rejected
    outputs, failed checks, failed calls, and every attempt of a step that failed."""
    by_provider: dict[str, float] = Field(default_factory=dict)
    by_step: dict[str, float] = Field(default_factory=dict)
    """Step id → USD; planning requests under `(plan)`."""

    @classmethod
    def of_summary(cls, summary: Mapping[str, Any] | None) -> RunCost | None:
        """The cost a journaled run summary (`RunResult.summary()`) holds; None for a run
        without one (not finished, or journaled before costs were kept)."""
        cost = (summary or {}).get("cost")
        if not isinstance(cost, dict):
            return None
        try:
            return cls.model_validate(cost)
        except ValidationError:
            return None

    @property
    def complete(self) -> bool:
        """Every request was priced."""
        return self.unpriced_requests == 0

    def __add__(self, other: RunCost) -> RunCost:
        def merged(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
            out = dict(a)
            for key, value in b.items():
                out[key] = out.get(key, 0.0) + value
            return out

        return RunCost(
            usd=self.usd + other.usd,
            gpu_s=self.gpu_s + other.gpu_s,
            requests=self.requests + other.requests,
            unpriced_requests=self.unpriced_requests + other.unpriced_requests,
            retry_usd=self.retry_usd + other.retry_usd,
            by_provider=merged(self.by_provider, other.by_provider),
            by_step=merged(self.by_step, other.by_step),
        )

    def describe(self) -> str:
        """One line for a summary: `$0.0123 (GPU 4.2 s; $0.0040 on retries)`."""
        parts = []
        if self.gpu_s:
            parts.append(f"GPU {self.gpu_s:.1f} s")
        if self.retry_usd:
            parts.append(f"{usd(self.retry_usd)} on retries")
        if self.unpriced_requests:
            parts.append(
                f"{self.unpriced_requests} of {self.requests} requests unpriced: "
                "see [prices] in the README"
            )
        return usd(self.usd) + (f" ({'; '.join(parts)})" if parts else "")


def usd(value: float) -> str:
    """`$0.0123` below a dollar, `$12.35` above."""
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


class CostAccount:
    """Costs booked as requests finish; `summary()` is the run's `RunCost`."""

    def __init__(self) -> None:
        self.usd = 0.0
        self.gpu_s = 0.0
        self.requests = 0
        self.unpriced = 0
        self.retry_usd = 0.0
        self.by_provider: dict[str, float] = defaultdict(float)
        self.by_step: dict[str, float] = defaultdict(float)
        self.unpriced_providers: set[str] = set()

    def book(self, provider: str, step_id: str | None, cost: Cost) -> None:
        self.requests += 1
        if not cost.priced:
            self.unpriced += 1
            self.unpriced_providers.add(provider)
        self.usd += cost.usd
        self.gpu_s += cost.gpu_s
        self.by_provider[provider] += cost.usd
        self.by_step[step_id or PLANNING] += cost.usd

    def book_journaled(self, record: dict[str, object]) -> None:
        """A request an earlier session of the run made, as `Journal.requests` gives it."""
        usd = record.get("cost_usd")
        gpu_s = record.get("gpu_s")
        cost = Cost(
            usd=float(usd) if isinstance(usd, int | float) else 0.0,
            basis="unpriced" if usd is None else "tokens",
            gpu_s=float(gpu_s) if isinstance(gpu_s, int | float) else 0.0,
        )
        step = record.get("step")
        self.book(str(record.get("provider")), step if isinstance(step, str) else None, cost)

    def retried(self, usd: float) -> None:
        """`usd` of what was booked went on attempts whose answer was not kept."""
        self.retry_usd += usd

    def summary(self) -> RunCost:
        return RunCost(
            usd=self.usd,
            gpu_s=self.gpu_s,
            requests=self.requests,
            unpriced_requests=self.unpriced,
            retry_usd=self.retry_usd,
            by_provider=dict(self.by_provider),
            by_step=dict(self.by_step),
        )
