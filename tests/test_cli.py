"""The ``flask openai-webhooks`` commands ``types``, ``send``, ``verify``
and ``doctor``, run against real apps. The delivery-log commands are in
``test_cli_log.py``."""

from __future__ import annotations

import base64
import collections.abc as c
import contextlib
import re
import socket
import threading
import time
import typing as t
from pathlib import Path

import pytest
from click.testing import Result
from flask import Blueprint
from flask import Flask
from flask import redirect
from flask import request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect
from werkzeug.serving import make_server

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.cli import cli
from flask_openai_webhooks.log import get_delivery
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.signals import batch_failed
from flask_openai_webhooks.signals import EVENT_SIGNALS
from flask_openai_webhooks.signals import webhook_received
from flask_openai_webhooks.state import states
from flask_openai_webhooks.testing import capture_signals
from flask_openai_webhooks.testing import encode_body
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import signed_headers
from flask_openai_webhooks.verify import sign

SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"y" * 32).decode()
SECRET_PARTS = (SECRET, SECRET.removeprefix("whsec_"))
NOW = 1_750_287_078


def make_app(secret: t.Any = SECRET, **options: t.Any) -> Flask:
    """A real app with the blueprint registered; ``options`` go to
    :func:`make_blueprint`."""
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=secret)
    app.register_blueprint(make_blueprint(**options))
    return app


def nested_app(**options: t.Any) -> Flask:
    """An app with the blueprint nested in an ``api`` blueprint."""
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    api = Blueprint("api", __name__, url_prefix="/api")
    api.register_blueprint(make_blueprint(**options))
    app.register_blueprint(api)
    return app


def close_stores(app: Flask) -> None:
    """Release the connections of the app's stores (SQLite, Redis)."""
    for state in states(app).values():
        close = getattr(state.store, "close", None)
        if close is not None:
            close()


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["openai-webhooks", *args])


def assert_no_secret(output: str) -> None:
    for part in SECRET_PARTS:
        assert part not in output


def status_lines(output: str) -> dict[str, str]:
    """``{check: status}`` from doctor's output."""
    found = re.findall(r"^(ok|warn|info|FAIL) +([a-z]+):", output, re.MULTILINE)
    return {check: status for status, check in found}


def noop(sender: Flask, **extra: t.Any) -> None:
    """A receiver that does nothing."""


