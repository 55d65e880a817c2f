"""What `OtelSink` keeps per run while its spans are open: plain data, no OpenTelemetry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["Open", "Requests", "RunState", "StepState", "attrs", "ns"]


def ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def attrs(**values: object) -> dict[str, Any]:
    """Attributes without the unset ones (OpenTelemetry takes no None). Keys are written with
    `__` for a dot: `gen_ai__usage__input_tokens` is `gen_ai.usage.input_tokens`."""
    return {k.replace("__", "."): v for k, v in values.items() if v is not None}


@dataclass
class Open:
    """A span not ended yet, with its bounds: a child starts no earlier than its parent and a
    parent ends no earlier than its children (the events' times are rounded)."""

    span: Span
    start_ns: int
    latest_ns: int = 0
    requests: int = 0

    def end(self, at_ns: int, parent: Open | None) -> int:
        end_ns = max(at_ns, self.start_ns, self.latest_ns)
        self.span.end(end_time=end_ns)
        if parent is not None:
            parent.latest_ns = max(parent.latest_ns, end_ns)
        return end_ns


@dataclass
class Requests:
    """A stage's requests, each compared with the one before it: a request after a failed one,
    to another provider, in the same attempt, is a fallback."""

    failed: tuple[int, str] | None = None  # (attempt, provider) of the last request, if failed

    def fallback_from(self, attempt: int, provider: str, error: str | None) -> str | None:
        last = self.failed
        self.failed = (attempt, provider) if error is not None else None
        if last is not None and last[0] == attempt and last[1] != provider:
            return last[1]
        return None


@dataclass
class StepState:
    span: Open
    attempt: Open | None = None
    attempts: int = 0
    requests: Requests = field(default_factory=Requests)


@dataclass
class RunState:
    span: Open
    plan_from_ns: int | None
    """When the run started planning (run_started or replanned), until its plan span is made."""
    plan_reason: str | None = None
    plan: Open | None = None
    plans: int = 0
    plan_requests: Requests = field(default_factory=Requests)
    steps: dict[str, StepState] = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)
    cost_usd: float = 0.0
    priced: bool = False
    resumed_steps: int = 0
