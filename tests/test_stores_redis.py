"""What only :class:`~flask_openai_webhooks.stores.redis.RedisStore` does,
against the Redis server at 127.0.0.1:6379 and ``redis-server`` processes
started by the tests (to freeze one, or to choose its persistence). The
behaviour every store shares is in ``test_stores.py``.
"""

from __future__ import annotations

import base64
import collections.abc as c
import contextlib
import itertools
import multiprocessing
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import typing as t

import pytest
import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.errors import StoreError
from flask_openai_webhooks.signals import webhook_received
from flask_openai_webhooks.state import webhook_url
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores import derive_status
from flask_openai_webhooks.stores import OUTCOMES
from flask_openai_webhooks.stores import ReceiverResult
from flask_openai_webhooks.stores import store_from_config
from flask_openai_webhooks.stores.redis import RedisStore
from flask_openai_webhooks.testing import encode_body
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import signed_headers

from .services import require_redis
from .services import unavailable

LONG = 3600.0


# --------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------


def _forget(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def prefix() -> str:
    return f"test-owh-redis:{secrets.token_hex(6)}:"


@pytest.fixture
def client(prefix: str) -> c.Iterator[redis.Redis]:
    """A plain client on the shared server, to look at what the store
    wrote; the test's keys are deleted afterwards."""
    url = require_redis()
    plain = redis.Redis.from_url(url)
    try:
        yield plain
    finally:
        _forget(plain, prefix)
        plain.close()


@pytest.fixture
def store(client: redis.Redis, prefix: str) -> c.Iterator[RedisStore]:
    opened = RedisStore(require_redis(), prefix=prefix)
    yield opened
    opened.close()


def new_id() -> str:
    return f"wh_{secrets.token_hex(12)}"


def delivery(webhook_id: str | None = None, *, at: float | None = None) -> Delivery:
    return Delivery(
        webhook_id=webhook_id or new_id(),
        event_type="batch.completed",
        event_id=f"evt_{secrets.token_hex(8)}",
        object_id="batch_abc123",
        created_at=1719168000,
        body=b'{"type":"batch.completed","data":{"id":"batch_abc123"}}',
        received_at=time.time() if at is None else at,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(
    directory: pathlib.Path, *options: str
) -> c.Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A ``redis-server`` of our own on a free loopback port, with
    ``options`` on its command line; stopped (and continued first, if the
    test froze it) on the way out."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    port = _free_port()
    workdir = directory / f"redis-{port}"
    workdir.mkdir()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--dir", str(workdir), *options]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        probe = redis.Redis.from_url(
            url, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        try:
            for _ in range(200):
                if process.poll() is not None:
                    pytest.fail(f"redis-server {options} exited: {process.returncode}")
                try:
                    probe.ping()
                    break
                except (redis.RedisError, OSError):
                    time.sleep(0.05)
            else:
                pytest.fail(f"redis-server {options} did not answer")
        finally:
            probe.close()
        yield process, url
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _values(client: redis.Redis, prefix: str) -> bytes:
    """Every key under ``prefix``, its value read by type, and its DUMP."""
    out: list[object] = []
    for key in client.scan_iter(match=prefix + "*"):
        out.append(key)
        kind = client.type(key)
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                out += [field, value]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
        else:
            out.append(client.get(key) or b"")
        out.append(client.dump(key) or b"")
    return b"\n".join(v if isinstance(v, bytes) else str(v).encode() for v in out)


# --------------------------------------------------------------------------
# The status a task's result leaves, computed in Lua
# --------------------------------------------------------------------------

_COMBINATIONS = [
    combination
    for size in range(1, len(OUTCOMES) + 1)
    for combination in itertools.combinations(OUTCOMES, size)
]


# Every non-empty set of outcomes; the empty set cannot reach Lua (a task
# always brings its result).
@pytest.mark.parametrize("outcomes", _COMBINATIONS, ids="+".join)
def test_lua_status_is_derive_status(
    store: RedisStore, outcomes: tuple[str, ...]
) -> None:
    # finish_task derives the status in Lua; it must be derive_status's.
    results = [
        ReceiverResult(f"receiver_{n}", t.cast(t.Any, outcome))
        for n, outcome in enumerate(outcomes)
    ]
    d = delivery()
    claim = store.claim(d, lease=LONG, retention=LONG)
    *earlier, task = results
    store.finish(
        d.webhook_id,
        claim.token,
        earlier,
        status="processing",
        status_code=202,
        source="delivery",
        retention=LONG,
    )
    store.finish_task(d.webhook_id, "", task, retention=LONG)

    record = store.get(d.webhook_id)
    assert record is not None
    assert record.status == derive_status(results)
    assert record.history[-1].result == derive_status(results)


# --------------------------------------------------------------------------
# Reliability
# --------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_frozen_server_is_a_store_error(tmp_path: pathlib.Path) -> None:
    # SIGSTOP leaves the port accepting connections but nothing answers:
    # what a hung or swapping server looks like. The request must fail
    # (503, OpenAI retries) instead of hanging the worker.
    with redis_server(tmp_path, "--save", "", "--appendonly", "no") as (
        process,
        url,
    ):
        store = RedisStore(url)
        try:
            assert store.claim(delivery(), lease=LONG, retention=LONG).status == (
                "acquired"
            )
            frozen = delivery()
            os.kill(process.pid, signal.SIGSTOP)
            try:
                with pytest.raises(StoreError, match="Timeout"):
                    store.claim(frozen, lease=LONG, retention=LONG)
                with pytest.raises(StoreError):
                    store.ping()
            finally:
                os.kill(process.pid, signal.SIGCONT)

            store.ping()
            assert store.claim(delivery(), lease=LONG, retention=LONG).status == (
                "acquired"
            )
            # The script sent while frozen may have run once the server
            # continued, with nobody to read the reply: its lease then
            # holds the delivery until it expires, and the retry is told
            # in_flight. It is never lost or run twice.
            again = store.claim(frozen, lease=LONG, retention=LONG)
            assert again.status in ("acquired", "in_flight")
        finally:
            store.close()


def _timeouts(store: RedisStore) -> tuple[object, object]:
    kwargs = store.client.connection_pool.connection_kwargs
    return kwargs["socket_timeout"], kwargs["socket_connect_timeout"]


def test_timeouts_default_to_about_a_second(store: RedisStore) -> None:
    assert _timeouts(store) == (1.0, 1.0)
    retry = store.client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == 1
    store.ping()


def test_timeout_argument(client: redis.Redis, prefix: str) -> None:
    store = RedisStore(require_redis(), prefix=prefix, socket_timeout=2.5)
    try:
        assert _timeouts(store) == (2.5, 2.5)
        store.ping()
    finally:
        store.close()


def test_timeouts_in_the_url_take_precedence(client: redis.Redis, prefix: str) -> None:
    url = require_redis() + "?socket_timeout=5&socket_connect_timeout=7"
    store = RedisStore(url, prefix=prefix, socket_timeout=2.5)
    try:
        assert _timeouts(store) == (5.0, 7.0)
        store.ping()
    finally:
        store.close()
    configured = store_from_config(url)
    assert isinstance(configured, RedisStore)
    try:
        assert _timeouts(configured) == (5.0, 7.0)
    finally:
        configured.close()


def test_unreachable_server_error_has_no_password() -> None:
    url = f"redis://owh:s3cr3t-pw@127.0.0.1:{_free_port()}/2"
    store = RedisStore(url)
    try:
        assert store.describe() == "redis://owh@127.0.0.1:" + url.split(":")[-1]
        with pytest.raises(StoreError) as info:
            store.claim(delivery(), lease=LONG, retention=LONG)
        assert "s3cr3t" not in str(info.value)
        assert "127.0.0.1" in str(info.value)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("options", "warns"),
    [
        (("--save", "", "--appendonly", "no"), True),
        (("--save", "", "--appendonly", "yes"), False),
        (("--save", "3600 1", "--appendonly", "no"), False),
        # CONFIG disabled, as on many managed services: nothing to tell.
        (("--save", "", "--appendonly", "no", "--rename-command", "CONFIG", ""), False),
    ],
)
def test_persistence(
    tmp_path: pathlib.Path, options: tuple[str, ...], warns: bool
) -> None:
    with redis_server(tmp_path, *options) as (_, url):
        store = RedisStore(url)
        try:
            warning = store.persistence()
        finally:
            store.close()
    if warns:
        assert warning is not None
        assert "appendonly" in warning
        assert "restart" in warning
    else:
        assert warning is None


def test_persistence_of_unreachable_server_is_a_store_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_free_port()}/0")
    try:
        with pytest.raises(StoreError):
            store.persistence()
    finally:
        store.close()