@contextlib.contextmanager
def serve(app: Flask) -> c.Iterator[str]:
    """Run ``app`` on a real HTTP server in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- types -------------------------------------------------------------------


def test_types_lists_every_type_with_its_signal_and_receivers() -> None:
    app, other = make_app(), make_app()

    with (
        batch_completed.connected_to(noop, app),
        batch_failed.connected_to(noop, other),
        webhook_received.connected_to(noop, app),
    ):
        result = run(app, "types")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["EVENT", "TYPE", "SIGNAL", "RECEIVERS"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:33]}
    assert set(rows) == set(EVENT_SIGNALS)
    assert rows["batch.completed"] == ["batch_completed", "1"]
    assert rows["batch.failed"] == ["batch_failed", "0"]
    assert rows["fine_tuning.job.succeeded"] == ["fine_tuning_job_succeeded", "0"]
    assert "1 of 32 event types have a receiver." in result.output
    assert "webhook_received (every event, unknown types too): 1 receiver." in (
        result.output
    )


# --- send --------------------------------------------------------------------


def test_send_delivers_through_the_app() -> None:
    app = make_app()

    with capture_signals(app) as sent:
        result = run(
            app,
            "send",
            "batch.completed",
            "--set",
            "data.id=batch_123",
            "--set",
            "data.count=5",
            "--set",
            'data.label="7"',
            "--set",
            "data.flag=true",
            "--set",
            "data.ratio=NaN",
        )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.fullmatch(
        r"POST /webhooks/openai  batch\.completed  event evt_[0-9a-f]+"
        r"  webhook-id wh_[0-9a-f]{32}",
        lines[0],
    )
    assert lines[1:] == ["200 OK", '{"status": "processed"}']
    data = sent.events[0].data
    assert (data.id, data.count, data.label, data.flag, data.ratio) == (
        "batch_123",
        5,
        "7",
        True,
        "NaN",
    )


def test_send_with_a_webhook_id_twice_is_a_duplicate() -> None:
    app = make_app()

    with webhook_received.connected_to(noop, app):
        first = run(app, "send", "response.completed", "--webhook-id", "wh_cli")
        second = run(app, "send", "response.completed", "--webhook-id", "wh_cli")

    assert "webhook-id wh_cli" in first.output
    assert first.output.splitlines()[-1] == '{"status": "processed"}'
    assert second.exit_code == 0
    assert second.output.splitlines()[-1] == '{"status": "duplicate"}'


def test_send_without_any_receiver_is_unhandled() -> None:
    app = make_app()

    result = run(app, "send", "batch.completed", "--webhook-id", "wh_nobody")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == ["200 OK", '{"status": "unhandled"}']
    logged = get_delivery("wh_nobody", app=app)
    assert logged is not None
    assert logged.status == "unhandled"


def test_send_unknown_type_suggests_the_right_one() -> None:
    result = run(make_app(), "send", "batch.canceled")

    assert result.exit_code == 2
    assert "Invalid value for 'TYPE'" in result.output
    assert "Did you mean 'batch.cancelled'" in result.output


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        (["data.id"], "is not KEY=VALUE"),
        (["=1"], "is not KEY=VALUE"),
        (["data..id=1"], "is not KEY=VALUE"),
        (["data=1", "data.id=2"], "conflicts with the value already set for 'data'"),
        (["data.id=2", "data=1"], "conflicts with the keys already set inside it"),
    ],
    ids=["no-equals", "no-key", "empty-part", "value-then-key", "key-then-value"],
)
def test_send_bad_set(assignments: list[str], message: str) -> None:
    args = [arg for item in assignments for arg in ("--set", item)]

    result = run(make_app(), "send", "batch.completed", *args)

    assert result.exit_code == 2
    assert "Invalid value for '--set'" in result.output
    assert message in result.output


def test_send_fails_when_a_receiver_fails() -> None:
    app = make_app()

    def fail(sender: Flask, **extra: t.Any) -> None:
        raise RuntimeError("boom")

    with batch_failed.connected_to(fail, app):
        result = run(app, "send", "batch.failed")

    assert result.exit_code == 1
    assert "500 INTERNAL SERVER ERROR" in result.output
    assert '"error": "receiver_failed"' in result.output


def test_send_needs_blueprint_when_there_are_several() -> None:
    app = make_app(name="first", url_prefix="/one")
    app.register_blueprint(
        make_blueprint(name="second", url_prefix="/two", secret=OTHER_SECRET)
    )

    ambiguous = run(app, "send", "batch.completed")
    chosen = run(app, "send", "batch.completed", "--blueprint", "second")
    missing = run(app, "send", "batch.completed", "--blueprint", "third")

    assert ambiguous.exit_code == 2
    assert "several OpenAI webhook blueprints" in ambiguous.output
    assert "--blueprint NAME" in ambiguous.output
    assert chosen.exit_code == 0, chosen.output
    assert chosen.output.startswith("POST /two  batch.completed")
    assert missing.exit_code == 2
    assert "no OpenAI webhook blueprint named 'third'" in missing.output


def test_send_url_delivers_over_http_to_that_servers_app() -> None:
    """The delivery goes over the network to the server's app, not through
    the app the command runs in: only the server's receivers hear it and
    only its log has it."""
    server_app, app = make_app(), make_app()

    with (
        serve(server_app) as base,
        capture_signals(server_app) as heard,
        capture_signals(app) as local,
    ):
        result = run(
            app,
            "send",
            "fine_tuning.job.succeeded",
            "--url",
            f"{base}/webhooks/openai",
            "--set",
            "data.id=ftjob_1",
            "--webhook-id",
            "wh_over_http",
        )

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(
        f"POST {base}/webhooks/openai  fine_tuning.job.succeeded  event evt_"
    )
    assert result.output.splitlines()[1:] == ["200 OK", '{"status": "processed"}']
    assert heard.types == ["fine_tuning.job.succeeded"]
    assert heard.events[0].data.id == "ftjob_1"
    assert local.names == []
    logged = get_delivery("wh_over_http", app=server_app)
    assert logged is not None
    assert (logged.event_type, logged.object_id) == (
        "fine_tuning.job.succeeded",
        "ftjob_1",
    )
    assert get_delivery("wh_over_http", app=app) is None


def test_send_to_a_nested_blueprint() -> None:
    app = nested_app()

    with capture_signals(app) as sent:
        result = run(app, "send", "batch.completed", "--webhook-id", "wh_nested")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("POST /api/webhooks/openai  batch.completed  ")
    assert sent.types == ["batch.completed"]
    assert sent.of(webhook_received)[0].kwargs["blueprint"] == "api.openai_webhooks"
    assert get_delivery("wh_nested", app=app) is not None


def test_send_to_a_nested_blueprint_by_its_registered_name() -> None:
    app = nested_app(name="hooks")
    app.register_blueprint(
        make_blueprint(name="other", url_prefix="/other", secret=OTHER_SECRET)
    )

    result = run(app, "send", "batch.completed", "--blueprint", "api.hooks")
    unqualified = run(app, "send", "batch.completed", "--blueprint", "hooks")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("POST /api/webhooks/openai  batch.completed")
    assert unqualified.exit_code == 2
    assert "no OpenAI webhook blueprint named 'hooks'" in unqualified.output
    assert "api.hooks" in unqualified.output


def test_send_url_non_2xx_exits_non_zero() -> None:
    server_app = make_app(secret=OTHER_SECRET)
    app = make_app()

    with serve(server_app) as base:
        rejected = run(
            app, "send", "batch.completed", "--url", f"{base}/webhooks/openai"
        )
        not_found = run(app, "send", "batch.completed", "--url", f"{base}/nowhere")

    assert rejected.exit_code == 1
    assert "400 BAD REQUEST" in rejected.output
    assert '"error": "signature_mismatch"' in rejected.output
    assert not_found.exit_code == 1
    assert "404 NOT FOUND" in not_found.output


def test_send_url_reports_redirects_without_following() -> None:
    app = make_app()

    @app.post("/old")
    def old() -> ResponseReturnValue:
        return redirect("/webhooks/openai", 308)

    with serve(app) as base, capture_signals(app) as sent:
        result = run(app, "send", "batch.completed", "--url", f"{base}/old")

    assert result.exit_code == 1
    assert "308 PERMANENT REDIRECT" in result.output
    assert "Location: /webhooks/openai" in result.output
    assert sent.names == []


def test_send_url_connection_error_is_a_clear_message() -> None:
    url = f"http://127.0.0.1:{closed_port()}/webhooks/openai"

    result = run(make_app(), "send", "batch.completed", "--url", url)

    assert result.exit_code == 1
    assert f"Error: could not deliver to {url}:" in result.output
    assert "Traceback" not in result.output


def test_send_url_must_be_http() -> None:
    result = run(make_app(), "send", "batch.completed", "--url", "localhost:5000/x")

    assert result.exit_code == 2
    assert "is not an http:// or https:// URL" in result.output


# --- verify ------------------------------------------------------------------


def capture(
    tmp_path: Path,
    payload: dict[str, t.Any] | bytes | None = None,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    suffix: bytes = b"",
) -> tuple[str, list[str]]:
    """Write a signed delivery to a file; return its path and --header args."""
    if payload is None:
        payload = make_event("batch.completed", id="evt_1", data={"id": "batch_1"})
    body = encode_body(payload)
    headers = signed_headers(
        body, secret, webhook_id="wh_captured", timestamp=timestamp
    )
    path = tmp_path / "body.json"
    path.write_bytes(body + suffix)
    args = [
        arg
        for name, value in headers.items()
        for arg in ("--header", f"{name}: {value}")
    ]
    return str(path), args


def test_verify_ok(tmp_path: Path) -> None:
    body, headers = capture(tmp_path)

    result = run(make_app(), "verify", "--body", body, *headers)

    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        "OK batch.completed (event evt_1, webhook-id wh_captured, signed "
    )
    assert "with key #1 of 1)" in result.output
    assert_no_secret(result.output)


def test_verify_reads_the_body_from_stdin(tmp_path: Path) -> None:
    body, headers = capture(tmp_path)

    result = (
        make_app()
        .test_cli_runner()
        .invoke(
            args=["openai-webhooks", "verify", "--body", "-", *headers],
            input=Path(body).read_bytes(),
        )
    )

    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK batch.completed")


def test_verify_matches_an_older_key_while_rotating(tmp_path: Path) -> None:
    body, headers = capture(tmp_path, secret=OTHER_SECRET)

    result = run(
        make_app(secret=[SECRET, OTHER_SECRET]), "verify", "--body", body, *headers
    )

    assert result.exit_code == 0, result.output
    assert "with key #2 of 2" in result.output


def test_verify_with_a_secret_option(tmp_path: Path) -> None:
    body, headers = capture(tmp_path, secret=OTHER_SECRET)
    app = make_app()

    right = run(app, "verify", "--body", body, *headers, "--secret", OTHER_SECRET)
    wrong = run(app, "verify", "--body", body, *headers)

    assert right.exit_code == 0, right.output
    assert wrong.exit_code == 1
    assert wrong.output.startswith(
        "FAIL signature: no signature in the webhook-signature"
    )


def test_verify_with_a_secret_option_needs_no_blueprint(tmp_path: Path) -> None:
    body, headers = capture(tmp_path)
    app = Flask(__name__)
    app.cli.add_command(cli)

    with_secret = run(app, "verify", "--body", body, *headers, "--secret", SECRET)
    without = run(app, "verify", "--body", body, *headers)

    assert with_secret.exit_code == 0, with_secret.output
    assert without.exit_code == 2
    assert "no OpenAI webhook blueprint is registered" in without.output


def test_verify_invalid_secret_option_is_not_echoed(tmp_path: Path) -> None:
    body, headers = capture(tmp_path)

    result = run(
        make_app(), "verify", "--body", body, *headers, "--secret", "whsec_n0t-base64!"
    )

    assert result.exit_code == 2
    assert "Invalid value for '--secret'" in result.output
    assert "not valid base64" in result.output
    assert "n0t-base64" not in result.output


def test_verify_mismatch_never_prints_the_expected_signature(tmp_path: Path) -> None:
    stamp = int(time.time())
    body, headers = capture(tmp_path, secret=OTHER_SECRET, timestamp=stamp)
    expected = sign(
        Path(body).read_bytes(),
        secret=SECRET,
        webhook_id="wh_captured",
        timestamp=stamp,
    )

    result = run(make_app(), "verify", "--body", body, *headers)

    assert result.exit_code == 1
    assert expected.removeprefix("v1,") not in result.output
    assert_no_secret(result.output)
    assert "hint: the body must be byte for byte what was received" in result.output


def test_verify_trailing_newline_gets_a_hint(tmp_path: Path) -> None:
    body, headers = capture(tmp_path, suffix=b"\n")

    result = run(make_app(), "verify", "--body", body, *headers)

    assert result.exit_code == 1
    assert "the body file ends with a newline" in result.output


def test_verify_old_capture_with_now_and_tolerance(tmp_path: Path) -> None:
    body, headers = capture(tmp_path, timestamp=NOW)
    app = make_app()

    stale = run(app, "verify", "--body", body, *headers)
    at_capture = run(app, "verify", "--body", body, *headers, "--now", str(NOW + 10))
    too_late = run(
        app,
        "verify",
        "--body",
        body,
        *headers,
        "--now",
        str(NOW + 10),
        "--tolerance",
        "5",
    )

    assert stale.exit_code == 1
    assert stale.output.startswith("FAIL signature: the webhook-timestamp is too old")
    assert f"hint: to check an old capture, pass --now {NOW}" in stale.output
    assert at_capture.exit_code == 0, at_capture.output
    assert "signed 2025-06-18T22:51:18Z" in at_capture.output
    assert too_late.exit_code == 1
    assert "more than 5 seconds" in too_late.output


def test_verify_uses_the_apps_tolerance(tmp_path: Path) -> None:
    body, headers = capture(tmp_path, timestamp=NOW)

    result = run(
        make_app(tolerance=5),
        "verify",
        "--body",
        body,
        *headers,
        "--now",
        str(NOW + 10),
    )

    assert result.exit_code == 1
    assert "more than 5 seconds" in result.output


def test_verify_missing_header(tmp_path: Path) -> None:
    body, headers = capture(tmp_path)

    result = run(make_app(), "verify", "--body", body, *headers[:4])

    assert result.exit_code == 1
    assert result.output == "FAIL signature: the webhook-signature header is missing\n"


def test_verify_authentic_but_invalid_payload(tmp_path: Path) -> None:
    body, headers = capture(tmp_path, b'{"type": "batch.completed"}')

    result = run(make_app(), "verify", "--body", body, *headers)

    assert result.exit_code == 1
    assert result.output.startswith(
        "FAIL payload: batch.completed event does not match"
    )
    assert "(the signature is valid, signed " in result.output


def test_verify_unknown_type_is_ok(tmp_path: Path) -> None:
    payload = make_event("video.completed", allow_unknown=True, id="evt_v")
    body, headers = capture(tmp_path, payload)

    result = run(make_app(), "verify", "--body", body, *headers)

    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        "OK video.completed (an unknown type: only webhook_received is sent;"
        " event evt_v,"
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("webhook-id wh_sentinel", "is not 'Name: value'"),
        (": wh_sentinel", "is not 'Name: value'"),
    ],
    ids=["no-colon", "no-name"],
)
def test_verify_bad_header_option(tmp_path: Path, header: str, message: str) -> None:
    body, _ = capture(tmp_path)

    result = run(make_app(), "verify", "--body", body, "--header", header)

    assert result.exit_code == 2
    assert message in result.output
    assert "wh_sentinel" not in result.output


def test_verify_repeated_header_option(tmp_path: Path) -> None:
    body, headers = capture(tmp_path)

    result = run(
        make_app(), "verify", "--body", body, *headers, "--header", "Webhook-Id: x"
    )

    assert result.exit_code == 2
    assert "the webhook-id header is given twice" in result.output


# --- doctor ------------------------------------------------------------------


def test_doctor_on_a_healthy_app(tmp_path: Path) -> None:
    app = make_app(store=f"sqlite:///{tmp_path / 'deliveries.db'}")

    with batch_completed.connected_to(noop, app):
        result = run(app, "doctor")
    close_stores(app)

    assert result.exit_code == 0, result.output
    assert status_lines(result.output) == {
        "secret": "ok",
        "route": "ok",
        "csrf": "ok",
        "store": "ok",
        "clock": "ok",
        "receivers": "info",
    }
    assert "ok   secret: 1 key from app.config, 32+ bytes each" in result.output
    assert (
        "ok   route: POST /webhooks/openai reaches the blueprint"
        " (an unsigned probe got 400 missing_header)"
    ) in result.output
    assert (
        f"ok   store: sqlite:///{tmp_path / 'deliveries.db'} answers" in result.output
    )
    assert re.search(
        r"^ok   clock: \d{4}-\d\d-\d\dT[\d:]+Z \(tolerance 300 s\)$",
        result.output,
        re.M,
    )
    assert (
        "info receivers: 31 of 32 event types have none: agent.*, batch.cancelled,"
        " batch.expired, batch.failed, eval.*"
    ) in result.output
    assert_no_secret(result.output)


def test_doctor_memory_store_is_a_warning() -> None:
    result = run(make_app(), "doctor")

    assert result.exit_code == 0, result.output
    assert status_lines(result.output)["store"] == "warn"
    assert (
        "warn store: memory (process-local, at most 10000 deliveries): duplicates"
        " are only caught within this process, and the delivery log is lost on"
        " restart\n"
    ) in result.output
    assert (
        "     fix: with several worker processes on one machine set"
        " OPENAI_WEBHOOK_STORE to 'sqlite:///webhooks.db'; with several machines,"
        " a redis:// URL or your PostgreSQL/MariaDB URL\n"
    ) in result.output


def test_doctor_relative_sqlite_store_is_in_the_instance_folder(
    tmp_path: Path,
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(store="sqlite:///webhooks.db"))

    result = run(app, "doctor")
    close_stores(app)

    assert result.exit_code == 0, result.output
    where = tmp_path / "instance" / "webhooks.db"
    assert f"ok   store: sqlite:///{where} answers\n" in result.output
    assert where.exists()


def test_doctor_unopenable_sqlite_file_gets_the_files_advice(
    tmp_path: Path,
) -> None:
    """A path whose folder is a file cannot be opened, by root either."""
    (tmp_path / "not-a-folder").write_text("")
    path = tmp_path / "not-a-folder" / "webhooks.db"
    app = make_app(store=f"sqlite:///{path}")

    result = run(app, "doctor")
    close_stores(app)

    assert result.exit_code == 1
    lines = status_lines(result.output)
    assert (lines["route"], lines["store"], lines["clock"]) == ("ok", "FAIL", "ok")
    assert "FAIL store: cannot be reached: " in result.output
    assert (
        f"     fix: the SQLite file {path} must be on a local disk, and it and its"
        " folder writable by the user the server runs as (relative paths are"
        " resolved against the app's instance folder)\n"
    ) in result.output
    assert "start the server" not in result.output
    assert result.output.endswith("\n1 check failed.\n")


def redis_keeps_data(url: str) -> bool:
    """Whether the Redis server has AOF or RDB snapshots on, asked
    directly, to know which store line doctor must print."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save") or ""
    finally:
        client.close()
    return appendonly == "yes" or bool(save.strip())


