"""Processing a verified delivery: each outcome, the status it leaves in
the log, and which receivers a retry or a replay runs."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_openai_webhooks import log
from flask_openai_webhooks import PermanentFailure
from flask_openai_webhooks import RetryLater
from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import has_any_receiver
from flask_openai_webhooks.dispatch import receivers_of
from flask_openai_webhooks.dispatch import signals_for
from flask_openai_webhooks.models import parse_event
from flask_openai_webhooks.process import delivery_of
from flask_openai_webhooks.process import Outcome
from flask_openai_webhooks.process import OUTCOME_STATUS
from flask_openai_webhooks.process import process
from flask_openai_webhooks.process import RECONCILE_MARKER
from flask_openai_webhooks.process import reconciled_webhook_id
from flask_openai_webhooks.process import reconciliation_in_use
from flask_openai_webhooks.reconcile import _mark_in_use
from flask_openai_webhooks.samples import encode_body
from flask_openai_webhooks.samples import make_event
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.stores import DeliveryRecord
from flask_openai_webhooks.stores.sqlite import SQLiteStore
from flask_openai_webhooks.testing import post_event

from .conftest import SECRET
from .test_attempt import BreakingStore


class Counter:
    """A receiver that counts its calls and raises what it is told to."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls = 0
        self.fail_with = fail_with

    def __call__(self, sender: Flask, **extra: object) -> None:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with


def logged(app: Flask, webhook_id: str) -> DeliveryRecord:
    record = get_state(app).store.get(webhook_id)
    assert record is not None, webhook_id
    return record


def outcomes(record: DeliveryRecord) -> dict[str, tuple[str, int]]:
    """Each receiver's latest outcome and attempts, by key."""
    return {r.key: (r.outcome, r.attempts) for r in record.receivers}


def key(app: Flask, fn: t.Any, event_type: str = "batch.completed") -> str:
    """The key ``fn`` is logged under, as dispatch names it: instances of
    one class share a name, told apart by ``#2``, ``#3`` suffixes."""
    for found, receiver, _ in receivers_of(signals_for(event_type), app):
        if receiver is fn:
            return found
    raise AssertionError(f"{fn!r} is not connected")


def test_every_outcome_has_its_http_status() -> None:
    assert OUTCOME_STATUS == {
        "processed": 200,
        "duplicate": 200,
        "unhandled": 200,
        "in_flight": 409,
        "retry_later": 503,
        "receiver_failed": 500,
        "store_unavailable": 503,
    }
    assert Outcome("in_flight").status_code == 409


# --------------------------------------------------------------------------
# Nothing connected
# --------------------------------------------------------------------------


