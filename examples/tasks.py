"""The example app's background work, on Celery.

``batch.completed`` is handed to :func:`fetch_batch_output`: the delivery is
answered as soon as the broker has the message, and a worker runs the task
with the event parsed again from the delivery log; the task fetches the
batch and imports its results. Start one with
``make worker`` (RabbitMQ on this machine; set ``FLASK_CELERY__broker_url``
for another broker, e.g. ``redis://127.0.0.1:6379/1``), and run the app
with the same variable set so that it publishes there.

Without a broker configured the example runs the task inline, in the
request (Celery's eager mode), so ``make example`` needs nothing but Python.
"""

from __future__ import annotations

import json
import logging
import os
import typing as t

from celery import shared_task
from flask import current_app

from flask_openai_webhooks import BatchCompletedWebhookEvent
from flask_openai_webhooks.celery import webhook_task
from flask_openai_webhooks.fetch import fetch_related
from flask_openai_webhooks.fetch import iter_batch_results

logger = logging.getLogger("example")


@webhook_task(shared_task)
def fetch_batch_output(
    event: BatchCompletedWebhookEvent, webhook_id: str, **extra: object
) -> None:
    """Fetch the batch the event names and import its results: slow work
    that does not belong in the request.

    Each result line becomes one line of ``instance/batch_results/<id>.jsonl``
    (the example's "database"), streamed, so a large output file never sits
    in memory. Raising (an API error, a full disk) makes Celery retry with
    backoff; the delivery log shows every failed attempt.
    """
    client = _client()
    if client is None:
        logger.info(
            "task: batch %s completed (webhook-id %s); set OPENAI_API_KEY to"
            " fetch and import its results",
            event.data.id,
            webhook_id,
        )
        return
    batch = fetch_related(event, client)
    folder = os.path.join(current_app.instance_path, "batch_results")
    os.makedirs(folder, exist_ok=True)
    imported = failed = 0
    # Written under a temporary name and renamed at the end, so a retry
    # after a failure half way imports the whole file again, once.
    target = os.path.join(folder, f"{event.data.id}.jsonl")
    with open(target + ".part", "w", encoding="utf-8") as out:
        for row in iter_batch_results(client, batch):
            out.write(
                json.dumps(
                    {
                        "custom_id": row.custom_id,
                        "ok": row.ok,
                        "status_code": row.response.status_code
                        if row.response
                        else None,
                        "error": row.error.code if row.error else None,
                    }
                )
                + "\n"
            )
            imported += row.ok
            failed += not row.ok
    os.replace(target + ".part", target)
    logger.info(
        "task: batch %s: imported %d results, %d failed (webhook-id %s)",
        event.data.id,
        imported,
        failed,
        webhook_id,
    )


def _client() -> t.Any:
    """``OPENAI_WEBHOOK_CLIENT`` from the config (a client, or a function
    returning one; the tests point one at a stub API), else
    ``openai.OpenAI()`` when ``OPENAI_API_KEY`` is set, else ``None``."""
    configured = current_app.config.get("OPENAI_WEBHOOK_CLIENT")
    if configured is not None:
        return configured() if callable(configured) else configured
    if not os.environ.get("OPENAI_API_KEY"):
        return None
    import openai

    return openai.OpenAI()


def run_worker(argv: list[str] | None = None) -> None:
    """Start a Celery worker for the example app (``make worker``): the
    Flask app is built first, as Flask's ``make_celery.py`` does, so tasks
    run in its app context and share its delivery log."""
    from examples.app import create_app

    celery_app = create_app().extensions["celery"]
    celery_app.worker_main(["worker", "--loglevel=INFO", *(argv or [])])
