"""`[pipeline]` settings: specialists, limits, budget, routing, where runs are journaled."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hi_moe.cost.account import CostAccount, usd
from hi_moe.pipeline.plan import OutputKind, Step
from hi_moe.pipeline.sandbox.settings import SandboxSettings
from hi_moe.pipeline.specialists import DEFAULT_SPECIALISTS, default_adapters

__all__ = ["Budget", "PipelineSettings", "Route"]

DATA_DIR = "~/.local/share/hi-moe"
Positive = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]


class Route(BaseModel):
    """Send matching steps to `provider`. An empty list matches everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    domains: tuple[str, ...] = ()
    outputs: tuple[OutputKind, ...] = ()

    def matches(self, step: Step) -> bool:
        return (not self.domains or step.domain in self.domains) and (
            not self.outputs or step.output in self.outputs
        )


class Budget(BaseModel):
    """What a run may spend before it stops with a report."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: Positive = 200_000
    max_wall_s: Seconds = 1800.0
    step_attempts: Positive = 3
    """Attempts per step, the first included; each retry carries the failure as feedback."""
    max_replans: Annotated[int, Field(ge=0)] = 1
    """New plans after the final step failed for good."""
    max_cost: Annotated[float, Field(gt=0)] | None = None
    """USD the run may spend (`[prices]` prices its requests). A request no price covers
    stops a run that has this set: a budget that cannot be kept is not kept silently."""

    def spent(self, tokens: int, elapsed_s: float, account: CostAccount) -> str | None:
        """Why a run that used this much must stop now, or None while budget remains."""
        if tokens >= self.max_tokens:
            return f"token budget spent ({tokens} of {self.max_tokens})"
        if elapsed_s >= self.max_wall_s:
            return f"time budget spent ({elapsed_s:.0f} s of {self.max_wall_s:.0f} s)"
        if self.max_cost is None:
            return None
        if account.unpriced:
            providers = ", ".join(sorted(account.unpriced_providers))
            return (
                f"cost budget cannot be kept: {account.unpriced} requests to {providers} have "
                "no price (set [prices.providers.<name>])"
            )
        if account.usd >= self.max_cost:
            return f"cost budget spent ({usd(account.usd)} of {usd(self.max_cost)})"
        return None


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domains: list[str] = Field(default_factory=lambda: [s.domain for s in DEFAULT_SPECIALISTS])
    adapters: dict[str, str] = Field(default_factory=default_adapters)
    """Domain → adapter name."""
    prompts: dict[str, str] = Field(default_factory=dict)
    """Domain → system prompt, replacing the default specialist's."""
    max_steps: Positive = 8
    max_parallel: Positive = 4
    max_plan_repairs: Annotated[int, Field(ge=0)] = 2
    max_goal_chars: Positive = 400
    plan_max_tokens: Positive = 1024
    step_max_tokens: dict[OutputKind, int] = Field(default_factory=dict)
    """Output kind → max_tokens (defaults: code 1024, text 512, json 512)."""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.2
    step_timeout_s: Seconds = 600.0
    lora_slots: Positive | None = None
    """Adapters the server holds at once (vLLM's `--max-loras`). Set, the Fleet releases ready
    steps in waves that fit (`hi_moe.pipeline.scheduler`); unset, in the order they are ready."""
    adapter_max_wait_s: Seconds = 30.0
    """With `lora_slots`: a step ready for longer than this goes next, whatever its adapter."""
    code_max_lines: Positive = 200
    code_line_chars: Positive = 160
    json_max_chars: Positive = 2000
    """Bounds on a step's output, enforced by the constraint: a weak model still stops."""
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    """`[pipeline.sandbox]`: where generated code runs (bubblewrap, process, modal) and its
    limits."""
    budget: Budget = Field(default_factory=Budget)
    routes: list[Route] = Field(default_factory=list)
    """First match wins; unmatched steps go to the configured `provider`."""
    fallbacks: list[str] = Field(default_factory=list)
    """Providers to use, in order, when the chosen one is down."""
    fallback_on_rejected: bool = False
    """Also fall back when a provider's output broke its constraint (after its retries)."""
    cooldown_failures: Positive = 3
    """Failures of a provider within `cooldown_window_s` that make the run skip it..."""
    cooldown_window_s: Seconds = 60.0
    cooldown_s: Seconds = 30.0
    """...for this long; then one request probes it again."""
    journal: str = f"{DATA_DIR}/journal.sqlite"
    metrics: str | None = f"{DATA_DIR}/metrics.jsonl"

    @model_validator(mode="before")
    @classmethod
    def _moved_sandbox_settings(cls, data: Any) -> Any:
        """`sandbox_timeout_s` and `sandbox_memory_mb` moved to `[pipeline.sandbox]`
        (`timeout_s`, `memory_mb`); old configurations keep working, with a warning."""
        if not isinstance(data, dict):
            return data
        moved = {"sandbox_timeout_s": "timeout_s", "sandbox_memory_mb": "memory_mb"}
        if not moved.keys() & data.keys():
            return data
        data = dict(data)
        sandbox = data.get("sandbox", {})
        sandbox = dict(sandbox) if isinstance(sandbox, dict) else sandbox.model_dump()
        found = [old for old in moved if old in data]
        warnings.warn(
            "; ".join(f"[pipeline] {old} is now [pipeline.sandbox] {moved[old]}" for old in found),
            DeprecationWarning,
            stacklevel=2,
        )
        for old in found:
            sandbox.setdefault(moved[old], data.pop(old))
        data["sandbox"] = sandbox
        return data
