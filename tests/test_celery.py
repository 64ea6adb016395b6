"""Background work on Celery: the delivery guarantee carried into the
worker (:mod:`flask_openai_webhooks.celery`).

The first tests run in this process with Celery's eager mode or a broker
that refuses connections. The others start real processes: gunicorn
serving ``tests/celery_app.py``, a Celery worker (``tests/celery_worker.py``)
and, for the broker outage, a ``redis-server`` of the test's own. They use
the machine's RabbitMQ and Redis, each test with a queue (or key prefix) of
its own, and count the task's side effects in an SQLite file.

The last ones follow the delivery's OpenTelemetry trace into the task,
run by Celery's embedded test worker (a thread of this process, so its
spans reach the test's in-memory exporter, or of a fresh interpreter for
the check that tracing off imports nothing).

``tests/celery_app.py`` is never imported here: it connects receivers that
must not reach the other tests' apps.
"""

from __future__ import annotations

import collections
import collections.abc as c
import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import os
import pathlib
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import typing as t

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from flask import current_app
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace import StatusCode

from flask_openai_webhooks import log
from flask_openai_webhooks import PermanentFailure
from flask_openai_webhooks import RetryLater
from flask_openai_webhooks import tracing
from flask_openai_webhooks.attempt import result_for
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.celery import celery_init_app
from flask_openai_webhooks.celery import CelerySetupError
from flask_openai_webhooks.celery import enqueue
from flask_openai_webhooks.celery import webhook_task
from flask_openai_webhooks.models import BatchCompletedWebhookEvent
from flask_openai_webhooks.models import WebhookEvent
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.stores import DeliveryRecord
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores import RedisStore
from flask_openai_webhooks.stores import SQLiteStore
from flask_openai_webhooks.testing import capture_signals
from flask_openai_webhooks.testing import encode_body
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import new_webhook_id
from flask_openai_webhooks.testing import post_event
from flask_openai_webhooks.testing import signed_headers

from .conftest import SECRET
from .services import require_rabbitmq
from .services import unavailable

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PATH = "/webhooks/openai"
TASK = "tests.celery_app.record_side_effect"
KEY = f"batch.completed:{TASK}"
#: Seconds any wait of these tests gives up after; never reached when the
#: code works.
PATIENCE = 60.0


# --------------------------------------------------------------------------
# In this process: eager mode and refused set-ups
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Calls:
    """What a task body saw, one entry per run."""

    events: list[WebhookEvent] = dataclasses.field(default_factory=list)
    webhook_ids: list[str] = dataclasses.field(default_factory=list)
    blueprints: list[str] = dataclasses.field(default_factory=list)
    apps: list[Flask] = dataclasses.field(default_factory=list)


def eager_app(
    store: t.Any = "memory", *, celery: dict[str, t.Any] | None = None
) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE=store,
        CELERY=celery if celery is not None else {"task_always_eager": True},
    )
    celery_init_app(app)
    app.register_blueprint(make_blueprint())
    return app


def task_for(app: Flask, calls: Calls, *, raises: c.Sequence[Exception] = ()) -> t.Any:
    """A webhook task on ``app``'s Celery app, connected to
    ``batch.completed`` for ``app`` only, that raises ``raises`` in turn
    and then succeeds."""
    pending = list(raises)

    def body(event: WebhookEvent, webhook_id: str, **extra: t.Any) -> None:
        calls.events.append(event)
        calls.webhook_ids.append(webhook_id)
        calls.blueprints.append(extra["blueprint"])
        calls.apps.append(current_app._get_current_object())  # type: ignore[attr-defined]
        if pending:
            raise pending.pop(0)

    task = webhook_task(app.extensions["celery"], name=f"test.{secrets.token_hex(4)}")(
        body
    )
    enqueue("batch.completed", task=task, sender=app)
    return task


def receiver(record: DeliveryRecord | None) -> tuple[str, int]:
    """The outcome and attempts of the task's entry, whatever else (the
    test kit's listeners) ran."""
    assert record is not None
    [result] = [
        r
        for r in record.receivers
        if r.key.startswith(("batch.completed:tests.test_celery.", KEY))
    ]
    return result.outcome, result.attempts


def test_eager_mode_runs_the_task_in_the_request_with_the_memory_store() -> None:
    app = eager_app()
    calls = Calls()
    task_for(app, calls)
    client = app.test_client()

    response = post_event(
        client, "batch.completed", data={"id": "batch_1"}, webhook_id="wh_eager"
    )
    again = post_event(
        client, "batch.completed", data={"id": "batch_1"}, webhook_id="wh_eager"
    )

    assert response.status_code == 200, response.get_json()
    assert again.get_json() == {"status": "duplicate"}
    [event] = calls.events
    assert isinstance(event, BatchCompletedWebhookEvent)
    assert event.data.id == "batch_1"
    assert calls.webhook_ids == ["wh_eager"]
    assert calls.blueprints == ["openai_webhooks"]
    assert calls.apps == [app]
    record = get_state(app).store.get("wh_eager")
    assert record is not None and record.status == "processed"
    assert receiver(record) == ("ok", 1)