def test_doctor_with_redis_checks_persistence_and_compares_clocks(
    redis_url: str,
) -> None:
    app = make_app(store=redis_url)

    result = run(app, "doctor")
    close_stores(app)

    assert result.exit_code == 0, result.output
    if redis_keeps_data(redis_url):
        assert "ok   store: redis://127.0.0.1:6379/0 answers\n" in result.output
    else:
        assert (
            "warn store: redis://127.0.0.1:6379/0 answers, but it keeps nothing"
            " on disk (appendonly is 'no' and save is empty)"
        ) in result.output
        assert "     fix: enable AOF (appendonly yes) on the Redis server" in (
            result.output
        )
    assert re.search(
        r"^ok   clock: \S+, [+-]\d+\.\d s from the Redis server's clock"
        r" \(tolerance 300 s\)$",
        result.output,
        re.M,
    )


def test_doctor_store_unreachable_fails() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    app = make_app(store=url)

    result = run(app, "doctor")
    close_stores(app)

    assert result.exit_code == 1
    lines = status_lines(result.output)
    assert lines["store"] == "FAIL"
    assert lines["clock"] == "ok"
    assert "not compared with the Redis server's clock, which did not answer" in (
        result.output
    )
    assert "FAIL store: cannot be reached: Redis store" in result.output
    assert "     fix: start the server or fix OPENAI_WEBHOOK_STORE" in result.output
    assert result.output.endswith("\n1 check failed.\n")


