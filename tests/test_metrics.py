"""Prometheus metrics: the figures ``prometheus_client`` exposes after real
deliveries through the blueprint, read back from ``generate_latest``."""

from __future__ import annotations

import collections.abc as c
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import generate_latest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from flask_openai_webhooks import log
from flask_openai_webhooks import PermanentFailure
from flask_openai_webhooks import RetryLater
from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.samples import make_event
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.stores.memory import MemoryStore
from flask_openai_webhooks.stores.redis import RedisStore
from flask_openai_webhooks.stores.sqlite import SQLiteStore
from flask_openai_webhooks.testing import post_event

from .conftest import SECRET

BP = "openai_webhooks"
WRONG_SECRET = b"not-the-secret-of-this-endpoint!"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def app(registry: CollectorRegistry) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(metrics=registry))
    return app


Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(registry: CollectorRegistry) -> dict[Sample, float]:
    """Every sample ``generate_latest`` exposes, by name and labels."""
    text = generate_latest(registry).decode()
    found: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """One sample's value, ``None`` when it is not exposed at all."""
    labels.setdefault("blueprint", BP)
    return scrape(registry).get((name, frozenset(labels.items())))


def label_values(registry: CollectorRegistry, name: str, label: str) -> set[str]:
    return {
        dict(labels)[label]
        for (sample, labels) in scrape(registry)
        if sample == name and label in dict(labels)
    }


def fine(sender: Flask, **extra: object) -> None:
    pass


def broken(sender: Flask, **extra: object) -> None:
    raise RuntimeError("the receiver is broken")


def hopeless(sender: Flask, **extra: object) -> None:
    raise PermanentFailure("not ours")


def later(sender: Flask, **extra: object) -> None:
    raise RetryLater(30, "the database is busy")


# --------------------------------------------------------------------------
# The four deliveries of the issue
# --------------------------------------------------------------------------


def test_processed_duplicate_forged_and_failing_deliveries(
    app: Flask, client: FlaskClient, registry: CollectorRegistry
) -> None:
    with (
        signals.batch_completed.connected_to(fine, app),
        signals.response_failed.connected_to(broken, app),
    ):
        assert (
            post_event(client, "batch.completed", webhook_id="wh_1").status_code == 200
        )
        assert (
            post_event(client, "batch.completed", webhook_id="wh_1").status_code == 200
        )
        forged = post_event(client, "batch.completed", secret=WRONG_SECRET)
        assert forged.status_code == 400
        assert post_event(client, "response.failed").status_code == 500

    text = generate_latest(registry).decode()
    for line in (
        'openai_webhook_deliveries_total{blueprint="openai_webhooks",'
        'event_type="batch.completed",outcome="processed"} 1.0',
        'openai_webhook_deliveries_total{blueprint="openai_webhooks",'
        'event_type="batch.completed",outcome="duplicate"} 1.0',
        'openai_webhook_deliveries_total{blueprint="openai_webhooks",'
        'event_type="unknown",outcome="rejected"} 1.0',
        'openai_webhook_deliveries_total{blueprint="openai_webhooks",'
        'event_type="response.failed",outcome="failed"} 1.0',
        'openai_webhook_rejections_total{blueprint="openai_webhooks",'
        'reason="signature_mismatch"} 1.0',
    ):
        assert line in text.splitlines(), line

    failing = receiver_key(signals.response_failed, broken)
    working = receiver_key(signals.batch_completed, fine)
    assert (
        value(
            registry,
            "openai_webhook_receiver_failures_total",
            receiver=failing,
            kind="failed",
        )
        == 1
    )
    assert label_values(
        registry, "openai_webhook_receiver_failures_total", "receiver"
    ) == {failing}
    # Each receiver ran once: the duplicate ran nothing.
    for key in (failing, working):
        assert (
            value(
                registry, "openai_webhook_receiver_duration_seconds_count", receiver=key
            )
            == 1
        )
    # One request duration per answer, by outcome.
    for outcome in ("processed", "duplicate", "rejected", "failed"):
        assert (
            value(
                registry,
                "openai_webhook_request_duration_seconds_count",
                outcome=outcome,
            )
            == 1
        ), outcome
    # Verified deliveries only: the forged one tells nothing about clocks.
    # With negative buckets, prometheus_client exposes no _count: +Inf is it.
    skew = value(registry, "openai_webhook_timestamp_skew_seconds_bucket", le="+Inf")
    assert skew == 3
    assert value(registry, "openai_webhook_secret_matches_total", key_index="0") == 3
    assert (
        value(
            registry,
            "openai_webhook_event_age_seconds_count",
            event_type="batch.completed",
        )
        == 2
    )
    # The memory store does no I/O and cannot fail: it is not timed.
    assert not label_values(
        registry, "openai_webhook_store_duration_seconds_count", "operation"
    )