def test_eager_mode_failures_are_receiver_failures() -> None:
    """In eager mode the task is the receiver: an exception is answered as
    a receiver's, and OpenAI's retry runs it again."""
    app = eager_app()
    calls = Calls()
    task_for(app, calls, raises=[RuntimeError("boom"), RetryLater(after=7)])
    client = app.test_client()
    event = make_event("batch.completed")

    with capture_signals(app) as sent:
        failed = post_event(client, event, webhook_id="wh_fail")
    later = post_event(client, event, webhook_id="wh_fail")
    done = post_event(client, event, webhook_id="wh_fail")

    assert failed.status_code == 500
    assert len(sent.failed) == 1
    assert later.status_code == 503
    assert later.headers["Retry-After"] == "7"
    assert done.status_code == 200
    assert len(calls.events) == 3
    assert receiver(get_state(app).store.get("wh_fail")) == ("ok", 3)


def test_eager_mode_permanent_failure_gives_up() -> None:
    app = eager_app()
    task_for(app, Calls(), raises=[PermanentFailure("not ours")])

    response = post_event(app.test_client(), "batch.completed", webhook_id="wh_no")

    assert response.status_code == 200
    record = get_state(app).store.get("wh_no")
    assert record is not None and record.status == "gave_up"
    assert receiver(record) == ("gave_up", 1)


def test_memory_store_with_a_worker_is_refused_naming_the_stores_that_work() -> None:
    app = eager_app(celery={"broker_url": "redis://127.0.0.1:9/0"})
    calls = Calls()
    task_for(app, calls)

    response = post_event(app.test_client(), "batch.completed", webhook_id="wh_mem")

    assert response.status_code == 500
    record = get_state(app).store.get("wh_mem")
    assert record is not None
    [result] = record.receivers
    assert result.error_type == "flask_openai_webhooks.celery.CelerySetupError"
    for store in ("memory store", "sqlite:///", "redis://", "postgresql://"):
        assert store in (result.error_message or ""), store
    assert calls.events == []


def test_broker_that_refuses_connections_answers_503(tmp_path: pathlib.Path) -> None:
    """Nothing listens on the broker's port: 503 with ``Retry-After``, the
    delivery is failed (not done), and OpenAI's retry publishes again."""
    app = eager_app(
        f"sqlite:///{tmp_path / 'store.db'}",
        celery={"broker_url": f"redis://{HOST}:{_free_port()}/0"},
    )
    task_for(app, Calls())
    client = app.test_client()
    event = make_event("batch.completed")

    first = post_event(client, event, webhook_id="wh_down")
    retry = post_event(client, event, webhook_id="wh_down")

    for response in (first, retry):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
    store = get_state(app).store
    record = store.get("wh_down")
    assert record is not None and record.status == "failed"
    assert record.attempts == 2
    assert receiver(record) == ("retry_later", 2)
    assert record.receivers[0].error_type == "flask_openai_webhooks.celery.PublishError"
    close = getattr(store, "close", None)
    if close is not None:
        close()


def test_celery_init_app_turns_on_publisher_confirms_for_rabbitmq() -> None:
    app = eager_app(celery={"broker_url": "amqp://guest:guest@127.0.0.1:9//"})
    conf = app.extensions["celery"].conf

    assert conf.broker_transport_options["confirm_publish"] is True
    with pytest.raises(CelerySetupError, match="confirm_publish"):
        eager_app(
            celery={
                "broker_url": "amqp://guest:guest@127.0.0.1:9//",
                "broker_transport_options": {"confirm_publish": False},
            }
        )


