"""pytest fixtures for apps that receive OpenAI webhooks.

The plugin is registered through the ``pytest11`` entry point, so the
fixtures are available as soon as the package is installed. They build on
pytest-flask: define the usual ``app`` fixture, with the blueprint
registered, and use ``client`` and these side by side.

.. code-block:: python

    @pytest.fixture
    def app():
        app = create_app({"OPENAI_WEBHOOK_SECRET": "whsec_..."})
        return app

    def test_batch_completed(openai_webhooks, webhook_signals) -> None:
        response = openai_webhooks.send("batch.completed", data={"id": "batch_1"})

        assert response.status_code == 200
        assert webhook_signals.types == ["batch.completed"]

``openai_webhooks``
    A :class:`~flask_openai_webhooks.testing.WebhookClient` bound to
    pytest-flask's ``client``. It signs with the app's own secret and posts
    to the blueprint's URL: ``.send(type, **overrides)`` builds a sample
    event, ``.post(payload)`` posts a dict or raw body, ``.headers(body)``
    signs a body, ``.make_event(type, **overrides)`` builds a payload
    without sending it. If the app has several webhook blueprints, override
    the fixture and pass ``blueprint=``.

``webhook_signals``
    A :class:`~flask_openai_webhooks.testing.SignalRecorder` recording the
    package's signals sent for ``app`` during the test: ``.names``,
    ``.types``, ``.events``, ``.rejected``, ``.failed``.

The fixtures need pytest-flask (``pip install pytest-flask``), which
provides ``client`` from your ``app`` fixture.
"""

from __future__ import annotations

import collections.abc as c
import typing as t

import pytest

from .testing import capture_signals
from .testing import SignalRecorder
from .testing import WebhookClient

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask.testing import FlaskClient


@pytest.fixture
def openai_webhooks(client: FlaskClient) -> WebhookClient:
    """Post signed OpenAI events to the ``app`` through pytest-flask's
    ``client``; see :class:`~flask_openai_webhooks.testing.WebhookClient`.
    """
    return WebhookClient(client)


@pytest.fixture
def webhook_signals(app: Flask) -> c.Iterator[SignalRecorder]:
    """Record the signals sent for ``app`` during the test; see
    :func:`~flask_openai_webhooks.testing.capture_signals`.
    """
    with capture_signals(app) as recorder:
        yield recorder