def test_label_names_are_the_contract(registry: CollectorRegistry, app: Flask) -> None:
    """Label names are what dashboards and alerts are written against."""
    with (
        signals.batch_completed.connected_to(broken, app),
        app.test_client() as client,
    ):
        post_event(client, "batch.completed")
        post_event(client, "batch.completed", secret=WRONG_SECRET)
    found: dict[str, set[str]] = {}
    for (name, labels), _ in scrape(registry).items():
        found.setdefault(name, set()).update(k for k, _ in labels if k != "le")
    assert found["openai_webhook_deliveries_total"] == {
        "blueprint",
        "event_type",
        "outcome",
    }
    assert found["openai_webhook_rejections_total"] == {"blueprint", "reason"}
    assert found["openai_webhook_receiver_failures_total"] == {
        "blueprint",
        "receiver",
        "kind",
    }
    assert found["openai_webhook_receiver_duration_seconds_bucket"] == {
        "blueprint",
        "receiver",
    }
    assert found["openai_webhook_request_duration_seconds_bucket"] == {
        "blueprint",
        "outcome",
    }
    assert found["openai_webhook_event_age_seconds_bucket"] == {
        "blueprint",
        "event_type",
    }
    assert found["openai_webhook_timestamp_skew_seconds_bucket"] == {"blueprint"}
    assert found["openai_webhook_secret_matches_total"] == {"blueprint", "key_index"}


@pytest.mark.parametrize(
    ("receiver", "status_code", "outcome", "kind"),
    [
        (hopeless, 200, "gave_up", "gave_up"),
        (later, 503, "retry_later", "retry_later"),
        (broken, 500, "failed", "failed"),
    ],
)
def test_each_receiver_failure_has_its_outcome_and_kind(
    app: Flask,
    client: FlaskClient,
    registry: CollectorRegistry,
    receiver: c.Callable[..., None],
    status_code: int,
    outcome: str,
    kind: str,
) -> None:
    with signals.batch_completed.connected_to(receiver, app):
        assert post_event(client, "batch.completed").status_code == status_code

    key = receiver_key(signals.batch_completed, receiver)
    assert label_values(registry, "openai_webhook_deliveries_total", "outcome") == {
        outcome
    }
    assert (
        value(
            registry,
            "openai_webhook_deliveries_total",
            event_type="batch.completed",
            outcome=outcome,
        )
        == 1
    )
    assert (
        value(
            registry, "openai_webhook_receiver_failures_total", receiver=key, kind=kind
        )
        == 1
    )
    # Not processed: the "no batch event for a day" alert keeps watching.
    assert (
        label_values(
            registry, "openai_webhook_last_processed_timestamp_seconds", "event_type"
        )
        == set()
    )


def test_ack_mode_counts_a_failure_as_gave_up(registry: CollectorRegistry) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(metrics=registry, on_error="ack"))
    with (
        signals.batch_completed.connected_to(broken, app),
        app.test_client() as client,
    ):
        assert post_event(client, "batch.completed").status_code == 200

    assert label_values(registry, "openai_webhook_deliveries_total", "outcome") == {
        "gave_up"
    }


# --------------------------------------------------------------------------
# Closed label sets
# --------------------------------------------------------------------------


def test_unknown_types_and_ids_never_become_label_values(
    app: Flask, client: FlaskClient, registry: CollectorRegistry
) -> None:
    sent: list[str] = []
    for n in range(100):
        event_type = f"novel{n}.thing_{time.monotonic_ns()}"
        event = make_event(event_type, allow_unknown=True)
        webhook_id = f"wh_unknown_{n}_{time.monotonic_ns()}"
        sent += [event_type, webhook_id, event["id"], event["data"]["id"]]
        assert post_event(client, event, webhook_id=webhook_id).status_code == 200

    assert label_values(registry, "openai_webhook_deliveries_total", "event_type") == {
        "unknown"
    }
    # Whether any receiver is connected elsewhere decides between the two.
    counted = {
        dict(labels)["outcome"]: n
        for (name, labels), n in scrape(registry).items()
        if name == "openai_webhook_deliveries_total"
    }
    assert sum(counted.values()) == 100
    assert set(counted) <= {"processed", "unhandled"}
    assert label_values(
        registry, "openai_webhook_event_age_seconds_count", "event_type"
    ) == {"unknown"}
    every_label_value = {v for _, labels in scrape(registry) for _, v in labels}
    assert not every_label_value & set(sent)
    assert not any("wh_" in v or "evt_" in v for v in every_label_value)


