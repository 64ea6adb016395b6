"""The pytest plugin, run in a separate pytest process as users run it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

APP_FIXTURE = """
import base64

import pytest
from flask import Flask

from flask_openai_webhooks.blueprint import make_blueprint

SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()


@pytest.fixture
def app():
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    return app
"""


def test_fixtures_work_beside_pytest_flask(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(APP_FIXTURE)
    pytester.makepyfile(
        test_hooks="""
        from flask import Flask

        from flask_openai_webhooks.errors import WebhookVerificationError
        from flask_openai_webhooks.testing import make_event
        from flask_openai_webhooks.testing import post_event
        from flask_openai_webhooks.testing import signed_headers
        from flask_openai_webhooks.verify import verify_signature

        from conftest import SECRET


        def test_send(app, client, openai_webhooks, webhook_signals):
            assert openai_webhooks.client is client
            assert openai_webhooks.app is app

            response = openai_webhooks.send("batch.completed", data={"id": "batch_1"})

            assert response.status_code == 200
            assert response.json == {"status": "processed"}
            assert webhook_signals.types == ["batch.completed"]
            assert webhook_signals.events[0].data.id == "batch_1"


        def test_send_a_payload_twice_and_reject(openai_webhooks, webhook_signals):
            event = make_event("response.failed")

            ok = openai_webhooks.send(event, webhook_id="wh_1")
            again = openai_webhooks.send(event, webhook_id="wh_1")
            forged = openai_webhooks.send("response.failed", secret="whsec_Zm9yZ2Vk")

            assert ok.json == {"status": "processed"}
            assert again.json == {"status": "duplicate"}
            assert forged.status_code == 400
            assert webhook_signals.types == ["response.failed"]
            assert isinstance(webhook_signals.rejected[0], WebhookVerificationError)


        def test_key_and_url(openai_webhooks):
            headers = signed_headers(b"{}", openai_webhooks.key)

            verify_signature(b"{}", headers, secret=SECRET)
            assert openai_webhooks.url == "/webhooks/openai"
            assert openai_webhooks.send(b"{}").status_code == 400


        def test_only_this_apps_signals_are_recorded(webhook_signals):
            other = Flask("other")
            other.config["OPENAI_WEBHOOK_SECRET"] = SECRET
            from flask_openai_webhooks.blueprint import make_blueprint

            other.register_blueprint(make_blueprint())

            post_event(other.test_client(), "batch.completed")

            assert webhook_signals.names == []


        def test_a_wrong_expectation_fails(openai_webhooks, webhook_signals):
            openai_webhooks.send("batch.expired")

            assert webhook_signals.types == ["batch.completed"]
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_a_wrong_expectation_fails*", "*batch.expired*batch.completed*"]
    )


def test_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(APP_FIXTURE)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")

    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from flask_openai_webhooks.pytest_plugin*",
            "openai_webhooks*",
            "*Post signed OpenAI events to the ``app``*",
            "webhook_signals*",
            "*Record the signals sent for ``app``*",
        ]
    )


def test_without_pytest_flask_the_fixture_says_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    """The newcomer's mistake: the test kit without pytest-flask. The
    failure names the extra to install, not "fixture 'client' not found"."""
    pytester.makeconftest(APP_FIXTURE)
    pytester.makepyfile(
        test_hooks="""
        def test_send(openai_webhooks):
            openai_webhooks.send("batch.completed")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:flask", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "pip install 'Flask-OpenAI-Webhooks[testing]'" in output
    assert "fixture 'client' not found" not in output
