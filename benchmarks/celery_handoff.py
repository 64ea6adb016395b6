"""Section 5: handing a delivery to Celery (:mod:`flask_openai_webhooks.celery`).

Two measurements, for RabbitMQ (publisher confirms on, as
:func:`~flask_openai_webhooks.celery.celery_init_app` sets them) and for
Redis as the broker, with the Redis store:

**The hand-off in the request**, in-process (as section 2), interleaved:

``publish:<broker>``
    The floor: a bare route that reads the body and calls ``apply_async``
    with the same message (``webhook-id``, blueprint, key, publish time)
    and the same retry policy as the library, then answers 204.
``ours:<broker>``
    The blueprint with the Redis store, the task connected with
    :func:`~flask_openai_webhooks.celery.enqueue`: verify, parse, claim,
    publish once the broker accepted, finish. Judged for RabbitMQ.

Both publish to a queue of this run's own, which no worker consumes; it is
deleted at the end.

**Latency from POST to task start**, with one worker (``-c 1``, started
here as a subprocess): deliveries are posted one at a time, 10 ms apart,
through the in-process app; the task records the wall-clock time it starts
in Redis. The time includes the worker waiting for the request to finish
writing the record, which it must (see the module's documentation).

The worker is this module: ``python -c "from benchmarks.celery_handoff
import run_worker; run_worker()"`` with the ``BENCH_CELERY_*`` variables.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import typing as t

from flask import Flask
from flask import request

from flask_openai_webhooks import make_blueprint
from flask_openai_webhooks.celery import celery_init_app
from flask_openai_webhooks.celery import enqueue
from flask_openai_webhooks.celery import PUBLISH_RETRY_POLICY
from flask_openai_webhooks.celery import webhook_task
from flask_openai_webhooks.models import WebhookEvent
from flask_openai_webhooks.stores.redis import RedisStore

from . import deliveries
from .apps import call_wsgi
from .apps import close_store
from .harness import format_seconds
from .harness import paired_difference
from .harness import paired_medians
from .harness import paired_ratio
from .harness import Row
from .harness import run_interleaved
from .harness import Samples
from .harness import Target
from .inprocess import environ_factory
from .inprocess import wsgi_case
from .services import delete_redis_keys
from .services import redis_reachable
from .services import REDIS_URL

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: The brokers, in table order, with their titles.
BROKERS = {
    "rabbitmq": "RabbitMQ, publisher confirms",
    "redis": "Redis",
}
#: The judged figure: the whole delivery with its hand-off, against the
#: publish alone.
HANDOFF_VS_PUBLISH = Target(
    "Celery hand-off in the request / bare route + the same apply_async",
    "<=",
    1.3,
)
TASK_NAME = "benchmarks.celery_handoff.record_start"
BLUEPRINT = "openai_webhooks"
#: Not ``batch.completed``: :mod:`benchmarks.apps` connects a counting
#: receiver to that one for every app, which would add a receiver (and a
#: store write between receivers) that the floor does not have.
EVENT_TYPE = "batch.failed"
KEY = f"{EVENT_TYPE}:{__name__}.record_start"
#: Seconds between two posts of the latency measurement.
LATENCY_SPACING = 0.01
#: Seconds any wait on the worker gives up after.
PATIENCE = 60.0


def record_start(event: WebhookEvent, webhook_id: str, **extra: t.Any) -> None:
    """The task of the latency measurement: note when it started."""
    client = _redis()
    client.rpush(
        os.environ["BENCH_CELERY_PREFIX"] + "starts", f"{webhook_id} {time.time()!r}"
    )


_CLIENT: list[t.Any] = []


def _redis() -> t.Any:
    if not _CLIENT:
        import redis

        _CLIENT.append(redis.Redis.from_url(REDIS_URL, socket_timeout=5))
    return _CLIENT[0]


def celery_config(broker: str, queue: str, prefix: str) -> dict[str, t.Any]:
    """Celery settings private to this run: its own queue, and its own key
    prefix on a Redis broker."""
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
    if broker.startswith("redis"):
        config["broker_transport_options"] = {"global_keyprefix": prefix + "broker:"}
    return config


def make_app(broker: str, queue: str, prefix: str) -> Flask:
    """The blueprint with the Redis store under ``prefix``, its Celery app
    (:func:`~flask_openai_webhooks.celery.celery_init_app`) and the task,
    connected for this app only. The web side and the worker build the
    same."""
    app = Flask(f"bench_celery_{queue}")
    app.config.update(
        OPENAI_WEBHOOK_SECRET=deliveries.SECRET,
        OPENAI_WEBHOOK_STORE=RedisStore(REDIS_URL, prefix=prefix + "store:"),
        CELERY=celery_config(broker, queue, prefix),
    )
    celery_app = celery_init_app(app)
    app.register_blueprint(make_blueprint())
    # Not shared: one process holds a Celery app per broker, each with its
    # own copy of the task under the same name.
    task = webhook_task(celery_app, name=TASK_NAME, shared=False)(record_start)
    enqueue(EVENT_TYPE, task=task, sender=app)
    app.extensions["bench_task"] = task
    return app


def publish_app(task: t.Any) -> Flask:
    """The floor: read the body, publish the same message, answer 204."""
    app = Flask("bench_publish")
    policy = dict(PUBLISH_RETRY_POLICY)

    @app.post(deliveries.URL)
    def receive() -> tuple[str, int]:
        request.get_data()
        task.apply_async(
            kwargs={
                "webhook_id": request.headers["webhook-id"],
                "blueprint": BLUEPRINT,
                "key": KEY,
                "published_at": time.time(),
                "failures": 0,
            },
            retry=True,
            retry_policy=policy,
        )
        return "", 204

    return app


def run_worker() -> None:
    """The latency measurement's worker: one process (``-c 1``)."""
    broker = os.environ["BENCH_CELERY_BROKER"]
    queue = os.environ["BENCH_CELERY_QUEUE"]
    prefix = os.environ["BENCH_CELERY_PREFIX"]
    app = make_app(broker, queue, prefix)

    from celery.signals import worker_ready

    def ready(**kwargs: t.Any) -> None:
        _redis().set(prefix + "ready", "1")

    worker_ready.connect(ready, weak=False)
    app.extensions["celery"].worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--concurrency",
            "1",
            "--hostname",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ]
    )


