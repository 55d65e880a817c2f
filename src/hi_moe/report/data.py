"""What a run report shows, gathered from the journal: the run, its plan's steps, and every
provider request it made (`Journal.requests`), for finished, failed and interrupted runs alike.

Only what the journal holds is shown: an interrupted run has no summary and no answer, so its
steps' statuses come from the steps journaled as finished, and its totals from its requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hi_moe.cost.account import PLANNING, usd
from hi_moe.pipeline.journal import Journal, RunRecord, RunState
from hi_moe.pipeline.plan import Plan
from hi_moe.pipeline.result import StepResult

__all__ = [
    "PLANNING",
    "ProviderRow",
    "ReportData",
    "Request",
    "StepRow",
    "gather",
    "report_path",
    "usd",
]

# PLANNING, "(plan)": the timeline row (and `data-step`) of the Architect's requests, as the
# cost account books them; usd: money as the run summary writes it. Both re-exported here.

STEP_STATUSES = ("done", "failed", "skipped", "unfinished", "not run")
"""`unfinished`: the step made requests but has no result (an interrupted run)."""


def report_path(journal_path: Path, run_id: str) -> Path:
    """Where `hi-moe report RUN_ID` writes by default: `<journal dir>/reports/<RUN_ID>.html`."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip(".") or "_"
    return journal_path.parent / "reports" / f"{safe}.html"


@dataclass(frozen=True)
class Request:
    """One provider request, as journaled, with where it sits on the timeline."""

    index: int
    """Its place in the journal's order (the order requests finished)."""
    step: str | None
    provider: str
    adapter: str | None
    domain: str
    model: str | None
    constraint: str | None
    attempt: int
    started_at: float
    latency_s: float | None
    prompt_tokens: int
    completion_tokens: int
    cold_share_s: float
    cold_wait_s: float
    """Wall-clock seconds waiting for a cold server (what the bar's cold segment shows)."""
    gpu_s: float
    cost_usd: float | None
    cost_basis: str
    error: str | None
    fallback_from: str | None = None
    """The provider whose failed call (same step, same attempt) this one replaced."""
    fallback_error: str | None = None

    @property
    def row(self) -> str:
        return self.step if self.step is not None else PLANNING

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def ended_at(self) -> float:
        return self.started_at + (self.latency_s or 0.0)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class StepRow:
    id: str
    domain: str
    goal: str
    depends_on: tuple[str, ...]
    status: str
    """One of `STEP_STATUSES`."""
    provider: str | None
    adapter: str | None
    attempts: int
    requests: int
    tokens: int
    latency_s: float | None
    cost_usd: float
    unpriced: int
    notes: tuple[str, ...]
    error: str | None


@dataclass(frozen=True)
class ProviderRow:
    provider: str
    requests: int
    failed: int
    tokens: int
    cost_usd: float
    unpriced: int
    gpu_s: float


@dataclass(frozen=True)
class ReportData:
    run_id: str
    state: RunState
    prompt: str
    reason: str
    answer: str | None
    created: float
    wall_s: float | None
    """The run's wall time; for a run without a summary, from its start to its last request."""
    cost_usd: float
    unpriced: int
    retry_usd: float
    gpu_s: float
    tokens: int
    plan: Plan | None
    steps: tuple[StepRow, ...]
    """The plan's steps in plan order, then any step only earlier plans had."""
    planning: StepRow | None
    """The Architect's requests, as a row of the steps table (None: it made none)."""
    requests: tuple[Request, ...]
    """In the journal's order."""
    providers: tuple[ProviderRow, ...]
    notes: tuple[str, ...]
    resumed_steps: tuple[str, ...]

    @property
    def origin(self) -> float:
        """When the run's first request started: the timeline's zero."""
        return min((r.started_at for r in self.requests), default=self.created)

    @property
    def span_s(self) -> float:
        """From the first request's start to the last one's end."""
        return max((r.ended_at for r in self.requests), default=self.origin) - self.origin

    @property
    def adapters(self) -> list[str | None]:
        """Adapters in the order requests first used them (None: the base model)."""
        return list(dict.fromkeys(r.adapter for r in sorted(self.requests, key=_start)))


