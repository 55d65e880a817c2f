"""OpenTelemetry tracing (the otel extra): spans of a run, its stages and requests, made from
the run's events by `OtelSink`, read back from the SDK's in-memory exporter; `[otel]` wires it
into `hi-moe run` and `hi-moe batch`, off unless enabled."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

OTEL_MISSING = "needs the otel extra (opentelemetry-sdk): pip install 'hi-moe[otel]'"
pytest.importorskip("opentelemetry.sdk.trace", reason=OTEL_MISSING)

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from hi_moe.cli import app  # noqa: E402
from hi_moe.config import OtelSettings, Settings  # noqa: E402
from hi_moe.errors import ConfigError, ProviderUnavailable  # noqa: E402
from hi_moe.pipeline import (  # noqa: E402
    Budget,
    Event,
    PipelineSettings,
    ProgressMonitor,
    Route,
    RunResult,
)
from hi_moe.providers import MockProvider  # noqa: E402
from hi_moe.telemetry import OtelSink, sink_from_settings  # noqa: E402
from hi_moe.telemetry.setup import traces_endpoint  # noqa: E402
from tests.support import run_python  # noqa: E402
from tests.unit.pipeline_support import plan_of, scripted  # noqa: E402

ADAPTERS = ["python-lora", "math-lora", "algorithms-lora", "data-structures-lora"]
THREE_WAY = plan_of(
    ("s1", "work out the formula", "math", (), "text"),
    ("s2", "pick a data structure", "data_structures", (), "text"),
    ("s3", "write the code", "python", ("s1", "s2"), "code"),
)
runner = CliRunner()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def sink(exporter: InMemorySpanExporter) -> OtelSink:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelSink(tracer_provider=provider)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def attribute(span: ReadableSpan, key: str) -> object:
    assert span.attributes is not None
    return span.attributes.get(key)


def assert_nested(spans: Sequence[ReadableSpan]) -> None:
    """One trace per root, and every child within its parent's time."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    for span in spans:
        if span.parent is None:
            continue
        parent = by_id[span.parent.span_id]
        assert span.context is not None
        assert parent.context is not None
        assert span.context.trace_id == parent.context.trace_id
        assert span.start_time is not None
        assert span.end_time is not None
        assert parent.start_time is not None
        assert parent.end_time is not None
        assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time, span.name


async def retried_and_fell_back(sink: OtelSink) -> tuple[RunResult, list[Event], int]:
    """Three steps: s2 is routed to a provider that is down and falls back to main; s3's first
    answer breaks its grammar and is retried. Returns the result, the events and how many
    requests the providers were sent."""
    main = MockProvider(
        respond=scripted(THREE_WAY, {"s3": [lambda request: "print(1)", "x = 1"]}),
        adapters=ADAPTERS,
        latency_s=0.005,
    )
    down = MockProvider(
        respond=lambda request: ProviderUnavailable("connection refused"), adapters=ADAPTERS
    )
    events: list[Event] = []
    monitor = ProgressMonitor(
        {"main": main, "down": down},
        PipelineSettings(routes=[Route(provider="down", domains=("data_structures",))]),
        on_event=[sink, events.append],
    )
    result = await monitor.run("t")
    return result, events, len(main.requests) + len(down.requests)