def test_doctor_short_key_is_a_warning() -> None:
    short = "whsec_" + base64.b64encode(b"short-secret").decode()

    result = run(make_app(secret=short), "doctor")

    assert result.exit_code == 0, result.output
    assert "warn secret: 1 key from app.config; short: #1 (12 bytes)" in result.output
    assert short.removeprefix("whsec_") not in result.output


def test_doctor_short_raw_key_is_a_warning() -> None:
    result = run(make_app(secret=b"short-secret"), "doctor")

    assert result.exit_code == 0, result.output
    assert "warn secret: 1 key from app.config; short: #1 (12 bytes)" in result.output
    assert "short-secret" not in result.output


def test_doctor_reports_rotation() -> None:
    result = run(make_app(secret=[SECRET, OTHER_SECRET]), "doctor")

    assert "ok   secret: 2 keys from app.config (rotating: any of them verifies)" in (
        result.output
    )


def test_doctor_csrf_exempt_when_set_up_first() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="dev", OPENAI_WEBHOOK_SECRET=SECRET)
    CSRFProtect(app)
    app.register_blueprint(make_blueprint())

    result = run(app, "doctor")

    assert result.exit_code == 0, result.output
    assert (
        "ok   csrf: Flask-WTF CSRF protection is in use and lets deliveries"
        " through (the route probe reached the blueprint)\n"
    ) in result.output
    assert status_lines(result.output)["route"] == "ok"


