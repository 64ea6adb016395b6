"""The Flask apps under test, shared by the in-process, end-to-end and
memory sections so that all three measure the same code.

``bare``
    A plain route that reads the body with ``request.get_data()`` and
    answers 204: what any Flask endpoint costs before it does anything.
``floor``
    The minimal hand-written webhook route (:func:`floor_app`): read the
    body, check the timestamp and the HMAC, validate the one model, dedup
    (or claim and finish in a store, see :mod:`benchmarks.floors`), call
    the receiver, answer the same JSON as the blueprint. The shortest
    honest route to the same work; the blueprint is judged against it.
``ours``
    :func:`~flask_openai_webhooks.make_blueprint` at its default URL with a
    given store (and options).

A trivial receiver (:data:`receiver`) is connected to ``batch_completed``
for each app :func:`blueprint_app` builds, so the blueprint's dispatch
really calls something; the floor route calls it directly. It counts its
calls, which lets a section check that no delivery was answered as a
duplicate.

:func:`create_app` is the factory gunicorn loads in the end-to-end section;
it is configured through environment variables because gunicorn workers
are separate processes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
import typing as t

from flask import Flask
from flask import request
from flask import Response
from pydantic import TypeAdapter
from pydantic import ValidationError

from flask_openai_webhooks import batch_completed
from flask_openai_webhooks import BatchCompletedWebhookEvent
from flask_openai_webhooks import make_blueprint
from flask_openai_webhooks import MemoryStore
from flask_openai_webhooks import SQLiteStore
from flask_openai_webhooks import verify
from flask_openai_webhooks.stores import DeliveryStore

from . import deliveries
from . import services
from .floors import make_floor
from .floors import StoreFloor

#: Seconds a timestamp may be off, as the blueprint's default.
TOLERANCE = verify.DEFAULT_TOLERANCE

_JSON = "application/json"
# The blueprint's answers, byte for byte.
PROCESSED = json.dumps({"status": "processed"}).encode()
DUPLICATE = json.dumps({"status": "duplicate"}).encode()


class ReceiverCounter:
    """The trivial ``batch_completed`` receiver: counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, sender: object, **kwargs: object) -> None:
        self.calls += 1


#: Connected (strongly) to ``batch_completed`` for each app that
#: :func:`blueprint_app` builds, never for any sender: importing this module
#: must not add a receiver to other apps in the process (the test suite).
receiver = ReceiverCounter()


def bare_app() -> Flask:
    """A route that reads the body and answers 204."""
    app = Flask("bench_bare")

    @app.post(deliveries.URL)
    def receive() -> tuple[str, int]:
        request.get_data()
        return "", 204

    return app


def _refuse(code: str) -> Response:
    return Response(json.dumps({"error": code}), 400, content_type=_JSON)


def floor_app(floor: StoreFloor) -> Flask:
    """The minimal webhook route over ``floor`` (see the module docstring).

    It knows the one event type the benchmark sends, so it validates
    straight into :class:`~flask_openai_webhooks.BatchCompletedWebhookEvent`
    with a :class:`~pydantic.TypeAdapter` built once, and checks the one
    ``v1,`` signature with :func:`hmac.digest`; it reads the headers from
    the WSGI environ, as the blueprint does.
    """
    app = Flask("bench_floor")
    key = verify.decode_secret(deliveries.SECRET)
    validate = TypeAdapter(BatchCompletedWebhookEvent).validate_json
    digest = hmac.digest
    sha256 = hashlib.sha256
    b64encode = base64.b64encode
    compare = hmac.compare_digest
    claim = floor.claim
    finish = floor.finish

    @app.post(deliveries.URL)
    def receive() -> Response:
        body = request.get_data()
        environ = request.environ
        webhook_id = environ.get("HTTP_WEBHOOK_ID")
        stamp = environ.get("HTTP_WEBHOOK_TIMESTAMP")
        signature = environ.get("HTTP_WEBHOOK_SIGNATURE")
        if not (webhook_id and stamp and signature):
            return _refuse("missing_header")
        try:
            timestamp = int(stamp)
        except ValueError:
            return _refuse("invalid_timestamp")
        if abs(time.time() - timestamp) > TOLERANCE:
            return _refuse("timestamp_out_of_tolerance")
        signed = f"{webhook_id}.{stamp}.".encode() + body
        if not compare(b64encode(digest(key, signed, sha256)), signature[3:].encode()):
            return _refuse("signature_mismatch")
        try:
            event = validate(body)
        except ValidationError:
            return _refuse("invalid_payload")
        if not claim(webhook_id, event, body, time.time()):
            return Response(DUPLICATE, 200, content_type=_JSON)
        receiver(app, event=event, webhook_id=webhook_id, blueprint="floor")
        finish(webhook_id, "processed", 200)
        return Response(PROCESSED, 200, content_type=_JSON)

    return app


def blueprint_app(store: DeliveryStore, **options: t.Any) -> Flask:
    """An app with our blueprint at its default URL, the given store and
    any other :func:`~flask_openai_webhooks.make_blueprint` options."""
    app = Flask("bench_blueprint")
    # Registering with the memory store warns that it is private to one
    # process, which is the point here: keep that out of the output.
    package_logger = logging.getLogger("flask_openai_webhooks")
    level = package_logger.level
    package_logger.setLevel(logging.ERROR)
    try:
        app.register_blueprint(
            make_blueprint(secret=deliveries.SECRET, store=store, **options)
        )
    finally:
        package_logger.setLevel(level)
    batch_completed.connect(receiver, sender=app, weak=False)
    return app


def make_store(backend: str, target: str = "") -> DeliveryStore:
    """Our store for ``backend`` (``memory`` or a key of
    :data:`~benchmarks.services.BACKENDS`) at ``target`` (see
    :class:`~benchmarks.services.Place`)."""
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        return SQLiteStore(f"{target}/deliveries.db")
    if backend == "redis":
        from flask_openai_webhooks.stores.redis import RedisStore

        return RedisStore(services.REDIS_URL, prefix=target + "store:")
    if backend in ("postgresql", "mariadb"):
        from flask_openai_webhooks.stores.sql import SQLStore

        return SQLStore(target)
    raise ValueError(f"no store for {backend!r}")


def close_store(store: DeliveryStore) -> None:
    """Release a store's connections, for the stores that hold some."""
    close = getattr(store, "close", None)
    if close is not None:
        close()


def create_app() -> Flask:
    """The gunicorn factory: ``benchmarks.apps:create_app()``.

    ``BENCH_APP`` is ``bare``, ``floor`` or ``ours``; for the last two,
    ``BENCH_BACKEND`` is ``memory`` or a key of
    :data:`~benchmarks.services.BACKENDS`, and ``BENCH_TARGET`` its place
    (see :class:`~benchmarks.services.Place`).
    """
    kind = os.environ.get("BENCH_APP", "bare")
    if kind == "bare":
        return bare_app()
    backend = os.environ["BENCH_BACKEND"]
    target = os.environ.get("BENCH_TARGET", "")
    if kind == "floor":
        return floor_app(make_floor(backend, target))
    return blueprint_app(make_store(backend, target))


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