# --------------------------------------------------------------------------
# What is stored
# --------------------------------------------------------------------------


def test_redis_holds_no_secret_or_signature(client: redis.Redis, prefix: str) -> None:
    # Deliveries through the real blueprint: processed, retried, failed,
    # refused. Whatever Redis holds afterwards must not contain the secret
    # or any webhook-signature sent.
    key = b"redis-store-secret-test-key!!!!!"
    secret = "whsec_" + base64.b64encode(key).decode()
    store = RedisStore(require_redis(), prefix=prefix)
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=secret)
    app.register_blueprint(make_blueprint(store=store))
    url = webhook_url(app)

    def flaky(sender: object, **extra: t.Any) -> None:
        if extra["event"].type == "batch.failed":
            raise RuntimeError("the receiver failed")

    sent: list[str] = []

    def post(event_type: str, webhook_id: str, *, forge: bool = False) -> int:
        body = encode_body(make_event(event_type))
        headers = signed_headers(body, secret, webhook_id=webhook_id)
        if forge:
            headers["webhook-signature"] = (
                "v1," + base64.b64encode(secrets.token_bytes(32)).decode()
            )
        sent.append(headers["webhook-signature"])
        with app.test_client() as http:
            return http.post(url, data=body, headers=headers).status_code

    webhook_received.connect(flaky, app)
    try:
        done, failed = new_id(), new_id()
        assert post("batch.completed", done) == 200
        assert post("batch.completed", done) == 200
        assert post("batch.failed", failed) >= 500
        assert post("batch.failed", failed) >= 500
        assert post("batch.completed", new_id(), forge=True) == 400
    finally:
        webhook_received.disconnect(flaky, app)
        store.close()

    stored = _values(client, prefix)
    assert done.encode() in stored and failed.encode() in stored
    assert b"the receiver failed" in stored
    assert key not in stored
    assert secret.encode() not in stored
    assert secret.removeprefix("whsec_").encode() not in stored
    assert b"v1," not in stored
    for signature in sent:
        for part in signature.split():
            assert part.removeprefix("v1,").encode() not in stored