async def test_a_three_step_run_with_a_retry_and_a_fallback_has_the_expected_tree(
    sink: OtelSink, exporter: InMemorySpanExporter
) -> None:
    result, events, sent = await retried_and_fell_back(sink)
    assert result.status == "succeeded", result.reason
    spans = exporter.get_finished_spans()

    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "hi_moe.run"
    assert attribute(root, "hi_moe.run.id") == result.run_id
    assert attribute(root, "hi_moe.run.status") == "succeeded"
    assert attribute(root, "hi_moe.run.tokens") == result.usage.total_tokens
    assert attribute(root, "hi_moe.requests") == sent
    assert root.status.status_code is StatusCode.UNSET
    stages = children(spans, root)
    assert sorted(s.name for s in stages) == ["hi_moe.plan", *["hi_moe.step"] * 3]
    steps = {attribute(s, "hi_moe.step.id"): s for s in named(stages, "hi_moe.step")}
    assert set(steps) == {"s1", "s2", "s3"}
    assert attribute(steps["s1"], "hi_moe.step.domain") == "math"
    assert all(attribute(s, "hi_moe.step.status") == "done" for s in steps.values())
    (plan,) = named(stages, "hi_moe.plan")
    (plan_request,) = children(spans, plan)
    assert plan_request.name == "chat mock-base"
    assert attribute(plan_request, "hi_moe.constraint.kind") == "json_schema"

    # The retried step: two attempts, the second saying why, the first ended in that failure.
    assert attribute(steps["s3"], "hi_moe.attempts") == 2
    first, second = sorted(children(spans, steps["s3"]), key=lambda s: s.start_time or 0)
    assert [first.name, second.name] == ["hi_moe.attempt", "hi_moe.attempt"]
    assert [attribute(first, "hi_moe.attempt"), attribute(second, "hi_moe.attempt")] == [1, 2]
    assert attribute(first, "hi_moe.retry.reason") is None
    reason = attribute(second, "hi_moe.retry.reason")
    assert isinstance(reason, str)
    assert "broke its format" in reason
    assert first.status.status_code is StatusCode.ERROR
    assert second.status.status_code is StatusCode.UNSET
    (rejected,) = children(spans, first)
    assert attribute(rejected, "error.type") == "ConstraintViolation"
    assert [attribute(s, "hi_moe.attempt") for s in children(spans, second)] == [2]

    # The fallback: a failed request on the provider that is down, then one on main.
    (attempt,) = children(spans, steps["s2"])
    failed, answered = sorted(children(spans, attempt), key=lambda s: s.start_time or 0)
    assert attribute(failed, "gen_ai.provider.name") == "down"
    assert attribute(failed, "error.type") == "ProviderUnavailable"
    assert failed.status.status_code is StatusCode.ERROR
    assert attribute(answered, "gen_ai.provider.name") == "main"
    assert attribute(answered, "hi_moe.fallback_from") == "down"
    assert attribute(answered, "error.type") is None
    assert answered.name == "chat data-structures-lora"
    assert attribute(answered, "gen_ai.request.model") == "data-structures-lora"
    assert attribute(answered, "hi_moe.adapter") == "data-structures-lora"
    assert [e.name for e in attempt.events] == ["fell_back"]

    # One client span per request, the GenAI attributes on each, tokens counted once.
    requests = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(requests) == sent == [e.kind for e in events].count("request")
    assert all(attribute(s, "gen_ai.operation.name") == "chat" for s in requests)
    assert all(
        attribute(s, "gen_ai.system") == attribute(s, "gen_ai.provider.name") for s in requests
    )
    inputs = [attribute(s, "gen_ai.usage.input_tokens") for s in requests]
    outputs = [attribute(s, "gen_ai.usage.output_tokens") for s in requests]
    assert sum(n for n in inputs if isinstance(n, int)) == result.usage.prompt_tokens
    assert sum(n for n in outputs if isinstance(n, int)) == result.usage.completion_tokens
    for span in spans:
        if span.kind is not SpanKind.CLIENT:
            assert not any(key.startswith("gen_ai.") for key in span.attributes or {}), span.name
        assert span.end_time is not None  # every span ended

    assert len({s.context.trace_id for s in spans if s.context is not None}) == 1
    assert_nested(spans)


async def test_runs_sharing_a_sink_get_a_trace_each(
    sink: OtelSink, exporter: InMemorySpanExporter
) -> None:
    mock = MockProvider(respond=scripted(THREE_WAY), adapters=ADAPTERS, latency_s=0.002)
    monitor = ProgressMonitor(mock, on_event=sink)
    results = await asyncio.gather(monitor.run("a"), monitor.run("b"))
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert sorted(str(attribute(r, "hi_moe.run.id")) for r in roots) == sorted(
        r.run_id for r in results
    )
    traces = {r.context.trace_id for r in roots if r.context is not None}
    assert len(traces) == 2
    assert len(named(spans, "hi_moe.step")) == 6
    assert_nested(spans)


