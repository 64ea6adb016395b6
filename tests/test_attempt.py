"""One attempt at a delivery: results written before the next receiver,
successes kept whichever way the attempt ends, bounded failure records."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import typing as t
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence

import pytest
from flask import Flask

from flask_openai_webhooks import signals
from flask_openai_webhooks.attempt import Attempt
from flask_openai_webhooks.attempt import result_for
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.errors import PermanentFailure
from flask_openai_webhooks.errors import RetryLater
from flask_openai_webhooks.errors import StoreError
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.stores import Claim
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores import DeliveryRecord
from flask_openai_webhooks.stores import DeliveryStatus
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores import MAX_MESSAGE
from flask_openai_webhooks.stores import MAX_TRACEBACK
from flask_openai_webhooks.stores import Page
from flask_openai_webhooks.stores import ReceiverResult
from flask_openai_webhooks.stores import Rejections
from flask_openai_webhooks.stores import Source
from flask_openai_webhooks.stores.memory import MemoryStore
from flask_openai_webhooks.testing import post_event

from .conftest import SECRET


class BreakingStore:
    """A :class:`DeliveryStore` that keeps everything in a real
    :class:`MemoryStore` and raises :class:`StoreError` from the methods
    named in :attr:`broken`, as a store that goes down would. A test double
    of this package's own protocol, not of a library.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.inner = MemoryStore(clock=clock)
        #: Names of the methods that fail, e.g. ``{"record"}``.
        self.broken: set[str] = set()
        #: Calls by method name, failed ones included.
        self.calls: collections.Counter[str] = collections.Counter()

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.broken:
            raise StoreError(f"{name}: the store is down (test)")

    def claim(self, delivery: Delivery, *, lease: float, retention: float) -> Claim:
        self._call("claim")
        return self.inner.claim(delivery, lease=lease, retention=retention)

    def record(
        self, webhook_id: str, token: str, results: Sequence[ReceiverResult]
    ) -> None:
        self._call("record")
        self.inner.record(webhook_id, token, results)

    def finish(
        self,
        webhook_id: str,
        token: str,
        results: Sequence[ReceiverResult],
        *,
        status: DeliveryStatus,
        status_code: int | None,
        source: Source,
        retention: float,
    ) -> None:
        self._call("finish")
        self.inner.finish(
            webhook_id,
            token,
            results,
            status=status,
            status_code=status_code,
            source=source,
            retention=retention,
        )

    def claim_task(self, webhook_id: str, key: str, *, lease: float) -> Claim:
        self._call("claim_task")
        return self.inner.claim_task(webhook_id, key, lease=lease)

    def finish_task(
        self, webhook_id: str, token: str, result: ReceiverResult, *, retention: float
    ) -> None:
        self._call("finish_task")
        self.inner.finish_task(webhook_id, token, result, retention=retention)

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        self._call("get")
        return self.inner.get(webhook_id)

    def list_deliveries(
        self,
        *,
        status: Collection[str] | None = None,
        type_pattern: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> Page:
        self._call("list_deliveries")
        return self.inner.list_deliveries(
            status=status,
            type_pattern=type_pattern,
            since=since,
            until=until,
            search=search,
            limit=limit,
            before=before,
        )

    def prune(self, older_than: float) -> int:
        self._call("prune")
        return self.inner.prune(older_than)

    def reject(self, reason: str, webhook_id: str | None, at: float) -> None:
        self._call("reject")
        self.inner.reject(reason, webhook_id, at)

    def rejections(self, limit: int = 50) -> Rejections:
        self._call("rejections")
        return self.inner.rejections(limit)

    def ping(self) -> None:
        self._call("ping")

    def describe(self) -> str:
        return "breaking test store"


def make_app(store: DeliveryStore | str = "memory") -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_STORE=store
    )
    app.register_blueprint(make_blueprint())
    return app


