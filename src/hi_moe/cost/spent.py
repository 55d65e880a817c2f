"""What one request spent, whatever came of it: what its cost is computed from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hi_moe.errors import ConstraintViolation, HiMoeError
from hi_moe.types import Completion, Hop, Usage

__all__ = ["Spent", "unrecorded"]


def unrecorded(error: HiMoeError) -> bool:
    """Whether `error` ended a request that was sent and that no hop of the chain it came out
    of records (a chain records each provider it passed over, and raises the last failure)."""
    name, text = type(error).__name__, str(error)
    return error.sent and not any(h.error == name and h.message == text for h in error.hops)


class Spent(BaseModel):
    model_config = ConfigDict(frozen=True)

    usage: Usage = Field(default_factory=Usage)
    latency_s: float | None = None
    model: str | None = None
    """The model that answered, where known (what a token price is looked up by)."""
    busy_share_s: float = 0.0
    cold_share_s: float = 0.0
    """Its share of the provider's busy time, and of that the cold-start wait (`cost.meter`)."""
    cold_wait_s: float = 0.0
    """Wall-clock seconds it waited for a cold server."""

    @classmethod
    def of(cls, answered: Completion | Hop) -> Spent:
        """What a completion, or a call a fallback chain passed over, spent (both say the
        same fields)."""
        return cls(
            usage=answered.usage,
            latency_s=answered.latency_s,
            model=answered.model,
            busy_share_s=answered.busy_share_s,
            cold_share_s=answered.cold_share_s,
            cold_wait_s=answered.cold_wait_s,
        )

    @classmethod
    def of_error(cls, error: HiMoeError) -> Spent:
        violation = error if isinstance(error, ConstraintViolation) else None
        return cls(
            usage=(violation.usage if violation else None) or Usage(),
            model=violation.model if violation else None,
            busy_share_s=error.busy_share_s,
            cold_share_s=error.cold_share_s,
            cold_wait_s=error.cold_wait_s,
        )