async def test_a_failed_step_a_skipped_one_and_a_replan_are_told_apart(
    sink: OtelSink, exporter: InMemorySpanExporter
) -> None:
    plan = plan_of(("s1", "a", "python", (), "code"), ("s2", "b", "math", ("s1",), "text"))
    mock = MockProvider(respond=scripted(plan, {"s1": lambda request: "no fence"}))
    budget = Budget(step_attempts=2, max_replans=1)
    result = await ProgressMonitor(mock, PipelineSettings(budget=budget), on_event=sink).run("t")
    assert result.status == "failed"
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.parent is None]
    assert root.status.status_code is StatusCode.ERROR
    assert attribute(root, "hi_moe.run.reason") == result.reason
    assert attribute(root, "hi_moe.plans") == 2
    plans = sorted(named(spans, "hi_moe.plan"), key=lambda s: s.start_time or 0)
    assert [attribute(p, "hi_moe.plan.number") for p in plans] == [1, 2]
    assert attribute(plans[0], "hi_moe.replan.reason") is None
    assert "s1, which failed" in str(attribute(plans[1], "hi_moe.replan.reason"))
    failed = [s for s in named(spans, "hi_moe.step") if attribute(s, "hi_moe.step.id") == "s1"]
    assert len(failed) == 2  # once per plan
    for step in failed:
        assert step.status.status_code is StatusCode.ERROR
        assert attribute(step, "hi_moe.step.status") == "failed"
        assert attribute(step, "hi_moe.attempts") == 2
        assert len(children(spans, step)) == 2
    skipped = [s for s in named(spans, "hi_moe.step") if attribute(s, "hi_moe.step.id") == "s2"]
    assert len(skipped) == 2
    for step in skipped:
        assert attribute(step, "hi_moe.step.status") == "skipped"
        assert attribute(step, "hi_moe.step.reason")
        assert step.start_time == step.end_time
        assert children(spans, step) == []
    assert_nested(spans)


async def test_a_run_starts_under_the_span_current_where_it_is_started(
    sink: OtelSink, exporter: InMemorySpanExporter
) -> None:
    monitor = ProgressMonitor(MockProvider(respond=scripted(THREE_WAY)), on_event=sink)
    with sink.tracer.start_as_current_span("harness") as outer:
        await monitor.run("t")
    (run,) = named(exporter.get_finished_spans(), "hi_moe.run")
    assert run.parent is not None
    assert run.parent.span_id == outer.get_span_context().span_id


def test_close_ends_what_a_stopped_run_left_open(
    sink: OtelSink, exporter: InMemorySpanExporter
) -> None:
    sink(Event(kind="run_started", run_id="r1", at=100.0))
    sink(Event(kind="step_started", run_id="r1", step_id="s1", data={"attempt": 1}, at=101.0))
    assert exporter.get_finished_spans() == ()
    sink.close()
    sink.close()  # once is enough; again does nothing
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["hi_moe.attempt", "hi_moe.run", "hi_moe.step"]
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    assert_nested(spans)


def test_a_resumed_run_has_no_plan_span_and_counts_the_steps_it_took_from_the_journal(
    sink: OtelSink, exporter: InMemorySpanExporter
) -> None:
    request = {"provider": "mock", "model": "m", "domain": "math", "attempt": 1}
    request |= {"started_at": 102.0, "latency_s": 0.5, "prompt_tokens": 7, "error": None}
    for event in [
        Event(kind="run_started", run_id="r1", detail="resuming with 1 finished steps", at=100.0),
        Event(kind="step_resumed", run_id="r1", step_id="s1", at=100.0),
        Event(kind="step_started", run_id="r1", step_id="s2", data={"attempt": 1}, at=101.0),
        Event(kind="request", run_id="r1", step_id="s2", data=request, at=102.5),
        Event(kind="step_finished", run_id="r1", step_id="s2", data={"attempts": 1}, at=103.0),
        Event(kind="run_finished", run_id="r1", data={"status": "succeeded"}, at=104.0),
    ]:
        sink(event)
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == [
        "chat m",
        "hi_moe.attempt",
        "hi_moe.run",
        "hi_moe.step",
    ]
    (run,) = named(spans, "hi_moe.run")
    assert attribute(run, "hi_moe.run.resumed_steps") == 1
    assert [e.name for e in run.events] == ["step_resumed"]
    (step,) = named(spans, "hi_moe.step")
    assert attribute(step, "hi_moe.step.domain") == "math"
    (chat,) = named(spans, "chat m")
    assert (chat.start_time, chat.end_time) == (102_000_000_000, 102_500_000_000)
    assert attribute(chat, "gen_ai.usage.input_tokens") == 7
    assert_nested(spans)


