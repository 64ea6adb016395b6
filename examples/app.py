"""An app that receives OpenAI webhooks and logs what arrived.

Run it with ``make example`` from the repository root, then send it a signed
sample with ``make send-sample`` (or ``python examples/send_sample.py``).

OpenAI expects an answer within a few seconds, and
``client.batches.retrieve`` can take longer than that, so ``batch.completed``
is also handed to a Celery task (:mod:`examples.tasks`). Start a worker with
``make worker`` and run the app with ``FLASK_CELERY__broker_url`` set to the
same broker; without a broker the task runs inline, in the request.
"""

from __future__ import annotations

import logging
import os
import typing as t

from flask import Flask

from examples.tasks import fetch_batch_output
from flask_openai_webhooks import batch_cancelled
from flask_openai_webhooks import batch_completed
from flask_openai_webhooks import BatchCancelledWebhookEvent
from flask_openai_webhooks import BatchCompletedWebhookEvent
from flask_openai_webhooks import make_blueprint
from flask_openai_webhooks import response_completed
from flask_openai_webhooks import ResponseCompletedWebhookEvent
from flask_openai_webhooks import webhook_received
from flask_openai_webhooks import WebhookEvent
from flask_openai_webhooks.celery import celery_init_app
from flask_openai_webhooks.celery import enqueue

#: For the demo only: a real secret comes from the OpenAI dashboard and is
#: read from the environment, never committed.
DEMO_SECRET = "whsec_ZGVtby1zZWNyZXQtZG8tbm90LXVzZS1pbi1wcm9kdWN0aW9uIQ=="

logger = logging.getLogger("example")


def create_app(
    config: dict[str, t.Any] | None = None, *, instance_path: str | None = None
) -> Flask:
    """Build the example app. Settings come from ``config`` (tests), then
    ``FLASK_``-prefixed environment variables, e.g.
    ``FLASK_OPENAI_WEBHOOK_STORE``."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    app = Flask(__name__, instance_path=instance_path)
    app.config["OPENAI_WEBHOOK_SECRET"] = os.environ.get(
        "OPENAI_WEBHOOK_SECRET", DEMO_SECRET
    )
    # The delivery log in a file of the instance folder, so that the
    # server and 'flask openai-webhooks log' in another terminal (and
    # several gunicorn workers) share it.
    app.config["OPENAI_WEBHOOK_STORE"] = "sqlite:///webhooks.db"
    # Celery's settings, e.g. FLASK_CELERY__broker_url=amqp://... from the
    # environment.
    app.config["CELERY"] = {"task_ignore_result": True}
    app.config.update(config or {})
    app.config.from_prefixed_env()
    if app.config["OPENAI_WEBHOOK_SECRET"] == DEMO_SECRET:
        logger.warning("using the demo webhook secret; set OPENAI_WEBHOOK_SECRET")
    celery = app.config["CELERY"]
    # No broker: run tasks inline (Celery's eager mode), so the example
    # needs nothing but Python. With one, the worker runs them.
    celery.setdefault("task_always_eager", not celery.get("broker_url"))
    celery_init_app(app)
    app.register_blueprint(make_blueprint())
    connect_receivers(app)
    return app


def connect_receivers(app: Flask) -> None:
    """Connect the receivers below to this app's deliveries only.

    The functions are defined at module level, so blinker's weak references
    keep them alive; ``sender=app`` keeps two apps in one process (or two
    tests) from hearing each other's events.
    """
    batch_completed.connect(on_batch_completed, sender=app)
    # The slow part of a completed batch goes to a Celery task.
    enqueue("batch.completed", task=fetch_batch_output, sender=app)
    batch_cancelled.connect(on_batch_cancelled, sender=app)
    response_completed.connect(on_response_completed, sender=app)
    webhook_received.connect(on_any_event, sender=app)


def on_batch_completed(
    sender: Flask, event: BatchCompletedWebhookEvent, **extra: object
) -> None:
    logger.info("batch %s completed: fetch its output file next", event.data.id)


def on_batch_cancelled(
    sender: Flask, event: BatchCancelledWebhookEvent, **extra: object
) -> None:
    logger.info("batch %s was cancelled", event.data.id)


def on_response_completed(
    sender: Flask, event: ResponseCompletedWebhookEvent, **extra: object
) -> None:
    logger.info("background response %s completed", event.data.id)


def on_any_event(
    sender: Flask, event: WebhookEvent, webhook_id: str, **extra: object
) -> None:
    logger.info("received %s %s (webhook-id %s)", event.type, event.id, webhook_id)
