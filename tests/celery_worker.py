"""The worker entry of ``tests/test_celery.py``, Flask's ``make_celery.py``:
``celery -A tests.celery_worker worker``.

When the worker is ready to take tasks it creates ``READY_FILE``, so the
test waits for that instead of guessing; every message that ends without a
Celery retry (run, skipped or given up) adds a ``messages_done`` row to the
side-effects file, so a test can wait until the queue is drained.
"""

from __future__ import annotations

import os
import pathlib
import typing as t

from celery.signals import task_success
from celery.signals import worker_ready

from .celery_app import create_app
from .celery_app import record_message_done

flask_app = create_app()
celery_app = flask_app.extensions["celery"]


def _ready(**kwargs: t.Any) -> None:
    ready = os.environ.get("READY_FILE")
    if ready:
        pathlib.Path(ready).touch()


def _done(sender: t.Any = None, **kwargs: t.Any) -> None:
    record_message_done(str(sender.request.kwargs.get("webhook_id")))


worker_ready.connect(_ready, weak=False)
task_success.connect(_done, weak=False)
