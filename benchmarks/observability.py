"""The "metrics and traces on" case: the blueprint with Prometheus metrics
and OpenTelemetry tracing enabled, judged against the same blueprint with
both off.

Both are what a production app would switch on: the metrics go to a fresh
:class:`prometheus_client.CollectorRegistry` (not the global one, so
nothing else in the process is counted), and the spans to the OpenTelemetry
SDK's :class:`~opentelemetry.sdk.trace.TracerProvider`, installed as the
global provider, with a synchronous processor and an in-memory exporter:
every span is really recorded and exported, with no background thread
competing for the CPU. The exporter is emptied between batches, untimed.

The options are only passed when
:func:`~flask_openai_webhooks.make_blueprint` accepts them; otherwise the
row says why it was not measured.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import inspect
import typing as t

from flask_openai_webhooks import make_blueprint

#: The options of :func:`~flask_openai_webhooks.make_blueprint` this case
#: needs.
OPTIONS = ("metrics", "tracing")


@dataclasses.dataclass
class Enabled:
    """How to turn both on, and how to read and empty the span exporter."""

    #: Makes the blueprint options; each call a fresh registry, since a
    #: registry takes each metric name once.
    options: c.Callable[[], dict[str, t.Any]]
    #: Empties the exporter.
    clear: c.Callable[[], None]
    #: Spans exported since the last :attr:`clear`.
    spans: c.Callable[[], int]


_enabled: Enabled | None = None


def enable() -> Enabled | str:
    """The options that turn metrics and tracing on, or why they cannot be
    turned on. The tracer provider is global, so it is installed once per
    process."""
    global _enabled
    if _enabled is not None:
        return _enabled
    accepted = inspect.signature(make_blueprint).parameters
    missing = [name for name in OPTIONS if name not in accepted]
    if missing:
        return (
            "make_blueprint() has no "
            + " or ".join(f"{name}=" for name in missing)
            + " option yet"
        )
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from prometheus_client import CollectorRegistry
    except ImportError as exc:
        return f"not installed: {exc.name}"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = Enabled(
        options=lambda: {"metrics": CollectorRegistry(), "tracing": True},
        clear=exporter.clear,
        spans=lambda: len(exporter.get_finished_spans()),
    )
    return _enabled
