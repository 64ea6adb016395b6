"""OpenTelemetry spans: what the SDK's in-memory exporter receives after
real deliveries through the blueprint."""

from __future__ import annotations

import collections.abc as c
import subprocess
import sys
import textwrap

import pytest
from flask import Flask
from flask.testing import FlaskClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest

from flask_openai_webhooks import log
from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.samples import make_event
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.testing import post_event
from flask_openai_webhooks.tracing import inject
from flask_openai_webhooks.tracing import task_span

from .conftest import SECRET

WRONG_SECRET = b"not-the-secret-of-this-endpoint!"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> c.Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def app(provider: TracerProvider) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(tracing=provider))
    return app


def spans(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = spans(exporter).get(name, [])
    assert len(found) == 1, (name, [s.name for s in exporter.get_finished_spans()])
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def fine(sender: Flask, **extra: object) -> None:
    pass


def broken(sender: Flask, **extra: object) -> None:
    raise RuntimeError("the receiver is broken")


# --------------------------------------------------------------------------
# The spans of one delivery
# --------------------------------------------------------------------------


def test_spans_nest_under_the_server_span_and_carry_the_ids(
    app: Flask,
    client: FlaskClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    tracer = provider.get_tracer("the-app")

    def working(sender: Flask, **extra: object) -> None:
        # A receiver's own span: a child of the active span.
        with tracer.start_as_current_span("receiver-own-work"):
            pass

    event = make_event("batch.completed", data={"id": "batch_traced"})
    with signals.batch_completed.connected_to(working, app):
        # What OpenTelemetry's Flask instrumentation does around the view.
        with tracer.start_as_current_span(
            "POST /webhooks/openai", kind=SpanKind.SERVER
        ):
            response = post_event(client, event, webhook_id="wh_traced")
    assert response.status_code == 200

    server = only(exporter, "POST /webhooks/openai")
    verify = only(exporter, "openai.webhook.verify")
    dispatch = only(exporter, "openai.webhook.dispatch")
    receiver = only(exporter, "openai.webhook.receiver")
    own = only(exporter, "receiver-own-work")
    assert "openai.webhook.delivery" not in spans(exporter)
    assert parent_of(verify) == span_id(server)
    assert parent_of(dispatch) == span_id(server)
    assert parent_of(receiver) == span_id(dispatch)
    assert parent_of(own) == span_id(receiver)
    assert {trace_id(s) for s in (server, verify, dispatch, receiver, own)} == {
        trace_id(server)
    }

    assert dispatch.attributes is not None
    assert dict(dispatch.attributes) == {
        "openai.webhook.id": "wh_traced",
        "openai.webhook.event_id": event["id"],
        "openai.webhook.event_type": "batch.completed",
        "openai.webhook.object_id": "batch_traced",
        "openai.webhook.outcome": "processed",
        "openai.webhook.blueprint": "openai_webhooks",
        "openai.webhook.source": "delivery",
    }
    assert verify.attributes is not None
    assert verify.attributes["openai.webhook.id"] == "wh_traced"
    assert verify.attributes["openai.webhook.event_id"] == event["id"]
    assert verify.attributes["openai.webhook.key_index"] == 0
    assert receiver.attributes is not None
    assert receiver.attributes["openai.webhook.receiver"] == receiver_key(
        signals.batch_completed, working
    )
    assert receiver.attributes["openai.webhook.outcome"] == "ok"
    for span in (verify, dispatch, receiver):
        assert span.status.status_code is StatusCode.UNSET, span.name


def test_an_async_receivers_own_spans_nest_under_its_span(
    app: Flask,
    client: FlaskClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    tracer = provider.get_tracer("the-app")

    async def working(sender: Flask, **extra: object) -> None:
        with tracer.start_as_current_span("async-own-work"):
            pass

    with signals.batch_completed.connected_to(working, app):
        assert post_event(client, "batch.completed").status_code == 200

    own = only(exporter, "async-own-work")
    assert parent_of(own) == span_id(only(exporter, "openai.webhook.receiver"))


def test_without_a_server_span_one_delivery_is_one_trace(
    app: Flask, client: FlaskClient, exporter: InMemorySpanExporter
) -> None:
    with signals.batch_completed.connected_to(fine, app):
        assert post_event(client, "batch.completed").status_code == 200

    root = only(exporter, "openai.webhook.delivery")
    assert root.kind is SpanKind.SERVER
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["openai.webhook.outcome"] == "processed"
    for name in ("openai.webhook.verify", "openai.webhook.dispatch"):
        assert parent_of(only(exporter, name)) == span_id(root), name
    assert {trace_id(s) for s in exporter.get_finished_spans()} == {trace_id(root)}


def test_a_receiver_exception_is_recorded_with_status_error(
    app: Flask, client: FlaskClient, exporter: InMemorySpanExporter
) -> None:
    with (
        signals.batch_completed.connected_to(fine, app),
        signals.batch_completed.connected_to(broken, app),
    ):
        assert post_event(client, "batch.completed").status_code == 500

    by_receiver = {
        s.attributes["openai.webhook.receiver"]: s
        for s in spans(exporter)["openai.webhook.receiver"]
        if s.attributes is not None
    }
    failed = by_receiver[receiver_key(signals.batch_completed, broken)]
    worked = by_receiver[receiver_key(signals.batch_completed, fine)]
    assert failed.status.status_code is StatusCode.ERROR
    assert worked.status.status_code is StatusCode.UNSET
    [recorded] = [e for e in failed.events if e.name == "exception"]
    assert recorded.attributes is not None
    assert str(recorded.attributes["exception.type"]).endswith("RuntimeError")
    assert recorded.attributes["exception.message"] == "the receiver is broken"
    assert failed.attributes is not None
    assert failed.attributes["openai.webhook.outcome"] == "failed"

    dispatch = only(exporter, "openai.webhook.dispatch")
    assert dispatch.status.status_code is StatusCode.ERROR
    assert dispatch.attributes is not None
    assert dispatch.attributes["openai.webhook.outcome"] == "failed"
    root = only(exporter, "openai.webhook.delivery")
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 500


def test_a_forged_delivery_is_not_an_error(
    app: Flask, client: FlaskClient, exporter: InMemorySpanExporter
) -> None:
    with signals.batch_completed.connected_to(fine, app):
        response = post_event(
            client, "batch.completed", secret=WRONG_SECRET, webhook_id="wh_forged"
        )
    assert response.status_code == 400

    verify = only(exporter, "openai.webhook.verify")
    assert verify.status.status_code is StatusCode.UNSET
    assert verify.attributes is not None
    assert verify.attributes["openai.webhook.outcome"] == "rejected"
    assert verify.attributes["openai.webhook.rejection_reason"] == "signature_mismatch"
    # Nothing unverified is recorded as the delivery's id.
    assert "openai.webhook.id" not in verify.attributes
    root = only(exporter, "openai.webhook.delivery")
    assert root.status.status_code is StatusCode.UNSET
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 400
    assert set(spans(exporter)) == {"openai.webhook.verify", "openai.webhook.delivery"}


def test_a_duplicate_runs_no_receiver(
    app: Flask, client: FlaskClient, exporter: InMemorySpanExporter
) -> None:
    with signals.batch_completed.connected_to(fine, app):
        post_event(client, "batch.completed", webhook_id="wh_twice")
        exporter.clear()
        again = post_event(client, "batch.completed", webhook_id="wh_twice")
        assert again.status_code == 200

    dispatch = only(exporter, "openai.webhook.dispatch")
    assert dispatch.attributes is not None
    assert dispatch.attributes["openai.webhook.outcome"] == "duplicate"
    assert "openai.webhook.receiver" not in spans(exporter)


def test_a_replay_is_traced_as_one(
    app: Flask, client: FlaskClient, exporter: InMemorySpanExporter
) -> None:
    failures = [RuntimeError("down the first time")]

    def flaky(sender: Flask, **extra: object) -> None:
        if failures:
            raise failures.pop()

    with signals.batch_completed.connected_to(flaky, app):
        assert (
            post_event(client, "batch.completed", webhook_id="wh_replayed").status_code
            == 500
        )
        exporter.clear()
        assert log.replay("wh_replayed", app=app).ok

    dispatch = only(exporter, "openai.webhook.dispatch")
    assert dispatch.parent is None
    assert dispatch.attributes is not None
    assert dispatch.attributes["openai.webhook.source"] == "replay"
    assert dispatch.attributes["openai.webhook.outcome"] == "processed"
    assert parent_of(only(exporter, "openai.webhook.receiver")) == span_id(dispatch)


def test_metrics_and_tracing_together(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    registry = CollectorRegistry()
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(metrics=registry, tracing=provider))
    with (
        signals.batch_completed.connected_to(broken, app),
        app.test_client() as client,
    ):
        assert post_event(client, "batch.completed").status_code == 500

    assert (
        'openai_webhook_deliveries_total{blueprint="openai_webhooks",'
        'event_type="batch.completed",outcome="failed"} 1.0'
    ) in generate_latest(registry).decode().splitlines()
    receiver = only(exporter, "openai.webhook.receiver")
    assert receiver.status.status_code is StatusCode.ERROR


# --------------------------------------------------------------------------
# Into a task queue
# --------------------------------------------------------------------------


def test_the_trace_travels_into_a_task(
    app: Flask, client: FlaskClient, exporter: InMemorySpanExporter
) -> None:
    """What the task queue does: the receiver that queues a task sends
    :func:`inject`'s carrier along; the worker runs the task in
    :func:`task_span`."""
    state = get_state(app)
    carriers: list[dict[str, str]] = []

    def enqueueing(sender: Flask, **extra: object) -> None:
        carriers.append(inject(state))

    with signals.batch_completed.connected_to(enqueueing, app):
        queued = post_event(client, "batch.completed", webhook_id="wh_queued")
        assert queued.status_code == 200
    [carrier] = carriers
    assert "traceparent" in carrier

    # Later, in a worker: no span is active here.
    assert not trace.get_current_span().get_span_context().is_valid
    with pytest.raises(ValueError, match="the task failed"):
        with task_span(
            "openai.webhook.task",
            carrier,
            {"openai.webhook.id": "wh_queued"},
            state=state,
        ) as span:
            assert span is not None
            assert trace.get_current_span() is span
            raise ValueError("the task failed")

    task = only(exporter, "openai.webhook.task")
    receiver = only(exporter, "openai.webhook.receiver")
    assert task.kind is SpanKind.CONSUMER
    assert parent_of(task) == span_id(receiver)
    assert trace_id(task) == trace_id(receiver)
    assert task.attributes is not None
    assert task.attributes["openai.webhook.id"] == "wh_queued"
    assert task.status.status_code is StatusCode.ERROR


def test_inject_and_task_span_do_nothing_when_tracing_is_off(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    state = get_state(app)

    with provider.get_tracer("the-app").start_as_current_span("active"):
        assert inject(state) == {}
        with task_span("openai.webhook.task", {}, state=state) as span:
            assert span is None
    assert [s.name for s in exporter.get_finished_spans()] == ["active"]


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["maybe", 1, TracerProvider, object()])
def test_an_invalid_setting_fails_at_registration(setting: object) -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_TRACING=setting
    )
    with pytest.raises(RuntimeError, match="(?i)OPENAI_WEBHOOK_TRACING must be true"):
        app.register_blueprint(make_blueprint())


def _python(*parts: str) -> subprocess.CompletedProcess[str]:
    """Run the parts, each dedented, in a fresh interpreter."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


_APP = f"""
    from flask import Flask
    from flask_openai_webhooks import make_blueprint
    from flask_openai_webhooks.testing import post_event

    def create_app(**settings):
        app = Flask("app")
        app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET={SECRET!r}, **settings)
        app.register_blueprint(make_blueprint())
        return app
"""


def test_true_follows_the_global_provider_even_one_set_later() -> None:
    result = _python(
        _APP,
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        app = create_app(OPENAI_WEBHOOK_TRACING=True)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        with app.test_client() as client:
            assert post_event(client, "batch.completed").status_code == 200
        print(sorted(span.name for span in exporter.get_finished_spans()))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(
        sorted(
            [
                "openai.webhook.delivery",
                "openai.webhook.dispatch",
                "openai.webhook.verify",
            ]
        )
    )


def test_without_opentelemetry_the_message_names_the_extra() -> None:
    result = _python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed
        """,
        _APP,
        """
        try:
            create_app(OPENAI_WEBHOOK_TRACING=True)
        except RuntimeError as e:
            print(e)
        from flask_openai_webhooks.tracing import inject, task_span
        # Tracing off: the task queue's calls work without the package.
        print(inject())
        with task_span("task", {"traceparent": "00-ab-cd-01"}) as span:
            print(span)
        """,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "pip install 'Flask-OpenAI-Webhooks[otel]'" in lines[0]
    assert lines[1:] == ["{}", "None"]


def test_with_tracing_on_opentelemetry_is_imported() -> None:
    """The subprocess check of test_metrics would see the package if it
    were imported."""
    result = _python(
        _APP,
        """
        import sys
        create_app(OPENAI_WEBHOOK_TRACING=True)
        print("opentelemetry.trace" in sys.modules)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
