"""The Celery entry point of the example app, as in Flask's "Background
Tasks with Celery" page: ``celery -A examples.make_celery worker``.

The Flask app is built first, so that tasks run in its app context and read
the same delivery log as the web processes.
"""

from __future__ import annotations

from examples.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
