"""The example app and sample sender work as README.rst says."""

from __future__ import annotations

import collections.abc as c
import logging
import threading

import pytest
from flask import Flask
from werkzeug.serving import make_server

from examples import send_sample
from examples.app import create_app
from examples.app import DEMO_SECRET
from flask_openai_webhooks.testing import post_event


@pytest.fixture
def example_app(monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("FLASK_OPENAI_WEBHOOK_SECRET", raising=False)
    return create_app()


@pytest.fixture
def live_url(example_app: Flask) -> c.Iterator[str]:
    server = make_server("127.0.0.1", 0, example_app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhooks/openai"
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.parametrize(
    ("event_type", "logged"),
    [
        ("batch.completed", "batch batch_demo completed"),
        ("batch.cancelled", "batch batch_demo was cancelled"),
        ("response.completed", "background response resp_demo completed"),
    ],
)
def test_example_receivers_log_what_arrived(
    example_app: Flask,
    caplog: pytest.LogCaptureFixture,
    event_type: str,
    logged: str,
) -> None:
    data_id = "resp_demo" if event_type.startswith("response") else "batch_demo"
    with caplog.at_level(logging.INFO, "example"):
        response = post_event(
            example_app.test_client(), event_type, data={"id": data_id}
        )
    assert response.status_code == 200
    assert logged in caplog.text
    assert f"received {event_type}" in caplog.text


def test_example_catch_all_logs_unknown_types(
    example_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "example"):
        response = post_event(example_app.test_client(), "fine_tuning.job.succeeded")
    assert response.status_code == 200
    assert "received fine_tuning.job.succeeded" in caplog.text


def test_example_uses_demo_secret_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
    with caplog.at_level(logging.WARNING, "example"):
        app = create_app()
    assert app.config["OPENAI_WEBHOOK_SECRET"] == DEMO_SECRET
    assert "demo webhook secret" in caplog.text


def test_send_sample_script_delivers_over_http(
    live_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
    with caplog.at_level(logging.INFO, "example"):
        status = send_sample.main(["batch.completed", "--url", live_url])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("batch.completed -> 200")
    assert "batch_" in caplog.text


def test_send_sample_with_wrong_secret_is_rejected(
    live_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", "whsec_" + "QUJD" * 8)
    status = send_sample.main(["batch.completed", "--url", live_url])
    assert status == 1
    assert "400" in capsys.readouterr().out


def test_send_sample_reports_unreachable_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = send_sample.main(["batch.completed", "--url", "http://127.0.0.1:1/x"])
    assert status == 2
    assert "could not reach" in capsys.readouterr().err