def test_a_forged_type_is_not_trusted(
    app: Flask, client: FlaskClient, registry: CollectorRegistry
) -> None:
    """A refused delivery's type is whatever the sender wrote: it is counted
    as unknown, whatever it claims to be."""
    post_event(client, "batch.completed", secret=WRONG_SECRET)
    post_event(client, make_event("x.y", allow_unknown=True), secret=WRONG_SECRET)

    assert label_values(registry, "openai_webhook_deliveries_total", "event_type") == {
        "unknown"
    }
    assert (
        value(
            registry,
            "openai_webhook_deliveries_total",
            event_type="unknown",
            outcome="rejected",
        )
        == 2
    )


@pytest.mark.parametrize(
    ("headers", "body", "reason", "status_code"),
    [
        ({"webhook-signature": ""}, None, "missing_header", 400),
        ({"webhook-timestamp": "soon"}, None, "invalid_timestamp", 400),
        ({}, b"not json", "invalid_payload", 400),
        ({}, b"x" * (64 * 1024 + 1), "body_too_large", 413),
    ],
)
def test_rejections_are_counted_by_reason(
    app: Flask,
    client: FlaskClient,
    registry: CollectorRegistry,
    headers: dict[str, str],
    body: bytes | None,
    reason: str,
    status_code: int,
) -> None:
    response = post_event(
        client, "batch.completed" if body is None else body, headers=headers
    )
    assert response.status_code == status_code
    assert response.get_json()["error"] == reason

    assert value(registry, "openai_webhook_rejections_total", reason=reason) == 1
    assert label_values(registry, "openai_webhook_rejections_total", "reason") == {
        reason
    }


# --------------------------------------------------------------------------
# Clocks, secrets, freshness
# --------------------------------------------------------------------------


def test_event_age_and_timestamp_skew(
    app: Flask, client: FlaskClient, registry: CollectorRegistry
) -> None:
    now = int(time.time())
    post_event(
        client,
        "batch.completed",
        created_at=now - 2 * 3600,
        timestamp=now - 100,
    )
    post_event(client, "batch.completed", created_at=now - 2, timestamp=now + 100)

    def bucket(name: str, le: str, **labels: str) -> float | None:
        return value(registry, f"openai_webhook_{name}_bucket", le=le, **labels)

    batch = {"event_type": "batch.completed"}
    assert bucket("event_age_seconds", "15.0", **batch) == 1
    assert bucket("event_age_seconds", "3600.0", **batch) == 1
    assert bucket("event_age_seconds", "10800.0", **batch) == 2
    # 100 s behind the sender, then 100 s ahead.
    assert bucket("timestamp_skew_seconds", "-300.0") == 0
    assert bucket("timestamp_skew_seconds", "-60.0") == 1
    assert bucket("timestamp_skew_seconds", "60.0") == 1
    assert bucket("timestamp_skew_seconds", "300.0") == 2


def test_the_matching_secret_is_counted_for_rotation(
    registry: CollectorRegistry,
) -> None:
    new = b"the-new-secret-after-rotation!!!"
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=[new, SECRET])
    app.register_blueprint(make_blueprint(metrics=registry))
    with app.test_client() as client:
        post_event(client, "batch.completed", secret=SECRET)
        post_event(client, "batch.completed", secret=SECRET)
        post_event(client, "batch.completed", secret=new)

    assert value(registry, "openai_webhook_secret_matches_total", key_index="0") == 1
    assert value(registry, "openai_webhook_secret_matches_total", key_index="1") == 2


def test_last_processed_time_per_event_type(
    app: Flask, client: FlaskClient, registry: CollectorRegistry
) -> None:
    with signals.batch_completed.connected_to(fine, app):
        before = time.time()
        post_event(client, "batch.completed")
        after = time.time()
    with signals.batch_failed.connected_to(broken, app):
        post_event(client, "batch.failed")

    last = value(
        registry,
        "openai_webhook_last_processed_timestamp_seconds",
        event_type="batch.completed",
    )
    assert last is not None and before <= last <= after
    assert label_values(
        registry, "openai_webhook_last_processed_timestamp_seconds", "event_type"
    ) == {"batch.completed"}


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


