"""The example app's background work, on Celery.

``batch.completed`` is handed to :func:`fetch_batch_output`: the delivery is
answered as soon as the broker has the message, and a worker runs the task
with the event parsed again from the delivery log. Start one with
``make worker`` (RabbitMQ on this machine; set ``FLASK_CELERY__broker_url``
for another broker, e.g. ``redis://127.0.0.1:6379/1``), and run the app
with the same variable set so that it publishes there.

Without a broker configured the example runs the task inline, in the
request (Celery's eager mode), so ``make example`` needs nothing but Python.
"""

from __future__ import annotations

import logging

from celery import shared_task

from flask_openai_webhooks import BatchCompletedWebhookEvent
from flask_openai_webhooks.celery import webhook_task

logger = logging.getLogger("example")


@webhook_task(shared_task)
def fetch_batch_output(
    event: BatchCompletedWebhookEvent, webhook_id: str, **extra: object
) -> None:
    """Where ``client.batches.retrieve(event.data.id)`` and the download of
    its output file would go: slow work that does not belong in the
    request. Raise ``RetryLater`` or ``PermanentFailure`` as in a receiver;
    anything else is retried with backoff."""
    logger.info(
        "task: batch %s completed (webhook-id %s); its output file would be"
        " fetched here",
        event.data.id,
        webhook_id,
    )


def run_worker(argv: list[str] | None = None) -> None:
    """Start a Celery worker for the example app (``make worker``): the
    Flask app is built first, as Flask's ``make_celery.py`` does, so tasks
    run in its app context and share its delivery log."""
    from examples.app import create_app

    celery_app = create_app().extensions["celery"]
    celery_app.worker_main(["worker", "--loglevel=INFO", *(argv or [])])
