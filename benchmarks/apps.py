"""The Flask apps under test, shared by the in-process, end-to-end and
memory sections so that all three measure the same code.

``bare``
    A plain route that reads the body with ``request.get_data()`` and
    answers 204: what any Flask webhook endpoint costs before it does
    anything. The blueprint is judged against this.
``ours``
    :func:`~flask_openai_webhooks.make_blueprint` at its default URL with a
    given store.

A trivial receiver (:data:`receiver`) is connected to ``batch_completed``
for any sender when this module is imported, so the blueprint's dispatch
really calls something. It counts its calls, which lets a section check
that no delivery was answered as a duplicate.

:func:`create_app` is the factory gunicorn loads in section 3; it is
configured through environment variables because gunicorn workers are
separate processes.
"""

from __future__ import annotations

import collections.abc as c
import os
import secrets
import sqlite3
import typing as t

from flask import Flask
from flask import request

from flask_openai_webhooks import batch_completed
from flask_openai_webhooks import make_blueprint
from flask_openai_webhooks import MemoryStore
from flask_openai_webhooks import RedisStore
from flask_openai_webhooks import SQLiteStore
from flask_openai_webhooks.stores import DeliveryStore

from . import deliveries

#: The Redis server of the Redis cases.
REDIS_URL = "redis://127.0.0.1:6379/0"


class ReceiverCounter:
    """The trivial ``batch_completed`` receiver: counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, sender: object, **kwargs: object) -> None:
        self.calls += 1


#: Connected with a strong reference for the life of the process.
receiver = ReceiverCounter()
batch_completed.connect(receiver, weak=False)


def bare_app(store_floor: c.Callable[[str], None] | None = None) -> Flask:
    """The baseline: a route that reads the body and answers 204.

    :param store_floor: Called with the ``webhook-id`` after the body is
        read, to add the unavoidable cost of a shared store (two writes; see
        :class:`SQLiteFloor` and :class:`RedisFloor`) to the baseline.
    """
    app = Flask("bench_bare")

    @app.post(deliveries.URL)
    def receive() -> tuple[str, int]:
        request.get_data()
        if store_floor is not None:
            store_floor(request.environ["HTTP_WEBHOOK_ID"])
        return "", 204

    return app


class SQLiteFloor:
    """The least a shared SQLite store can do per delivery: two autocommit
    writes (one to claim, one to finish) to a one-table WAL database with
    the same durability settings as :class:`~flask_openai_webhooks.SQLiteStore`
    (``synchronous=NORMAL``). No reads, no JSON, no explicit transaction.
    """

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode = WAL").fetchall()
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS floor"
            " (id TEXT PRIMARY KEY, done INTEGER NOT NULL) WITHOUT ROWID"
        )

    def __call__(self, webhook_id: str) -> None:
        self.conn.execute("INSERT INTO floor VALUES (?, 0)", (webhook_id,))
        self.conn.execute("UPDATE floor SET done = 1 WHERE id = ?", (webhook_id,))

    def close(self) -> None:
        self.conn.close()


class RedisFloor:
    """The least a shared Redis store can do per delivery: two round trips
    (``SET NX`` to claim, ``SET`` to finish) with redis-py, no Lua.
    """

    def __init__(self, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(REDIS_URL, socket_timeout=5.0)
        self.prefix = prefix

    def __call__(self, webhook_id: str) -> None:
        key = self.prefix + webhook_id
        self.client.set(key, "leased", nx=True, px=60_000)
        self.client.set(key, "done", px=60_000)

    def close(self) -> None:
        self.client.close()


def blueprint_app(store: DeliveryStore) -> Flask:
    """An app with our blueprint at its default URL and the given store."""
    app = Flask("bench_blueprint")
    app.register_blueprint(make_blueprint(secret=deliveries.SECRET, store=store))
    return app


def create_app() -> Flask:
    """The gunicorn factory: ``benchmarks.apps:create_app()``.

    ``BENCH_APP`` is ``bare`` or ``ours``; for ``ours``, ``BENCH_STORE`` is
    ``memory``, an SQLite file path, or ``redis`` with the key prefix in
    ``BENCH_REDIS_PREFIX``.
    """
    kind = os.environ.get("BENCH_APP", "bare")
    if kind == "bare":
        return bare_app()
    where = os.environ["BENCH_STORE"]
    store: DeliveryStore
    if where == "memory":
        store = MemoryStore()
    elif where == "redis":
        store = RedisStore(REDIS_URL, prefix=os.environ["BENCH_REDIS_PREFIX"])
    else:
        store = SQLiteStore(where)
    return blueprint_app(store)


def redis_store(prefix: str) -> RedisStore | None:
    """A store on the local Redis under ``prefix``, or ``None`` if Redis is
    not reachable (the Redis cases are then reported as skipped).
    """
    store = RedisStore(REDIS_URL, prefix=prefix, socket_timeout=2.0)
    try:
        store.ping()
    except Exception:
        store.close()
        return None
    return store


def new_redis_prefix() -> str:
    """A key prefix no other run uses, so cleaning up cannot touch other
    data."""
    return f"bench-openai-webhooks:{secrets.token_hex(8)}:"


def delete_redis_keys(prefix: str) -> int:
    """Delete every key under ``prefix``; return how many there were."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5.0)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


def call_wsgi(app: t.Any, environ: dict[str, t.Any], start_response: t.Any) -> None:
    """One WSGI call as a server makes it: iterate the body, then close it
    (Flask's teardown runs on close)."""
    response = app(environ, start_response)
    try:
        for _ in response:
            pass
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()
