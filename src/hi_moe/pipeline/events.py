"""What a run reports as it goes: one event type, a kind and its data, so a progress display,
a JSON-lines metrics log and a test can all read the same stream."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Event", "EventKind", "EventSink", "MetricsLog"]

EventKind: TypeAlias = Literal[
    "run_started",
    "planned",
    "plan_rejected",
    "plan_fell_back",
    "replanned",
    "step_started",
    "step_finished",
    "step_failed",
    "step_retried",
    "step_skipped",
    "step_resumed",
    "fell_back",
    "request",
    "run_finished",
]


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: EventKind
    run_id: str
    step_id: str | None = None
    detail: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    at: float = Field(default_factory=time.time)


EventSink: TypeAlias = Callable[[Event], None]


class MetricsLog:
    """Appends `request` events (one per provider request: step, adapter, provider, latency,
    tokens) and run outcomes to a JSON-lines file. Use as an event sink."""

    KINDS = frozenset({"request", "fell_back", "step_failed", "run_finished"})

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: Event) -> None:
        if event.kind not in self.KINDS:
            return
        record = {
            "at": round(event.at, 3),
            "kind": event.kind,
            "run_id": event.run_id,
            "step": event.step_id,
            **event.data,
        }
        if event.detail:
            record["detail"] = event.detail
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, default=str) + "\n")