def test_doctor_csrf_nested_blueprint_is_exempt_when_set_up_first() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="dev", OPENAI_WEBHOOK_SECRET=SECRET)
    CSRFProtect(app)
    api = Blueprint("api", __name__, url_prefix="/api")
    api.register_blueprint(make_blueprint())
    app.register_blueprint(api)

    result = run(app, "doctor")

    assert result.exit_code == 0, result.output
    lines = status_lines(result.output)
    assert (lines["route"], lines["csrf"]) == ("ok", "ok")


def test_doctor_csrf_not_exempt_fails_the_route_check() -> None:
    """The route probe is what finds the CSRF rejection; the csrf line
    points at the fix without counting the same problem twice."""
    app = make_app()
    app.config["SECRET_KEY"] = "dev"
    CSRFProtect(app)

    result = run(app, "doctor")

    assert result.exit_code == 1
    lines = status_lines(result.output)
    assert (lines["route"], lines["csrf"]) == ("FAIL", "warn")
    assert (
        "got a 400 that is not from the blueprint (CSRF protection?):"
        " The CSRF token is missing.\n"
    ) in result.output
    assert (
        "warn csrf: Flask-WTF CSRF protection is in use; the route check failed\n"
    ) in result.output
    assert "     fix: csrf.exempt(blueprint), or set up CSRFProtect" in result.output
    assert result.output.endswith("\n1 check failed.\n")