def _broker_url(broker: str) -> str:
    return RABBITMQ_URL if broker == "rabbitmq" else REDIS_URL


def _reachable(broker: str) -> str | None:
    """``None`` if the broker takes a connection, else why not."""
    if broker == "redis":
        return redis_reachable()
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return None
    except OSError as e:
        return f"RabbitMQ not reachable at 127.0.0.1:5672: {e}"


def _drop_queue(celery_app: t.Any, queue: str) -> None:
    """Delete the run's queue and exchange on RabbitMQ (on Redis the key
    prefix is deleted instead)."""
    with celery_app.connection_for_write() as conn:
        channel = conn.channel()
        try:
            with contextlib.suppress(Exception):
                channel.queue_delete(queue)
            with contextlib.suppress(Exception):
                channel.exchange_delete(queue)
        finally:
            channel.close()


def _latency(
    app: Flask, prefix: str, broker: str, queue: str, count: int
) -> dict[str, float]:
    """Post ``count`` deliveries 10 ms apart to ``app`` while one worker
    runs; the seconds from each post to its task's start."""
    client = _redis()
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": _broker_url(broker),
        "BENCH_CELERY_QUEUE": queue,
        "BENCH_CELERY_PREFIX": prefix,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from benchmarks.celery_handoff import run_worker; run_worker()",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait(lambda: client.exists(prefix + "ready"), worker, "start")
        body = deliveries.make_body(EVENT_TYPE)
        make_environ = environ_factory(body)
        posted: dict[str, float] = {}

        def start_response(
            status: str, headers: t.Any, exc_info: t.Any = None
        ) -> t.Any:
            if status != "200 OK":
                raise RuntimeError(f"celery latency: answered {status}")

        for _ in range(count):
            delivery = deliveries.sign(body)
            environ = make_environ(delivery)
            posted[delivery.headers["webhook-id"]] = time.time()
            call_wsgi(app, environ, start_response)
            time.sleep(LATENCY_SPACING)
        _wait(lambda: client.llen(prefix + "starts") >= count, worker, "run every task")
        starts = dict(
            item.decode().split() for item in client.lrange(prefix + "starts", 0, -1)
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=15)
        assert worker.stderr is not None
        worker.stderr.close()
    return {wid: float(starts[wid]) - at for wid, at in posted.items()}


def _wait(
    done: c.Callable[[], object], worker: subprocess.Popen[bytes], what: str
) -> None:
    deadline = time.monotonic() + PATIENCE
    while not done():
        if worker.poll() is not None or time.monotonic() > deadline:
            assert worker.stderr is not None
            error = worker.stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the Celery worker did not {what}:\n{error}")
        time.sleep(0.01)