# -- configuration and the command line ------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith(("HI_MOE_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HI_MOE_PIPELINE__JOURNAL", str(tmp_path / "journal.sqlite"))
    monkeypatch.setenv("HI_MOE_PIPELINE__METRICS", str(tmp_path / "metrics.jsonl"))
    return tmp_path


def test_otel_is_off_unless_enabled_and_read_from_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings.load().otel == OtelSettings(enabled=False)
    assert sink_from_settings(OtelSettings()) is None
    monkeypatch.setenv("HI_MOE_OTEL__ENABLED", "true")
    monkeypatch.setenv("HI_MOE_OTEL__EXPORTER", "console")
    monkeypatch.setenv("HI_MOE_OTEL__ENDPOINT", "http://127.0.0.1:4318")
    otel = Settings.load().otel
    assert (otel.enabled, otel.exporter, otel.service_name) == (True, "console", "hi-moe")
    monkeypatch.setenv("HI_MOE_OTEL__EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="HI_MOE_OTEL__EXPORTER"):
        Settings.load()


def test_the_endpoint_is_the_collectors_base_url() -> None:
    assert traces_endpoint(None) is None
    assert traces_endpoint("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_endpoint("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_endpoint("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_a_run_with_otel_off_imports_no_opentelemetry(clean_env: Path) -> None:
    out = run_python(
        """
import sys
from typer.testing import CliRunner
from hi_moe.cli import app
result = CliRunner().invoke(app, ["run", "Add two numbers", "--quiet"])
assert result.exit_code == 0, result.output
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    )
    assert out.strip().splitlines()[-1] == "[]"


@pytest.fixture
def without_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on an install without the otel extra: every opentelemetry import fails."""
    for name in [m for m in sys.modules if m.split(".")[0] == "opentelemetry"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)


@pytest.mark.usefixtures("without_otel")
def test_enabled_without_the_extra_is_one_config_error_naming_it(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"pip install 'hi-moe\[otel\]'"):
        sink_from_settings(OtelSettings(enabled=True))
    with pytest.raises(ConfigError, match=r"pip install 'hi-moe\[otel\]'"):
        OtelSink()
    result = runner.invoke(app, ["run", "x"], env={"HI_MOE_OTEL__ENABLED": "true"})
    assert result.exit_code == 2, result.output
    assert "config error" in result.stderr
    assert "pip install 'hi-moe[otel]'" in result.stderr
    assert result.stderr.count("\n") == 1


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent."""

    received: ClassVar[list[tuple[str, ExportTraceServiceRequest]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.received.append((self.path, export))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, ExportTraceServiceRequest]]]]:
    received: list[tuple[str, ExportTraceServiceRequest]] = []
    handler = type("Handler", (Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_hi_moe_run_exports_its_spans_over_otlp_before_it_exits(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    collector: tuple[str, list[tuple[str, ExportTraceServiceRequest]]],
) -> None:
    url, received = collector
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    env = {"HI_MOE_OTEL__ENABLED": "true", "HI_MOE_OTEL__ENDPOINT": url}
    result = runner.invoke(app, ["run", "Sort a list", "--json", "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is still the report alone
    assert received, "nothing was exported"
    assert {path for path, _ in received} == {"/v1/traces"}
    names: list[str] = []
    services = set()
    for _, export in received:
        for resource_spans in export.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                names.extend(span.name for span in scope_spans.spans)
    assert services == {"hi-moe"}
    assert names.count("hi_moe.run") == 1
    assert names.count("hi_moe.step") == len(report["steps"])
    assert "hi_moe.plan" in names
    assert sum(name.startswith("chat ") for name in names) == len(report["steps"]) + 1


def test_hi_moe_batch_prints_a_trace_per_task_with_the_console_exporter(
    clean_env: Path,
) -> None:
    tasks = clean_env / "tasks.jsonl"
    tasks.write_text('{"prompt": "Add two numbers"}\n{"prompt": "Reverse a string"}\n')
    env = {"HI_MOE_OTEL__ENABLED": "true", "HI_MOE_OTEL__EXPORTER": "console"}
    result = runner.invoke(app, ["batch", str(tasks), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == [
        "succeeded",
        "succeeded",
    ]
    assert result.stderr.count('"name": "hi_moe.run"') == 2
    assert '"service.name": "hi-moe"' in result.stderr