def test_doctor_csrf_disabled_by_config_lets_the_probe_through() -> None:
    app = make_app()
    app.config.update(SECRET_KEY="dev", WTF_CSRF_ENABLED=False)
    CSRFProtect(app)

    result = run(app, "doctor")

    assert result.exit_code == 0, result.output
    lines = status_lines(result.output)
    assert (lines["route"], lines["csrf"]) == ("ok", "ok")


def test_doctor_csrf_exempt_by_view() -> None:
    app = make_app()
    app.config["SECRET_KEY"] = "dev"
    csrf = CSRFProtect(app)
    csrf.exempt(app.view_functions["openai_webhooks.receive"])

    result = run(app, "doctor")

    assert result.exit_code == 0, result.output
    assert status_lines(result.output)["csrf"] == "ok"


def test_doctor_route_redirected() -> None:
    app = make_app()

    @app.before_request
    def force_https() -> ResponseReturnValue | None:
        if not request.is_secure:
            return redirect(request.url.replace("http://", "https://", 1), 301)
        return None

    result = run(app, "doctor")

    assert result.exit_code == 1
    assert (
        "FAIL route: POST /webhooks/openai is redirected (301) to"
        " https://localhost/webhooks/openai"
    ) in result.output
    assert "     fix: deliveries are not redirected" in result.output