def run(*, rounds: int, ops: int) -> tuple[list[Row], dict[str, t.Any]]:
    """Time the hand-off against the bare publish for each broker, then
    the latency to a worker; build the rows."""
    batch = max(20, ops // 3)
    count = 200 if ops >= 300 else 50
    body = deliveries.make_body(EVENT_TYPE)
    reasons: dict[str, str] = {}
    cases = []
    batch_ops: dict[str, int] = {}
    apps: dict[str, Flask] = {}
    latencies: dict[str, dict[str, float]] = {}
    run_id = secrets.token_hex(6)
    prefix = f"bench-openai-webhooks:{run_id}:"
    reason = redis_reachable()
    with contextlib.ExitStack() as stack:
        if reason is not None:
            # The store is Redis: nothing here can be measured without it.
            reasons = {broker: reason for broker in BROKERS}
        else:
            stack.callback(delete_redis_keys, prefix)
        for broker in BROKERS if reason is None else ():
            why = _reachable(broker)
            if why is not None:
                reasons[broker] = why
                continue
            queue = f"owh-bench-{broker}-{run_id}"
            app = make_app(_broker_url(broker), queue, prefix + broker + ":")
            celery_app = app.extensions["celery"]
            stack.callback(close_store, app.config["OPENAI_WEBHOOK_STORE"])
            stack.callback(celery_app.close)
            if broker == "rabbitmq":
                stack.callback(_drop_queue, celery_app, queue)
            apps[broker] = app
            floor = publish_app(app.extensions["bench_task"])
            cases.append(
                wsgi_case(
                    f"publish:{broker}", floor, "204 NO CONTENT", body, clock="wall"
                )
            )
            cases.append(wsgi_case(f"ours:{broker}", app, "200 OK", body, clock="wall"))
            batch_ops[f"publish:{broker}"] = batch_ops[f"ours:{broker}"] = batch
        # Warm-up: connections, URL maps, validators.
        for case in cases:
            case.prepare(20)()
        samples = run_interleaved(cases, batch_ops, rounds) if cases else {}
        for broker in apps:
            queue = f"owh-bench-{broker}-latency-{run_id}"
            latency_app = make_app(
                _broker_url(broker), queue, prefix + broker + "-latency:"
            )
            stack.callback(close_store, latency_app.config["OPENAI_WEBHOOK_STORE"])
            stack.callback(latency_app.extensions["celery"].close)
            if broker == "rabbitmq":
                stack.callback(_drop_queue, latency_app.extensions["celery"], queue)
            latencies[broker] = _latency(
                latency_app, prefix + broker + "-latency:", broker, queue, count
            )
    return _rows(samples, latencies, reasons), {
        "rounds": rounds,
        "deliveries_per_batch": batch_ops,
        "latency_deliveries": count,
        "skipped": reasons,
        "samples_seconds": {k: v.per_op for k, v in samples.items()},
        "latency_seconds": {k: sorted(v.values()) for k, v in latencies.items()},
    }


def _rows(
    samples: dict[str, Samples],
    latencies: dict[str, dict[str, float]],
    reasons: dict[str, str],
) -> list[Row]:
    rows = []
    for broker, title in BROKERS.items():
        judged = broker == "rabbitmq"
        what = f"Celery hand-off in the request, {title}, Redis store"
        target = HANDOFF_VS_PUBLISH if judged else None
        key = "celery-handoff" if judged else ""
        ours, floor = f"ours:{broker}", f"publish:{broker}"
        if ours not in samples:
            rows.append(
                Row("5", what, target=target, key=key, unmeasured=reasons[broker])
            )
            continue
        a, b = samples[ours], samples[floor]
        mine, theirs, clock = paired_medians(a, b)
        rows.append(
            Row(
                "5",
                what,
                format_seconds(mine),
                ratio=paired_ratio(a, b),
                ratio_label="× publish",
                target=target,
                floor=format_seconds(theirs),
                key=key,
                note=f"+{format_seconds(paired_difference(a, b))} per delivery"
                f" ({clock} time): verify, parse, claim, publish, finish",
                data={
                    "median_seconds": mine,
                    "floor_median_seconds": theirs,
                    "clock": clock,
                },
            )
        )
    for broker, title in BROKERS.items():
        seconds = sorted(latencies.get(broker, {}).values())
        what = f"POST to task start, one worker, {title}"
        if not seconds:
            rows.append(Row("5", what, note=f"not measured: {reasons.get(broker, '')}"))
            continue
        p50 = statistics.median(seconds)
        p99 = seconds[min(len(seconds) - 1, round(0.99 * (len(seconds) - 1)))]
        rows.append(
            Row(
                "5",
                what,
                format_seconds(p50),
                note=f"p50 {format_seconds(p50)}, p99 {format_seconds(p99)},"
                f" {len(seconds)} deliveries 10 ms apart",
                data={"p50_seconds": p50, "p99_seconds": p99, "count": len(seconds)},
            )
        )
    return rows
