"""OpenTelemetry spans from a run's events: an event sink, like the metrics log.

The pipeline reports what happened as `Event`s; `OtelSink` turns that stream into spans with
the events' own timestamps, following the OpenTelemetry GenAI semantic conventions::

    hi_moe.run                       one per run_id: status, reason, tokens, cost
    ├── hi_moe.plan                  run_started (or replanned) → planned
    │   └── chat {model}             a planning request (kind CLIENT)
    └── hi_moe.step                  step_started → step_finished / step_failed (or skipped)
        └── hi_moe.attempt           one per attempt; a retry's reason is the last failure
            └── chat {model}         one per request: a failed one, then its fallback

Token counts (`gen_ai.usage.*`) are on request spans only: a parent carries counts of its
attempts and requests, never summed tokens, so a backend that sums `gen_ai.usage.*` over a
trace counts each token once. Only `opentelemetry-api` is used here, imported when a sink is
made: `import hi_moe` imports no OpenTelemetry.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from hi_moe.errors import ConfigError
from hi_moe.telemetry.state import Open, Requests, RunState, StepState, attrs, ns

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from hi_moe.pipeline.events import Event

__all__ = ["MISSING_EXTRA", "OtelSink"]

MISSING_EXTRA = "tracing ([otel] enabled) needs the otel extra: pip install 'hi-moe[otel]'"
_SETTING = "HI_MOE_OTEL__ENABLED"
_NOT_FINISHED = "the run stopped before this finished"


class OtelSink:
    """An event sink that makes spans (see the module's doc). `tracer_provider`: where the
    spans go, by default the global one (`opentelemetry.trace.set_tracer_provider`). A run's
    root span is a child of the span current when the run starts, if any. Several runs (a
    batch) may share one sink; `close()` ends what is still open and flushes."""

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, owns_provider: bool = False
    ) -> None:
        """`owns_provider`: `close()` also shuts the provider down (the CLI's)."""
        try:
            from opentelemetry import trace
        except ImportError:
            raise ConfigError(MISSING_EXTRA, setting=_SETTING) from None
        from hi_moe import __version__

        self._in_context = trace.set_span_in_context
        self._internal, self._client = trace.SpanKind.INTERNAL, trace.SpanKind.CLIENT
        self._status = trace.Status
        self._error_code = trace.StatusCode.ERROR
        self.provider = tracer_provider or trace.get_tracer_provider()
        self.tracer: Tracer = self.provider.get_tracer("hi_moe", __version__)
        self._owns_provider = owns_provider
        self._runs: dict[str, RunState] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            handle = getattr(self, f"_on_{event.kind}", None)
            if handle is not None:
                handle(event)

    def close(self) -> None:
        """End the spans of runs still open (as errors: they did not finish), flush them, and
        shut the provider down if this sink owns it."""
        with self._lock:
            for run_id in list(self._runs):
                self._finish_run(run_id, ns(time.time()), status="failed", reason=_NOT_FINISHED)
        flush = getattr(self.provider, "force_flush", None)
        if flush is not None:
            flush()
        if self._owns_provider:
            self._owns_provider = False  # shut down once: close() may be called again
            shutdown = getattr(self.provider, "shutdown", None)
            if shutdown is not None:
                shutdown()

    # -- spans ------------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        parent: Open | None,
        start_ns: int,
        attributes: dict[str, Any],
        *,
        client: bool = False,
    ) -> Open:
        context = None if parent is None else self._in_context(parent.span)
        start_ns = start_ns if parent is None else max(start_ns, parent.start_ns)
        kind = self._client if client else self._internal
        span = self.tracer.start_span(
            name, context, kind=kind, attributes=attributes, start_time=start_ns
        )
        return Open(span, start_ns)

    def _error(self, span: Span, description: str) -> None:
        span.set_status(self._status(self._error_code, description or None))

    def _run(self, event: Event) -> RunState:
        """The run's state; a run first heard of mid-way (a sink added late) starts now."""
        run = self._runs.get(event.run_id)
        if run is None:
            at = ns(event.at)
            root = self._start("hi_moe.run", None, at, attrs(hi_moe__run__id=event.run_id))
            run = self._runs[event.run_id] = RunState(span=root, plan_from_ns=at)
        return run

    def _plan_span(self, run: RunState, at_ns: int) -> Open | None:
        """The open plan span, made when the first thing about planning is heard (a resumed
        run with its plan journaled plans nothing, and has none)."""
        if run.plan is None and run.plan_from_ns is not None:
            run.plans += 1
            run.plan = self._start(
                "hi_moe.plan",
                run.span,
                min(run.plan_from_ns, at_ns),
                attrs(hi_moe__plan__number=run.plans, hi_moe__replan__reason=run.plan_reason),
            )
            run.plan_from_ns = None
            run.plan_requests = Requests()
        return run.plan

    def _end_plan(self, run: RunState, at_ns: int, *, error: str | None = None) -> None:
        plan = run.plan
        if plan is None:
            return
        plan.span.set_attribute("hi_moe.requests", plan.requests)
        if error is not None:
            self._error(plan.span, error)
        plan.end(at_ns, run.span)
        run.plan = None

    def _step(self, run: RunState, event: Event) -> StepState:
        step_id = event.step_id or ""
        step = run.steps.get(step_id)
        if step is None:
            run.plan_from_ns = None  # planning is over once a step runs
            self._end_plan(run, ns(event.at))
            attributes = attrs(
                hi_moe__step__id=step_id, hi_moe__step__domain=run.domains.get(step_id)
            )
            span = self._start("hi_moe.step", run.span, ns(event.at), attributes)
            step = run.steps[step_id] = StepState(span)
        return step

    def _end_attempt(self, step: StepState, at_ns: int, *, error: str | None = None) -> None:
        attempt = step.attempt
        if attempt is None:
            return
        attempt.span.set_attribute("hi_moe.requests", attempt.requests)
        if error:
            self._error(attempt.span, error)
        attempt.end(at_ns, step.span)
        step.attempt = None

    def _start_attempt(self, step: StepState, event: Event) -> None:
        number = int(event.data.get("attempt") or step.attempts + 1)
        retry_reason = event.detail if event.kind == "step_retried" else None
        self._end_attempt(step, ns(event.at), error=retry_reason)
        step.attempts = number
        attributes = attrs(
            hi_moe__step__id=event.step_id,
            hi_moe__attempt=number,
            hi_moe__retry__reason=retry_reason,
            hi_moe__provider=event.data.get("provider"),
            hi_moe__adapter=event.data.get("adapter"),
        )
        step.attempt = self._start("hi_moe.attempt", step.span, ns(event.at), attributes)

    def _end_step(
        self, run: RunState, step_id: str, at_ns: int, *, status: str, error: str | None = None
    ) -> None:
        step = run.steps.pop(step_id, None)
        if step is None:
            return
        self._end_attempt(step, at_ns, error=error)
        step.span.span.set_attributes(
            {
                "hi_moe.step.status": status,
                "hi_moe.attempts": step.attempts,
                "hi_moe.requests": step.span.requests,
            }
        )
        if error is not None:
            step.span.span.set_attribute("hi_moe.step.reason", error)
            if status in ("failed", "cancelled"):
                self._error(step.span.span, error)
        step.span.end(at_ns, run.span)

    def _finish_run(
        self,
        run_id: str,
        at_ns: int,
        *,
        status: str,
        reason: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        run = self._runs.pop(run_id)
        for step_id in list(run.steps):
            self._end_step(run, step_id, at_ns, status="cancelled", error=reason or _NOT_FINISHED)
        self._end_plan(run, at_ns, error=reason if status == "failed" else None)
        data = data or {}
        cost = data.get("cost_usd", run.cost_usd if run.priced else None)
        root = run.span.span
        root.set_attributes(
            attrs(
                hi_moe__run__status=status,
                hi_moe__run__reason=reason or None,
                hi_moe__run__tokens=data.get("tokens"),
                hi_moe__run__cost_usd=cost,
                hi_moe__run__wall_s=data.get("wall_s"),
                hi_moe__requests=run.span.requests,
                hi_moe__plans=run.plans,
                hi_moe__run__resumed_steps=run.resumed_steps or None,
            )
        )
        if status == "failed":
            self._error(root, reason)
        run.span.end(at_ns, None)

    # -- events -----------------------------------------------------------------------------

    def _on_run_started(self, event: Event) -> None:
        self._run(event)

    def _on_run_finished(self, event: Event) -> None:
        self._run(event)
        status = str(event.data.get("status", "succeeded"))
        at = ns(event.at)
        self._finish_run(event.run_id, at, status=status, reason=event.detail, data=event.data)

    def _on_replanned(self, event: Event) -> None:
        run = self._run(event)
        self._end_plan(run, ns(event.at))
        run.plan_from_ns, run.plan_reason = ns(event.at), event.detail

    def _on_planned(self, event: Event) -> None:
        run = self._run(event)
        at = ns(event.at)
        plan = self._plan_span(run, at)
        steps = (event.data.get("plan") or {}).get("steps") or []
        run.domains.update({s["id"]: s["domain"] for s in steps if "id" in s and "domain" in s})
        if plan is not None:
            plan.span.set_attributes(
                attrs(
                    hi_moe__plan__steps=len(steps),
                    hi_moe__plan__detail=event.detail or None,
                    hi_moe__attempts=event.data.get("attempts"),
                )
            )
        self._end_plan(run, at)

    def _on_plan_rejected(self, event: Event) -> None:
        run = self._run(event)
        target = self._plan_span(run, ns(event.at)) or run.span
        target.span.add_event(event.kind, attrs(hi_moe__detail=event.detail), ns(event.at))

    _on_plan_fell_back = _on_plan_rejected

    def _on_step_started(self, event: Event) -> None:
        run = self._run(event)
        self._start_attempt(self._step(run, event), event)

    _on_step_retried = _on_step_started

    def _on_step_finished(self, event: Event) -> None:
        run = self._run(event)
        step = run.steps.get(event.step_id or "")
        if step is not None:
            step.attempts = int(event.data.get("attempts") or step.attempts)
            step.span.span.set_attributes(
                attrs(
                    hi_moe__provider=event.data.get("provider"),
                    hi_moe__adapter=event.data.get("adapter"),
                )
            )
        self._end_step(run, event.step_id or "", ns(event.at), status="done")

    def _on_step_failed(self, event: Event) -> None:
        run = self._run(event)
        step = run.steps.get(event.step_id or "")
        if step is not None:
            step.attempts = int(event.data.get("attempts") or step.attempts)
        reason = event.detail or "failed"
        self._end_step(run, event.step_id or "", ns(event.at), status="failed", error=reason)

    def _on_step_skipped(self, event: Event) -> None:
        run = self._run(event)
        self._step(run, event)
        self._end_step(
            run, event.step_id or "", ns(event.at), status="skipped", error=event.detail or None
        )

    def _on_step_resumed(self, event: Event) -> None:
        run = self._run(event)
        run.resumed_steps += 1
        run.span.span.add_event(event.kind, attrs(hi_moe__step__id=event.step_id), ns(event.at))

    def _on_fell_back(self, event: Event) -> None:
        run = self._run(event)
        at = ns(event.at)
        target: Open | None
        if event.step_id is None:
            target = self._plan_span(run, at)
        else:
            step = run.steps.get(event.step_id)
            target = None if step is None else step.attempt or step.span
        attributes = attrs(hi_moe__step__id=event.step_id, hi_moe__detail=event.detail)
        (target or run.span).span.add_event(event.kind, attributes, at)

    def _on_request(self, event: Event) -> None:
        run = self._run(event)
        data = event.data
        at = ns(event.at)
        run.span.requests += 1  # every request of the run, whatever its parent
        parent: Open
        requests: Requests
        if event.step_id is None:
            plan = self._plan_span(run, at)
            if plan is not None:
                plan.requests += 1
            parent, requests = plan or run.span, run.plan_requests
        else:
            step = run.steps.get(event.step_id) or self._step(run, event)
            step.span.requests += 1
            if event.step_id not in run.domains and data.get("domain"):
                # No plan was heard of (a resumed run's is the journal's): the request says.
                run.domains[event.step_id] = str(data["domain"])
                step.span.span.set_attribute("hi_moe.step.domain", run.domains[event.step_id])
            if step.attempt is not None:
                step.attempt.requests += 1
            parent, requests = step.attempt or step.span, step.requests
        self._request_span(parent, data, requests, at)
        if data.get("cost_usd") is not None:
            run.cost_usd += float(data["cost_usd"])
            run.priced = True

    def _request_span(
        self, parent: Open, data: dict[str, Any], requests: Requests, at_ns: int
    ) -> None:
        provider = str(data.get("provider") or "unknown")
        model, adapter = data.get("model"), data.get("adapter")
        error = data.get("error")
        attempt = int(data.get("attempt") or 0)
        started_at = data.get("started_at")
        start_ns = at_ns if started_at is None else ns(float(started_at))
        latency = data.get("latency_s")
        attributes = attrs(
            gen_ai__operation__name="chat",
            gen_ai__provider__name=provider,
            gen_ai__system=provider,
            gen_ai__request__model=adapter or model,
            gen_ai__response__model=model,
            gen_ai__usage__input_tokens=int(data.get("prompt_tokens") or 0),
            gen_ai__usage__output_tokens=int(data.get("completion_tokens") or 0),
            hi_moe__adapter=adapter,
            hi_moe__domain=data.get("domain"),
            hi_moe__attempt=attempt,
            hi_moe__constraint__kind=data.get("constraint"),
            hi_moe__cost__usd=data.get("cost_usd"),
            hi_moe__cost__basis=data.get("cost_basis"),
            hi_moe__gpu_s=data.get("gpu_s"),
            hi_moe__fallback_from=requests.fallback_from(attempt, provider, error),
            error__type=error,
        )
        name = " ".join(["chat", *([str(model or adapter)] if model or adapter else [])])
        span = self._start(name, parent, start_ns, attributes, client=True)
        if error is not None:
            self._error(span.span, str(error))
        span.end(span.start_ns + (0 if latency is None else ns(float(latency))), parent)