class Counter:
    """A receiver that counts its calls and raises what it is told to."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.calls = 0
        self.fail_with = fail_with

    def __call__(self, sender: Flask, **extra: object) -> None:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with


def claimed(store: DeliveryStore, webhook_id: str = "wh_attempt") -> Attempt:
    """An attempt on a fresh delivery, claimed in ``store``."""
    delivery = Delivery(
        webhook_id=webhook_id,
        event_type="batch.completed",
        event_id="evt_1",
        object_id="batch_1",
        created_at=1,
        body=b"{}",
        received_at=time.time(),
    )
    claim = store.claim(delivery, lease=30, retention=3600)
    assert claim.status == "acquired"
    return Attempt(
        store,
        webhook_id,
        claim.token,
        previous=claim.record,
        source="delivery",
        retention=3600,
    )


def ok(key: str) -> ReceiverResult:
    return ReceiverResult(key, "ok", at=time.time())


# --------------------------------------------------------------------------
# Writing as it goes
# --------------------------------------------------------------------------


def test_results_are_written_before_the_next_receiver_runs() -> None:
    store = MemoryStore()
    attempt = claimed(store)
    attempt.before_receiver()  # nothing to write yet
    attempt.ran(ok("a"))
    record = store.get("wh_attempt")
    assert record is not None
    assert record.receivers == ()
    attempt.before_receiver()
    record = store.get("wh_attempt")
    assert record is not None
    assert [r.key for r in record.receivers] == ["a"]
    assert record.status == "processing"
    # The lease is kept: a duplicate now is in flight.
    assert store.claim(
        Delivery("wh_attempt", "batch.completed", "evt_1", None, None, b"{}", 0.0),
        lease=30,
        retention=3600,
    ) == Claim("in_flight")
    attempt.ran(ok("b"))
    attempt.finish("processed", 200)
    record = store.get("wh_attempt")
    assert record is not None
    assert [r.key for r in record.receivers] == ["a", "b"]
    assert (record.status, record.status_code) == ("processed", 200)
    assert attempt.finished
    assert [r.key for r in attempt.results] == ["a", "b"]
    assert attempt.succeeded("a")
    assert not attempt.succeeded("c")


def test_a_receiver_sees_the_earlier_receivers_results_in_the_log() -> None:
    """Through a real delivery: by the time the second receiver runs, the
    first one's success is in the store, so a worker killed now would not
    run it again."""
    app = make_app()
    seen: list[DeliveryRecord | None] = []

    def first(sender: Flask, **extra: object) -> None:
        pass

    def second(sender: Flask, *, webhook_id: str, **extra: object) -> None:
        seen.append(get_state(app).store.get(webhook_id))

    with (
        signals.batch_completed.connected_to(first, app),
        signals.batch_completed.connected_to(second, app),
    ):
        response = post_event(app.test_client(), "batch.completed", webhook_id="wh_1")
    assert response.json == {"status": "processed"}
    [record] = seen
    assert record is not None
    assert record.status == "processing"
    assert [(r.key, r.outcome) for r in record.receivers] == [
        (receiver_key(signals.batch_completed, first), "ok")
    ]


def test_a_failed_intermediate_write_is_kept_for_finish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = BreakingStore()
    attempt = claimed(store)
    attempt.ran(ok("a"))
    store.broken = {"record"}
    with caplog.at_level(logging.WARNING, "flask_openai_webhooks"):
        attempt.before_receiver()
    assert "could not record receivers of webhook-id wh_attempt yet" in caplog.text
    record = store.inner.get("wh_attempt")
    assert record is not None
    assert record.receivers == ()
    attempt.ran(ok("b"))
    attempt.finish("processed", 200)
    record = store.inner.get("wh_attempt")
    assert record is not None
    assert [r.key for r in record.receivers] == ["a", "b"]


def test_finish_raises_when_nothing_can_be_written() -> None:
    store = BreakingStore()
    attempt = claimed(store)
    attempt.ran(ok("a"))
    store.broken = {"record", "finish"}
    with pytest.raises(StoreError):
        attempt.finish("processed", 200)
    assert not attempt.finished


# --------------------------------------------------------------------------
# abandon(): the BaseException path keeps successes
# --------------------------------------------------------------------------


def test_abandon_keeps_successes_and_releases_the_lease() -> None:
    store = BreakingStore()
    attempt = claimed(store)
    attempt.ran(ok("a"))
    # Not written before the interruption: only abandon() can save it.
    store.broken = {"record"}
    attempt.before_receiver()
    store.broken = set()
    attempt.abandon()
    assert attempt.finished
    record = store.inner.get("wh_attempt")
    assert record is not None
    assert (record.status, record.status_code) == ("failed", None)
    assert [(r.key, r.outcome) for r in record.receivers] == [("a", "ok")]
    # Released now, not when the lease runs out: the retry takes it.
    retry = store.claim(
        Delivery("wh_attempt", "batch.completed", "evt_1", None, None, b"{}", 0.0),
        lease=30,
        retention=3600,
    )
    assert retry.status == "acquired"
    assert retry.keys_with({"ok"}) == {"a"}


def test_abandon_after_finish_writes_nothing() -> None:
    store = BreakingStore()
    attempt = claimed(store)
    attempt.finish("processed", 200)
    attempt.abandon()
    assert store.calls["finish"] == 1
    record = store.inner.get("wh_attempt")
    assert record is not None
    assert record.status == "processed"


def test_abandon_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    store = BreakingStore()
    attempt = claimed(store)
    attempt.ran(ok("a"))
    store.broken = {"finish"}
    with caplog.at_level(logging.ERROR, "flask_openai_webhooks"):
        attempt.abandon()
    assert "could not record the interrupted attempt of webhook-id wh_attempt" in (
        caplog.text
    )
    assert not attempt.finished


@pytest.mark.parametrize(
    "interruption",
    [SystemExit(1), KeyboardInterrupt(), asyncio.CancelledError()],
    ids=["SystemExit", "KeyboardInterrupt", "CancelledError"],
)
@pytest.mark.parametrize("record_works", [True, False], ids=["recorded", "unrecorded"])
def test_an_interrupted_delivery_does_not_rerun_what_succeeded(
    interruption: BaseException, record_works: bool
) -> None:
    """A worker timeout raises ``SystemExit`` in the middle of a receiver.
    The receivers that succeeded before it are not run again by the retry,
    whether their success was written between receivers or, with that
    write failing, only by the interrupted attempt's last write."""
    store = BreakingStore()
    if not record_works:
        store.broken = {"record"}
    app = make_app(store)
    client = app.test_client()
    first = Counter()
    second = Counter(fail_with=interruption)
    with (
        signals.batch_completed.connected_to(first, app),
        signals.batch_completed.connected_to(second, app),
    ):
        with pytest.raises(type(interruption)):
            post_event(client, "batch.completed", webhook_id="wh_cut")
        record = store.inner.get("wh_cut")
        assert record is not None
        assert record.status == "failed"
        assert [(r.key, r.outcome) for r in record.receivers] == [
            (receiver_key(signals.batch_completed, first), "ok")
        ]
        assert (first.calls, second.calls) == (1, 1)

        second.fail_with = None
        retry = post_event(client, "batch.completed", webhook_id="wh_cut")
    assert retry.json == {"status": "processed"}
    assert (first.calls, second.calls) == (1, 2)
    record = store.inner.get("wh_cut")
    assert record is not None
    assert record.status == "processed"
    assert [r.outcome for r in record.receivers] == ["ok", "ok"]