def test_rabbitmq_without_publisher_confirms_is_refused_at_publish(
    tmp_path: pathlib.Path,
) -> None:
    """A Celery app made without :func:`celery_init_app` and without
    confirms could lose a message after the 2xx: refused, nothing sent."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE=f"sqlite:///{tmp_path / 'store.db'}",
    )
    app.register_blueprint(make_blueprint())
    celery_app = Celery("plain", broker="amqp://guest:guest@127.0.0.1:9//")
    calls = Calls()

    def body(event: WebhookEvent, webhook_id: str, **extra: t.Any) -> None:
        calls.events.append(event)

    task = webhook_task(celery_app, name=f"test.{secrets.token_hex(4)}")(body)
    enqueue("batch.completed", task=task, sender=app)

    response = post_event(app.test_client(), "batch.completed", webhook_id="wh_rmq")

    assert response.status_code == 500
    store = get_state(app).store
    record = store.get("wh_rmq")
    assert record is not None
    assert "confirm_publish" in (record.receivers[0].error_message or "")
    store.close()  # type: ignore[attr-defined]


def test_enqueue_refuses_typos_and_other_callables() -> None:
    celery_app = Celery("checks", set_as_current=False)

    def body(event: WebhookEvent, webhook_id: str, **extra: t.Any) -> None:
        pass

    task = webhook_task(celery_app, name=f"test.{secrets.token_hex(4)}")(body)
    connected = list(batch_completed.receivers_for(object()))

    with pytest.raises(ValueError, match="batch.cancelled"):
        enqueue("batch.canceled", task=task)
    with pytest.raises(TypeError, match="webhook_task"):
        enqueue("batch.completed", task=body)
    with pytest.raises(TypeError, match="enqueue\\('batch.completed'"):
        enqueue(body, task=task)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="autoretry_for"):
        webhook_task(celery_app, autoretry_for=(Exception,))
    with pytest.raises(TypeError, match="parentheses"):
        webhook_task(body)
    assert list(batch_completed.receivers_for(object())) == connected


def test_the_receiver_key_names_the_task() -> None:
    """The publisher's entry in the delivery record is the task's, and
    connecting a task twice connects it once."""
    app = eager_app()

    def import_batch(event: WebhookEvent, webhook_id: str, **extra: t.Any) -> None:
        pass

    task = webhook_task(app.extensions["celery"], name=f"test.{secrets.token_hex(4)}")(
        import_batch
    )
    first = enqueue("batch.*", task=task, sender=app)
    second = enqueue("batch.completed", task=task, sender=app)

    post_event(app.test_client(), "batch.completed", webhook_id="wh_key")

    assert first is second
    record = get_state(app).store.get("wh_key")
    assert record is not None
    mine = [
        r.key for r in record.receivers if r.key.startswith("batch.completed:tests.")
    ]
    assert mine == [
        "batch.completed:tests.test_celery."
        "test_the_receiver_key_names_the_task.<locals>.import_batch"
    ]


def test_a_replay_while_a_task_retry_is_pending_does_not_publish_again(
    tmp_path: pathlib.Path, redis_url: str, redis_prefix: str
) -> None:
    """A failed run leaves a Celery retry on its way: a replay (or an
    OpenAI retry) of the delivery then publishes nothing, or the two
    messages could both succeed. A failure older than the longest retry
    delay is presumed lost, and published again. The broker is the
    machine's Redis, under a prefix of the test's own; no worker runs, and
    the failed runs are written with the store calls a worker makes."""
    queue = f"owh-test-{secrets.token_hex(6)}"
    app = eager_app(
        f"sqlite:///{tmp_path / 'store.db'}",
        celery={
            "broker_url": redis_url,
            "task_default_queue": queue,
            "broker_transport_options": {"global_keyprefix": redis_prefix},
        },
    )
    celery_app = app.extensions["celery"]
    task_for(app, Calls())
    state = get_state(app)
    store = state.store
    import redis

    client = redis.Redis.from_url(redis_url)

    def queued_messages() -> int:
        return int(client.llen(redis_prefix + queue))

    def failed_run(at: float) -> None:
        claim = store.claim_task("wh_pending", key, lease=30)
        assert claim.status == "acquired"
        result = result_for(
            key,
            previous=claim.record,
            started=time.monotonic(),
            error=RuntimeError("boom"),
        )
        store.finish_task(
            "wh_pending",
            claim.token,
            dataclasses.replace(result, at=at),
            retention=state.retention,
        )

    try:
        response = post_event(
            app.test_client(), "batch.completed", webhook_id="wh_pending"
        )
        record = store.get("wh_pending")
        assert record is not None
        [key] = [r.key for r in record.receivers]
        assert (response.status_code, queued_messages()) == (200, 1)

        failed_run(at=time.time())
        assert receiver(store.get("wh_pending"))[0] == "failed"
        pending = log.replay("wh_pending", app=app)
        assert (pending.ok, queued_messages()) == (True, 1)

        failed_run(at=time.time() - 3600)
        lost = log.replay("wh_pending", app=app)
        assert (lost.ok, queued_messages()) == (True, 2)
        assert receiver(store.get("wh_pending"))[0] == "queued"
    finally:
        client.close()
        celery_app.close()
        store.close()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# Real processes
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class Proc:
    """A process started in a process group of its own."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: pathlib.Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole group and wait; SIGKILL it after 15 s."""
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        # Children outliving the group leader (a pool process) get the same.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Processes:
    """Starts the test's processes and stops every one of them."""

    def __init__(self, tmp_path: pathlib.Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.started: list[Proc] = []

    def spawn(
        self, name: str, argv: c.Sequence[str], env: c.Mapping[str, str] | None = None
    ) -> Proc:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_WEBHOOK_", "CELERY", "GUNICORN", "FLASK_"))
        }
        full_env.update(self.env)
        full_env.update(env or {})
        log_path = self.tmp_path / f"{len(self.started)}-{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Proc(name, proc, log_path)
        self.started.append(started)
        return started

    def gunicorn(self, *, workers: int = 1, threads: int = 4) -> int:
        """A gunicorn server of ``tests/celery_app.py``; its port once every
        worker answers."""
        port = _free_port()
        server = self.spawn(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"{HOST}:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--no-control-socket",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                "-",
                "--access-logformat",
                "ACCESS %(p)s %(m)s %(s)s",
                "tests.celery_app:create_app()",
            ],
        )
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                pytest.fail(f"gunicorn exited:\n{server.log()}")
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
            except OSError:
                time.sleep(0.05)
                continue
            finally:
                conn.close()
            pids = {
                line.split()[1]
                for line in server.log().splitlines()
                if line.startswith("ACCESS ")
            }
            if len(pids) >= workers:
                return port
            time.sleep(0.01)
        pytest.fail(f"gunicorn was not ready:\n{server.log()}")

    def worker(self, *, concurrency: int = 1) -> Proc:
        """A Celery worker on the test's queue, once it takes tasks."""
        ready = self.tmp_path / f"ready-{secrets.token_hex(4)}"
        worker = self.spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_worker",
                "worker",
                "--queues",
                self.env["CELERY_QUEUE"],
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "--hostname",
                f"owh-{secrets.token_hex(4)}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            {"READY_FILE": str(ready)},
        )
        wait_for(
            lambda: ready.exists() or worker.proc.poll() is not None,
            lambda: f"the worker did not start:\n{worker.log()}",
        )
        if worker.proc.poll() is not None:
            pytest.fail(f"the worker exited:\n{worker.log()}")
        return worker

    def redis_server(self, port: int) -> Proc:
        """A ``redis-server`` of the test's own, without persistence."""
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        server = self.spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )

        def answers() -> bool:
            try:
                with socket.create_connection((HOST, port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(answers, lambda: f"redis-server did not start:\n{server.log()}")
        return server

    def stop_all(self) -> None:
        for started in reversed(self.started):
            try:
                started.kill()
            finally:
                # Shown by pytest only when the test fails.
                print(f"--- {started.log_path.name} ---\n{started.log()}")


def wait_for(condition: c.Callable[[], object], message: c.Callable[[], str]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message())
        time.sleep(0.02)


@pytest.fixture
def side_effects_db(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "side_effects.db"


@pytest.fixture
def rabbitmq_queue() -> c.Iterator[tuple[str, str]]:
    """The machine's RabbitMQ and a queue (and exchange) of the test's own,
    deleted afterwards."""
    url = require_rabbitmq()
    queue = f"owh-test-{secrets.token_hex(6)}"
    yield url, queue
    cleaner = Celery("cleanup", broker=url, set_as_current=False)
    try:
        with cleaner.connection_for_write() as conn:
            channel = conn.channel()
            try:
                with contextlib.suppress(Exception):
                    channel.queue_delete(queue)
                with contextlib.suppress(Exception):
                    channel.exchange_delete(queue)
            finally:
                channel.close()
    finally:
        cleaner.close()


def base_env(
    store: str, broker: str, queue: str, side_effects_db: pathlib.Path, **extra: str
) -> dict[str, str]:
    return {
        "OPENAI_WEBHOOK_SECRET": SECRET,
        "OPENAI_WEBHOOK_STORE": store,
        "CELERY_BROKER": broker,
        "CELERY_QUEUE": queue,
        "SIDE_EFFECTS_DB": str(side_effects_db),
        **extra,
    }


@pytest.fixture
def processes(tmp_path: pathlib.Path) -> c.Iterator[Processes]:
    started = Processes(tmp_path, {})
    try:
        yield started
    finally:
        started.stop_all()


def counts(path: pathlib.Path, table: str) -> collections.Counter[str]:
    """Rows of a side-effects table by ``webhook-id``."""
    if not path.exists():
        return collections.Counter()
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows = conn.execute(f"SELECT webhook_id FROM {table}").fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        conn.close()
    return collections.Counter(row[0] for row in rows)


@dataclasses.dataclass(frozen=True)
class Delivery:
    webhook_id: str
    body: bytes
    headers: dict[str, str]


def delivery(data_id: str | None = None) -> Delivery:
    webhook_id = new_webhook_id()
    data = {"id": data_id} if data_id else {}
    body = encode_body(make_event("batch.completed", data=data))
    return Delivery(
        webhook_id, body, signed_headers(body, SECRET, webhook_id=webhook_id)
    )


def post(port: int, item: Delivery) -> tuple[int, dict[str, t.Any], str | None]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request(
            "POST",
            PATH,
            body=item.body,
            headers={**item.headers, "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        payload = json.loads(response.read())
    finally:
        conn.close()
    return response.status, payload, response.getheader("Retry-After")


def deliver(port: int, item: Delivery) -> list[tuple[int, str]]:
    """Post as OpenAI does: again while the answer is not 2xx (quickly,
    instead of after ``Retry-After``); every answer, in order."""
    answers = []
    deadline = time.monotonic() + PATIENCE
    while True:
        status, payload, _ = post(port, item)
        answers.append((status, str(payload.get("status") or payload.get("error"))))
        if 200 <= status < 300 or time.monotonic() > deadline:
            return answers
        time.sleep(0.05)


def open_store(env: c.Mapping[str, str]) -> DeliveryStore:
    url = env["OPENAI_WEBHOOK_STORE"]
    if url.startswith("redis://"):
        return RedisStore(url, prefix=env["REDIS_PREFIX"])
    return SQLiteStore(url.removeprefix("sqlite:///"))


def settled(store: DeliveryStore, webhook_id: str, outcome: str) -> bool:
    record = store.get(webhook_id)
    return record is not None and any(
        r.key == KEY and r.outcome == outcome for r in record.receivers
    )


@pytest.mark.timeout(150)
def test_500_deliveries_with_duplicates_run_each_task_once(
    rabbitmq_queue: tuple[str, str],
    processes: Processes,
    redis_url: str,
    redis_prefix: str,
    side_effects_db: pathlib.Path,
) -> None:
    """500 deliveries and 100 duplicates, all concurrently, through gunicorn
    (2 workers x 4 threads) to a worker with 2 processes, sharing a Redis
    store; for 100 of them the test also publishes the task message twice
    more, as a broker redelivering would. Each task body runs and succeeds
    exactly once; every other message is skipped."""
    broker, queue = rabbitmq_queue
    processes.env = base_env(
        redis_url,
        broker,
        queue,
        side_effects_db,
        REDIS_PREFIX=redis_prefix,
        OPENAI_WEBHOOK_LEASE="2",
    )
    port = processes.gunicorn(workers=2)
    processes.worker(concurrency=2)
    items = [delivery() for _ in range(500)]
    sends = [*items, *random.Random(8).sample(items, 100)]
    random.Random(9).shuffle(sends)
    republished = {item.webhook_id for item in random.Random(10).sample(items, 100)}
    copies = Copies(broker, queue)

    def send(item: Delivery) -> list[tuple[int, str]]:
        answers = deliver(port, item)
        with copies.lock:
            first = item.webhook_id in republished
            republished.discard(item.webhook_id)
        if first:
            copies.publish(item.webhook_id, 2)
        return answers

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(send, sends))
    finally:
        copies.close()

    finals = collections.Counter(answer[-1] for answer in answers)
    assert set(finals) <= {(200, "processed"), (200, "duplicate")}, finals
    assert {a for answer in answers for a in answer[:-1]} <= {(409, "in_flight")}
    assert copies.sent == 200
    wait_for(
        lambda: counts(side_effects_db, "messages_done").total() >= 700,
        lambda: f"{counts(side_effects_db, 'messages_done').total()} of 700 ended",
    )
    store = open_store(processes.env)
    try:
        records = [store.get(item.webhook_id) for item in items]
    finally:
        store.close()  # type: ignore[attr-defined]
    expected = {item.webhook_id: 1 for item in items}
    assert counts(side_effects_db, "side_effects") == expected
    assert counts(side_effects_db, "runs") == expected
    assert counts(side_effects_db, "messages_done").total() == 700
    statuses = collections.Counter(r.status for r in records if r is not None)
    assert statuses == {"processed": 500}, statuses
    assert all(receiver(record)[0] == "ok" for record in records)


class Copies:
    """Publishes extra copies of a delivery's task message by task name,
    from this process, without importing the task."""

    def __init__(self, broker: str, queue: str) -> None:
        self.app = Celery(f"copies-{queue}", broker=broker, set_as_current=False)
        self.app.conf.update(
            broker_transport_options={"confirm_publish": True},
            task_default_queue=queue,
            task_default_exchange=queue,
            task_default_routing_key=queue,
        )
        self.lock = threading.Lock()
        self.sent = 0

    def publish(self, webhook_id: str, copies: int) -> None:
        kwargs = {
            "webhook_id": webhook_id,
            "blueprint": "openai_webhooks",
            "key": KEY,
            # Older than the delivery: as the original message's.
            "published_at": 0.0,
        }
        with self.lock:
            for _ in range(copies):
                self.app.send_task(TASK, kwargs=kwargs)
                self.sent += 1

    def close(self) -> None:
        self.app.close()


@pytest.mark.timeout(120)
def test_broker_stopped_then_restarted(
    processes: Processes, tmp_path: pathlib.Path, side_effects_db: pathlib.Path
) -> None:
    """With the broker (a redis-server of the test's own) stopped,
    deliveries are answered 503 + ``Retry-After`` and nothing is done;
    once it is back, OpenAI's retries are processed, each once.

    A receiver that runs after the publishing one takes 0.3 s, so the
    worker gets each message while the request is still writing the
    record: the worker waits for it, and the status ends ``processed``."""
    broker_port = _free_port()
    broker = processes.redis_server(broker_port)
    processes.env = base_env(
        f"sqlite:///{tmp_path / 'store.db'}",
        f"redis://{HOST}:{broker_port}/0",
        "owh-outage",
        side_effects_db,
        RECEIVER_DELAY="0.3",
    )
    port = processes.gunicorn(workers=1)
    processes.worker()
    warm = delivery()
    assert deliver(port, warm) == [(200, "processed")]
    wait_for(
        lambda: counts(side_effects_db, "side_effects")[warm.webhook_id] == 1,
        lambda: "the first delivery was not processed",
    )

    broker.kill(signal.SIGTERM)
    items = [delivery() for _ in range(5)]
    refused = [post(port, item) for item in items]
    store = open_store(processes.env)
    try:
        records = [store.get(item.webhook_id) for item in items]
        broker = processes.redis_server(broker_port)
        answers = [deliver(port, item) for item in items]
        wait_for(
            lambda: all(settled(store, item.webhook_id, "ok") for item in items),
            lambda: f"not processed after the broker came back: {answers}",
        )
        done = [store.get(item.webhook_id) for item in [warm, *items]]
    finally:
        store.close()  # type: ignore[attr-defined]

    for status, payload, retry_after in refused:
        assert (status, payload["error"], retry_after) == (503, "retry_later", "30")
    for record in records:
        assert record is not None and record.status == "failed"
        assert receiver(record)[0] == "retry_later"
    assert all(answer[-1] == (200, "processed") for answer in answers), answers
    assert [r.status if r else None for r in done] == ["processed"] * 6
    expected = {item.webhook_id: 1 for item in [warm, *items]}
    assert counts(side_effects_db, "side_effects") == expected
    assert counts(side_effects_db, "runs") == expected


@pytest.mark.timeout(120)
@pytest.mark.parametrize("killed", ["pool process", "whole worker"])
def test_worker_killed_mid_task_runs_it_once_after_the_lease(
    killed: str,
    rabbitmq_queue: tuple[str, str],
    processes: Processes,
    tmp_path: pathlib.Path,
    side_effects_db: pathlib.Path,
) -> None:
    """SIGKILL while the task body runs, before its side effect: the
    message comes back (``reject_on_worker_lost`` for a pool process,
    ``acks_late`` when the whole worker dies and is restarted), and once
    the dead run's lease expired it runs to success, once."""
    broker, queue = rabbitmq_queue
    pause = tmp_path / "pause"
    started = tmp_path / "started"
    pause.touch()
    processes.env = base_env(
        f"sqlite:///{tmp_path / 'store.db'}",
        broker,
        queue,
        side_effects_db,
        OPENAI_WEBHOOK_LEASE="3",
        PAUSE_FILE=str(pause),
        STARTED_FILE=str(started),
    )
    port = processes.gunicorn(workers=1)
    worker = processes.worker()
    item = delivery()

    assert deliver(port, item) == [(200, "processed")]
    wait_for(started.exists, lambda: f"the task did not start:\n{worker.log()}")
    webhook_id, pid = started.read_text().split()
    assert webhook_id == item.webhook_id
    if killed == "pool process":
        os.kill(int(pid), signal.SIGKILL)
    else:
        worker.kill(signal.SIGKILL)
    pause.unlink()
    if killed == "whole worker":
        processes.worker()

    store = open_store(processes.env)
    try:
        wait_for(
            lambda: settled(store, item.webhook_id, "ok"),
            lambda: f"not processed after the kill:\n{processes.started[-1].log()}",
        )
        record = store.get(item.webhook_id)
    finally:
        store.close()  # type: ignore[attr-defined]
    assert counts(side_effects_db, "runs") == {item.webhook_id: 2}
    assert counts(side_effects_db, "side_effects") == {item.webhook_id: 1}
    assert record is not None and record.status == "processed"


@pytest.mark.timeout(120)
def test_failed_runs_are_logged_retried_and_replayed(
    rabbitmq_queue: tuple[str, str],
    processes: Processes,
    tmp_path: pathlib.Path,
    side_effects_db: pathlib.Path,
) -> None:
    """With ``max_retries=2``: a task that fails twice then succeeds shows
    in ``log --status failed`` meanwhile and ends with three attempts and
    one success; one that fails three times is ``gave_up``,
    ``webhook_failed`` is sent in the worker, and
    ``flask openai-webhooks replay`` publishes it again."""
    broker, queue = rabbitmq_queue
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    processes.env = base_env(
        store_url,
        broker,
        queue,
        side_effects_db,
        TASK_MAX_RETRIES="2",
        TASK_RETRY_BACKOFF="1",
    )
    port = processes.gunicorn(workers=1)
    processes.worker()
    twice = delivery("batch_fail2")
    thrice = delivery("batch_fail3")
    log_app = Flask(__name__)
    log_app.config.update(OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_STORE=store_url)
    log_app.register_blueprint(make_blueprint())
    store = get_state(log_app).store

    def failed_ids() -> set[str]:
        result = log_app.test_cli_runner().invoke(
            args=["openai-webhooks", "log", "--status", "failed", "--json"]
        )
        assert result.exit_code == 0, result.output
        return {json.loads(line)["webhook_id"] for line in result.output.splitlines()}

    try:
        assert deliver(port, twice) == [(200, "processed")]
        assert deliver(port, thrice) == [(200, "processed")]
        wait_for(
            lambda: twice.webhook_id in failed_ids(),
            lambda: "the failed run was not in 'log --status failed'",
        )
        wait_for(
            lambda: (
                settled(store, twice.webhook_id, "ok")
                and settled(store, thrice.webhook_id, "gave_up")
            ),
            lambda: f"not settled:\n{processes.started[-1].log()}",
        )
        gave_up = store.get(thrice.webhook_id)
        assert counts(side_effects_db, "failed_signals") == {thrice.webhook_id: 1}

        replay = subprocess.run(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "tests.celery_app:create_app",
                "openai-webhooks",
                "replay",
                thrice.webhook_id,
            ],
            cwd=ROOT,
            env={**os.environ, **processes.env},
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        wait_for(
            lambda: settled(store, thrice.webhook_id, "ok"),
            lambda: f"the replay was not processed:\n{processes.started[-1].log()}",
        )
        done_twice = store.get(twice.webhook_id)
        done_thrice = store.get(thrice.webhook_id)
    finally:
        store.close()  # type: ignore[attr-defined]

    assert done_twice is not None and done_twice.status == "processed"
    assert receiver(done_twice) == ("ok", 3)
    task_history = [h.result for h in done_twice.history if h.source == "task"]
    assert task_history == ["failed", "failed", "processed"]
    assert gave_up is not None and gave_up.status == "gave_up"
    assert receiver(gave_up) == ("gave_up", 3)
    assert done_thrice is not None and done_thrice.status == "processed"
    assert receiver(done_thrice) == ("ok", 4)
    assert counts(side_effects_db, "runs") == {
        twice.webhook_id: 3,
        thrice.webhook_id: 4,
    }
    assert counts(side_effects_db, "side_effects") == {
        twice.webhook_id: 1,
        thrice.webhook_id: 1,
    }
    assert counts(side_effects_db, "failed_signals") == {thrice.webhook_id: 1}


# --------------------------------------------------------------------------
# Tracing: the delivery's trace continues in the task
# --------------------------------------------------------------------------


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> c.Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def traced_app(provider: TracerProvider, store: str, celery: dict[str, t.Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE=store,
        OPENAI_WEBHOOK_TRACING=provider,
        CELERY=celery,
    )
    celery_init_app(app)
    app.register_blueprint(make_blueprint())
    return app


def redis_celery(redis_url: str, redis_prefix: str) -> dict[str, t.Any]:
    """Celery settings for the machine's Redis as broker, with a queue and
    a key prefix of the test's own, for a worker in this process."""
    queue = f"owh-test-{secrets.token_hex(6)}"
    return {
        "broker_url": redis_url,
        "broker_transport_options": {"global_keyprefix": redis_prefix},
        "broker_connection_retry_on_startup": True,
        "task_default_queue": queue,
        "task_default_exchange": queue,
        "task_default_routing_key": queue,
        "task_ignore_result": True,
        "worker_enable_remote_control": False,
        "worker_hijack_root_logger": False,
    }


def traced_task(app: Flask, provider: TracerProvider) -> t.Any:
    """A webhook task that starts a span of its own and raises for a batch
    whose id holds ``fail``, with no retries, connected for ``app``."""
    tracer = provider.get_tracer("the-task")

    def body(event: WebhookEvent, webhook_id: str, **extra: t.Any) -> None:
        with tracer.start_as_current_span("task-own-work"):
            if "fail" in str(getattr(event.data, "id", "")):
                raise RuntimeError(f"the task failed for {webhook_id}")

    return webhook_task(
        app.extensions["celery"],
        name=f"test.traced.{secrets.token_hex(4)}",
        max_retries=0,
    )(body)


def finished(
    exporter: InMemorySpanExporter,
    name: str,
    webhook_id: str,
    receiver: str | None = None,
) -> ReadableSpan:
    """The one finished span called ``name`` of a delivery (of one
    receiver, if given)."""
    found = [
        span
        for span in exporter.get_finished_spans()
        if span.name == name
        and attributes_of(span).get(tracing.WEBHOOK_ID) == webhook_id
        and (receiver is None or attributes_of(span)[tracing.RECEIVER] == receiver)
    ]
    assert len(found) == 1, (name, webhook_id, exporter.get_finished_spans())
    return found[0]


def own_work(exporter: InMemorySpanExporter, trace_id: int) -> ReadableSpan:
    """The span the task body of :func:`traced_task` started, in a trace."""
    [span] = [
        span
        for span in exporter.get_finished_spans()
        if span.name == "task-own-work" and ids_of(span)[0] == trace_id
    ]
    return span


def attributes_of(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def ids_of(span: ReadableSpan) -> tuple[int, int]:
    """``(trace_id, span_id)`` of a finished span."""
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def exception_of(span: ReadableSpan) -> dict[str, object]:
    """The attributes of the one exception recorded on ``span``."""
    [event] = [e for e in span.events if e.name == "exception"]
    return dict(event.attributes or {})


@pytest.mark.timeout(60)
def test_the_trace_travels_into_a_task_run_by_a_worker(
    tmp_path: pathlib.Path,
    redis_url: str,
    redis_prefix: str,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """Deliveries posted through the traced blueprint publish to the
    machine's Redis; Celery's embedded test worker (a thread of this
    process, so its spans reach the same exporter) takes the messages from
    there. The task's span continues the delivery's trace, as the child of
    the receiver span that published it, received over the wire; a task
    that raises has its exception on that span, with status ``ERROR``."""
    app = traced_app(
        tracer_provider,
        f"sqlite:///{tmp_path / 'store.db'}",
        redis_celery(redis_url, redis_prefix),
    )
    celery_app = app.extensions["celery"]
    task = traced_task(app, tracer_provider)
    publisher = enqueue("batch.completed", task=task, sender=app)
    key = publisher.key("batch.completed")
    store = get_state(app).store
    carriers: dict[str, t.Any] = {}

    def received(sender: t.Any = None, **kwargs: t.Any) -> None:
        message = kwargs.get("kwargs") or {}
        if message.get("key") == key:
            carriers[message["webhook_id"]] = message.get("trace")

    task_prerun.connect(received, weak=False)
    try:
        with start_worker(
            celery_app, perform_ping_check=False, loglevel="WARNING"
        ) as worker:
            assert worker is not None
            client = app.test_client()
            ok = post_event(
                client, "batch.completed", data={"id": "batch_ok"}, webhook_id="wh_ok"
            )
            bad = post_event(
                client,
                "batch.completed",
                data={"id": "batch_fail"},
                webhook_id="wh_bad",
            )
            assert (ok.status_code, bad.status_code) == (200, 200)
            wait_for(
                lambda: (
                    receiver(store.get("wh_ok"))[0] == "ok"
                    and receiver(store.get("wh_bad"))[0] == "gave_up"
                ),
                lambda: f"not settled: {store.get('wh_ok')} {store.get('wh_bad')}",
            )
    finally:
        task_prerun.disconnect(received)
        celery_app.close()
        store.close()  # type: ignore[attr-defined]

    for webhook_id in ("wh_ok", "wh_bad"):
        root = finished(exporter, tracing.DELIVERY_SPAN, webhook_id)
        published = finished(exporter, tracing.RECEIVER_SPAN, webhook_id, key)
        task_span = finished(exporter, tracing.TASK_SPAN, webhook_id)
        trace_id, published_id = ids_of(published)

        # What the message carried: the receiver span that published.
        carrier = carriers[webhook_id]
        assert carrier["traceparent"].split("-")[1:3] == [
            f"{trace_id:032x}",
            f"{published_id:016x}",
        ]
        assert ids_of(root)[0] == trace_id
        assert attributes_of(published)[tracing.OUTCOME] == "queued"
        assert task_span.kind is SpanKind.CONSUMER
        assert ids_of(task_span)[0] == trace_id
        assert parent_id(task_span) == published_id
        # Continued from the message, not from a context left in the thread.
        assert task_span.parent is not None and task_span.parent.is_remote
        assert attributes_of(task_span) == {
            tracing.WEBHOOK_ID: webhook_id,
            tracing.RECEIVER: key,
            tracing.BLUEPRINT: "openai_webhooks",
        }
        # The task's own spans nest under the task span.
        assert parent_id(own_work(exporter, trace_id)) == ids_of(task_span)[1]

    worked = finished(exporter, tracing.TASK_SPAN, "wh_ok")
    assert worked.status.status_code is StatusCode.UNSET
    assert not [e for e in worked.events if e.name == "exception"]
    failed = finished(exporter, tracing.TASK_SPAN, "wh_bad")
    assert failed.status.status_code is StatusCode.ERROR
    recorded = exception_of(failed)
    assert str(recorded["exception.type"]).endswith("RuntimeError")
    assert recorded["exception.message"] == "the task failed for wh_bad"


def test_an_eager_task_runs_inside_the_deliverys_trace(
    tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """In eager mode the task body is the publishing receiver, run in the
    request: its spans nest under that receiver's span, in the delivery's
    trace, and its exception is recorded there."""
    app = traced_app(tracer_provider, "memory", {"task_always_eager": True})
    task = traced_task(app, tracer_provider)
    key = enqueue("batch.completed", task=task, sender=app).key("batch.completed")
    client = app.test_client()

    ok = post_event(
        client, "batch.completed", data={"id": "batch_ok"}, webhook_id="wh_ok"
    )
    bad = post_event(
        client, "batch.completed", data={"id": "batch_fail"}, webhook_id="wh_bad"
    )

    assert (ok.status_code, bad.status_code) == (200, 500)
    for webhook_id in ("wh_ok", "wh_bad"):
        root = finished(exporter, tracing.DELIVERY_SPAN, webhook_id)
        ran = finished(exporter, tracing.RECEIVER_SPAN, webhook_id, key)
        trace_id, ran_id = ids_of(ran)
        assert ids_of(root)[0] == trace_id
        assert parent_id(own_work(exporter, trace_id)) == ran_id
    worked = finished(exporter, tracing.RECEIVER_SPAN, "wh_ok", key)
    assert worked.status.status_code is StatusCode.UNSET
    failed = finished(exporter, tracing.RECEIVER_SPAN, "wh_bad", key)
    assert failed.status.status_code is StatusCode.ERROR
    assert exception_of(failed)["exception.message"] == "the task failed for wh_bad"


_UNTRACED_WORKER = """
import json
import sys
import time

from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from flask import Flask

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.celery import celery_init_app
from flask_openai_webhooks.celery import enqueue
from flask_openai_webhooks.celery import webhook_task
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.testing import post_event

secret, store_url, celery = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = Flask("untraced")
app.config.update(
    TESTING=True,
    OPENAI_WEBHOOK_SECRET=secret,
    OPENAI_WEBHOOK_STORE=store_url,
    CELERY=celery,
)
celery_app = celery_init_app(app)
app.register_blueprint(make_blueprint())
ran = []


@webhook_task(celery_app, name="untraced.task", max_retries=0)
def untraced(event, webhook_id, **extra):
    ran.append(webhook_id)


key = enqueue("batch.completed", task=untraced, sender=app).key("batch.completed")
carriers = []
task_prerun.connect(
    lambda sender=None, **kw: carriers.append(kw["kwargs"].get("trace", "missing")),
    weak=False,
)
store = get_state(app).store
outcome = None
try:
    with start_worker(celery_app, perform_ping_check=False, loglevel="WARNING"):
        status = post_event(
            app.test_client(), "batch.completed", webhook_id="wh_untraced"
        ).status_code
        deadline = time.monotonic() + 30
        while outcome != "ok" and time.monotonic() < deadline:
            record = store.get("wh_untraced")
            result = None if record is None else record.receiver(key)
            outcome = None if result is None else result.outcome
            time.sleep(0.02)
finally:
    celery_app.close()
    store.close()
print(
    json.dumps(
        {
            "status": status,
            "outcome": outcome,
            "ran": ran,
            "carriers": carriers,
            "opentelemetry": sorted(
                name for name in sys.modules if name.split(".")[0] == "opentelemetry"
            ),
        }
    )
)
"""


@pytest.mark.timeout(60)
def test_with_tracing_off_the_message_carries_no_trace_and_nothing_imports_it(
    tmp_path: pathlib.Path, rabbitmq_queue: tuple[str, str]
) -> None:
    """In a fresh interpreter, where OpenTelemetry is installed but no
    blueprint turns tracing on: a delivery published to RabbitMQ and run by
    Celery's embedded worker carries ``trace: {}``, and neither the
    request nor the worker imports ``opentelemetry``.

    RabbitMQ, not Redis, because redis-py (8) imports OpenTelemetry's
    metrics API itself whenever it is installed."""
    broker, queue = rabbitmq_queue
    celery = {
        "broker_url": broker,
        "broker_connection_retry_on_startup": True,
        # Without AMQP heartbeats the embedded worker stops in a second.
        "broker_heartbeat": 0,
        "task_default_queue": queue,
        "task_default_exchange": queue,
        "task_default_routing_key": queue,
        "task_ignore_result": True,
        "worker_enable_remote_control": False,
        "worker_hijack_root_logger": False,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _UNTRACED_WORKER,
            SECRET,
            f"sqlite:///{tmp_path / 'store.db'}",
            json.dumps(celery),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "status": 200,
        "outcome": "ok",
        "ran": ["wh_untraced"],
        "carriers": [{}],
        "opentelemetry": [],
    }
