"""The Flask app that ``tests/test_celery.py`` serves with gunicorn and
runs a real Celery worker for (``tests/celery_worker.py``), and that the
``flask openai-webhooks replay`` subprocess loads.

``batch.completed`` is handed to :func:`record_side_effect`, a
:func:`~flask_openai_webhooks.celery.webhook_task`. Everything is set by
environment variables, since every process builds its own app:

``OPENAI_WEBHOOK_SECRET``, ``OPENAI_WEBHOOK_STORE``, ``OPENAI_WEBHOOK_LEASE``
    The blueprint's settings; the store is shared by every process.
``REDIS_PREFIX``
    With a Redis store URL, the key prefix of the :class:`RedisStore`.
``CELERY_BROKER``, ``CELERY_QUEUE``, ``CELERY_KEYPREFIX``
    The broker URL, a queue of the test's own, and (Redis broker) a key
    prefix of its own, so reruns and parallel runs never share messages.
``SIDE_EFFECTS_DB``
    An SQLite file: the task inserts one ``runs`` row per run and one
    ``side_effects`` row per successful run, each in its own transaction;
    ``webhook_failed`` inserts a ``failed_signals`` row; the worker inserts
    a ``messages_done`` row per message that ended. The tests count those
    rows.
``TASK_MAX_RETRIES``, ``TASK_RETRY_BACKOFF``
    The task's retry settings (no jitter, so a test can watch a failed run
    in the log before the retry).
``RECEIVER_DELAY``
    Seconds a ``webhook_received`` receiver, which runs after the task is
    published, sleeps: the request is still writing the record while the
    worker could run the task.
``PAUSE_FILE``, ``STARTED_FILE``
    While ``PAUSE_FILE`` exists a run waits before its side effect;
    ``STARTED_FILE`` gets ``webhook-id pid`` when a run starts, so a test
    can kill the worker at a known moment.

The receivers are connected at import, for apps made by :func:`create_app`
only, so importing this module elsewhere changes nothing; the test module
never imports it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import typing as t

from celery import shared_task
from flask import current_app
from flask import Flask

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.celery import celery_init_app
from flask_openai_webhooks.celery import enqueue
from flask_openai_webhooks.celery import webhook_task
from flask_openai_webhooks.models import WebhookEvent
from flask_openai_webhooks.signals import webhook_failed
from flask_openai_webhooks.signals import webhook_received
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores import RedisStore

#: ``app.config`` key marking apps made here.
CONFIG_KEY = "CELERY_TEST_APP"
#: A run never waits for ``PAUSE_FILE`` longer than this.
MAX_PAUSE = 60.0

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs"
    " (webhook_id TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS side_effects"
    " (webhook_id TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failed_signals"
    " (webhook_id TEXT NOT NULL, error TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS messages_done (webhook_id TEXT NOT NULL)",
)


def _execute(sql: str, *params: object) -> int:
    """Run one statement in its own transaction on the side-effects file;
    return the count of ``runs`` of the ``webhook-id`` given first."""
    conn = sqlite3.connect(os.environ["SIDE_EFFECTS_DB"], timeout=30)
    try:
        # Counting, not keeping: no fsync per row (the machine won't crash
        # mid-test), which would make the file the slowest part of a run.
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            conn.execute(sql, params)
            row = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE webhook_id = ?", params[:1]
            ).fetchone()
    finally:
        conn.close()
    return int(row[0])


@webhook_task(
    shared_task,
    max_retries=int(os.environ.get("TASK_MAX_RETRIES") or 3),
    retry_backoff=float(os.environ.get("TASK_RETRY_BACKOFF") or 0.2),
    retry_jitter=False,
)
def record_side_effect(event: WebhookEvent, webhook_id: str, **extra: t.Any) -> None:
    """Count the run; fail it if it is one of the first N runs of a batch
    whose id holds ``failN``; wait while ``PAUSE_FILE`` exists; then insert
    the side effect."""
    runs = _execute(
        "INSERT INTO runs (webhook_id, pid, time) VALUES (?, ?, ?)",
        webhook_id,
        os.getpid(),
        time.time(),
    )
    started = os.environ.get("STARTED_FILE")
    if started:
        # Written whole, then renamed: the test never reads half a file.
        partial = f"{started}.{os.getpid()}.tmp"
        with open(partial, "w") as f:
            f.write(f"{webhook_id} {os.getpid()}\n")
        os.replace(partial, started)
    failing = re.search(r"fail(\d+)", str(getattr(event.data, "id", "")))
    if failing is not None and runs <= int(failing.group(1)):
        raise RuntimeError(f"run {runs} of {webhook_id} fails on purpose")
    pause = os.environ.get("PAUSE_FILE")
    if pause:
        deadline = time.monotonic() + MAX_PAUSE
        while os.path.exists(pause) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert current_app.config.get(CONFIG_KEY), "not in the app context"
    _execute(
        "INSERT INTO side_effects (webhook_id, pid, time) VALUES (?, ?, ?)",
        webhook_id,
        os.getpid(),
        time.time(),
    )


def slow_receiver(sender: Flask, /, **extra: t.Any) -> None:
    if sender.config.get(CONFIG_KEY):
        time.sleep(float(os.environ.get("RECEIVER_DELAY") or 0))


def record_failure(
    sender: Flask, /, *, webhook_id: str, exception: Exception, **extra: t.Any
) -> None:
    if sender.config.get(CONFIG_KEY):
        _execute(
            "INSERT INTO failed_signals (webhook_id, error) VALUES (?, ?)",
            webhook_id,
            repr(exception),
        )


def record_message_done(webhook_id: str) -> None:
    """A task message ended without a Celery retry (``tests/celery_worker.py``
    calls it from Celery's ``task_success`` signal)."""
    _execute("INSERT INTO messages_done (webhook_id) VALUES (?)", webhook_id)


enqueue("batch.completed", task=record_side_effect)
webhook_received.connect(slow_receiver, weak=False)
webhook_failed.connect(record_failure, weak=False)


def _store() -> str | DeliveryStore:
    url = os.environ["OPENAI_WEBHOOK_STORE"]
    prefix = os.environ.get("REDIS_PREFIX")
    if prefix and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, prefix=prefix)
    return url


def celery_config() -> dict[str, t.Any]:
    broker = os.environ["CELERY_BROKER"]
    queue = os.environ["CELERY_QUEUE"]
    config: dict[str, t.Any] = {
        "broker_url": broker,
        "task_default_queue": queue,
        "task_default_exchange": queue,
        "task_default_routing_key": queue,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
        "worker_enable_remote_control": False,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
    }
    prefix = os.environ.get("CELERY_KEYPREFIX")
    if prefix and broker.startswith("redis"):
        config["broker_transport_options"] = {"global_keyprefix": prefix}
    return config


def create_app() -> Flask:
    conn = sqlite3.connect(os.environ["SIDE_EFFECTS_DB"], timeout=30)
    try:
        with conn:
            for statement in SCHEMA:
                conn.execute(statement)
    finally:
        conn.close()

    app = Flask(__name__)
    app.config.update(
        {
            CONFIG_KEY: True,
            "OPENAI_WEBHOOK_SECRET": os.environ["OPENAI_WEBHOOK_SECRET"],
            "OPENAI_WEBHOOK_STORE": _store(),
            "CELERY": celery_config(),
        }
    )
    lease = os.environ.get("OPENAI_WEBHOOK_LEASE")
    if lease:
        app.config["OPENAI_WEBHOOK_LEASE"] = float(lease)
    celery_init_app(app)
    app.register_blueprint(make_blueprint())
    return app
