"""What a step and a run produce."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from hi_moe.cost.account import RunCost
from hi_moe.pipeline.plan import Plan
from hi_moe.types import Usage

__all__ = ["RunResult", "StepResult", "StepStatus"]

StepStatus: TypeAlias = Literal["done", "failed", "skipped"]


class StepResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    step_id: str
    status: StepStatus
    output: str = ""
    """The step's answer: text, code (without its fence) or JSON text."""
    parsed: Any = None
    provider: str | None = None
    adapter: str | None = None
    model: str | None = None
    attempts: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    """What its requests cost (every attempt's; unpriced requests count nothing here)."""
    latency_s: float = 0.0
    notes: tuple[str, ...] = ()
    """Fallbacks taken and why (an adapter missing, a constraint kind unsupported, an outage)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


class RunResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    status: Literal["succeeded", "failed"]
    answer: str | None
    plan: Plan | None
    steps: dict[str, StepResult]
    usage: Usage
    cost: RunCost = Field(default_factory=RunCost)
    """What the run cost: every request's, retries and rejected outputs included."""
    wall_s: float
    reason: str = ""
    """Why the run failed, or what it fell back on."""
    notes: tuple[str, ...] = ()
    resumed_steps: tuple[str, ...] = ()
    """Steps taken from the journal instead of being asked again (on resume)."""
    scheduling: dict[str, Any] | None = None
    """With `lora_slots` set: this run's `adapter_switches` (adapters its steps brought into a
    slot) and, per adapter, requests, queue waits and batch sizes (`AdapterScheduler`)."""

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
            "steps": [
                {
                    "id": r.step_id,
                    "status": r.status,
                    "domain": self.plan.step(r.step_id).domain if self.plan else None,
                    "provider": r.provider,
                    "adapter": r.adapter,
                    "attempts": r.attempts,
                    "tokens": r.usage.total_tokens,
                    "cost_usd": round(r.cost_usd, 6),
                    "notes": list(r.notes),
                    "error": r.error,
                }
                for r in self.steps.values()
            ],
            "tokens": self.usage.total_tokens,
            "cost": self.cost.model_dump(mode="json"),
            "wall_s": round(self.wall_s, 3),
            "notes": list(self.notes),
            "resumed_steps": list(self.resumed_steps),
            "scheduling": self.scheduling,
        }