def test_timestamps_and_text_round_trip(store: RedisStore) -> None:
    # Results are written as JSON by Python and never re-encoded by Lua,
    # whose cjson keeps only 14 digits: times come back exactly.
    d = delivery(at=1719168000.1234567)
    claim = store.claim(d, lease=LONG, retention=LONG)
    exact = ReceiverResult(
        "exact",
        "failed",
        attempts=3,
        duration=0.000123456789,
        at=time.time() + 0.000000123,
        error_type="ValueError",
        error_message='non-ASCII: é ✓ 😀 \x00 "quoted" \\',
    )
    # A lone surrogate cannot be encoded as UTF-8 (nor decoded by Lua):
    # it becomes "?" instead of failing the delivery.
    lone = ReceiverResult("lone", "ok", error_message="bad \udc80 byte")
    store.record(d.webhook_id, claim.token, [exact, lone])
    store.finish(
        d.webhook_id,
        claim.token,
        [],
        status="failed",
        status_code=500,
        source="delivery",
        retention=LONG,
    )

    record = store.get(d.webhook_id)
    assert record is not None
    assert record.first_received_at == d.received_at
    assert record.receiver("exact") == exact
    lone_stored = record.receiver("lone")
    assert lone_stored is not None
    assert lone_stored.error_message == "bad ? byte"


