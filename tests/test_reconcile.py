"""Tests for :mod:`flask_openai_webhooks.reconcile`: the real ``openai``
SDK lists and retrieves objects from the stub API of
:mod:`tests.stub_openai`, and the events are processed on real stores.
"""

from __future__ import annotations

import collections.abc as c
import logging
import pathlib
import secrets
import subprocess
import sys
import threading
import time
import typing as t

import openai
import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_openai_webhooks import log
from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.errors import WebhookPayloadError
from flask_openai_webhooks.models import object_id_of
from flask_openai_webhooks.models import WebhookEvent
from flask_openai_webhooks.process import RECONCILED_TYPES
from flask_openai_webhooks.reconcile import BATCH_LOOKBACK
from flask_openai_webhooks.reconcile import ClientConfigError
from flask_openai_webhooks.reconcile import expect_response
from flask_openai_webhooks.reconcile import EXPECTED_RESPONSE_TYPE
from flask_openai_webhooks.reconcile import is_reconciled
from flask_openai_webhooks.reconcile import reconcile
from flask_openai_webhooks.reconcile import Reconciled
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.stores import DeliveryRecord
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores import HistoryEntry
from flask_openai_webhooks.stores.memory import MemoryStore
from flask_openai_webhooks.testing import post_event

from . import stub_openai as api
from .conftest import SECRET
from .services import fresh_database
from .services import require_redis
from .stub_openai import StubOpenAI

DAY = 86400
KINDS = ["memory", "sqlite", "redis", "postgresql", "mariadb"]


class Store(DeliveryStore, t.Protocol):
    def close(self) -> None: ...


# --- Fixtures ----------------------------------------------------------------


@pytest.fixture
def stub() -> c.Iterator[StubOpenAI]:
    with api.serve() as stub:
        yield stub


@pytest.fixture
def openai_client(stub: StubOpenAI) -> c.Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stub.base_url, api_key="sk-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> c.Iterator[Store]:
    """Every backend, as a worker of a real deployment would use it."""
    kind: str = request.param
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        from flask_openai_webhooks.stores.sqlite import SQLiteStore

        sqlite = SQLiteStore(tmp_path / "log.db")
        yield sqlite
        sqlite.close()
    elif kind == "redis":
        import redis

        from flask_openai_webhooks.stores.redis import RedisStore

        url = require_redis()
        prefix = f"test-owh-reconcile:{secrets.token_hex(6)}:"
        redis_store = RedisStore(url, prefix=prefix)
        yield redis_store
        redis_store.close()
        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    else:
        from flask_openai_webhooks.stores.sql import SQLStore

        with fresh_database(kind) as url:
            sql = SQLStore(url)
            try:
                yield sql
            finally:
                sql.close()


def make_app(store: DeliveryStore | str, client: t.Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE=store,
        OPENAI_WEBHOOK_CLIENT=client,
    )
    app.register_blueprint(make_blueprint())
    return app


@pytest.fixture
def app(openai_client: openai.OpenAI) -> Flask:
    """The memory store; the client from ``OPENAI_WEBHOOK_CLIENT``.
    pytest-flask's ``client`` posts to it."""
    return make_app("memory", openai_client)


@pytest.fixture
def store_app(store: Store, openai_client: openai.OpenAI) -> Flask:
    """The same on every backend."""
    return make_app(store, openai_client)


# --- Helpers -----------------------------------------------------------------