def test_no_receiver_at_all_is_unhandled_and_replayed_once_one_is_connected(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The receivers module was never imported: the delivery is
    acknowledged (OpenAI's retries would not help) but logged as
    ``unhandled``, with a warning, so it can be replayed."""
    assert not has_any_receiver(app), "a receiver leaked from another test"
    with caplog.at_level(logging.INFO, "flask_openai_webhooks"):
        response = post_event(client, "batch.completed", webhook_id="wh_lost")
    assert response.status_code == 200
    assert response.json == {"status": "unhandled"}
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert "wh_lost" in message
    assert "batch.completed" in message
    assert "no receiver at all" in message
    assert "replay --unhandled" in message
    record = logged(app, "wh_lost")
    assert (record.status, record.status_code) == ("unhandled", 200)
    assert record.receivers == ()
    # OpenAI's retry is a duplicate: the log, not OpenAI, has it now.
    again = post_event(client, "batch.completed", webhook_id="wh_lost")
    assert again.json == {"status": "duplicate"}

    counter = Counter()
    with signals.batch_completed.connected_to(counter, app):
        [replayed] = log.replay_where(status="unhandled", app=app)
        assert log.replay_where(status="unhandled", app=app) == []
        counter_key = key(app, counter)
    assert replayed.webhook_id == "wh_lost"
    assert replayed.outcome.name == "processed"
    assert replayed.ok
    assert counter.calls == 1
    record = logged(app, "wh_lost")
    assert record.status == "processed"
    assert outcomes(record) == {counter_key: ("ok", 1)}
    assert replayed.record == record
    assert record.history[-1].source == "replay"
    assert record.history[-1].result == "processed"


def test_a_type_without_receivers_is_processed_when_others_have_some(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    other = Counter()
    with (
        signals.response_completed.connected_to(other, app),
        caplog.at_level(logging.INFO, "flask_openai_webhooks"),
    ):
        response = post_event(client, "batch.completed", webhook_id="wh_quiet")
        assert post_event(client, "batch.completed", webhook_id="wh_quiet").json == {
            "status": "duplicate"
        }
    assert response.json == {"status": "processed"}
    assert other.calls == 0
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.INFO, "webhook-id wh_quiet: no receiver for batch.completed")
    ]
    record = logged(app, "wh_quiet")
    assert (record.status, record.receivers) == ("processed", ())


# --------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------


def test_permanent_failure_gives_up(app: Flask, client: FlaskClient) -> None:
    doomed = Counter(PermanentFailure("not our project"))
    fine = Counter()
    with (
        signals.batch_completed.connected_to(doomed, app),
        signals.batch_completed.connected_to(fine, app),
    ):
        response = post_event(client, "batch.completed", webhook_id="wh_doomed")
        retry = post_event(client, "batch.completed", webhook_id="wh_doomed")
        doomed_key, fine_key = key(app, doomed), key(app, fine)
    assert response.json == {"status": "processed"}
    assert retry.json == {"status": "duplicate"}
    assert (doomed.calls, fine.calls) == (1, 1)
    record = logged(app, "wh_doomed")
    assert (record.status, record.status_code) == ("gave_up", 200)
    assert outcomes(record) == {doomed_key: ("gave_up", 1), fine_key: ("ok", 1)}
    result = record.receiver(doomed_key)
    assert result is not None
    assert result.error_type == "flask_openai_webhooks.errors.PermanentFailure"
    assert result.error_message == "not our project"


def test_ack_mode_gives_up_on_a_failure_with_200() -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_ON_ERROR="ack"
    )
    app.register_blueprint(make_blueprint())
    client = app.test_client()
    broken = Counter(ValueError("boom"))
    with signals.batch_completed.connected_to(broken, app):
        response = post_event(client, "batch.completed", webhook_id="wh_ack")
        retry = post_event(client, "batch.completed", webhook_id="wh_ack")
        broken_key = key(app, broken)
    assert response.status_code == 200
    assert response.json == {"status": "processed"}
    assert retry.json == {"status": "duplicate"}
    assert broken.calls == 1
    record = logged(app, "wh_ack")
    assert (record.status, record.status_code) == ("gave_up", 200)
    # The receiver's own outcome says what happened; the delivery gave up.
    assert outcomes(record) == {broken_key: ("failed", 1)}


def test_retry_later_is_503_with_retry_after_and_failed(
    app: Flask, client: FlaskClient
) -> None:
    waiting = Counter(RetryLater(after=90, reason="rate limited"))
    with signals.batch_completed.connected_to(waiting, app):
        response = post_event(client, "batch.completed", webhook_id="wh_later")
        waiting_key = key(app, waiting)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "90"
    assert response.json is not None
    assert response.json["error"] == "retry_later"
    assert "rate limited" not in response.get_data(as_text=True)
    record = logged(app, "wh_later")
    assert (record.status, record.status_code) == ("failed", 503)
    assert outcomes(record) == {waiting_key: ("retry_later", 1)}


def test_a_retry_runs_only_the_receivers_that_failed(
    app: Flask, client: FlaskClient
) -> None:
    good = Counter()
    bad = Counter(ValueError("database is down"))
    catch_all = Counter()
    with (
        signals.batch_completed.connected_to(good, app),
        signals.batch_completed.connected_to(bad, app),
        signals.webhook_received.connected_to(catch_all, app),
    ):
        first = post_event(client, "batch.completed", webhook_id="wh_retry")
        assert first.status_code == 500
        bad_key = key(app, bad)
        record = logged(app, "wh_retry")
        assert (record.status, record.status_code) == ("failed", 500)
        assert outcomes(record) == {
            key(app, good): ("ok", 1),
            bad_key: ("failed", 1),
            key(app, catch_all): ("ok", 1),
        }
        bad.fail_with = None
        second = post_event(client, "batch.completed", webhook_id="wh_retry")
    assert second.json == {"status": "processed"}
    assert (good.calls, bad.calls, catch_all.calls) == (1, 2, 1)
    record = logged(app, "wh_retry")
    assert (record.status, record.status_code, record.attempts) == (
        "processed",
        200,
        2,
    )
    assert outcomes(record)[bad_key] == ("ok", 2)
    assert [(h.source, h.result, h.status_code) for h in record.history] == [
        ("delivery", "failed", 500),
        ("delivery", "processed", 200),
    ]


def test_store_down_after_the_receivers_ran_asks_for_a_retry() -> None:
    """The receivers ran but the outcome could not be written: 503, so
    OpenAI retries once the lease has run out. What was written between
    receivers is not run again."""
    now = [1_000_000.0]
    store = BreakingStore(clock=lambda: now[0])
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_STORE=store
    )
    app.register_blueprint(make_blueprint())
    client = app.test_client()
    first = Counter()
    last = Counter()

    def breaks_the_store(sender: Flask, **extra: object) -> None:
        last(sender)
        if last.calls == 1:
            store.broken = {"record", "finish"}

    with (
        signals.batch_completed.connected_to(first, app),
        signals.batch_completed.connected_to(breaks_the_store, app),
    ):
        response = post_event(client, "batch.completed", webhook_id="wh_down")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json is not None
        assert response.json["error"] == "store_unavailable"
        store.broken = set()
        # The lease was never released: as after a crash, it has to run out.
        assert post_event(client, "batch.completed", webhook_id="wh_down").json == {
            "error": "in_flight",
            "message": "this webhook-id is being processed by another request;"
            " retry later",
        }
        now[0] += get_state(app).lease
        retry = post_event(client, "batch.completed", webhook_id="wh_down")
    assert retry.json == {"status": "processed"}
    # The first receiver's success was written before the second ran; the
    # second one's was lost with the store, so it runs again.
    assert (first.calls, last.calls) == (1, 2)


# --------------------------------------------------------------------------
# Replays
# --------------------------------------------------------------------------


def test_replay_runs_the_receivers_that_did_not_succeed(
    app: Flask, client: FlaskClient
) -> None:
    fine = Counter()
    doomed = Counter(PermanentFailure("a bug"))
    with (
        signals.batch_completed.connected_to(fine, app),
        signals.batch_completed.connected_to(doomed, app),
    ):
        fine_key, doomed_key = key(app, fine), key(app, doomed)
        post_event(client, "batch.completed", webhook_id="wh_fix")
        assert logged(app, "wh_fix").status == "gave_up"
        # A retry from OpenAI would skip a receiver that gave up; a replay
        # after the bug fix runs it.
        doomed.fail_with = None
        replayed = log.replay("wh_fix", app=app)
        assert (fine.calls, doomed.calls) == (1, 2)
        assert replayed.outcome.name == "processed"
        assert replayed.ok
        assert [r.key for r in replayed.outcome.results] == [doomed_key]
        record = logged(app, "wh_fix")
        assert record.status == "processed"
        assert record.history[-1].source == "replay"
        # A replay answered nothing over HTTP: the record keeps the status
        # last answered to OpenAI.
        assert record.status_code == 200

        # Nothing left to run.
        nothing = log.replay("wh_fix", app=app)
        assert nothing.outcome.name == "processed"
        assert nothing.outcome.results == ()
        assert (fine.calls, doomed.calls) == (1, 2)

        forced = log.replay("wh_fix", force=True, app=app)
        assert (fine.calls, doomed.calls) == (2, 3)
        assert len(forced.outcome.results) == 2

        only = log.replay("wh_fix", receiver=fine_key, app=app)
        assert (fine.calls, doomed.calls) == (3, 3)
        assert [r.key for r in only.outcome.results] == [fine_key]
    record = logged(app, "wh_fix")
    assert outcomes(record) == {fine_key: ("ok", 3), doomed_key: ("ok", 3)}
    assert record.attempts == 5


def test_a_failing_replay_is_recorded_and_not_ok(
    app: Flask, client: FlaskClient
) -> None:
    broken = Counter(ValueError("still broken"))
    with signals.batch_completed.connected_to(broken, app):
        post_event(client, "batch.completed", webhook_id="wh_broken")
        replayed = log.replay("wh_broken", app=app)
        broken_key = key(app, broken)
    assert broken.calls == 2
    assert replayed.outcome.name == "receiver_failed"
    assert not replayed.ok
    assert replayed.record is not None
    assert replayed.record.status == "failed"
    assert outcomes(replayed.record) == {broken_key: ("failed", 2)}


def test_replay_of_an_unknown_webhook_id_fails(app: Flask) -> None:
    with pytest.raises(LookupError, match="wh_nope"):
        log.replay("wh_nope", app=app)


def test_replay_racing_a_retry_is_in_flight_and_runs_nothing(
    app: Flask, client: FlaskClient
) -> None:
    """A replay and OpenAI's retry go through the same lease: while the
    retry runs the receiver, the replay gets ``in_flight``."""
    started = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def slow(sender: Flask, *, webhook_id: str, **extra: object) -> None:
        calls.append(webhook_id)
        started.set()
        assert release.wait(30), "never released"

    answers: list[t.Any] = []

    def deliver() -> None:
        answers.append(
            post_event(app.test_client(), "batch.completed", webhook_id="wh_race")
        )

    with signals.batch_completed.connected_to(slow, app):
        worker = threading.Thread(target=deliver)
        worker.start()
        try:
            assert started.wait(30), "the receiver never started"
            replayed = log.replay("wh_race", app=app)
        finally:
            release.set()
            worker.join(30)
    assert not worker.is_alive()
    assert replayed.outcome.name == "in_flight"
    assert replayed.outcome.retry_after == 30
    assert not replayed.ok
    [answer] = answers
    assert answer.json == {"status": "processed"}
    assert calls == ["wh_race"]
    record = logged(app, "wh_race")
    assert record.status == "processed"
    assert [(h.source, h.result) for h in record.history] == [
        ("replay", "in_flight"),
        ("delivery", "processed"),
    ]


class CountingStore(SQLiteStore):
    """The real SQLite store, counting ``get`` calls."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gets: list[str] = []

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        self.gets.append(webhook_id)
        return super().get(webhook_id)


def _shared_store_app(store: CountingStore) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(store=store))
    return app


def test_no_reconciled_lookup_until_reconciliation_was_used(
    tmp_path: t.Any,
) -> None:
    """Without the marker, a delivery costs no look-up of a reconciled
    record; once another process wrote it, this one finds it after the
    TTL and from then on a reconciled object's delivery is a duplicate."""
    store = CountingStore(str(tmp_path / "log.db"))
    app = _shared_store_app(store)
    ran: list[str] = []

    def on_batch(sender: Flask, *, event: t.Any, **extra: object) -> None:
        ran.append(event.data.id)

    with signals.batch_completed.connected_to(on_batch, app):
        client = app.test_client()
        post_event(client, "batch.completed", data={"id": "batch_a"})
        post_event(client, "batch.completed", data={"id": "batch_b"})
        # One look for the marker, then none within the TTL.
        assert store.gets == [RECONCILE_MARKER]

        # Another process reconciles batch_c (same store file).
        other = CountingStore(str(tmp_path / "log.db"))
        reconciler = _shared_store_app(other)
        with reconciler.app_context():
            _mark_in_use(reconciler, get_state(reconciler))
        body = make_event("batch.completed", data={"id": "batch_c"})
        reconciled = reconciled_webhook_id("batch.completed", "batch_c")
        with reconciler.app_context():
            process(
                reconciler,
                get_state(reconciler),
                parse_event(encode_body(body)),
                dataclasses.replace(
                    delivery_of(
                        parse_event(encode_body(body)), encode_body(body), reconciled
                    ),
                    source="reconcile",
                ),
                wrap=reconciler.ensure_sync,
            )
        other.close()
        assert ran == ["batch_a", "batch_b"]  # on_batch hears only `app`

        # Once the TTL has passed (simulated), this process finds the marker.
        get_state(app)._reconcile_checked = -math.inf
        response = post_event(client, "batch.completed", data={"id": "batch_c"})
        assert response.json == {"status": "duplicate"}
        assert ran == ["batch_a", "batch_b"]
        assert reconciliation_in_use(get_state(app), store)
    store.close()