def test_store_errors_are_counted_by_operation(registry: CollectorRegistry) -> None:
    """A Redis store on a port nothing listens on: the real client fails.
    (``eval.run.succeeded`` is not reconciled, so claiming is the first
    store call.)"""
    store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.5)
    try:
        app = Flask(__name__)
        app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
        app.register_blueprint(make_blueprint(metrics=registry, store=store))
        with app.test_client() as client:
            assert post_event(client, "eval.run.succeeded").status_code == 503
            assert post_event(client, "eval.run.succeeded").status_code == 503
            forged = post_event(client, "batch.completed", secret=WRONG_SECRET)
            assert forged.status_code == 400
    finally:
        store.close()

    assert value(registry, "openai_webhook_store_errors_total", operation="claim") == 2
    assert value(registry, "openai_webhook_store_errors_total", operation="reject") == 1
    assert (
        value(
            registry,
            "openai_webhook_deliveries_total",
            event_type="eval.run.succeeded",
            outcome="store_unavailable",
        )
        == 2
    )
    assert (
        value(
            registry, "openai_webhook_store_duration_seconds_count", operation="claim"
        )
        == 2
    )


def test_store_calls_are_timed_by_operation(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    store = SQLiteStore(str(tmp_path / "deliveries.db"))
    try:
        app = Flask(__name__)
        app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
        app.register_blueprint(make_blueprint(metrics=registry, store=store))
        with (
            signals.eval_run_succeeded.connected_to(fine, app),
            app.test_client() as client,
        ):
            post_event(client, "eval.run.succeeded", webhook_id="wh_1")
            post_event(client, "eval.run.succeeded", webhook_id="wh_1")
            post_event(client, "eval.run.succeeded", secret=WRONG_SECRET)
    finally:
        store.close()

    # Two claims (the forged one never got there), one finish (the
    # duplicate settles nothing), one refusal counted; nothing failed.
    for operation, calls in (("claim", 2), ("finish", 1), ("reject", 1)):
        assert (
            value(
                registry,
                "openai_webhook_store_duration_seconds_count",
                operation=operation,
            )
            == calls
        ), operation
    assert not label_values(registry, "openai_webhook_store_errors_total", "operation")
    names = {
        k
        for (name, labels) in scrape(registry)
        if name == "openai_webhook_store_duration_seconds_bucket"
        for k, _ in labels
    }
    assert names == {"blueprint", "operation", "le"}


def test_the_configured_store_stays_in_the_state(app: Flask) -> None:
    """Only the delivery path calls the timed proxy: code that checks the
    store's type or uses its own methods sees the configured store."""
    assert isinstance(get_state(app).store, MemoryStore)


def test_a_replay_counts_receiver_runs_not_deliveries(
    app: Flask, client: FlaskClient, registry: CollectorRegistry
) -> None:
    with signals.batch_completed.connected_to(broken, app):
        post_event(client, "batch.completed", webhook_id="wh_replayed")
    with signals.batch_completed.connected_to(fine, app):
        with app.app_context():
            assert log.replay("wh_replayed", app=app).ok

    deliveries = {
        labels: n
        for (name, labels), n in scrape(registry).items()
        if name == "openai_webhook_deliveries_total"
    }
    assert list(deliveries.values()) == [1]
    for fn in (broken, fine):
        key = receiver_key(signals.batch_completed, fn)
        assert (
            value(
                registry, "openai_webhook_receiver_duration_seconds_count", receiver=key
            )
            == 1
        )


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def test_two_blueprints_and_two_apps_share_one_registry(
    registry: CollectorRegistry,
) -> None:
    def create_app() -> Flask:
        app = Flask(__name__)
        app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
        app.register_blueprint(make_blueprint(name="first", metrics=registry))
        app.register_blueprint(
            make_blueprint(name="second", metrics=registry, url_prefix="/second")
        )
        return app

    apps = [create_app(), create_app()]
    for app in apps:
        with app.test_client() as client:
            post_event(client, "batch.completed", blueprint="first")
            post_event(client, "batch.completed", blueprint="second")
            post_event(client, "batch.completed", blueprint="second")

    for blueprint, count in (("first", 2), ("second", 4)):
        assert (
            value(
                registry,
                "openai_webhook_secret_matches_total",
                blueprint=blueprint,
                key_index="0",
            )
            == count
        )


def test_true_uses_the_default_registry() -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_METRICS=True
    )
    name = f"default_registry_{time.monotonic_ns()}"
    app.register_blueprint(make_blueprint(name=name))
    with app.test_client() as client:
        post_event(client, "batch.completed", secret=WRONG_SECRET)

    assert (
        value(
            REGISTRY,
            "openai_webhook_rejections_total",
            blueprint=name,
            reason="signature_mismatch",
        )
        == 1
    )


