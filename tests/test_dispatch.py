"""Delivery guarantees through real Flask, against every real store, and
how receivers are called: keys, order, arguments, failures."""

from __future__ import annotations

import collections.abc as c
import gc
import json
import logging
import pathlib
import typing as t
import weakref

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_openai_webhooks import PermanentFailure
from flask_openai_webhooks import RetryLater
from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import QUEUED
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.dispatch import receivers_of
from flask_openai_webhooks.dispatch import signals_for
from flask_openai_webhooks.models import parse_event
from flask_openai_webhooks.process import delivery_of
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores.redis import RedisStore
from flask_openai_webhooks.stores.sqlite import SQLiteStore
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import signed_headers

from .conftest import SECRET
from .services import fresh_database

URL = "/webhooks/openai"


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql", "mariadb"])
def store_config(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> c.Iterator[object]:
    if request.param == "memory":
        yield "memory"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deliveries.db'}"
    elif request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        store = RedisStore(redis_url, prefix=prefix)
        yield store
        store.close()
    else:
        with fresh_database(request.param) as url:
            yield url


def make_app(store_config: object, **config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE=store_config,
        **config,
    )
    app.register_blueprint(make_blueprint())
    return app


@pytest.fixture
def apps() -> c.Iterator[list[Flask]]:
    """Apps made by a test; their stores are closed afterwards, before a
    test database is dropped."""
    made: list[Flask] = []
    yield made
    for app in made:
        store = get_state(app).store
        close = getattr(store, "close", None)
        if close is not None:
            close()


@pytest.fixture
def app(store_config: object, apps: list[Flask]) -> Flask:
    app = make_app(store_config)
    apps.append(app)
    return app


class SignedDelivery:
    """One signed delivery that can be sent again, as OpenAI retries."""

    def __init__(
        self, client: FlaskClient, event_type: str = "batch.completed"
    ) -> None:
        self.client = client
        self.body = json.dumps(make_event(event_type)).encode()
        self.headers = signed_headers(self.body, SECRET)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def logged(self) -> Delivery:
        """What the store is given for this delivery."""
        return delivery_of(parse_event(self.body), self.body, self.webhook_id)

    def send(self) -> t.Any:
        return self.client.post(URL, data=self.body, headers=self.headers)


class Counter:
    """A receiver that counts calls and fails while told to."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls = 0
        self.fail_with = fail_with

    def __call__(self, sender: Flask, **extra: object) -> None:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with


def test_sequential_duplicate_is_acknowledged_and_runs_nothing(
    app: Flask, client: FlaskClient
) -> None:
    counter = Counter()
    delivery = SignedDelivery(client)
    with signals.batch_completed.connected_to(counter, app):
        first = delivery.send()
        second = delivery.send()
    assert first.status_code == 200
    assert second.status_code == 200
    assert second.json == {"status": "duplicate"}
    assert counter.calls == 1


def test_retry_with_fresh_signature_is_still_a_duplicate(
    app: Flask, client: FlaskClient
) -> None:
    """OpenAI re-signs each attempt; only the webhook-id stays."""
    counter = Counter()
    delivery = SignedDelivery(client)
    with signals.batch_completed.connected_to(counter, app):
        delivery.send()
        delivery.headers = signed_headers(
            delivery.body, SECRET, webhook_id=delivery.webhook_id
        )
        assert delivery.send().json == {"status": "duplicate"}
    assert counter.calls == 1


def test_duplicate_while_in_flight_gets_409(app: Flask, client: FlaskClient) -> None:
    counter = Counter()
    delivery = SignedDelivery(client)
    state = get_state(app)
    claim = state.store.claim(delivery.logged(), lease=30, retention=3600)
    assert claim.status == "acquired"
    with signals.batch_completed.connected_to(counter, app):
        response = delivery.send()
    assert response.status_code == 409
    assert response.json is not None
    assert response.json["error"] == "in_flight"
    assert response.headers["Retry-After"] == "30"
    assert counter.calls == 0
    record = state.store.get(delivery.webhook_id)
    assert record is not None
    assert (record.status, record.attempts) == ("processing", 2)
    assert [(h.result, h.status_code) for h in record.history] == [("in_flight", 409)]
    state.store.finish(
        delivery.webhook_id,
        claim.token,
        [],
        status="failed",
        status_code=None,
        source="delivery",
        retention=3600,
    )
    with signals.batch_completed.connected_to(counter, app):
        assert delivery.send().status_code == 200
    assert counter.calls == 1


def test_duplicate_arriving_during_a_receiver_gets_409(
    app: Flask, client: FlaskClient
) -> None:
    delivery = SignedDelivery(client)
    answers: list[int] = []

    def reentrant(sender: Flask, **extra: object) -> None:
        # A second delivery of the same id while this one is still running.
        answers.append(
            app.test_client()
            .post(URL, data=delivery.body, headers=delivery.headers)
            .status_code
        )

    with signals.batch_completed.connected_to(reentrant, app):
        assert delivery.send().status_code == 200
    assert answers == [409]


def test_failed_receiver_gives_500_and_retry_reruns_only_it(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    good = Counter()
    bad = Counter(fail_with=ValueError("database is down"))
    catch_all = Counter()
    failures: list[dict[str, object]] = []

    def on_failed(sender: Flask, **kwargs: object) -> None:
        failures.append(kwargs)

    delivery = SignedDelivery(client)
    with (
        signals.batch_completed.connected_to(good, app),
        signals.batch_completed.connected_to(bad, app),
        signals.webhook_received.connected_to(catch_all, app),
        signals.webhook_failed.connected_to(on_failed, app),
        caplog.at_level(logging.ERROR, "flask_openai_webhooks"),
    ):
        first = delivery.send()
        assert first.status_code == 500
        assert first.json is not None
        assert first.json["error"] == "receiver_failed"
        assert "database is down" not in first.get_data(as_text=True)
        assert (good.calls, bad.calls, catch_all.calls) == (1, 1, 1)
        [failure] = failures
        assert failure["receiver"] is bad
        assert isinstance(failure["exception"], ValueError)
        assert failure["webhook_id"] == delivery.webhook_id
        assert failure["blueprint"] == "openai_webhooks"
        assert failure["event"].type == "batch.completed"  # type: ignore[attr-defined]
        assert delivery.webhook_id in caplog.text
        assert "Traceback" in caplog.text

        bad.fail_with = None
        second = delivery.send()
        assert second.status_code == 200
        assert (good.calls, bad.calls, catch_all.calls) == (1, 2, 1)

        assert delivery.send().json == {"status": "duplicate"}
        assert (good.calls, bad.calls, catch_all.calls) == (1, 2, 1)


def test_retry_later_gives_503_with_retry_after(
    app: Flask, client: FlaskClient
) -> None:
    waiting = Counter(fail_with=RetryLater(after=120, reason="rate limited"))
    delivery = SignedDelivery(client)
    with signals.batch_completed.connected_to(waiting, app):
        response = delivery.send()
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "120"
        waiting.fail_with = None
        assert delivery.send().status_code == 200
    assert waiting.calls == 2


def test_mixed_retry_later_and_crash_gives_500(app: Flask, client: FlaskClient) -> None:
    with (
        signals.batch_completed.connected_to(Counter(RetryLater(5)), app),
        signals.batch_completed.connected_to(Counter(KeyError("x")), app),
    ):
        assert SignedDelivery(client).send().status_code == 500


def test_permanent_failure_is_acknowledged_and_not_retried(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    doomed = Counter(fail_with=PermanentFailure("batch belongs to another project"))
    failures: list[object] = []
    delivery = SignedDelivery(client)

    def on_failed(sender: Flask, **kwargs: object) -> None:
        failures.append(kwargs["exception"])

    with (
        signals.batch_completed.connected_to(doomed, app),
        signals.webhook_failed.connected_to(on_failed, app),
        caplog.at_level(logging.WARNING, "flask_openai_webhooks"),
    ):
        assert delivery.send().status_code == 200
        assert delivery.send().json == {"status": "duplicate"}
    assert doomed.calls == 1
    assert len(failures) == 1
    assert "another project" in caplog.text


def test_ack_mode_acknowledges_failures(
    store_config: object, apps: list[Flask]
) -> None:
    app = make_app(store_config, OPENAI_WEBHOOK_ON_ERROR="ack")
    apps.append(app)
    broken = Counter(fail_with=RuntimeError("boom"))
    failures: list[object] = []

    def on_failed(sender: Flask, **kwargs: object) -> None:
        failures.append(kwargs)

    delivery = SignedDelivery(app.test_client())
    with (
        signals.batch_completed.connected_to(broken, app),
        signals.webhook_failed.connected_to(on_failed, app),
    ):
        assert delivery.send().status_code == 200
        assert delivery.send().json == {"status": "duplicate"}
    assert broken.calls == 1
    assert len(failures) == 1
    record = get_state(app).store.get(delivery.webhook_id)
    assert record is not None
    assert record.status == "gave_up"


def test_failing_failure_receiver_is_ignored(app: Flask, client: FlaskClient) -> None:
    def bad_reporter(sender: Flask, **kwargs: object) -> None:
        raise RuntimeError("the error tracker is down too")

    with (
        signals.batch_completed.connected_to(Counter(ValueError()), app),
        signals.webhook_failed.connected_to(bad_reporter, app),
    ):
        assert SignedDelivery(client).send().status_code == 500


def test_receivers_are_keyed_by_signal_module_and_qualname() -> None:
    def local_receiver(sender: object, **extra: object) -> None: ...

    key = receiver_key(signals.batch_completed, local_receiver)
    assert key == (
        "batch.completed:tests.test_dispatch."
        "test_receivers_are_keyed_by_signal_module_and_qualname.<locals>.local_receiver"
    )


def test_unreachable_store_gives_503_and_runs_nothing(apps: list[Flask]) -> None:
    """A Redis store pointed at a port nobody listens on."""
    app = make_app(RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.5))
    apps.append(app)
    counter = Counter()
    with signals.batch_completed.connected_to(counter, app):
        response = SignedDelivery(app.test_client()).send()
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["error"] == "store_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert counter.calls == 0


def test_muted_signals_are_not_sent(app: Flask, client: FlaskClient) -> None:
    """blinker's ``muted()`` works on our signals although dispatch calls
    receivers one by one."""
    counter = Counter()
    with (
        signals.batch_completed.connected_to(counter, app),
        signals.batch_completed.muted(),
    ):
        assert SignedDelivery(client).send().status_code == 200
    assert counter.calls == 0


def test_receivers_run_and_are_keyed_in_connection_order() -> None:
    """blinker iterates a set of ids, so without sorting the order (and the
    #N suffixes of same-named receivers) would depend on memory addresses
    and differ between workers."""

    def make(n: int) -> t.Callable[..., None]:
        def same_name(sender: object, **extra: object) -> None: ...

        same_name.n = n  # type: ignore[attr-defined]
        return same_name

    app = Flask(__name__)
    receivers = [make(n) for n in range(30)]
    # Connect in an order unrelated to the functions' addresses.
    order = sorted(range(30), key=lambda n: (n * 7919) % 31)
    for n in order:
        signals.batch_failed.connect(receivers[n], sender=app)
    try:
        found = receivers_of([signals.batch_failed], app)
    finally:
        for fn in receivers:
            signals.batch_failed.disconnect(fn)
    assert [fn.n for _, fn, _ in found] == order  # type: ignore[attr-defined]
    keys = [key for key, _, _ in found]
    assert keys[0].endswith(".same_name")
    assert keys[1:] == [f"{keys[0]}#{i}" for i in range(2, 31)]


def test_store_failure_between_receivers_gives_503_not_a_crash(
    redis_url: str, redis_prefix: str, apps: list[Flask]
) -> None:
    """The store breaks while receivers run (here the record, documented as
    the hash ``prefix + "d:" + webhook_id``, is overwritten with a string,
    so Redis answers WRONGTYPE): every receiver still runs, the answer is
    503 so OpenAI retries, and the retry is processed."""
    import redis

    app = make_app(RedisStore(redis_url, prefix=redis_prefix))
    apps.append(app)
    client = redis.Redis.from_url(redis_url)
    delivery = SignedDelivery(app.test_client())
    breaking = True
    record_key = redis_prefix + "d:" + delivery.webhook_id

    def breaker(sender: Flask, webhook_id: str, **extra: object) -> None:
        if breaking:
            client.set(record_key, "not a hash")

    second = Counter()
    with (
        signals.batch_completed.connected_to(breaker, app),
        signals.batch_completed.connected_to(second, app),
    ):
        response = delivery.send()
        assert response.status_code == 503
        assert response.json is not None
        assert response.json["error"] == "store_unavailable"
        assert second.calls == 1

        breaking = False
        client.delete(record_key)
        assert delivery.send().status_code == 200
        assert delivery.send().json == {"status": "duplicate"}
    client.close()


def test_base_exception_releases_the_claim(app: Flask, client: FlaskClient) -> None:
    """A receiver interrupted past Exception (a worker timeout, a cancelled
    task) must not leave the delivery claimed until the lease runs out."""
    import asyncio

    interrupted = True

    def receiver(sender: Flask, **extra: object) -> None:
        if interrupted:
            raise asyncio.CancelledError

    delivery = SignedDelivery(client)
    with signals.batch_completed.connected_to(receiver, app):
        with pytest.raises(asyncio.CancelledError):
            delivery.send()
        interrupted = False
        assert delivery.send().json == {"status": "processed"}


def test_receivers_slower_than_the_lease_are_logged(
    store_config: object, apps: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    import time

    app = make_app(store_config, OPENAI_WEBHOOK_LEASE=0.05)
    apps.append(app)

    def slow(sender: Flask, **extra: object) -> None:
        time.sleep(0.1)

    with (
        signals.batch_completed.connected_to(slow, app),
        caplog.at_level(logging.WARNING, "flask_openai_webhooks"),
    ):
        assert SignedDelivery(app.test_client()).send().status_code == 200
    assert "longer than OPENAI_WEBHOOK_LEASE" in caplog.text


def test_progress_is_saved_between_receivers(app: Flask, client: FlaskClient) -> None:
    """A delivery interrupted after its first receiver succeeded (here the
    second is cancelled, as a worker timeout would) does not run the first
    again on the retry: its success was written before the second ran."""
    import asyncio

    first = Counter()
    interrupted = True

    def second(sender: Flask, **extra: object) -> None:
        if interrupted:
            raise asyncio.CancelledError

    delivery = SignedDelivery(client)
    with (
        signals.batch_completed.connected_to(first, app),
        signals.batch_completed.connected_to(second, app),
    ):
        with pytest.raises(asyncio.CancelledError):
            delivery.send()
        interrupted = False
        assert delivery.send().json == {"status": "processed"}
    assert first.calls == 1


def test_permanent_failure_is_not_retried_beside_a_crash(
    app: Flask, client: FlaskClient
) -> None:
    doomed = Counter(fail_with=PermanentFailure("not ours"))
    flaky = Counter(fail_with=ValueError("transient"))
    delivery = SignedDelivery(client)
    with (
        signals.batch_completed.connected_to(doomed, app),
        signals.batch_completed.connected_to(flaky, app),
    ):
        assert delivery.send().status_code == 500
        flaky.fail_with = None
        assert delivery.send().status_code == 200
    assert (doomed.calls, flaky.calls) == (1, 2)


def test_retention_counts_from_the_last_arrival(tmp_path: pathlib.Path) -> None:
    """A settled delivery is a duplicate for OPENAI_WEBHOOK_RETENTION
    seconds after it last arrived; then it is forgotten and would run
    again. (The retention is a minimum: a memory store keeps records past
    it until it needs the room.)"""
    now = [1_000_000.0]
    store = SQLiteStore(tmp_path / "log.db", clock=lambda: now[0])
    app = make_app(store, OPENAI_WEBHOOK_RETENTION=400)
    counter = Counter()
    delivery = SignedDelivery(app.test_client())
    try:
        with signals.batch_completed.connected_to(counter, app):
            assert delivery.send().json == {"status": "processed"}
            now[0] += 399
            # An arrival keeps it for another full retention.
            assert delivery.send().json == {"status": "duplicate"}
            now[0] += 399
            assert delivery.send().json == {"status": "duplicate"}
            now[0] += 401
            assert store.get(delivery.webhook_id) is None
            assert delivery.send().json == {"status": "processed"}
    finally:
        store.close()
    assert counter.calls == 2


def test_apps_and_blueprints_keep_their_own_delivery_state() -> None:
    """The same webhook-id at two endpoints is two deliveries."""
    app_a, app_b = Flask("a"), Flask("b")
    for app in (app_a, app_b):
        app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app_a.register_blueprint(make_blueprint())
    app_b.register_blueprint(make_blueprint(name="one"), url_prefix="/one")
    app_b.register_blueprint(make_blueprint(name="two"), url_prefix="/two")
    body = json.dumps(make_event("batch.completed")).encode()
    headers = signed_headers(body, SECRET)
    heard: list[tuple[str, str]] = []

    def on_batch(sender: Flask, *, blueprint: str, **extra: object) -> None:
        heard.append((sender.name, blueprint))

    with signals.batch_completed.connected_to(on_batch):
        answers = [
            app_a.test_client().post(URL, data=body, headers=headers).json,
            app_b.test_client().post("/one", data=body, headers=headers).json,
            app_b.test_client().post("/two", data=body, headers=headers).json,
        ]
    assert answers == [{"status": "processed"}] * 3
    assert heard == [("a", "openai_webhooks"), ("b", "one"), ("b", "two")]


def test_retry_after_follows_the_lease_and_the_longest_retry_later(
    store_config: object, apps: list[Flask]
) -> None:
    app = make_app(store_config, OPENAI_WEBHOOK_LEASE=7)
    apps.append(app)
    client = app.test_client()
    delivery = SignedDelivery(client)
    claim = get_state(app).store.claim(delivery.logged(), lease=7, retention=3600)
    assert claim.status == "acquired"
    assert delivery.send().headers["Retry-After"] == "7"
    with (
        signals.batch_completed.connected_to(Counter(RetryLater(5)), app),
        signals.batch_completed.connected_to(Counter(RetryLater(120)), app),
        signals.batch_completed.connected_to(Counter(RetryLater(30)), app),
    ):
        response = SignedDelivery(client).send()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "120"


def test_a_queued_receiver_is_logged_as_queued_and_not_run_again(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that handed its work to a task queue returns QUEUED: the
    task settles it later, so OpenAI's retry does not run it again."""
    handed_off = Counter()

    def enqueue(sender: Flask, **extra: object) -> t.Any:
        handed_off(sender)
        return QUEUED

    delivery = SignedDelivery(client)
    with signals.batch_completed.connected_to(enqueue, app):
        assert delivery.send().json == {"status": "processed"}
        assert delivery.send().json == {"status": "processed"}
    assert handed_off.calls == 1
    record = get_state(app).store.get(delivery.webhook_id)
    assert record is not None
    assert [(r.key, r.outcome) for r in record.receivers] == [
        (receiver_key(signals.batch_completed, enqueue), "queued")
    ]
    # Waiting for its task: neither done nor failed.
    assert record.status == "processing"
    assert repr(QUEUED) == "QUEUED"


def test_same_named_receivers_are_logged_apart(app: Flask, client: FlaskClient) -> None:
    """Three closures made in a loop share a name: they are logged as
    ``name``, ``name#2``, ``name#3``, and a retry runs only the one that
    failed."""

    def make(fail: bool) -> t.Callable[..., None]:
        def closure(sender: Flask, **extra: object) -> None:
            calls.append(fail)
            if fail and failing:
                raise ValueError("the second one fails")

        return closure

    calls: list[bool] = []
    failing = True
    receivers = [make(False), make(True), make(False)]
    for fn in receivers:
        signals.batch_completed.connect(fn, sender=app)
    delivery = SignedDelivery(client)
    try:
        assert delivery.send().status_code == 500
        failing = False
        assert delivery.send().status_code == 200
    finally:
        for fn in receivers:
            signals.batch_completed.disconnect(fn)
    assert calls == [False, True, False, True]
    record = get_state(app).store.get(delivery.webhook_id)
    assert record is not None
    base = receiver_key(signals.batch_completed, receivers[0])
    assert [(r.key, r.outcome, r.attempts) for r in record.receivers] == [
        (base, "ok", 1),
        (f"{base}#2", "ok", 2),
        (f"{base}#3", "ok", 1),
    ]


def test_per_type_receivers_run_before_the_catch_all(
    app: Flask, client: FlaskClient
) -> None:
    order: list[str] = []

    def catch_all(sender: Flask, **extra: object) -> None:
        order.append("webhook-received")

    def per_type(sender: Flask, **extra: object) -> None:
        order.append("batch.completed")

    assert signals_for("batch.completed") == [
        signals.batch_completed,
        signals.webhook_received,
    ]
    assert signals_for("video.completed") == [signals.webhook_received]
    with (
        signals.webhook_received.connected_to(catch_all, app),
        signals.batch_completed.connected_to(per_type, app),
    ):
        assert SignedDelivery(client).send().status_code == 200
    assert order == ["batch.completed", "webhook-received"]


# --------------------------------------------------------------------------
# The receiver lists kept between deliveries
# --------------------------------------------------------------------------


def memory_app(apps: list[Flask]) -> Flask:
    app = make_app("memory")
    apps.append(app)
    return app


def keys_of(app: Flask, event_type: str = "batch.completed") -> list[str]:
    return [key for key, _, _ in receivers_of(signals_for(event_type), app)]


def test_connect_and_disconnect_between_deliveries_are_seen(
    apps: list[Flask],
) -> None:
    """The receivers are found once and kept, but a receiver connected or
    disconnected between two deliveries, with or without
    ``connected_to``, runs from the next delivery on, or no longer."""
    app = memory_app(apps)
    client = app.test_client()
    first, second = Counter(), Counter()
    with signals.batch_completed.connected_to(first, app):
        assert SignedDelivery(client).send().status_code == 200
        signals.batch_completed.connect(second, sender=app, weak=False)
        try:
            assert SignedDelivery(client).send().status_code == 200
            assert (first.calls, second.calls) == (2, 1)
            assert len(keys_of(app)) == 2
        finally:
            signals.batch_completed.disconnect(second)
        assert SignedDelivery(client).send().status_code == 200
        assert (first.calls, second.calls) == (3, 1)
    assert keys_of(app) == []
    # None connected at all now: logged as unhandled.
    assert SignedDelivery(client).send().json == {"status": "unhandled"}
    assert (first.calls, second.calls) == (3, 1)


def test_a_receiver_connected_to_the_catch_all_or_any_app_is_seen(
    apps: list[Flask],
) -> None:
    """Connections to ``webhook_received`` and for any sender change what
    is kept for every app."""
    app = memory_app(apps)
    client = app.test_client()
    per_type, catch_all = Counter(), Counter()
    with signals.batch_completed.connected_to(per_type, app):
        SignedDelivery(client).send()
        with signals.webhook_received.connected_to(catch_all):
            SignedDelivery(client).send()
        SignedDelivery(client).send()
    assert (per_type.calls, catch_all.calls) == (3, 1)


def test_a_weak_receiver_that_dies_stops_receiving_and_keys_follow(
    apps: list[Flask],
) -> None:
    """blinker drops a collected weak receiver without telling anyone: the
    kept list notices, and the same-named receiver after it is keyed as
    it would be had the first never been connected."""
    app = memory_app(apps)
    client = app.test_client()
    calls: list[int] = []

    def make(n: int) -> t.Callable[..., None]:
        def same_name(sender: Flask, **extra: object) -> None:
            calls.append(n)

        return same_name

    doomed, survivor = make(1), make(2)
    signals.batch_completed.connect(doomed, sender=app)  # weakly
    signals.batch_completed.connect(survivor, sender=app, weak=False)
    try:
        base = receiver_key(signals.batch_completed, survivor)
        assert keys_of(app) == [base, f"{base}#2"]
        assert SignedDelivery(client).send().status_code == 200
        assert calls == [1, 2]
        gone = weakref.ref(doomed)
        del doomed
        gc.collect()
        # The kept list held it weakly: it is collected.
        assert gone() is None
        assert keys_of(app) == [base]
        delivery = SignedDelivery(client)
        assert delivery.send().status_code == 200
        assert calls == [1, 2, 2]
        record = get_state(app).store.get(delivery.webhook_id)
        assert record is not None
        assert [r.key for r in record.receivers] == [base]
    finally:
        signals.batch_completed.disconnect(survivor)


def test_kept_lists_keep_no_receiver_or_app_alive() -> None:
    """Weakly connected receivers, and apps, are collected as they are
    without the kept lists."""

    def create() -> tuple[weakref.ref[Flask], weakref.ref[t.Any]]:
        app = make_app("memory")
        counter = Counter()
        signals.batch_completed.connect(counter, sender=app)  # weakly
        assert SignedDelivery(app.test_client()).send().status_code == 200
        assert counter.calls == 1
        assert len(keys_of(app)) == 1
        return weakref.ref(app), weakref.ref(counter)

    app, counter = create()
    gc.collect()
    assert app() is None
    assert counter() is None


def test_a_reconnected_receiver_moves_to_the_end_of_a_kept_list(
    apps: list[Flask],
) -> None:
    app = memory_app(apps)
    client = app.test_client()
    ran: list[str] = []

    def first(sender: Flask, **extra: object) -> None:
        ran.append("first")

    def second(sender: Flask, **extra: object) -> None:
        ran.append("second")

    signals.batch_completed.connect(first, sender=app)
    signals.batch_completed.connect(second, sender=app)
    try:
        SignedDelivery(client).send()
        signals.batch_completed.disconnect(first)
        signals.batch_completed.connect(first, sender=app)
        SignedDelivery(client).send()
    finally:
        signals.batch_completed.disconnect(first)
        signals.batch_completed.disconnect(second)
    assert ran == ["first", "second", "second", "first"]


def test_muting_and_unmuting_between_deliveries(apps: list[Flask]) -> None:
    app = memory_app(apps)
    client = app.test_client()
    counter = Counter()
    with signals.batch_completed.connected_to(counter, app):
        SignedDelivery(client).send()
        with signals.batch_completed.muted():
            assert keys_of(app) == []
            SignedDelivery(client).send()
        SignedDelivery(client).send()
    assert counter.calls == 2


def test_lists_of_other_signals_and_senders_are_not_kept_stale() -> None:
    """``receivers_of`` is public: with a signal whose connections are not
    watched (``webhook_failed``), or a sender that cannot be weakly
    referenced, the list is found afresh each time."""
    app = Flask(__name__)
    counter = Counter()
    assert receivers_of([signals.webhook_failed], app) == []
    with signals.webhook_failed.connected_to(counter, app):
        assert [fn for _, fn, _ in receivers_of([signals.webhook_failed], app)] == [
            counter
        ]
    assert receivers_of([signals.webhook_failed], app) == []
    assert receivers_of([signals.batch_completed], "a sender") == []
    with signals.batch_completed.connected_to(counter, "a sender"):
        found = receivers_of([signals.batch_completed], "a sender")
        assert [fn for _, fn, _ in found] == [counter]
    assert receivers_of([signals.batch_completed], "a sender") == []
