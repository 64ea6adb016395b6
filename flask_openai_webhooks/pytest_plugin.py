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
    to the blueprint's URL: ``.send(type, **overrides)`` builds and posts a
    sample event; ``.send(payload)`` posts a dict or raw body (see
    :func:`~flask_openai_webhooks.testing.post_event`). If the app has
    several webhook blueprints, override the fixture and pass
    ``blueprint=``.

``webhook_signals``
    A :class:`~flask_openai_webhooks.testing.SignalRecorder` recording the
    package's signals sent for ``app`` during the test: ``.names``,
    ``.types``, ``.events``, ``.rejected``, ``.failed``.

The fixtures need pytest-flask, which provides ``client`` from your ``app``
fixture: ``pip install Flask-OpenAI-Webhooks[testing]`` brings it.

A fixed ``webhook_id`` is remembered by the app's store: give each test its
own store (``OPENAI_WEBHOOK_STORE = f"sqlite:///{tmp_path}/webhooks.db"``,
or the default memory store in a fresh app), or the second run of a test
sees a duplicate.
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
def openai_webhooks(request: pytest.FixtureRequest) -> WebhookClient:
    """Post signed OpenAI events to the ``app`` through pytest-flask's
    ``client``; see :class:`~flask_openai_webhooks.testing.WebhookClient`.
    """
    # Looked up here rather than declared, so that a missing pytest-flask
    # says what to install instead of "fixture 'client' not found".
    try:
        client: FlaskClient = request.getfixturevalue("client")
    except pytest.FixtureLookupError:
        pytest.fail(
            "the openai_webhooks fixture posts through pytest-flask's 'client'"
            " fixture, which is not available: pip install"
            " 'Flask-OpenAI-Webhooks[testing]' (it brings pytest-flask), and"
            " define an 'app' fixture that returns your app",
            pytrace=False,
        )
    return WebhookClient(client)


@pytest.fixture
def webhook_signals(app: Flask) -> c.Iterator[SignalRecorder]:
    """Record the signals sent for ``app`` during the test; see
    :func:`~flask_openai_webhooks.testing.capture_signals`.
    """
    with capture_signals(app) as recorder:
        yield recorder