def test_doctor_route_answered_by_something_else() -> None:
    app = make_app()

    @app.before_request
    def login_required() -> ResponseReturnValue:
        return "log in first", 401

    result = run(app, "doctor")

    assert result.exit_code == 1
    assert (
        "FAIL route: POST /webhooks/openai answered 401 UNAUTHORIZED" in result.output
    )


def test_doctor_route_not_found() -> None:
    app = make_app()

    @app.before_request
    def hide() -> None:
        from flask import abort

        abort(404)

    result = run(app, "doctor")

    assert result.exit_code == 1
    assert "FAIL route: POST /webhooks/openai is not found (404)" in result.output


def test_doctor_probe_is_not_heard_as_a_rejection() -> None:
    app = make_app()

    with capture_signals(app) as sent:
        result = run(app, "doctor")

    assert "reaches the blueprint" in result.output
    assert sent.names == []


def test_doctor_without_receivers_warns() -> None:
    app = make_app()
    leaked = [sig.name for sig in EVENT_SIGNALS.values() if any(sig.receivers_for(app))]
    assert not leaked, f"receivers for any sender leaked from other tests: {leaked}"

    result = run(app, "doctor")

    assert status_lines(result.output)["receivers"] == "warn"
    assert "warn receivers: none connected" in result.output


