"""The delivery-log commands, ``flask openai-webhooks log``, ``show``,
``replay`` and ``prune``, run through ``app.test_cli_runner()`` over every
store (see ``test_log.py`` for the stores and the helpers).
"""

from __future__ import annotations

import collections.abc as c
import json
import re
import typing as t
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import has_any_receiver
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.signals import batch_expired
from flask_openai_webhooks.signals import batch_failed
from flask_openai_webhooks.signals import response_completed
from flask_openai_webhooks.testing import post_event

from .test_log import app_on
from .test_log import Calls
from .test_log import KINDS
from .test_log import make_app
from .test_log import old_delivery

#: The fields of ``log --json`` that scripts may rely on.
CONTRACT = {
    "webhook_id",
    "type",
    "event_id",
    "object_id",
    "status",
    "attempts",
    "received_at",
    "receivers",
}


@pytest.fixture(params=KINDS)
def webhook_app(request: pytest.FixtureRequest, tmp_path: Path) -> c.Iterator[Flask]:
    """Not named ``app``: pytest-flask would push a request context for
    it, and the commands must work without one, as under ``flask``."""
    with app_on(request.param, tmp_path) as app:
        yield app


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["openai-webhooks", *args])


def json_lines(result: Result) -> list[dict[str, t.Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def show(app: Flask, webhook_id: str) -> dict[str, t.Any]:
    [record] = json_lines(run(app, "show", webhook_id, "--json"))
    return record


def post(app: Flask, event_type: str, webhook_id: str, **fields: t.Any) -> int:
    response = post_event(
        app.test_client(), event_type, webhook_id=webhook_id, **fields
    )
    return response.status_code


# --- what the issue asks for -------------------------------------------------


def test_fix_then_replay_runs_only_the_receiver_that_gave_up(
    webhook_app: Flask,
) -> None:
    """A receiver gives up on a delivery (a bug); once fixed, ``replay``
    runs it alone, ``show`` says processed after two attempts, and a second
    replay runs nothing unless ``--force``."""
    calls = Calls()
    calls.broken.add("fragile")
    steady, fragile = calls("steady"), calls("fragile")
    fragile_key = receiver_key(batch_completed, fragile)
    with (
        batch_completed.connected_to(steady, webhook_app),
        batch_completed.connected_to(fragile, webhook_app),
    ):
        assert post(webhook_app, "batch.completed", "wh_fix") == 200
        before = show(webhook_app, "wh_fix")
        calls.broken.clear()

        replayed = run(webhook_app, "replay", "wh_fix")
        shown = run(webhook_app, "show", "wh_fix")
        after = show(webhook_app, "wh_fix")
        counted = dict(calls.count)
        again = run(webhook_app, "replay", "wh_fix")
        counted_again = dict(calls.count)
        forced = run(webhook_app, "replay", "wh_fix", "--force")

    assert before["status"] == "gave_up"
    assert {r["key"]: r["outcome"] for r in before["receivers"]} == {
        receiver_key(batch_completed, steady): "ok",
        fragile_key: "gave_up",
    }

    assert replayed.exit_code == 0, replayed.output
    assert (
        replayed.stdout == f"wh_fix: processed, now processed; ran: {fragile_key} ok\n"
    )
    assert counted == {"steady": 1, "fragile": 2}

    assert shown.exit_code == 0, shown.output
    assert re.search(r"^status +processed", shown.stdout, re.M)
    assert re.search(r"^received .* 2 attempt\(s\)", shown.stdout, re.M)
    assert after["status"] == "processed"
    assert after["attempts"] == 2
    assert {r["key"]: (r["outcome"], r["attempts"]) for r in after["receivers"]} == {
        receiver_key(batch_completed, steady): ("ok", 1),
        fragile_key: ("ok", 2),
    }

    assert again.exit_code == 0, again.output
    assert (
        again.stdout
        == "wh_fix: processed; nothing to run (every receiver had succeeded;"
        " --force runs them all again)\n"
    )
    assert counted_again == counted

    assert forced.exit_code == 0, forced.output
    assert forced.stdout == (
        "wh_fix: processed, now processed;"
        f" ran: {receiver_key(batch_completed, steady)} ok, {fragile_key} ok\n"
    )
    assert calls.count == {"steady": 2, "fragile": 3}


def test_unhandled_then_replay_unhandled(webhook_app: Flask) -> None:
    assert not has_any_receiver(webhook_app), "a receiver leaked from another test"
    assert post(webhook_app, "batch.completed", "wh_nobody") == 200
    assert show(webhook_app, "wh_nobody")["status"] == "unhandled"
    listed = json_lines(run(webhook_app, "log", "--json", "--status", "unhandled"))
    assert [r["webhook_id"] for r in listed] == ["wh_nobody"]
    calls = Calls()

    with batch_completed.connected_to(calls("late"), webhook_app):
        result = run(webhook_app, "replay", "--unhandled")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wh_nobody: processed, now processed; ran: ")
    assert calls.count == {"late": 1}
    assert show(webhook_app, "wh_nobody")["status"] == "processed"
    assert run(webhook_app, "replay", "--unhandled").stdout == "nothing to replay\n"


# --- log ---------------------------------------------------------------------


def test_log_json_is_one_contract_object_per_line(webhook_app: Flask) -> None:
    calls = Calls()
    with batch_completed.connected_to(calls("done"), webhook_app):
        post(webhook_app, "batch.completed", "wh_a", data={"id": "batch_a"})
        post(webhook_app, "batch.completed", "wh_b", data={"id": "batch_b"})

    result = run(webhook_app, "log", "--json")
    records = json_lines(result)

    assert len(result.stdout.splitlines()) == 2
    assert [r["webhook_id"] for r in records] == ["wh_b", "wh_a"]
    for record in records:
        assert CONTRACT <= set(record)
        assert "body" not in record
        assert record["type"] == "batch.completed"
        assert record["event_id"].startswith("evt_")
        assert (record["status"], record["attempts"]) == ("processed", 1)
        assert isinstance(record["received_at"], float)
        [receiver] = record["receivers"]
        assert {"key", "outcome", "attempts"} <= set(receiver)
        assert receiver["key"] == receiver_key(batch_completed, calls("done"))
        assert (receiver["outcome"], receiver["attempts"]) == ("ok", 1)
    assert [r["object_id"] for r in records] == ["batch_b", "batch_a"]


def test_log_filters(webhook_app: Flask) -> None:
    calls = Calls()
    calls.failing.update({"completed", "failed", "response"})
    old_delivery(webhook_app, "wh_old_failed", days=2, status="failed")
    with (
        batch_completed.connected_to(calls("completed"), webhook_app),
        batch_failed.connected_to(calls("failed"), webhook_app),
        response_completed.connected_to(calls("response"), webhook_app),
        batch_expired.connected_to(calls("expired"), webhook_app),
    ):
        assert post(webhook_app, "batch.completed", "wh_completed") == 500
        assert post(webhook_app, "batch.failed", "wh_failed") == 500
        assert post(webhook_app, "response.completed", "wh_response") == 500
        assert post(webhook_app, "batch.expired", "wh_expired") == 200

    def listed(*args: str) -> list[str]:
        result = run(webhook_app, "log", "--json", *args)
        return [record["webhook_id"] for record in json_lines(result)]

    query = ("--status", "failed", "--type", "batch.*", "--since", "24h")
    assert listed(*query, "--limit", "5") == ["wh_failed", "wh_completed"]
    assert listed(*query, "--limit", "1") == ["wh_failed"]
    assert listed("--status", "failed", "--type", "batch.*") == [
        "wh_failed",
        "wh_completed",
        "wh_old_failed",
    ]
    assert listed("--status", "failed", "--status", "processed", "--since", "1d") == [
        "wh_expired",
        "wh_response",
        "wh_failed",
        "wh_completed",
    ]
    assert listed("--type", "response.*") == ["wh_response"]
    assert listed("--status", "gave_up") == []

    table = run(webhook_app, "log", *query, "--limit", "1")
    assert table.exit_code == 0, table.output
    header, row, more = table.stdout.splitlines()
    assert header.split() == [
        "RECEIVED",
        "STATUS",
        "TYPE",
        "OBJECT",
        "TRIES",
        "WEBHOOK-ID",
    ]
    assert row.split()[2:] == [
        "failed",
        "batch.failed",
        row.split()[4],
        "1",
        "wh_failed",
    ]
    assert row.split()[4].startswith("batch_")
    assert more == "(more: raise --limit above 1)"
    empty = run(webhook_app, "log", "--status", "gave_up")
    assert empty.stdout == "no deliveries match\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["log", "--since", "yesterday"], "Invalid value for '--since'"),
        (["replay", "--failed", "--since", "24 hours"], "Invalid value for '--since'"),
        (["prune", "--older-than", "0"], "Invalid value for '--older-than'"),
        (["prune"], "Missing option '--older-than'"),
        (["log", "--status", "done"], "Invalid value for '--status'"),
        (["log", "--limit", "0"], "Invalid value for '--limit'"),
        (["replay"], "give WEBHOOK_ID... or one of --failed, --gave-up, --unhandled"),
        (["replay", "wh_x", "--failed"], "give WEBHOOK_ID... or one of --failed"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    app = make_app("memory")

    result = run(app, *args)

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_duration_says_how_to_write_one() -> None:
    result = run(make_app("memory"), "log", "--since", "yesterday")

    assert (
        "'yesterday' is not a duration; write e.g. 90s, 15m, 24h, 30d or 2w"
        in result.output
    )


# --- show --------------------------------------------------------------------


def test_show_json_has_the_exact_body(webhook_app: Flask) -> None:
    body = (
        b'{"id": "evt_show", "object": "event", "created_at": 1750287078,'
        b'  "type": "response.completed",\n "data": {"id": "resp_\xe2\x9c\x93"}}'
    )
    response = post_event(webhook_app.test_client(), body, webhook_id="wh_show")
    assert response.status_code == 200

    record = show(webhook_app, "wh_show")

    assert record["body"].encode("utf-8") == body
    assert CONTRACT <= set(record)
    assert (record["webhook_id"], record["type"], record["event_id"]) == (
        "wh_show",
        "response.completed",
        "evt_show",
    )
    assert record["object_id"] == "resp_\u2713"


def test_show_text(webhook_app: Flask) -> None:
    calls = Calls()
    calls.broken.add("picky")
    with batch_completed.connected_to(calls("picky"), webhook_app):
        post(webhook_app, "batch.completed", "wh_text", data={"id": "batch_text"})

    result = run(webhook_app, "show", "wh_text")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "webhook-id   wh_text"
    assert lines[1] == "type         batch.completed"
    assert lines[3] == "object       batch_text"
    assert lines[4] == "status       gave_up (last answer 200)"
    assert "receivers" in lines
    key = receiver_key(batch_completed, calls("picky"))
    assert any(line.startswith(f"  gave_up     {key}  (1 run(s),") for line in lines)
    assert (
        "              flask_openai_webhooks.errors.PermanentFailure: picky is broken"
        in lines
    )
    # The body last, pretty-printed and indented.
    pretty = lines[lines.index("body") + 1 :]
    assert pretty[0] == "  {"
    assert all(line.startswith("  ") for line in pretty)
    stored = show(webhook_app, "wh_text")["body"]
    assert json.loads("\n".join(pretty)) == json.loads(stored)


def test_show_unknown_delivery(webhook_app: Flask) -> None:
    result = run(webhook_app, "show", "wh_nope")

    assert result.exit_code == 1
    assert result.output == "Error: no delivery with webhook-id 'wh_nope'\n"


# --- replay ------------------------------------------------------------------


def test_replay_dry_run_lists_and_runs_nothing(webhook_app: Flask) -> None:
    calls = Calls()
    calls.failing.add("failing")
    with batch_completed.connected_to(calls("failing"), webhook_app):
        post(webhook_app, "batch.completed", "wh_dry_1")
        post(webhook_app, "batch.completed", "wh_dry_2")
        by_status = run(webhook_app, "replay", "--failed", "--dry-run")
        by_id = run(webhook_app, "replay", "wh_dry_2", "--dry-run")

    assert by_status.exit_code == 0, by_status.output
    assert by_status.stdout == (
        "would replay wh_dry_1 (batch.completed, failed)\n"
        "would replay wh_dry_2 (batch.completed, failed)\n"
    )
    assert by_id.stdout == "would replay wh_dry_2 (batch.completed, failed)\n"
    assert calls.count == {"failing": 2}
    assert show(webhook_app, "wh_dry_1")["attempts"] == 1


def test_replay_exits_non_zero_when_a_receiver_fails_again(
    webhook_app: Flask,
) -> None:
    calls = Calls()
    calls.failing.add("raises")
    calls.broken.add("gives_up")
    with (
        batch_failed.connected_to(calls("raises"), webhook_app),
        batch_completed.connected_to(calls("gives_up"), webhook_app),
    ):
        post(webhook_app, "batch.failed", "wh_raises")
        post(webhook_app, "batch.completed", "wh_gives_up")
        raised = run(webhook_app, "replay", "wh_raises")
        gave_up = run(webhook_app, "replay", "--gave-up")
        both = run(webhook_app, "replay", "--failed", "--gave-up")

    assert raised.exit_code == 1
    assert raised.stdout.startswith("wh_raises: receiver_failed, now failed; ran: ")
    assert gave_up.exit_code == 1
    assert gave_up.stdout.startswith("wh_gives_up: processed, now gave_up; ran: ")
    assert both.exit_code == 1
    assert [line.split(":")[0] for line in both.stdout.splitlines()] == [
        "wh_raises",
        "wh_gives_up",
    ]
    assert calls.count == {"raises": 3, "gives_up": 3}


def test_replay_one_receiver(webhook_app: Flask) -> None:
    calls = Calls()
    first, second = calls("first"), calls("second")
    with (
        batch_completed.connected_to(first, webhook_app),
        batch_completed.connected_to(second, webhook_app),
    ):
        post(webhook_app, "batch.completed", "wh_one")
        result = run(
            webhook_app,
            "replay",
            "wh_one",
            "--receiver",
            receiver_key(batch_completed, second),
        )

    assert result.exit_code == 0, result.output
    assert calls.count == {"first": 1, "second": 2}


def test_replay_unknown_delivery_is_an_error(webhook_app: Flask) -> None:
    calls = Calls()
    with batch_completed.connected_to(calls("known"), webhook_app):
        post(webhook_app, "batch.completed", "wh_known")
        result = run(webhook_app, "replay", "wh_nope", "wh_known")

    assert result.exit_code == 1
    assert result.stderr == (
        "wh_nope: no delivery with webhook-id 'wh_nope' in the log\n"
    )
    # The other delivery is still replayed; nothing of it needed to run.
    assert (
        result.stdout
        == "wh_known: processed; nothing to run (every receiver had succeeded;"
        " --force runs them all again)\n"
    )
    assert calls.count == {"known": 1}


def test_replay_a_body_that_no_longer_parses(webhook_app: Flask) -> None:
    old_delivery(webhook_app, "wh_shape", days=0, body=b'{"type": "batch.completed"}')

    result = run(webhook_app, "replay", "wh_shape")

    assert result.exit_code == 1
    assert result.stderr.startswith("wh_shape: the stored body no longer parses: ")


# --- prune -------------------------------------------------------------------


def test_prune_older_than(webhook_app: Flask) -> None:
    old_delivery(webhook_app, "wh_old", days=40)
    old_delivery(webhook_app, "wh_old_failed", days=31, status="failed")
    old_delivery(webhook_app, "wh_old_leased", days=40, leased=True)
    old_delivery(webhook_app, "wh_month", days=29)
    post(webhook_app, "batch.completed", "wh_new")

    result = run(webhook_app, "prune", "--older-than", "30d")
    again = run(webhook_app, "prune", "--older-than", "30d")

    assert result.exit_code == 0, result.output
    assert result.stdout == "pruned 2 deliveries\n"
    assert again.stdout == "pruned 0 deliveries\n"
    remaining = json_lines(run(webhook_app, "log", "--json"))
    assert [r["webhook_id"] for r in remaining] == [
        "wh_new",
        "wh_month",
        "wh_old_leased",
    ]
    assert run(webhook_app, "show", "wh_old").exit_code == 1


# --- several blueprints ------------------------------------------------------


def test_commands_take_the_blueprint() -> None:
    app = make_app("memory", name="first", url_prefix="/one")
    app.register_blueprint(make_blueprint(name="second", url_prefix="/two"))
    post_event(app.test_client(), "batch.completed", blueprint="second")

    ambiguous = run(app, "log")
    chosen = json_lines(run(app, "log", "--json", "--blueprint", "second"))
    other = json_lines(run(app, "log", "--json", "--blueprint", "first"))

    assert ambiguous.exit_code == 1
    assert "several OpenAI webhook blueprints are registered" in ambiguous.output
    assert [r["type"] for r in chosen] == ["batch.completed"]
    assert other == []


def test_a_store_that_fails_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path}/missing-folder/log.db")
    result = app.test_cli_runner().invoke(args=["openai-webhooks", "log"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: SQLite store ")
    assert "'flask openai-webhooks doctor' checks the store" in result.output
    assert "Traceback" not in result.output


def test_the_memory_store_outside_testing_gets_a_note() -> None:
    """The newcomer's mistake: the shell running the log command lacks the
    server's store setting, so its app logs in a memory of its own."""
    app = make_app("memory")
    app.testing = False
    result = app.test_cli_runner().invoke(args=["openai-webhooks", "log"])
    assert result.exit_code == 0
    assert "uses the memory store, which lives in this process only" in (result.stderr)


def test_a_type_typo_gets_a_hint_and_still_lists(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path}/log.db")
    result = app.test_cli_runner().invoke(
        args=["openai-webhooks", "log", "--type", "batch.canceled"]
    )
    assert result.exit_code == 0
    assert "did you mean 'batch.cancelled'" in result.stderr
    assert result.stdout == "no deliveries match\n"
