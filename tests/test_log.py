"""The delivery log from Python (:mod:`flask_openai_webhooks.log`), run
over every store: memory, an SQLite file, the Redis server, and fresh
PostgreSQL and MariaDB databases (skipped when a server is not running, a
failure under ``CI=true``).

Deliveries arrive through the blueprint, signed, as from OpenAI. Only the
deliveries that must look old are written through the store's own API,
with an old arrival time: nothing else can make a delivery 40 days old.
"""

from __future__ import annotations

import collections
import collections.abc as c
import contextlib
import secrets
import time
import typing as t
from pathlib import Path

import pytest
from flask import Flask

from flask_openai_webhooks import log
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import has_any_receiver
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.errors import PermanentFailure
from flask_openai_webhooks.errors import WebhookPayloadError
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.signals import batch_failed
from flask_openai_webhooks.signals import webhook_received
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.state import states
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores import DeliveryStatus
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.testing import encode_body
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import post_event

from .conftest import SECRET
from .services import fresh_database
from .services import require_redis

KINDS = ["memory", "sqlite", "redis", "postgresql", "mariadb"]
DAY = 86400.0


@contextlib.contextmanager
def store_setting(kind: str, tmp_path: Path) -> c.Iterator[object]:
    """``OPENAI_WEBHOOK_STORE`` for a backend: ``"memory"``; an SQLite file
    in ``tmp_path``; a :class:`RedisStore` with a key prefix of its own,
    whose keys are deleted afterwards; the URL of a fresh PostgreSQL or
    MariaDB database, dropped afterwards."""
    if kind == "memory":
        yield "memory"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'webhooks.db'}"
    elif kind == "redis":
        url = require_redis()
        from flask_openai_webhooks.stores.redis import RedisStore

        prefix = f"test-log:{secrets.token_hex(8)}:"
        store = RedisStore(url, prefix=prefix)
        try:
            yield store
        finally:
            keys = list(store.client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                store.client.delete(*keys)
            store.close()
    else:
        with fresh_database(kind) as url:
            yield url


def make_app(store: object, **blueprint: t.Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_STORE=store
    )
    app.register_blueprint(make_blueprint(**blueprint))
    return app


def close_stores(app: Flask) -> None:
    """Release the connections of the app's stores: an SQL database cannot
    be dropped while they are open."""
    for state in states(app).values():
        close = getattr(state.store, "close", None)
        if close is not None:
            close()


@contextlib.contextmanager
def app_on(kind: str, tmp_path: Path) -> c.Iterator[Flask]:
    """An app whose only webhook blueprint logs to the ``kind`` store."""
    with store_setting(kind, tmp_path) as setting:
        app = make_app(setting)
        try:
            yield app
        finally:
            close_stores(app)


@pytest.fixture(params=KINDS)
def webhook_app(request: pytest.FixtureRequest, tmp_path: Path) -> c.Iterator[Flask]:
    """Not named ``app``: pytest-flask would push a request context for
    it, and these functions must work without one."""
    with app_on(request.param, tmp_path) as app:
        yield app


class Calls:
    """Receivers that count their calls, by name; ``broken`` names make
    them raise ``PermanentFailure`` (a bug no retry fixes), ``failing``
    ones a ``RuntimeError`` (retried)."""

    def __init__(self) -> None:
        self.count: collections.Counter[str] = collections.Counter()
        self.broken: set[str] = set()
        self.failing: set[str] = set()

    def __call__(self, name: str) -> c.Callable[..., None]:
        def receive(sender: Flask, **extra: t.Any) -> None:
            self.count[name] += 1
            if name in self.broken:
                raise PermanentFailure(f"{name} is broken")
            if name in self.failing:
                raise RuntimeError(f"{name} failed")

        receive.__qualname__ = f"receivers.{name}"
        return receive


def old_delivery(
    app: Flask,
    webhook_id: str,
    *,
    days: float,
    event_type: str = "batch.completed",
    status: DeliveryStatus = "processed",
    body: bytes | None = None,
    leased: bool = False,
) -> None:
    """A delivery that arrived ``days`` ago, written through the store's
    own API (claim, then finish unless ``leased``)."""
    state = get_state(app)
    event = make_event(event_type)
    delivery = Delivery(
        webhook_id=webhook_id,
        event_type=event_type,
        event_id=event["id"],
        object_id=event["data"]["id"],
        created_at=event["created_at"],
        body=encode_body(event) if body is None else body,
        received_at=time.time() - days * DAY,
    )
    store: DeliveryStore = state.store
    claim = store.claim(delivery, lease=state.lease, retention=state.retention)
    assert claim.status == "acquired"
    if not leased:
        store.finish(
            webhook_id,
            claim.token,
            [],
            status=status,
            status_code=200,
            source="delivery",
            retention=state.retention,
        )


def post(app: Flask, event_type: str, webhook_id: str, **fields: t.Any) -> int:
    response = post_event(
        app.test_client(), event_type, webhook_id=webhook_id, **fields
    )
    return response.status_code


def ids(records: c.Iterable[t.Any]) -> list[str]:
    return [record.webhook_id for record in records]


# --- get_delivery ------------------------------------------------------------


def test_get_delivery_has_the_exact_body_and_the_receivers(webhook_app: Flask) -> None:
    calls = Calls()
    body = (
        b'{"id": "evt_exact", "object": "event", "created_at": 1750287078,\n'
        b' "type": "batch.completed", "data": {"id": "batch_caf\xc3\xa9"}}'
    )
    with batch_completed.connected_to(calls("done"), webhook_app):
        assert (
            post_event(webhook_app.test_client(), body, webhook_id="wh_get").status_code
            == 200
        )

    record = log.get_delivery("wh_get", app=webhook_app)

    assert record is not None
    assert record.body == body
    assert (record.event_type, record.event_id, record.object_id) == (
        "batch.completed",
        "evt_exact",
        "batch_café",
    )
    assert (record.status, record.attempts, record.source) == (
        "processed",
        1,
        "delivery",
    )
    [result] = record.receivers
    assert result.key == receiver_key(batch_completed, calls("done"))
    assert (result.outcome, result.attempts) == ("ok", 1)
    assert log.get_delivery("wh_unknown", app=webhook_app) is None


def test_functions_use_the_current_app(webhook_app: Flask) -> None:
    post(webhook_app, "batch.completed", "wh_current")

    with pytest.raises(RuntimeError, match="application context"):
        log.get_delivery("wh_current")
    with webhook_app.app_context():
        record = log.get_delivery("wh_current")
        page = log.list_deliveries()

    assert record is not None
    assert ids(page.records) == ["wh_current"]


# --- list_deliveries ---------------------------------------------------------


def test_list_deliveries_filters(webhook_app: Flask) -> None:
    calls = Calls()
    calls.failing.update({"completed", "failed", "response"})
    old_delivery(webhook_app, "wh_old_failed", days=2, status="failed")
    with contextlib.ExitStack() as stack:
        for signal, name in (
            (batch_completed, "completed"),
            (batch_failed, "failed"),
            (webhook_received, "any"),
        ):
            stack.enter_context(signal.connected_to(calls(name), webhook_app))
        assert post(webhook_app, "batch.completed", "wh_completed") == 500
        assert post(webhook_app, "batch.failed", "wh_failed") == 500
        assert post(webhook_app, "batch.expired", "wh_expired") == 200
        assert (
            post(
                webhook_app,
                "response.completed",
                "wh_response",
                data={"id": "resp_found"},
            )
            == 200
        )
    now = time.time()

    def listed(**filters: t.Any) -> list[str]:
        return ids(log.list_deliveries(app=webhook_app, **filters).records)

    assert listed() == [
        "wh_response",
        "wh_expired",
        "wh_failed",
        "wh_completed",
        "wh_old_failed",
    ]
    assert listed(status="failed") == ["wh_failed", "wh_completed", "wh_old_failed"]
    assert listed(status=["processed"], type="batch.*") == ["wh_expired"]
    assert listed(status="failed", type="batch.*", since=now - DAY) == [
        "wh_failed",
        "wh_completed",
    ]
    assert listed(until=now - DAY) == ["wh_old_failed"]
    assert listed(type="*.completed") == [
        "wh_response",
        "wh_completed",
        "wh_old_failed",
    ]
    assert listed(search="resp_found") == ["wh_response"]
    assert listed(search="wh_failed") == ["wh_failed"]
    event_id = log.get_delivery("wh_expired", app=webhook_app)
    assert event_id is not None
    assert listed(search=event_id.event_id) == ["wh_expired"]
    assert listed(status="failed", limit=1) == ["wh_failed"]
    assert listed(status="gave_up") == []


def test_list_deliveries_pages_stay_put_while_deliveries_arrive(
    webhook_app: Flask,
) -> None:
    for n in range(5):
        post(webhook_app, "batch.completed", f"wh_page_{n}")

    first = log.list_deliveries(limit=2, app=webhook_app)
    post(webhook_app, "batch.completed", "wh_page_5")
    post(webhook_app, "batch.completed", "wh_page_6")
    second = log.list_deliveries(limit=2, before=first.cursor, app=webhook_app)
    third = log.list_deliveries(limit=2, before=second.cursor, app=webhook_app)
    fresh = log.list_deliveries(limit=2, app=webhook_app)

    assert ids(first.records) == ["wh_page_4", "wh_page_3"]
    assert ids(second.records) == ["wh_page_2", "wh_page_1"]
    assert ids(third.records) == ["wh_page_0"]
    assert first.cursor is not None and second.cursor is not None
    assert third.cursor is None
    assert ids(fresh.records) == ["wh_page_6", "wh_page_5"]


def test_list_deliveries_refuses_bad_arguments(webhook_app: Flask) -> None:
    with pytest.raises(ValueError, match="unknown delivery status 'done'"):
        log.list_deliveries(status="done", app=webhook_app)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        log.list_deliveries(limit=0, app=webhook_app)
    with pytest.raises(ValueError, match="not a delivery-log cursor"):
        log.list_deliveries(before="yesterday", app=webhook_app)


# --- prune_deliveries --------------------------------------------------------


def test_prune_forgets_old_deliveries_not_leased_ones(webhook_app: Flask) -> None:
    old_delivery(webhook_app, "wh_old", days=40)
    old_delivery(webhook_app, "wh_old_gave_up", days=31, status="gave_up")
    old_delivery(webhook_app, "wh_old_leased", days=40, leased=True)
    old_delivery(webhook_app, "wh_recent_old", days=29)
    post(webhook_app, "batch.completed", "wh_new")

    pruned = log.prune_deliveries(30 * DAY, app=webhook_app)

    assert pruned == 2
    assert ids(log.list_deliveries(app=webhook_app).records) == [
        "wh_new",
        "wh_recent_old",
        "wh_old_leased",
    ]
    assert log.get_delivery("wh_old", app=webhook_app) is None
    assert log.prune_deliveries(30 * DAY, app=webhook_app) == 0


@pytest.mark.parametrize("older_than", [0, -1.0])
def test_prune_needs_a_positive_age(older_than: float) -> None:
    app = make_app("memory")

    with pytest.raises(ValueError, match="positive"):
        log.prune_deliveries(older_than, app=app)


# --- replay ------------------------------------------------------------------


def test_replay_after_a_fix_runs_only_the_receiver_that_gave_up(
    webhook_app: Flask,
) -> None:
    calls = Calls()
    calls.broken.add("fragile")
    steady, fragile = calls("steady"), calls("fragile")
    with (
        batch_completed.connected_to(steady, webhook_app),
        batch_completed.connected_to(fragile, webhook_app),
    ):
        assert post(webhook_app, "batch.completed", "wh_fix") == 200
        before = log.get_delivery("wh_fix", app=webhook_app)
        calls.broken.clear()

        fixed = log.replay("wh_fix", app=webhook_app)
        again = log.replay("wh_fix", app=webhook_app)
        counted_before_force = dict(calls.count)
        forced = log.replay("wh_fix", force=True, app=webhook_app)

    assert before is not None
    assert before.status == "gave_up"
    assert fixed.webhook_id == "wh_fix"
    assert fixed.ok
    assert fixed.outcome.name == "processed"
    assert [r.key for r in fixed.outcome.results] == [
        receiver_key(batch_completed, fragile)
    ]
    assert fixed.record is not None
    assert (fixed.record.status, fixed.record.attempts) == ("processed", 2)
    results = {r.key: r for r in fixed.record.receivers}
    assert results[receiver_key(batch_completed, fragile)].attempts == 2
    assert results[receiver_key(batch_completed, fragile)].outcome == "ok"
    assert results[receiver_key(batch_completed, steady)].attempts == 1
    assert again.ok
    assert again.outcome.results == ()
    assert counted_before_force == {"steady": 1, "fragile": 2}
    assert forced.ok
    assert len(forced.outcome.results) == 2
    assert calls.count == {"steady": 2, "fragile": 3}
    assert forced.record is not None
    assert [h.source for h in forced.record.history] == [
        "delivery",
        "replay",
        "replay",
        "replay",
    ]


def test_replay_one_receiver_runs_it_even_after_success(webhook_app: Flask) -> None:
    calls = Calls()
    first, second = calls("first"), calls("second")
    with (
        batch_completed.connected_to(first, webhook_app),
        webhook_received.connected_to(second, webhook_app),
    ):
        post(webhook_app, "batch.completed", "wh_one")
        done = log.replay(
            "wh_one", receiver=receiver_key(webhook_received, second), app=webhook_app
        )

    assert done.ok
    assert calls.count == {"first": 1, "second": 2}
    assert [r.key for r in done.outcome.results] == [
        receiver_key(webhook_received, second)
    ]


def test_replay_that_fails_again_is_not_ok(webhook_app: Flask) -> None:
    calls = Calls()
    calls.broken.add("gives_up")
    calls.failing.add("raises")
    with (
        batch_completed.connected_to(calls("gives_up"), webhook_app),
        batch_failed.connected_to(calls("raises"), webhook_app),
    ):
        post(webhook_app, "batch.completed", "wh_gives_up")
        post(webhook_app, "batch.failed", "wh_raises")
        gave_up = log.replay("wh_gives_up", app=webhook_app)
        raised = log.replay("wh_raises", app=webhook_app)

    assert not gave_up.ok
    assert gave_up.outcome.name == "processed"
    assert gave_up.record is not None
    assert gave_up.record.status == "gave_up"
    assert not raised.ok
    assert raised.outcome.name == "receiver_failed"
    assert raised.record is not None
    assert raised.record.status == "failed"
    assert calls.count == {"gives_up": 2, "raises": 2}


def test_replay_an_unhandled_delivery_once_a_receiver_is_connected(
    webhook_app: Flask,
) -> None:
    assert not has_any_receiver(webhook_app), "a receiver leaked from another test"
    assert post(webhook_app, "batch.completed", "wh_unhandled") == 200
    record = log.get_delivery("wh_unhandled", app=webhook_app)
    assert record is not None
    assert record.status == "unhandled"
    calls = Calls()

    with batch_completed.connected_to(calls("late"), webhook_app):
        done = log.replay_where(status="unhandled", app=webhook_app)

    assert [r.webhook_id for r in done] == ["wh_unhandled"]
    assert done[0].ok
    assert done[0].record is not None
    assert done[0].record.status == "processed"
    assert calls.count == {"late": 1}


def test_replay_while_a_lease_is_held_runs_nothing(webhook_app: Flask) -> None:
    calls = Calls()
    old_delivery(webhook_app, "wh_leased", days=0, leased=True)

    with batch_completed.connected_to(calls("waiting"), webhook_app):
        done = log.replay("wh_leased", app=webhook_app)

    assert done.outcome.name == "in_flight"
    assert not done.ok
    assert calls.count == {}


def test_replay_unknown_delivery(webhook_app: Flask) -> None:
    with pytest.raises(LookupError, match="no delivery with webhook-id 'wh_nope'"):
        log.replay("wh_nope", app=webhook_app)


def test_replay_a_body_that_no_longer_parses(webhook_app: Flask) -> None:
    old_delivery(webhook_app, "wh_shape", days=0, body=b'{"type": "batch.completed"}')

    with pytest.raises(WebhookPayloadError):
        log.replay("wh_shape", app=webhook_app)


def test_matching_and_replay_where_go_oldest_first(webhook_app: Flask) -> None:
    calls = Calls()
    calls.broken.add("buggy")
    with batch_completed.connected_to(calls("buggy"), webhook_app):
        for n in range(3):
            post(webhook_app, "batch.completed", f"wh_bug_{n}")
        post(webhook_app, "batch.failed", "wh_other")
        old_delivery(webhook_app, "wh_ancient", days=3, status="gave_up")

        matched = log.matching(status="gave_up", app=webhook_app)
        recent = log.matching(
            status=["gave_up"], since=time.time() - DAY, app=webhook_app
        )
        calls.broken.clear()
        replayed = log.replay_where(
            status="gave_up", type="batch.completed", app=webhook_app
        )

    assert matched == ["wh_ancient", "wh_bug_0", "wh_bug_1", "wh_bug_2"]
    assert recent == ["wh_bug_0", "wh_bug_1", "wh_bug_2"]
    assert [r.webhook_id for r in replayed] == matched
    assert all(r.ok for r in replayed)
    # Three deliveries, then four replays: wh_ancient never ran it.
    assert calls.count == {"buggy": 7}
    assert log.matching(status="gave_up", app=webhook_app) == []


# --- several blueprints ------------------------------------------------------


def test_several_blueprints_need_a_name() -> None:
    app = make_app("memory", name="first", url_prefix="/one")
    app.register_blueprint(
        make_blueprint(name="second", url_prefix="/two", store="memory")
    )
    post_event(app.test_client(), "batch.completed", blueprint="second")

    with pytest.raises(LookupError, match="several"):
        log.list_deliveries(app=app)

    assert len(log.list_deliveries(app=app, blueprint="second").records) == 1
    assert log.list_deliveries(app=app, blueprint="first").records == ()


# --- parse_duration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("1.5h", 5400.0),
        ("30d", 30 * 86400.0),
        ("2w", 14 * 86400.0),
        (" 7 d ", 7 * 86400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert log.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "is not a duration; write e.g. 90s, 15m, 24h, 30d or 2w"),
        ("24 hours", "is not a duration"),
        ("-5m", "is not a duration"),
        ("1y", "is not a duration"),
        ("", "is not a duration"),
        ("0", "is not a positive duration"),
        ("0h", "is not a positive duration"),
    ],
)
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        log.parse_duration(text)


def test_listings_leave_out_reconciliation_bookkeeping(tmp_path: Path) -> None:
    """The reconciliation marker and expected responses are records of the
    log, not deliveries: listings show them only when asked for by type."""
    from flask_openai_webhooks.reconcile import _mark_in_use
    from flask_openai_webhooks.reconcile import expect_response

    app = make_app(f"sqlite:///{tmp_path}/log.db")
    with app.app_context():
        post_event(app.test_client(), "batch.completed", webhook_id="wh_real")
        _mark_in_use(app, get_state(app))
        expect_response("resp_1")
        listed = [r.webhook_id for r in log.list_deliveries().records]
        assert listed == ["wh_real"]
        assert [r.event_type for r in log.list_deliveries(type="expect.*").records] == [
            "expect.response"
        ]
        assert log.get_delivery("reconcile:marker") is not None