# --------------------------------------------------------------------------
# result_for
# --------------------------------------------------------------------------


def _deep(n: int) -> None:
    if n == 0:
        raise ValueError("x" * 20_000 + " the end of the message")
    _deep(n - 1)


def test_result_for_bounds_the_traceback_and_keeps_its_end() -> None:
    started = time.monotonic()
    try:
        _deep(200)
    except ValueError as e:
        error = e
    result = result_for("k", previous=None, started=started, error=error)
    assert result.outcome == "failed"
    assert result.error_type == "builtins.ValueError"
    assert result.error_message is not None
    assert len(result.error_message) <= MAX_MESSAGE
    assert result.error_message.endswith(" the end of the message")
    assert result.traceback is not None
    assert len(result.traceback) <= MAX_TRACEBACK
    assert result.traceback.startswith("...\n")
    # The end, where the error is, is what is kept.
    assert result.traceback.rstrip().endswith(" the end of the message")
    assert result.duration >= 0
    assert result.attempts == 1


def test_result_for_keeps_a_short_traceback_whole() -> None:
    try:
        raise KeyError("missing")
    except KeyError as e:
        result = result_for("k", previous=None, started=time.monotonic(), error=e)
    assert result.traceback is not None
    assert result.traceback.startswith("Traceback (most recent call last):")
    assert result.error_message == "'missing'"


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (PermanentFailure("not ours"), "gave_up"),
        (RetryLater(30), "retry_later"),
        (ValueError("boom"), "failed"),
    ],
)
def test_result_for_names_the_outcome_of_an_error(
    error: Exception, outcome: str
) -> None:
    result = result_for("k", previous=None, started=time.monotonic(), error=error)
    assert result.outcome == outcome
    assert result.error_type is not None
    assert result.error_type.endswith(type(error).__qualname__)


def test_result_for_success_has_no_error_and_counts_attempts() -> None:
    store = MemoryStore()
    attempt = claimed(store)
    attempt.ran(ReceiverResult("k", "failed", attempts=1))
    attempt.finish("failed", 500)
    retry = claimed(store)
    assert retry.previous is not None
    result = retry.result_for("k", time.monotonic())
    assert (result.outcome, result.attempts) == ("ok", 2)
    assert result.error_type is None
    assert result.traceback is None
    assert retry.result_for("new", time.monotonic()).attempts == 1
    queued = retry.result_for("k", time.monotonic(), outcome="queued")
    assert queued.outcome == "queued"


def test_failures_lists_what_did_not_succeed() -> None:
    attempt = claimed(MemoryStore())
    attempt.ran(ok("a"))
    attempt.ran(ReceiverResult("b", "gave_up"))
    attempt.ran(ReceiverResult("c", "queued"))
    assert [r.key for r in attempt.failures] == ["b", "c"]
    assert attempt.succeeded("a")
    assert not attempt.succeeded("b")


def test_the_store_double_is_a_delivery_store() -> None:
    store: t.Any = BreakingStore()
    assert isinstance(store, DeliveryStore)
