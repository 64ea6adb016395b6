"""The example app and sample sender work as README.rst says.

Every app here keeps its delivery log in a temporary folder, never in the
repository's instance folder, which is the example's default.
"""

from __future__ import annotations

import collections.abc as c
import json
import logging
import threading
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from examples import send_sample
from examples.app import create_app
from examples.app import DEMO_SECRET
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.state import states
from flask_openai_webhooks.stores.memory import MemoryStore
from flask_openai_webhooks.stores.sqlite import SQLiteStore
from flask_openai_webhooks.testing import post_event


@pytest.fixture
def make_example(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> c.Iterator[c.Callable[..., Flask]]:
    """Build example apps sharing one SQLite log in ``tmp_path``, as the
    server and ``flask openai-webhooks log`` in another terminal do; close
    their stores afterwards."""
    for name in (
        "OPENAI_WEBHOOK_SECRET",
        "FLASK_OPENAI_WEBHOOK_SECRET",
        "FLASK_OPENAI_WEBHOOK_STORE",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    made: list[Flask] = []

    def make(**config: t.Any) -> Flask:
        app = create_app(
            {"OPENAI_WEBHOOK_STORE": f"sqlite:///{tmp_path}/w.db", **config},
            instance_path=str(tmp_path / "instance"),
        )
        made.append(app)
        return app

    yield make
    for app in made:
        for state in states(app).values():
            close = getattr(state.store, "close", None)
            if close is not None:
                close()


@pytest.fixture
def example_app(make_example: c.Callable[..., Flask]) -> Flask:
    return make_example()


@pytest.fixture
def live_url(example_app: Flask) -> c.Iterator[str]:
    server = make_server("127.0.0.1", 0, example_app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhooks/openai"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


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
    assert response.get_json() == {"status": "processed"}
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
    make_example: c.Callable[[], Flask], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "example"):
        app = make_example()
    assert app.config["OPENAI_WEBHOOK_SECRET"] == DEMO_SECRET
    assert "demo webhook secret" in caplog.text


def test_example_config_sets_the_store(example_app: Flask, tmp_path: Path) -> None:
    store = get_state(example_app).store

    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == tmp_path / "w.db"


def test_example_store_from_the_environment(
    make_example: c.Callable[[], Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FLASK_``-prefixed variables win over the defaults and ``config``,
    as ``create_app`` documents."""
    monkeypatch.setenv("FLASK_OPENAI_WEBHOOK_STORE", "memory")

    app = make_example()

    assert isinstance(get_state(app).store, MemoryStore)


def test_example_log_is_shared_with_another_app_instance(
    make_example: c.Callable[[], Flask],
) -> None:
    """What the server received, ``flask openai-webhooks log`` run in
    another process (another app instance on the same file) lists."""
    server = make_example()
    response = post_event(
        server.test_client(),
        "batch.completed",
        data={"id": "batch_shared"},
        webhook_id="wh_shared",
    )
    assert response.status_code == 200

    result = (
        make_example()
        .test_cli_runner()
        .invoke(args=["openai-webhooks", "log", "--json"])
    )

    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    record = json.loads(line)
    assert (record["webhook_id"], record["object_id"], record["status"]) == (
        "wh_shared",
        "batch_shared",
        "processed",
    )


def test_send_sample_script_delivers_over_http(
    live_url: str,
    example_app: Flask,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "example"):
        status = send_sample.main(["batch.completed", "--url", live_url])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith('batch.completed -> 200 {"status": "processed"}')
    assert "batch_" in caplog.text
    [record] = get_state(example_app).store.list_deliveries().records
    assert record.event_type == "batch.completed"


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


def test_example_task_fetches_the_batch_and_imports_its_results(
    make_example: c.Callable[..., Flask], tmp_path: Path
) -> None:
    """The example's batch task, through the real openai SDK against the
    stub API: one GET of the batch, its output and error files streamed,
    every result imported."""
    import openai

    from . import stub_openai as api

    with api.serve() as stub:
        stub.add_batch(
            api.batch(
                "batch_demo",
                output_file_id="file-out",
                error_file_id="file-err",
                counts=(2, 1),
            )
        )
        stub.add_file("file-out", api.jsonl([api.ok_row("a"), api.ok_row("b")]))
        stub.add_file("file-err", api.jsonl([api.error_row("c")]))
        client = openai.OpenAI(base_url=stub.base_url, api_key="sk-test")
        try:
            app = make_example(OPENAI_WEBHOOK_CLIENT=client)
            response = post_event(
                app.test_client(), "batch.completed", data={"id": "batch_demo"}
            )
        finally:
            client.close()
        assert response.json == {"status": "processed"}
        assert len(stub.requests_to("/v1/batches/batch_demo")) == 1
    imported = tmp_path / "instance" / "batch_results" / "batch_demo.jsonl"
    rows = [json.loads(line) for line in imported.read_text().splitlines()]
    assert [(r["custom_id"], r["ok"]) for r in rows] == [
        ("a", True),
        ("b", True),
        ("c", False),
    ]
    assert rows[2]["error"] == "batch_expired"


def test_make_celery_builds_the_worker_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``celery -A examples.make_celery worker`` imports this module: it
    builds the Flask app and exposes its Celery app, with the app's
    delivery log, as Flask's Celery page does."""
    import importlib
    import sys

    from celery import Celery

    monkeypatch.setenv("FLASK_OPENAI_WEBHOOK_STORE", f"sqlite:///{tmp_path}/w.db")
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
    monkeypatch.delitem(sys.modules, "examples.make_celery", raising=False)
    module = importlib.import_module("examples.make_celery")
    try:
        assert isinstance(module.celery_app, Celery)
        assert module.flask_app.extensions["celery"] is module.celery_app
        store = get_state(module.flask_app).store
        assert isinstance(store, SQLiteStore)
        assert store.path == f"{tmp_path}/w.db"
    finally:
        get_state(module.flask_app).store.close()  # type: ignore[attr-defined]
        sys.modules.pop("examples.make_celery", None)
