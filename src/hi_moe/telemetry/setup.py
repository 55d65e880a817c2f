"""The tracer provider `[otel]` asks for: the OpenTelemetry SDK, with an OTLP/HTTP exporter or
one that prints spans on stderr. Imported only when tracing is enabled."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from hi_moe.errors import ConfigError
from hi_moe.telemetry.otel import MISSING_EXTRA, OtelSink

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from hi_moe.config import OtelSettings

__all__ = ["sink_from_settings", "tracer_provider", "traces_endpoint"]

TRACES_PATH = "/v1/traces"


def traces_endpoint(endpoint: str | None) -> str | None:
    """`[otel] endpoint` is the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is:
    http://collector:4318 sends to http://collector:4318/v1/traces. None: the exporter's own
    default, or the OTEL_EXPORTER_OTLP_* variables."""
    if endpoint is None:
        return None
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def tracer_provider(settings: OtelSettings) -> TracerProvider:
    """A provider of its own (the global one is left alone) exporting as `settings` say."""
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise ConfigError(MISSING_EXTRA, setting="HI_MOE_OTEL__ENABLED") from None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    if settings.exporter == "console":
        # stderr: stdout is the answer's (`--json`, `--quiet`).
        console = ConsoleSpanExporter(service_name=settings.service_name, out=sys.stderr)
        provider.add_span_processor(SimpleSpanProcessor(console))
        return provider
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(MISSING_EXTRA, setting="HI_MOE_OTEL__ENABLED") from None
    exporter = OTLPSpanExporter(endpoint=traces_endpoint(settings.endpoint))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def sink_from_settings(settings: OtelSettings) -> OtelSink | None:
    """The sink `[otel]` asks for, owning its provider (`close()` flushes and shuts it down),
    or None when tracing is off. `ConfigError` when it is on but the otel extra is missing."""
    if not settings.enabled:
        return None
    return OtelSink(tracer_provider(settings), owns_provider=True)