def test_doctor_with_every_receiver_is_ok() -> None:
    app = make_app()

    with contextlib.ExitStack() as stack:
        for signal in EVENT_SIGNALS.values():
            stack.enter_context(signal.connected_to(noop, app))
        result = run(app, "doctor")

    assert "ok   receivers: every one of the 32 event types has one" in result.output


def test_doctor_mentions_the_catch_all_receiver() -> None:
    app = make_app()

    with webhook_received.connected_to(noop, app):
        result = run(app, "doctor")

    assert (
        "info receivers: 32 of 32 event types have none; webhook_received"
        " (1 receiver) hears them:"
    ) in result.output


def test_doctor_with_several_blueprints() -> None:
    app = make_app(name="first", url_prefix="/one")
    app.register_blueprint(make_blueprint(name="second", url_prefix="/two"))

    ambiguous = run(app, "doctor")
    chosen = run(app, "doctor", "--blueprint", "second")

    assert ambiguous.exit_code == 1
    assert ambiguous.output.startswith("FAIL blueprint: several OpenAI webhook")
    assert chosen.exit_code == 0, chosen.output
    assert "ok   route: POST /two reaches the blueprint" in chosen.output


def test_doctor_with_a_nested_blueprint() -> None:
    app = nested_app()

    result = run(app, "doctor")
    named = run(app, "doctor", "--blueprint", "api.openai_webhooks")

    assert result.exit_code == 0, result.output
    assert (
        "ok   route: POST /api/webhooks/openai reaches the blueprint (an unsigned"
        " probe got 400 missing_header)\n"
    ) in result.output
    assert named.output == result.output


def test_doctor_without_a_blueprint() -> None:
    app = Flask(__name__)
    app.cli.add_command(cli)

    result = run(app, "doctor")

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "FAIL blueprint: no OpenAI webhook blueprint is registered on this app",
        "     fix: app.register_blueprint(make_blueprint()), or pass --blueprint NAME",
    ]


def test_registering_the_blueprint_adds_the_commands() -> None:
    app = make_app()

    result = run(app, "--help")

    assert result.exit_code == 0
    for command in (
        "types",
        "send",
        "verify",
        "doctor",
        "log",
        "show",
        "replay",
        "prune",
    ):
        assert re.search(rf"^  {command} ", result.output, re.M)


def test_a_nested_blueprint_adds_the_commands() -> None:
    result = run(nested_app(), "--help")

    assert result.exit_code == 0
    assert re.search(r"^  doctor ", result.output, re.M)
