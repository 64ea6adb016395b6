"""An app that receives OpenAI webhooks and logs what arrived.

Run it with ``make example`` from the repository root, then send it a signed
sample with ``make send-sample`` (or ``python examples/send_sample.py``).

In a real app the receivers would hand the event to a task queue: OpenAI
expects an answer within a few seconds, and ``client.batches.retrieve`` or
``client.responses.retrieve`` can take longer than that.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from flask_openai_webhooks import batch_cancelled
from flask_openai_webhooks import batch_completed
from flask_openai_webhooks import BatchCancelledWebhookEvent
from flask_openai_webhooks import BatchCompletedWebhookEvent
from flask_openai_webhooks import make_blueprint
from flask_openai_webhooks import response_completed
from flask_openai_webhooks import ResponseCompletedWebhookEvent
from flask_openai_webhooks import webhook_received
from flask_openai_webhooks import WebhookEvent

#: For the demo only: a real secret comes from the OpenAI dashboard and is
#: read from the environment, never committed.
DEMO_SECRET = "whsec_ZGVtby1zZWNyZXQtZG8tbm90LXVzZS1pbi1wcm9kdWN0aW9uIQ=="

logger = logging.getLogger("example")


def create_app() -> Flask:
    """Build the example app. Settings come from ``FLASK_``-prefixed
    environment variables, e.g. ``FLASK_OPENAI_WEBHOOK_STORE``."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    app = Flask(__name__)
    app.config["OPENAI_WEBHOOK_SECRET"] = os.environ.get(
        "OPENAI_WEBHOOK_SECRET", DEMO_SECRET
    )
    app.config.from_prefixed_env()
    if app.config["OPENAI_WEBHOOK_SECRET"] == DEMO_SECRET:
        logger.warning("using the demo webhook secret; set OPENAI_WEBHOOK_SECRET")
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
