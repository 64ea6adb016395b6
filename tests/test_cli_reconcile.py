"""Tests for ``flask openai-webhooks reconcile``
(:mod:`flask_openai_webhooks.cli_reconcile`), with the real ``openai`` SDK
against the stub API."""

from __future__ import annotations

import typing as t

import openai
import pytest
from click.testing import Result
from flask import Flask

from flask_openai_webhooks import log
from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.cli_reconcile import reconcile_command
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.reconcile import is_reconciled

from .stub_openai import StubOpenAI
from .test_reconcile import app as app
from .test_reconcile import finished_batch
from .test_reconcile import make_app
from .test_reconcile import openai_client as openai_client
from .test_reconcile import Receiver
from .test_reconcile import stub as stub


def run(app: Flask, *args: str) -> Result:
    """Run the command as ``flask openai-webhooks reconcile`` does: in the
    app's context."""
    with app.app_context():
        return app.test_cli_runner().invoke(reconcile_command, list(args))


def test_nothing_missing(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1", "in_progress"))

    result = run(app)

    assert result.exit_code == 0, result.output
    assert result.output.startswith("nothing missing since ")
    assert log.list_deliveries(app=app).records == ()


def test_missing_batch_is_sent(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1"))
    receiver = Receiver()

    with signals.batch_completed.connected_to(receiver, app):
        result = run(app, "--since", "2h")
        key = receiver_key(signals.batch_completed, receiver)

    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    assert line.startswith("sent batch.completed for batch_1 (finished ")
    assert line.endswith(f"processed, now processed; ran: {key} ok")
    assert len(receiver.calls) == 1


def test_dry_run_lists_and_runs_nothing(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1"))
    stub.add_batch(finished_batch("batch_2", "failed"))
    receiver = Receiver()

    with signals.webhook_received.connected_to(receiver, app):
        result = run(app, "--dry-run")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("would send batch.completed for batch_1 (finished ")
    assert lines[0].endswith("as reconcile:batch.completed:batch_1")
    assert lines[1].startswith("would send batch.failed for batch_2 ")
    assert receiver.calls == []
    assert log.list_deliveries(app=app).records == ()


def test_type_filter(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1"))
    stub.add_batch(finished_batch("batch_2", "failed"))

    result = run(app, "--dry-run", "--type", "batch.failed")

    assert result.exit_code == 0, result.output
    assert [line.split()[2] for line in result.output.splitlines()] == ["batch.failed"]


def test_failed_receiver_exits_1(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1"))
    receiver = Receiver(fail_with=RuntimeError("boom"))

    with signals.batch_completed.connected_to(receiver, app):
        result = run(app)
        key = receiver_key(signals.batch_completed, receiver)

    assert result.exit_code == 1
    assert f"receiver_failed, now failed; ran: {key} failed" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "video.*"], "matches no event type that reconciliation sends"),
        (["--since", "soon"], "'soon' is not a duration"),
        (["--since", "1000w"], "not a Unix time"),
    ],
)
def test_bad_arguments(
    app: Flask, stub: StubOpenAI, args: list[str], message: str
) -> None:
    result = run(app, *args)

    assert result.exit_code == 2
    assert message in result.output
    assert stub.requests == []


def test_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    result = run(make_app("memory", None))

    assert result.exit_code == 1
    assert "Error: could not create an OpenAI client" in result.output
    assert "OPENAI_API_KEY" in result.output
    assert "Traceback" not in result.output


def test_api_failure(app: Flask, stub: StubOpenAI) -> None:
    stub.fail("/v1/batches", 503)

    result = run(app)

    assert result.exit_code == 1
    assert "Error: the OpenAI API call failed:" in result.output
    assert log.list_deliveries(app=app).records == ()


def test_several_blueprints(stub: StubOpenAI, openai_client: openai.OpenAI) -> None:
    app = make_app("memory", openai_client)
    app.register_blueprint(make_blueprint(), name="second", url_prefix="/second")
    stub.add_batch(finished_batch("batch_1"))

    ambiguous = run(app)
    chosen = run(app, "--blueprint", "second", "--dry-run")

    assert ambiguous.exit_code == 2
    assert "several OpenAI webhook blueprints" in ambiguous.output
    assert chosen.exit_code == 0, chosen.output
    assert "would send batch.completed for batch_1" in chosen.output


def test_receiver_of_a_reconciled_event_can_tell(app: Flask, stub: StubOpenAI) -> None:
    stub.add_batch(finished_batch("batch_1"))
    seen: list[bool] = []

    def receiver(sender: Flask, *, webhook_id: str, **extra: t.Any) -> None:
        seen.append(is_reconciled(webhook_id))

    with signals.batch_completed.connected_to(receiver, app):
        result = run(app)

    assert result.exit_code == 0, result.output
    assert seen == [True]
