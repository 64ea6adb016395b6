"""The WSGI app that ``tests/test_gunicorn.py`` serves with real gunicorn
processes: ``gunicorn 'tests.gunicorn_app:create_app()'``.

Everything is configured through environment variables, since each worker
process builds its own app:

``OPENAI_WEBHOOK_SECRET``
    The signing secret.
``OPENAI_WEBHOOK_STORE``
    ``sqlite:///...``, ``redis://...``, ``postgresql+psycopg://...`` or
    ``mysql+pymysql://...``, shared by every worker and server.
``OPENAI_WEBHOOK_LEASE``
    Seconds a claim lasts (optional), as text: the blueprint reads numbers
    from the environment as it would from ``app.config``.
``REDIS_PREFIX``
    With a Redis URL, the key prefix of the :class:`RedisStore`, so each test
    has its own keys.
``SIDE_EFFECTS_DB``
    An SQLite file where the ``batch.completed`` receiver inserts one row
    ``(webhook_id, pid, time)`` per run, in its own transaction: the real
    side effect the tests count.
``RECEIVER_DELAY``
    Seconds the receiver sleeps before its side effect, so that concurrent
    duplicates overlap, and so that a worker killed meanwhile leaves none.
``PAUSE_FILE``
    While this file exists the receiver waits before its side effect, so a
    test can kill the server at a known moment.
``STARTED_FILE``
    Created by the receiver when it starts, before any waiting.

The receiver is connected at import, but only acts for apps made by
:func:`create_app`, so importing this module elsewhere changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
import typing as t

from flask import Flask

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores.redis import RedisStore

#: ``app.config`` key holding the :class:`ReceiverSettings`.
CONFIG_KEY = "GUNICORN_TEST_RECEIVER"
#: The receiver never waits for ``PAUSE_FILE`` longer than this.
MAX_PAUSE = 60.0

SIDE_EFFECTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS side_effects"
    " (webhook_id TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL)"
)


@dataclasses.dataclass(frozen=True)
class ReceiverSettings:
    side_effects_db: str
    delay: float
    pause_file: str | None
    started_file: str | None


def record_side_effect(sender: Flask, /, *, webhook_id: str, **extra: t.Any) -> None:
    """The ``batch.completed`` receiver: wait as configured, then insert
    one row into the side effects database."""
    settings = sender.config.get(CONFIG_KEY)
    if not isinstance(settings, ReceiverSettings):
        return
    if settings.started_file:
        # Written whole, then renamed: the test never reads half a file.
        partial = f"{settings.started_file}.{os.getpid()}.tmp"
        with open(partial, "w") as f:
            f.write(f"{webhook_id} {os.getpid()}\n")
        os.replace(partial, settings.started_file)
    if settings.delay:
        time.sleep(settings.delay)
    if settings.pause_file:
        deadline = time.monotonic() + MAX_PAUSE
        while os.path.exists(settings.pause_file) and time.monotonic() < deadline:
            time.sleep(0.02)
    conn = sqlite3.connect(settings.side_effects_db, timeout=30)
    try:
        with conn:
            conn.execute(
                "INSERT INTO side_effects (webhook_id, pid, time) VALUES (?, ?, ?)",
                (webhook_id, os.getpid(), time.time()),
            )
    finally:
        conn.close()


batch_completed.connect(record_side_effect, weak=False)


def _store() -> str | DeliveryStore:
    url = os.environ["OPENAI_WEBHOOK_STORE"]
    prefix = os.environ.get("REDIS_PREFIX")
    if prefix and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, prefix=prefix)
    return url


def create_app() -> Flask:
    side_effects_db = os.environ["SIDE_EFFECTS_DB"]
    conn = sqlite3.connect(side_effects_db, timeout=30)
    try:
        with conn:
            conn.execute(SIDE_EFFECTS_SCHEMA)
    finally:
        conn.close()

    app = Flask(__name__)
    app.config.update(
        OPENAI_WEBHOOK_SECRET=os.environ["OPENAI_WEBHOOK_SECRET"],
        OPENAI_WEBHOOK_STORE=_store(),
    )
    lease = os.environ.get("OPENAI_WEBHOOK_LEASE")
    if lease:
        app.config["OPENAI_WEBHOOK_LEASE"] = lease
    app.config[CONFIG_KEY] = ReceiverSettings(
        side_effects_db=side_effects_db,
        delay=float(os.environ.get("RECEIVER_DELAY") or 0),
        pause_file=os.environ.get("PAUSE_FILE") or None,
        started_file=os.environ.get("STARTED_FILE") or None,
    )
    app.register_blueprint(make_blueprint())
    return app
