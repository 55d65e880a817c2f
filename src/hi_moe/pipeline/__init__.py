"""The harness pipeline: Progress Monitor → Architect → Dispatcher → Fleet.

It depends on `InferenceProvider` and the shared types only; the provider is chosen by
configuration (`hi_moe.load_provider`), never imported here. Names load on first use, so
`hi_moe.config` can read `PipelineSettings` without loading the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hi_moe._lazy import lazy_exports

if TYPE_CHECKING:
    from hi_moe.pipeline.architect import Architect, PlanOutcome
    from hi_moe.pipeline.dispatcher import Assignment, Dispatcher
    from hi_moe.pipeline.events import Event, MetricsLog
    from hi_moe.pipeline.fleet import Fleet, StopRun
    from hi_moe.pipeline.journal import Journal, RunRecord
    from hi_moe.pipeline.monitor import ProgressMonitor
    from hi_moe.pipeline.plan import Plan, Step, Task
    from hi_moe.pipeline.result import RunResult, StepResult
    from hi_moe.pipeline.settings import Budget, PipelineSettings, Route

_WHERE = {
    "Architect": "hi_moe.pipeline.architect",
    "Assignment": "hi_moe.pipeline.dispatcher",
    "Budget": "hi_moe.pipeline.settings",
    "Dispatcher": "hi_moe.pipeline.dispatcher",
    "Event": "hi_moe.pipeline.events",
    "Fleet": "hi_moe.pipeline.fleet",
    "Journal": "hi_moe.pipeline.journal",
    "MetricsLog": "hi_moe.pipeline.events",
    "PipelineSettings": "hi_moe.pipeline.settings",
    "Plan": "hi_moe.pipeline.plan",
    "PlanOutcome": "hi_moe.pipeline.architect",
    "ProgressMonitor": "hi_moe.pipeline.monitor",
    "Route": "hi_moe.pipeline.settings",
    "RunRecord": "hi_moe.pipeline.journal",
    "RunResult": "hi_moe.pipeline.result",
    "Step": "hi_moe.pipeline.plan",
    "StepResult": "hi_moe.pipeline.result",
    "StopRun": "hi_moe.pipeline.fleet",
    "Task": "hi_moe.pipeline.plan",
}

__all__ = [
    "Architect",
    "Assignment",
    "Budget",
    "Dispatcher",
    "Event",
    "Fleet",
    "Journal",
    "MetricsLog",
    "PipelineSettings",
    "Plan",
    "PlanOutcome",
    "ProgressMonitor",
    "Route",
    "RunRecord",
    "RunResult",
    "Step",
    "StepResult",
    "StopRun",
    "Task",
]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