def gather(journal: Journal, run_id: str) -> ReportData | None:
    """The report of `run_id`, or None when the journal has no such run."""
    record = journal.load_run(run_id)
    if record is None:
        return None
    requests = _with_fallbacks([_request(i, raw) for i, raw in enumerate(journal.requests(run_id))])
    finished = journal.finished_steps(run_id, record.plan_version) if record.plan else {}
    summary = record.summary or {}
    steps = _steps(record, summary, finished, requests)
    cost = summary.get("cost") if isinstance(summary.get("cost"), dict) else None
    last = max([record.updated, *(r.ended_at for r in requests)])
    wall = _float(summary.get("wall_s"))
    return ReportData(
        run_id=record.run_id,
        state=record.state,
        prompt=record.task.prompt,
        reason=str(summary.get("reason") or ""),
        answer=record.answer,
        created=record.created,
        wall_s=wall if wall is not None else max(last - record.created, 0.0),
        cost_usd=_number(cost, "usd", sum(r.cost_usd or 0.0 for r in requests)),
        unpriced=int(_number(cost, "unpriced_requests", _unpriced(requests))),
        retry_usd=_number(cost, "retry_usd", 0.0),
        gpu_s=_number(cost, "gpu_s", sum(r.gpu_s for r in requests)),
        tokens=int(_float(summary.get("tokens")) or sum(r.tokens for r in requests)),
        plan=record.plan,
        steps=steps,
        planning=_planning(record, requests),
        requests=tuple(requests),
        providers=_providers(requests),
        notes=tuple(str(note) for note in summary.get("notes") or ()),
        resumed_steps=tuple(str(step) for step in summary.get("resumed_steps") or ()),
    )


def _start(request: Request) -> tuple[float, int]:
    return (request.started_at, request.index)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _number(data: dict[str, Any] | None, key: str, default: float) -> float:
    found = _float(data.get(key)) if data is not None else None
    return found if found is not None else default


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _request(index: int, raw: dict[str, Any]) -> Request:
    return Request(
        index=index,
        step=_text(raw.get("step")),
        provider=str(raw.get("provider") or "?"),
        adapter=_text(raw.get("adapter")),
        domain=str(raw.get("domain") or ""),
        model=_text(raw.get("model")),
        constraint=_text(raw.get("constraint")),
        attempt=int(_float(raw.get("attempt")) or 1),
        started_at=_float(raw.get("started_at")) or 0.0,
        latency_s=_float(raw.get("latency_s")),
        prompt_tokens=int(_float(raw.get("prompt_tokens")) or 0),
        completion_tokens=int(_float(raw.get("completion_tokens")) or 0),
        cold_share_s=_float(raw.get("cold_share_s")) or 0.0,
        # Journaled before the wait was recorded: its share is the best figure there is.
        cold_wait_s=_float(raw.get("cold_wait_s")) or _float(raw.get("cold_share_s")) or 0.0,
        gpu_s=_float(raw.get("gpu_s")) or 0.0,
        cost_usd=_float(raw.get("cost_usd")),
        cost_basis=str(raw.get("cost_basis") or "unpriced"),
        error=_text(raw.get("error")),
    )


def _with_fallbacks(requests: list[Request]) -> list[Request]:
    """Mark the request that took over from a failed call: the next one of the same step and
    attempt, on another provider."""
    marked = list(requests)
    for i, failed in enumerate(requests):
        if failed.error is None:
            continue
        for j in range(i + 1, len(requests)):
            later = requests[j]
            if later.row == failed.row and later.attempt == failed.attempt:
                if later.provider != failed.provider and marked[j].fallback_from is None:
                    marked[j] = _replace(later, failed)
                break
    return marked