def test_layout_and_expiry(store: RedisStore, client: redis.Redis, prefix: str) -> None:
    d = delivery()
    claim = store.claim(d, lease=60.0, retention=120.0)
    key = prefix + "d:" + d.webhook_id
    assert client.hget(key, "body") == d.body
    assert client.zscore(prefix + "deliveries", d.webhook_id) == d.received_at
    assert 0 < client.pttl(key) <= 120_000

    store.finish(
        d.webhook_id,
        claim.token,
        [ReceiverResult("a", "ok")],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    assert 120_000 < client.pttl(key) <= LONG * 1000
    # A shorter retention later never shortens it.
    store.claim(d, lease=1.0, retention=1.0)
    assert 120_000 < client.pttl(key) <= LONG * 1000


def test_expired_records_leave_the_index(
    store: RedisStore, client: redis.Redis, prefix: str
) -> None:
    index = prefix + "deliveries"
    start = time.time() - 1000
    ids = [new_id() for _ in range(4)]
    for n, webhook_id in enumerate(ids):
        store.claim(delivery(webhook_id, at=start + n), lease=LONG, retention=LONG)

    # What Redis does when their retention runs out.
    client.delete(prefix + "d:" + ids[0], prefix + "d:" + ids[1])
    client.delete(prefix + "d:" + ids[2])

    # A listing skips the ids it meets and drops them.
    page = store.list_deliveries(limit=10)
    assert [r.webhook_id for r in page.records] == [ids[3]]
    assert client.zcard(index) == 1

    # A new delivery drops up to two stale ids from the old end.
    more = [new_id() for _ in range(2)]
    for webhook_id in more:
        store.claim(delivery(webhook_id, at=start - 10), lease=LONG, retention=LONG)
    client.delete(prefix + "d:" + more[0], prefix + "d:" + more[1])
    store.claim(delivery(), lease=LONG, retention=LONG)
    assert client.zscore(index, more[0]) is None
    assert client.zscore(index, more[1]) is None

    # Prune drops them too, without counting them as pruned.
    stale = new_id()
    store.claim(delivery(stale, at=start - 20), lease=LONG, retention=LONG)
    client.delete(prefix + "d:" + stale)
    # ids[3] is old enough too, but leased.
    assert store.prune(older_than=500) == 0
    assert client.zscore(index, stale) is None


def test_pages_through_ties(store: RedisStore) -> None:
    # More deliveries with the same arrival time than one batch of the
    # index walk holds: each is listed exactly once.
    at = time.time()
    ids = {new_id() for _ in range(230)}
    for webhook_id in ids:
        store.claim(delivery(webhook_id, at=at), lease=LONG, retention=LONG)

    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_deliveries(limit=40, before=cursor)
        seen += [r.webhook_id for r in page.records]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert sorted(seen, reverse=True) == seen
    assert set(seen) == ids and len(seen) == len(ids)

    failed = store.list_deliveries(status=["failed"], limit=5)
    assert failed.records == () and failed.cursor is None


def test_corrupt_record_is_a_store_error(
    store: RedisStore, client: redis.Redis, prefix: str
) -> None:
    d = delivery()
    store.claim(d, lease=LONG, retention=LONG)
    client.hset(prefix + "d:" + d.webhook_id, "attempts", "many")
    with pytest.raises(StoreError, match="corrupt"):
        store.get(d.webhook_id)
    client.hset(prefix + "d:" + d.webhook_id, "rkeys", "not json")
    with pytest.raises(StoreError):
        store.record(d.webhook_id, "", [ReceiverResult("a", "ok")])


# --------------------------------------------------------------------------
# Clients and configuration
# --------------------------------------------------------------------------


def test_passed_client_with_decoded_responses(client: redis.Redis, prefix: str) -> None:
    # Shared with the application, and left open for it.
    shared = redis.Redis.from_url(require_redis(), decode_responses=True)
    try:
        store = RedisStore(shared, prefix=prefix)
        d = delivery()
        claim = store.claim(d, lease=LONG, retention=LONG)
        assert claim.status == "acquired"
        store.finish(
            d.webhook_id,
            claim.token,
            [ReceiverResult("a", "ok")],
            status="processed",
            status_code=200,
            source="delivery",
            retention=LONG,
        )
        assert store.claim(d, lease=LONG, retention=LONG).status == "done"
        record = store.get(d.webhook_id)
        assert record is not None and record.body == d.body
        assert [r.webhook_id for r in store.list_deliveries().records] == [d.webhook_id]
        store.reject("signature_mismatch", d.webhook_id, time.time())
        assert store.rejections().counts == {"signature_mismatch": 1}
        store.close()
        assert shared.ping()
    finally:
        shared.close()


def test_hash_tag_prefix(client: redis.Redis) -> None:
    # What Redis Cluster needs: every key of the store in one slot.
    prefix = "{" + f"test-owh-redis-{secrets.token_hex(6)}" + "}:"
    store = RedisStore(require_redis(), prefix=prefix)
    try:
        d = delivery()
        assert store.claim(d, lease=LONG, retention=LONG).status == "acquired"
        store.reject("body_too_large", None, time.time())
        assert [r.webhook_id for r in store.list_deliveries().records] == [d.webhook_id]
        keys = [k.decode() for k in client.scan_iter(match=prefix + "*")]
        assert len(keys) == 4
        assert all(k.startswith(prefix) for k in keys)
    finally:
        store.close()
        _forget(client, prefix)


def test_close_twice(client: redis.Redis, prefix: str) -> None:
    store = RedisStore(require_redis(), prefix=prefix)
    store.ping()
    store.close()
    store.close()


def test_works_without_redis_installed() -> None:
    # Importing the package must not need redis; creating the store says
    # how to install it.
    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "import flask_openai_webhooks\n"
        "from flask_openai_webhooks.stores import store_from_config\n"
        "for make in (lambda: flask_openai_webhooks.RedisStore('redis://x'),\n"
        "             lambda: store_from_config('redis://x')):\n"
        "    try:\n"
        "        make()\n"
        "    except RuntimeError as e:\n"
        "        print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    assert all("pip install Flask-OpenAI-Webhooks[redis]" in line for line in lines)


# --------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------

ROUNDS = 15


def test_threads_claiming_one_delivery(store: RedisStore) -> None:
    workers = 12
    barrier = threading.Barrier(workers)
    ids = [new_id() for _ in range(ROUNDS)]
    statuses: list[list[str]] = [[] for _ in ids]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n, webhook_id in enumerate(ids):
                barrier.wait(timeout=30)
                claim = store.claim(delivery(webhook_id), lease=LONG, retention=LONG)
                statuses[n].append(claim.status)
        except BaseException as e:  # reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for webhook_id, seen in zip(ids, statuses, strict=True):
        assert sorted(seen) == ["acquired"] + ["in_flight"] * (workers - 1)
        record = store.get(webhook_id)
        assert record is not None
        assert record.attempts == workers
        assert [h.result for h in record.history] == ["in_flight"] * (workers - 1)


def _claim_in_process(
    url: str,
    prefix: str,
    ids: list[str],
    barrier: t.Any,
    results: t.Any,
) -> None:
    store = RedisStore(url, prefix=prefix)
    try:
        for webhook_id in ids:
            barrier.wait(timeout=60)
            claim = store.claim(delivery(webhook_id), lease=LONG, retention=LONG)
            results.put((webhook_id, claim.status))
    finally:
        store.close()


@pytest.mark.timeout(120)
def test_processes_claiming_one_delivery(store: RedisStore, prefix: str) -> None:
    workers = 6
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    results = context.SimpleQueue()
    ids = [new_id() for _ in range(ROUNDS)]
    processes = [
        context.Process(
            target=_claim_in_process,
            args=(require_redis(), prefix, ids, barrier, results),
        )
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    try:
        assert [p.exitcode for p in processes] == [0] * workers
        seen: dict[str, list[str]] = {webhook_id: [] for webhook_id in ids}
        while not results.empty():
            webhook_id, status = results.get()
            seen[webhook_id].append(status)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
            process.close()
        results.close()
    for webhook_id in ids:
        assert sorted(seen[webhook_id]) == ["acquired"] + ["in_flight"] * (workers - 1)
        record = store.get(webhook_id)
        assert record is not None and record.attempts == workers