def test_off_by_default_and_false_overrides_the_config() -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    app.config["OPENAI_WEBHOOK_METRICS"] = True
    app.register_blueprint(make_blueprint(name="off", metrics=False, url_prefix="/b"))
    app.register_blueprint(make_blueprint(name="on", url_prefix="/c"))

    assert get_state(app, "openai_webhooks").observer is None
    assert get_state(app, "off").observer is None
    on = get_state(app, "on").observer
    assert on is not None and on.metrics is not None and on.tracing is None


@pytest.mark.parametrize("setting", ["maybe", 1, CollectorRegistry, object()])
def test_an_invalid_setting_fails_at_registration(setting: object) -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_METRICS=setting
    )
    with pytest.raises(RuntimeError, match="(?i)OPENAI_WEBHOOK_METRICS must be true"):
        app.register_blueprint(make_blueprint())


def test_a_name_taken_on_the_registry_is_a_clear_error(
    registry: CollectorRegistry,
) -> None:
    Counter("openai_webhook_deliveries", "someone else's", registry=registry)
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)

    with pytest.raises(RuntimeError, match="cannot register the webhook metrics"):
        app.register_blueprint(make_blueprint(metrics=registry))


def _python(
    *parts: str,
    args: c.Sequence[str] = (),
    env: c.Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the parts, each dedented, in a fresh interpreter."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
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


def test_without_prometheus_client_the_message_names_the_extra() -> None:
    result = _python(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if not installed
        """,
        _APP,
        """
        try:
            create_app(OPENAI_WEBHOOK_METRICS=True)
        except RuntimeError as e:
            print(e)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'Flask-OpenAI-Webhooks[prometheus]'" in result.stdout


def test_with_both_off_neither_package_is_imported() -> None:
    result = _python(
        _APP,
        """
        import sys
        app = create_app()
        with app.test_client() as client:
            assert post_event(client, "batch.completed").status_code == 200
            forged = post_event(client, "batch.completed", secret=b"x" * 32)
            assert forged.status_code == 400
        loaded = [
            name for name in sys.modules
            if name.split(".")[0] in ("prometheus_client", "opentelemetry")
        ]
        print(loaded)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_with_metrics_on_prometheus_client_is_imported() -> None:
    """The check above would see the package if it were imported."""
    result = _python(
        _APP,
        """
        import sys
        create_app(OPENAI_WEBHOOK_METRICS=True)
        print("prometheus_client" in sys.modules)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set (gunicorn -w N), custom collectors
    are not supported: the figures go through prometheus_client's metric
    objects, which every worker writes to files that one scrape adds up."""
    worker = (
        """
        import sys
        """,
        _APP,
        """
        app = create_app(OPENAI_WEBHOOK_METRICS=True)
        with app.test_client() as client:
            for _ in range(int(sys.argv[1])):
                assert post_event(client, "batch.completed").status_code == 200
            forged = post_event(client, "batch.completed", secret=b"x" * 32)
            assert forged.status_code == 400
        """,
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for deliveries in (2, 3):
        result = _python(*worker, args=[str(deliveries)], env=env)
        assert result.returncode == 0, result.stderr

    scrape_code = """
        import os
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
        print(generate_latest(registry).decode())
    """
    result = _python(scrape_code, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for line in (
        'openai_webhook_deliveries_total{blueprint="openai_webhooks",'
        'event_type="batch.completed",outcome="unhandled"} 5.0',
        'openai_webhook_rejections_total{blueprint="openai_webhooks",'
        'reason="signature_mismatch"} 2.0',
        'openai_webhook_secret_matches_total{blueprint="openai_webhooks",'
        'key_index="0"} 5.0',
    ):
        assert line in lines, (line, result.stdout)


@pytest.mark.parametrize("off", ["false", "False", "0", "off", "no", "", 0, False])
def test_metrics_and_tracing_turned_off_by_text_stay_off(off: object) -> None:
    """A newcomer's FLASK_OPENAI_WEBHOOK_METRICS=False (or 0, off) means
    off, never "on, and the package is missing"."""
    from flask_openai_webhooks.state import get_state

    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_METRICS=off,
        OPENAI_WEBHOOK_TRACING=off,
    )
    app.register_blueprint(make_blueprint())
    assert get_state(app).observer is None


def test_metrics_switch_refuses_other_text() -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_METRICS="maybe"
    )
    with pytest.raises(RuntimeError, match="OPENAI_WEBHOOK_METRICS must be true or"):
        app.register_blueprint(make_blueprint())
