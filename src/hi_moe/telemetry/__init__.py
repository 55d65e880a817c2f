"""Telemetry: OpenTelemetry spans of runs, stages and requests (the `otel` extra).

`OtelSink` is an event sink (`ProgressMonitor(..., on_event=[OtelSink(tracer_provider=...)])`);
`sink_from_settings(settings.otel)` is the one `[otel]` configures, as `hi-moe run` and
`hi-moe batch` use it. Nothing here imports OpenTelemetry until a sink is made.
"""

from __future__ import annotations

from hi_moe.telemetry.otel import OtelSink
from hi_moe.telemetry.setup import sink_from_settings

__all__ = ["OtelSink", "sink_from_settings"]