def _replace(request: Request, failed: Request) -> Request:
    return replace(request, fallback_from=failed.provider, fallback_error=failed.error)


def _unpriced(requests: list[Request]) -> int:
    return sum(1 for r in requests if r.cost_usd is None)


def _steps(
    record: RunRecord,
    summary: dict[str, Any],
    finished: dict[str, StepResult],
    requests: list[Request],
) -> tuple[StepRow, ...]:
    summarized = {str(s.get("id")): s for s in summary.get("steps") or () if isinstance(s, dict)}
    by_step: dict[str, list[Request]] = {}
    for request in requests:
        if request.step is not None:
            by_step.setdefault(request.step, []).append(request)
    planned = (
        [(s.id, s.domain, s.goal, s.depends_on) for s in record.plan.steps] if record.plan else []
    )
    ids = {step_id for step_id, *_ in planned}
    for step_id, made in by_step.items():  # steps only an earlier plan had
        if step_id not in ids:
            planned.append((step_id, made[0].domain, "", ()))
            ids.add(step_id)
    return tuple(
        _step_row(step, summarized.get(step[0]), finished.get(step[0]), by_step.get(step[0], []))
        for step in planned
    )


def _planning(record: RunRecord, requests: list[Request]) -> StepRow | None:
    made = [r for r in requests if r.step is None]
    if not made:
        return None
    status = (
        "done"
        if record.plan is not None
        else "failed"
        if record.status == "failed"
        else "unfinished"
    )
    return _step_row((PLANNING, "plan", "", ()), {"status": status}, None, made)


def _step_row(
    step: tuple[str, str, str, tuple[str, ...]],
    summarized: dict[str, Any] | None,
    result: StepResult | None,
    made: list[Request],
) -> StepRow:
    step_id, domain, goal, depends_on = step
    if result is not None:
        status: str = result.status
    elif summarized is not None and summarized.get("status") in STEP_STATUSES:
        status = str(summarized["status"])
    else:
        status = "unfinished" if made else "not run"
    answered = [r for r in made if not r.failed] or made
    provider: object = None
    adapter: object = None
    if summarized is not None and "provider" in summarized:
        provider, adapter = summarized.get("provider"), summarized.get("adapter")
    elif result is not None:
        provider, adapter = result.provider, result.adapter
    elif answered:  # no result yet: who it was last asked of
        provider, adapter = answered[-1].provider, answered[-1].adapter
    attempts = _float(summarized.get("attempts")) if summarized is not None else None
    if attempts is None:
        attempts = (
            result.attempts if result is not None else max((r.attempt for r in made), default=0)
        )
    notes = summarized.get("notes") if summarized is not None else None
    if notes is None and result is not None:
        notes = result.notes
    span = max(r.ended_at for r in made) - min(r.started_at for r in made) if made else None
    return StepRow(
        id=step_id,
        domain=domain,
        goal=goal,
        depends_on=tuple(depends_on),
        status=status,
        provider=_text(provider),
        adapter=_text(adapter),
        attempts=int(attempts),
        requests=len(made),
        tokens=sum(r.tokens for r in made),
        latency_s=result.latency_s if result is not None and result.latency_s else span,
        cost_usd=sum(r.cost_usd or 0.0 for r in made),
        unpriced=_unpriced(made),
        notes=tuple(str(n) for n in notes or ()),
        error=result.error if result is not None else None,
    )


def _providers(requests: list[Request]) -> tuple[ProviderRow, ...]:
    grouped: dict[str, list[Request]] = {}
    for request in requests:
        grouped.setdefault(request.provider, []).append(request)
    return tuple(
        ProviderRow(
            provider=name,
            requests=len(made),
            failed=sum(1 for r in made if r.failed),
            tokens=sum(r.tokens for r in made),
            cost_usd=sum(r.cost_usd or 0.0 for r in made),
            unpriced=_unpriced(made),
            gpu_s=sum(r.gpu_s for r in made),
        )
        for name, made in grouped.items()
    )