class Receiver:
    """Records the calls it gets; raises ``fail_with`` if set."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls: list[tuple[WebhookEvent, str]] = []
        self.fail_with = fail_with

    def __call__(
        self, sender: Flask, *, event: WebhookEvent, webhook_id: str, **extra: t.Any
    ) -> None:
        self.calls.append((event, webhook_id))
        if self.fail_with is not None:
            raise self.fail_with


def ago(seconds: float) -> int:
    return int(time.time() - seconds)


def finished_batch(
    batch_id: str,
    status: str = "completed",
    *,
    created: int | None = None,
    finished: int | None = None,
) -> dict[str, t.Any]:
    """A batch created two hours ago (or at ``created``) that reached
    ``status`` an hour ago (or at ``finished``)."""
    body = api.batch(batch_id, status)
    created = ago(2 * 3600) if created is None else created
    body.update(
        created_at=created, in_progress_at=created + 10, expires_at=created + DAY
    )
    stamp = {
        "completed": "completed_at",
        "failed": "failed_at",
        "expired": "expired_at",
        "cancelled": "cancelled_at",
    }.get(status)
    if stamp is not None:
        body[stamp] = ago(3600) if finished is None else finished
    return body


def response(
    response_id: str, status: str, completed_at: int | None
) -> dict[str, t.Any]:
    body = api.response(response_id)
    body.update(status=status, completed_at=completed_at, created_at=ago(600))
    return body


def logged(app: Flask, webhook_id: str) -> DeliveryRecord:
    record = get_state(app).store.get(webhook_id)
    assert record is not None, webhook_id
    return record


def everything(app: Flask) -> list[DeliveryRecord]:
    return list(log.list_deliveries(limit=1000, app=app).records)


def since_yesterday() -> float:
    return time.time() - DAY


# --- Importing ---------------------------------------------------------------


def test_import_does_not_load_openai() -> None:
    code = (
        "import sys, flask_openai_webhooks.reconcile,"
        " flask_openai_webhooks.cli_reconcile; print('openai' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# --- A missed batch ----------------------------------------------------------


def test_missed_batch_is_sent_once_and_logged_as_reconciled(
    store_app: Flask, stub: StubOpenAI
) -> None:
    body = stub.add_batch(finished_batch("batch_1"))
    receiver = Receiver()

    with signals.batch_completed.connected_to(receiver, store_app):
        sent = reconcile(since=since_yesterday(), app=store_app)
        again = reconcile(since=since_yesterday(), app=store_app)

    webhook_id = "reconcile:batch.completed:batch_1"
    [item] = sent
    assert item.event_type == "batch.completed"
    assert item.object_id == "batch_1"
    assert item.finished_at == body["completed_at"]
    assert item.webhook_id == webhook_id
    assert item.outcome is not None
    assert item.outcome.name == "processed"
    assert item.ok
    assert again == []
    [(event, received_id)] = receiver.calls
    assert received_id == webhook_id
    assert is_reconciled(received_id)
    assert event.type == "batch.completed"
    assert object_id_of(event) == "batch_1"
    assert event.created_at == body["completed_at"]
    assert event.id is not None and event.id.startswith("evt_reconciled_")
    record = logged(store_app, webhook_id)
    assert record.source == "reconcile"
    assert record.status == "processed"
    assert record.object_id == "batch_1"
    assert record.event_id == event.id
    assert [(h.source, h.result) for h in record.history] == [
        ("reconcile", "processed")
    ]


def test_real_delivery_after_reconcile_is_a_duplicate(
    store_app: Flask, stub: StubOpenAI
) -> None:
    stub.add_batch(finished_batch("batch_1"))
    receiver = Receiver()
    client = store_app.test_client()

    with signals.batch_completed.connected_to(receiver, store_app):
        [item] = reconcile(since=since_yesterday(), app=store_app)
        first = post_event(
            client, "batch.completed", data={"id": "batch_1"}, webhook_id="wh_real"
        )
        retry = post_event(
            client, "batch.completed", data={"id": "batch_1"}, webhook_id="wh_real"
        )

    assert first.status_code == 200
    assert first.json == {"status": "duplicate"}
    assert retry.json == {"status": "duplicate"}
    assert len(receiver.calls) == 1
    # Counted on the reconciled record; no record of its own.
    assert get_state(store_app).store.get("wh_real") is None
    record = logged(store_app, item.webhook_id)
    assert record.attempts == 3
    assert [(h.source, h.result, h.status_code) for h in record.history] == [
        ("reconcile", "processed", None),
        ("delivery", "duplicate", 200),
        ("delivery", "duplicate", 200),
    ]


def test_nothing_missing_sends_nothing(store_app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1"))
    stub.add_batch(finished_batch("batch_2", "in_progress"))
    stub.add_batch(
        finished_batch("batch_3", created=ago(2 * DAY), finished=ago(DAY + 3600))
    )
    receiver = Receiver()

    with signals.batch_completed.connected_to(receiver, store_app):
        response = post_event(
            store_app.test_client(), "batch.completed", data={"id": "batch_1"}
        )
        sent = reconcile(since=since_yesterday(), app=store_app)

    assert response.json == {"status": "processed"}
    assert sent == []
    assert len(receiver.calls) == 1
    assert not is_reconciled(receiver.calls[0][1])
    assert len(everything(store_app)) == 1


def test_dry_run_sends_and_writes_nothing(store_app: Flask, stub: StubOpenAI) -> None:
    body = stub.add_batch(finished_batch("batch_1"))
    receiver = Receiver()

    with signals.batch_completed.connected_to(receiver, store_app):
        sent = reconcile(since=since_yesterday(), dry_run=True, app=store_app)

    assert sent == [
        Reconciled(
            "batch.completed",
            "batch_1",
            body["completed_at"],
            "reconcile:batch.completed:batch_1",
        )
    ]
    assert not sent[0].ok
    assert receiver.calls == []
    assert everything(store_app) == []


def test_each_terminal_state_in_the_window_oldest_first(
    app: Flask, stub: StubOpenAI
) -> None:
    # Created before the window, finished inside it: found.
    stub.add_batch(finished_batch("b_old", created=ago(30 * 3600), finished=ago(5)))
    stub.add_batch(finished_batch("b_failed", "failed", finished=ago(400)))
    stub.add_batch(finished_batch("b_expired", "expired", finished=ago(300)))
    stub.add_batch(finished_batch("b_cancelled", "cancelled", finished=ago(200)))
    for status in ("validating", "in_progress", "finalizing", "cancelling"):
        stub.add_batch(finished_batch(f"b_{status}", status))
    # Finished before the window.
    stub.add_batch(finished_batch("b_before", finished=ago(DAY + 60)))

    sent = reconcile(since=since_yesterday(), dry_run=True, app=app)

    assert [(s.event_type, s.object_id) for s in sent] == [
        ("batch.failed", "b_failed"),
        ("batch.expired", "b_expired"),
        ("batch.cancelled", "b_cancelled"),
        ("batch.completed", "b_old"),
    ]


def test_batch_listing_stops_past_the_lookback(app: Flask, stub: StubOpenAI) -> None:
    since = since_yesterday()
    too_old = int(since - BATCH_LOOKBACK - 60)
    # Listed newest first: added last.
    for n in range(150):
        stub.add_batch(finished_batch(f"b_old_{n}", created=too_old, finished=too_old))
    for n in range(100):
        stub.add_batch(finished_batch(f"b_new_{n}"))

    sent = reconcile(since=since, dry_run=True, app=app)

    assert len(sent) == 100
    # The second page holds the first batch created too early: no third.
    assert len(stub.requests_to("/v1/batches")) == 2


def test_fine_tuning_jobs(app: Flask, stub: StubOpenAI) -> None:
    succeeded = api.fine_tuning_job("ftjob-ok")
    succeeded.update(created_at=ago(5 * 3600), finished_at=ago(3600))
    failed = api.fine_tuning_job("ftjob-bad", "failed")
    failed.update(created_at=ago(2 * 3600))
    running = api.fine_tuning_job("ftjob-running", "running")
    running.update(created_at=ago(3600))
    for job in (succeeded, failed, running):
        stub.add_fine_tuning_job(job)
    receiver = Receiver()

    with signals.fine_tuning_job_succeeded.connected_to(receiver, app):
        sent = reconcile(since=since_yesterday(), type_pattern="fine_tuning.*", app=app)

    assert [(s.event_type, s.object_id, s.finished_at) for s in sent] == [
        # No finished_at: the job's created_at stands in.
        ("fine_tuning.job.failed", "ftjob-bad", failed["created_at"]),
        ("fine_tuning.job.succeeded", "ftjob-ok", succeeded["finished_at"]),
    ]
    assert [object_id_of(event) for event, _ in receiver.calls] == ["ftjob-ok"]
    # The pattern left batches out: they were not even listed.
    assert stub.requests_to("/v1/batches") == []


def test_type_pattern_filters_batches(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("b_done"))
    stub.add_batch(finished_batch("b_failed", "failed"))

    sent = reconcile(
        since=since_yesterday(), type_pattern="batch.failed", dry_run=True, app=app
    )

    assert [s.object_id for s in sent] == ["b_failed"]
    assert stub.requests_to("/v1/fine_tuning/jobs") == []


@pytest.mark.parametrize("pattern", ["video.*", "eval.run.*", "batch.created"])
def test_type_pattern_matching_nothing_reconcilable(app: Flask, pattern: str) -> None:
    with pytest.raises(ValueError, match="matches no event type"):
        reconcile(since=since_yesterday(), type_pattern=pattern, app=app)


def test_since_is_a_unix_time(app: Flask, stub: StubOpenAI) -> None:
    with pytest.raises(ValueError, match="not a Unix time"):
        reconcile(since=DAY, app=app)

    assert stub.requests == []


def test_reconciled_types_are_the_terminal_states() -> None:
    assert RECONCILED_TYPES == {
        *(f"batch.{s}" for s in ("completed", "failed", "expired", "cancelled")),
        *(f"fine_tuning.job.{s}" for s in ("succeeded", "failed", "cancelled")),
        *(f"response.{s}" for s in ("completed", "failed", "cancelled", "incomplete")),
    }


# --- Failures and concurrency ------------------------------------------------


def test_failed_receiver_then_real_delivery_runs_only_what_failed(
    store_app: Flask, stub: StubOpenAI
) -> None:
    stub.add_batch(finished_batch("batch_1"))
    good = Receiver()
    flaky = Receiver(fail_with=RuntimeError("database down"))

    with (
        signals.batch_completed.connected_to(good, store_app),
        signals.batch_completed.connected_to(flaky, store_app),
    ):
        [item] = reconcile(since=since_yesterday(), app=store_app)
        flaky.fail_with = None
        # Not sent again: it is in the log, to be replayed or redelivered.
        assert reconcile(since=since_yesterday(), app=store_app) == []
        answer = post_event(
            store_app.test_client(), "batch.completed", data={"id": "batch_1"}
        )

    assert item.outcome is not None
    assert item.outcome.name == "receiver_failed"
    assert not item.ok
    assert answer.json == {"status": "processed"}
    assert len(good.calls) == 1
    assert len(flaky.calls) == 2
    # The second run, for the real delivery, is logged on the same record.
    assert [webhook_id for _, webhook_id in flaky.calls] == [item.webhook_id] * 2
    record = logged(store_app, item.webhook_id)
    assert record.status == "processed"
    assert [(h.source, h.result) for h in record.history] == [
        ("reconcile", "failed"),
        ("delivery", "processed"),
    ]


def test_real_delivery_while_reconcile_runs_is_in_flight(
    app: Flask, client: FlaskClient, stub: StubOpenAI
) -> None:
    """The reconciled record holds the lease while its receivers run: the
    real delivery gets a 409 and OpenAI retries it later, as for a retry
    that races the first delivery."""
    stub.add_batch(finished_batch("batch_1"))
    answers: list[tuple[int, t.Any]] = []
    nested: list[list[Reconciled]] = []

    def receiver(sender: Flask, **extra: t.Any) -> None:
        answer = post_event(client, "batch.completed", data={"id": "batch_1"})
        answers.append((answer.status_code, answer.json))
        nested.append(reconcile(since=since_yesterday(), app=app))

    with signals.batch_completed.connected_to(receiver, app):
        sent = reconcile(since=since_yesterday(), app=app)
        later = post_event(client, "batch.completed", data={"id": "batch_1"})

    assert len(sent) == 1
    assert answers == [
        (
            409,
            {
                "error": "in_flight",
                "message": "this webhook-id is being processed by another"
                " request; retry later",
            },
        )
    ]
    assert nested == [[]]
    assert later.json == {"status": "duplicate"}


def test_concurrent_runs_send_once(store_app: Flask, stub: StubOpenAI) -> None:
    for n in range(5):
        stub.add_batch(finished_batch(f"batch_{n}"))
    receiver = Receiver()
    results: list[list[Reconciled]] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        results.append(reconcile(since=since_yesterday(), app=store_app))

    with signals.batch_completed.connected_to(receiver, store_app):
        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(results) == 4
    assert sorted(str(object_id_of(event)) for event, _ in receiver.calls) == [
        f"batch_{n}" for n in range(5)
    ]
    outcomes = [
        (item.object_id, item.outcome.name if item.outcome else None)
        for result in results
        for item in result
    ]
    # Each batch was processed by exactly one run; a run that lost the race
    # saw it logged (and skipped it) or found it leased or settled.
    assert sorted(o for o, name in outcomes if name == "processed") == [
        f"batch_{n}" for n in range(5)
    ]
    assert {name for _, name in outcomes} <= {"processed", "in_flight", "duplicate"}


# --- Expected responses ------------------------------------------------------


def test_expected_response_is_sent_once_it_finishes(
    store_app: Flask, stub: StubOpenAI
) -> None:
    path = "/v1/responses/resp_1"
    stub.add(path, response("resp_1", "in_progress", None))
    receiver = Receiver()

    with signals.response_completed.connected_to(receiver, store_app):
        expect_response("resp_1", app=store_app)
        expect_response("resp_1", app=store_app)  # again: nothing more
        running = reconcile(since=since_yesterday(), app=store_app)
        finished = stub.add(path, response("resp_1", "completed", ago(30)))
        sent = reconcile(since=since_yesterday(), app=store_app)
        again = reconcile(since=since_yesterday(), app=store_app)

    assert running == []
    [item] = sent
    assert (item.event_type, item.object_id) == ("response.completed", "resp_1")
    assert item.finished_at == finished["completed_at"]
    assert again == []
    [(event, webhook_id)] = receiver.calls
    assert webhook_id == "reconcile:response.completed:resp_1"
    assert object_id_of(event) == "resp_1"
    # Settled: not even retrieved by the third run.
    assert len(stub.requests_to(path)) == 2
    expectation = logged(store_app, "expect:response:resp_1")
    assert expectation.event_type == EXPECTED_RESPONSE_TYPE
    assert expectation.status == "processed"


@pytest.mark.parametrize(
    ("status", "event_type"),
    [
        ("failed", "response.failed"),
        ("cancelled", "response.cancelled"),
        ("incomplete", "response.incomplete"),
    ],
)
def test_expected_response_other_terminal_states(
    app: Flask, stub: StubOpenAI, status: str, event_type: str
) -> None:
    body = stub.add("/v1/responses/resp_1", response("resp_1", status, None))
    expect_response("resp_1", app=app)

    [item] = reconcile(since=since_yesterday(), app=app)

    assert item.event_type == event_type
    # No completed_at: the response's created_at stands in.
    assert item.finished_at == body["created_at"]


def test_expected_response_already_delivered_is_not_retrieved(
    store_app: Flask, stub: StubOpenAI
) -> None:
    receiver = Receiver()

    with signals.response_completed.connected_to(receiver, store_app):
        post_event(store_app.test_client(), "response.completed", data={"id": "resp_2"})
        expect_response("resp_2", app=store_app)
        sent = reconcile(since=since_yesterday(), app=store_app)

    assert sent == []
    assert len(receiver.calls) == 1
    assert stub.requests_to("/v1/responses/resp_2") == []
    assert logged(store_app, "expect:response:resp_2").status == "processed"


def test_expected_response_that_does_not_exist(
    app: Flask, stub: StubOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    expect_response("resp_gone", app=app)

    with caplog.at_level(logging.WARNING, "flask_openai_webhooks"):
        assert reconcile(since=since_yesterday(), app=app) == []
        assert reconcile(since=since_yesterday(), app=app) == []

    [warning] = caplog.records
    assert "resp_gone" in warning.getMessage()
    assert "404" in warning.getMessage()
    assert len(stub.requests_to("/v1/responses/resp_gone")) == 1
    assert logged(app, "expect:response:resp_gone").status == "processed"


def test_expected_response_dry_run_writes_nothing(app: Flask, stub: StubOpenAI) -> None:
    stub.add("/v1/responses/resp_1", response("resp_1", "completed", ago(30)))
    expect_response("resp_1", app=app)
    before = everything(app)

    sent = reconcile(since=since_yesterday(), dry_run=True, app=app)

    assert [s.webhook_id for s in sent] == ["reconcile:response.completed:resp_1"]
    assert everything(app) == before


def test_expectation_cannot_be_replayed_as_an_event(app: Flask) -> None:
    received: list[WebhookEvent] = []

    def anything(sender: Flask, *, event: WebhookEvent, **extra: t.Any) -> None:
        received.append(event)

    expect_response("resp_1", app=app)
    with signals.webhook_received.connected_to(anything, app):
        with pytest.raises(WebhookPayloadError):
            log.replay("expect:response:resp_1", app=app)

    assert received == []
    record = logged(app, "expect:response:resp_1")
    assert record.status == "processing"
    assert record.history[0] == HistoryEntry(
        record.history[0].at, "reconcile", "processing", None
    )


@pytest.mark.parametrize("bad", ["", None])
def test_expect_response_needs_an_id(app: Flask, bad: t.Any) -> None:
    with pytest.raises(ValueError, match="response ID"):
        expect_response(bad, app=app)


# --- The API client ----------------------------------------------------------


def test_client_from_a_callable_in_config(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    calls: list[None] = []

    def make() -> openai.OpenAI:
        calls.append(None)
        return openai_client

    app = make_app("memory", make)
    stub.add_batch(finished_batch("batch_1"))

    with app.app_context():
        sent = reconcile(since=since_yesterday(), dry_run=True)

    assert [s.object_id for s in sent] == ["batch_1"]
    assert len(calls) == 1


def test_client_from_the_environment(
    stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    app = make_app("memory", None)
    stub.add_batch(finished_batch("batch_1"))

    sent = reconcile(since=since_yesterday(), dry_run=True, app=app)

    assert [s.object_id for s in sent] == ["batch_1"]
    assert len(stub.requests_to("/v1/batches")) == 1


def test_an_explicit_client_wins(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    app = make_app("memory", "not a client, and not used")
    stub.add_batch(finished_batch("batch_1"))

    sent = reconcile(
        since=since_yesterday(), dry_run=True, client=openai_client, app=app
    )

    assert [s.object_id for s in sent] == ["batch_1"]


def test_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    app = make_app("memory", None)

    with pytest.raises(ClientConfigError, match="OPENAI_API_KEY") as info:
        reconcile(since=since_yesterday(), app=app)

    assert isinstance(info.value.__cause__, openai.OpenAIError)


def test_openai_not_installed() -> None:
    code = """
import sys, time
sys.modules["openai"] = None  # as if it were not installed
from flask import Flask
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.reconcile import ClientConfigError, reconcile
app = Flask("t")
app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=sys.argv[1])
app.register_blueprint(make_blueprint())
try:
    reconcile(since=time.time() - 3600, app=app)
except ClientConfigError as e:
    print(e)
"""
    result = subprocess.run(
        [sys.executable, "-c", code, SECRET],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pip install 'Flask-OpenAI-Webhooks[openai]'" in result.stdout


def test_api_errors_propagate_and_nothing_is_sent(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1"))
    stub.fail("/v1/fine_tuning/jobs", 500)

    with pytest.raises(openai.InternalServerError):
        reconcile(since=since_yesterday(), app=app)

    assert everything(app) == []


def test_is_reconciled() -> None:
    assert is_reconciled("reconcile:batch.completed:batch_1")
    assert not is_reconciled("wh_2xKsdf")
