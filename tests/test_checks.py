"""The setup checks behind ``doctor`` and the inspector's health panel, as
data: one :class:`Check` per concern, on real apps and stores. How
``doctor`` prints them is in ``test_cli.py``."""

from __future__ import annotations

import base64
import collections.abc as c
import contextlib
import socket
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask import redirect
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.checks import Check
from flask_openai_webhooks.checks import iter_checks
from flask_openai_webhooks.checks import LEVELS
from flask_openai_webhooks.checks import run_checks
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.signals import EVENT_SIGNALS
from flask_openai_webhooks.signals import webhook_received
from flask_openai_webhooks.signals import webhook_rejected
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.state import states
from flask_openai_webhooks.state import webhook_url
from flask_openai_webhooks.testing import capture_signals

from .conftest import SECRET

NAMES = ["secret", "route", "csrf", "store", "clock", "receivers"]


def make_app(
    *,
    secret: t.Any = SECRET,
    setup: c.Callable[[Flask], None] | None = None,
    **options: t.Any,
) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=secret, SECRET_KEY="k")
    if setup is not None:
        setup(app)
    app.register_blueprint(make_blueprint(**options))
    return app


@contextlib.contextmanager
def checked(app: Flask) -> c.Iterator[dict[str, Check]]:
    """``run_checks`` by name; the app's stores are closed afterwards."""
    try:
        checks = run_checks(app, get_state(app))
        assert [check.name for check in checks] == NAMES
        yield {check.name: check for check in checks}
    finally:
        for state in states(app).values():
            getattr(state.store, "close", lambda: None)()


def noop(sender: Flask, **extra: t.Any) -> None:
    pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_healthy_app_passes_every_check(tmp_path: Path) -> None:
    app = make_app(store=f"sqlite:///{tmp_path / 'log.db'}")

    with batch_completed.connected_to(noop, app), checked(app) as checks:
        pass

    assert {name: check.level for name, check in checks.items()} == {
        "secret": "ok",
        "route": "ok",
        "csrf": "ok",
        "store": "ok",
        "clock": "ok",
        "receivers": "info",
    }
    assert not any(check.failed for check in checks.values())
    assert all(check.fix is None for check in checks.values())
    assert checks["store"].message.endswith("log.db answers")


def test_iter_checks_yields_the_same_checks_one_at_a_time() -> None:
    app = make_app()
    state = get_state(app)

    checks = iter_checks(app, state)

    assert next(checks) == Check(
        "ok", "secret", "1 key from app.config, 32+ bytes each"
    )
    assert [check.name for check in checks] == NAMES[1:]


def test_levels_go_from_good_to_bad() -> None:
    assert LEVELS == ("ok", "info", "warn", "FAIL")
    assert Check("FAIL", "x", "y").failed
    assert not Check("warn", "x", "y").failed


def test_a_short_key_is_a_warning_with_a_fix() -> None:
    short = "whsec_" + base64.b64encode(b"short-secret").decode()

    with checked(make_app(secret=short)) as checks:
        secret = checks["secret"]

    assert secret.level == "warn"
    assert secret.message == "1 key from app.config; short: #1 (12 bytes)"
    assert secret.fix is not None and "24 random bytes" in secret.fix


def test_rotating_secrets_are_reported_and_never_shown() -> None:
    other = "whsec_" + base64.b64encode(b"y" * 32).decode()

    with checked(make_app(secret=[SECRET, other])) as checks:
        text = repr(checks)

    assert "2 keys from app.config (rotating" in checks["secret"].message
    for secret in (SECRET, other):
        assert secret.removeprefix("whsec_") not in text


def test_the_route_probe_is_kept_from_receivers_and_not_counted() -> None:
    app = make_app()
    state = get_state(app)

    with capture_signals(app) as sent, checked(app) as checks:
        pass

    assert checks["route"].level == "ok"
    assert "an unsigned probe got 400 missing_header" in checks["route"].message
    assert sent.of(webhook_rejected) == []
    # The probe is not a refused delivery: the log does not count it, while
    # a real unsigned POST is counted.
    assert state.store.rejections().counts == {}
    app.test_client().post(webhook_url(app), data=b"{}")
    assert state.store.rejections().counts == {"missing_header": 1}


def test_a_redirect_in_front_of_the_blueprint_fails_the_route() -> None:
    def setup(app: Flask) -> None:
        @app.before_request
        def to_https() -> ResponseReturnValue:
            return redirect("https://example.com/webhooks/openai", 308)

    with checked(make_app(setup=setup)) as checks:
        route = checks["route"]

    assert route.level == "FAIL"
    assert route.message == (
        "POST /webhooks/openai is redirected (308) to"
        " https://example.com/webhooks/openai"
    )
    assert route.fix is not None and "give OpenAI the final URL" in route.fix


def test_csrf_protection_set_up_after_the_blueprint_fails_route_and_warns() -> None:
    app = make_app()
    CSRFProtect(app)

    with checked(app) as checks:
        pass

    assert checks["route"].level == "FAIL"
    assert "The CSRF token is missing." in checks["route"].message
    assert checks["csrf"].level == "warn"
    assert checks["csrf"].fix is not None and "csrf.exempt" in checks["csrf"].fix


def test_csrf_protection_set_up_first_is_fine() -> None:
    with checked(make_app(setup=CSRFProtect)) as checks:
        pass

    assert checks["route"].level == "ok"
    assert checks["csrf"].level == "ok"
    assert "lets deliveries through" in checks["csrf"].message


def test_the_memory_store_is_a_warning() -> None:
    with checked(make_app()) as checks:
        store = checks["store"]

    assert store.level == "warn"
    assert store.fix is not None and "sqlite:///webhooks.db" in store.fix


def test_an_unreachable_store_fails() -> None:
    with checked(make_app(store=f"redis://127.0.0.1:{closed_port()}/0")) as checks:
        pass

    assert checks["store"].level == "FAIL"
    assert checks["store"].message.startswith("cannot be reached: ")
    assert checks["store"].fix is not None
    assert "start the server" in checks["store"].fix
    assert checks["clock"].level == "ok"
    assert "which did not answer" in checks["clock"].message


def test_the_clock_is_compared_with_the_redis_servers(redis_url: str) -> None:
    with checked(make_app(store=redis_url)) as checks:
        clock = checks["clock"]

    assert clock.level == "ok"
    assert "s from the Redis server's clock" in clock.message


@pytest.mark.parametrize(
    ("connect", "level", "message"),
    [
        ([], "warn", "none connected"),
        (
            [webhook_received],
            "info",
            "32 of 32 event types have none; webhook_received",
        ),
        ([batch_completed], "info", "31 of 32 event types have none: agent.*,"),
        (list(EVENT_SIGNALS.values()), "ok", "every one of the 32 event types"),
    ],
)
def test_receivers(connect: list[t.Any], level: str, message: str) -> None:
    app = make_app()

    with contextlib.ExitStack() as stack:
        for signal in connect:
            stack.enter_context(signal.connected_to(noop, app))
        with checked(app) as checks:
            receivers = checks["receivers"]

    assert receivers.level == level
    assert message in receivers.message


def test_missing_receivers_are_listed_by_family() -> None:
    app = make_app()

    with batch_completed.connected_to(noop, app), checked(app) as checks:
        message = checks["receivers"].message

    # A complete family is shortened to the pattern @receiver takes; one
    # with a receiver is listed type by type.
    assert "batch.cancelled, batch.expired, batch.failed," in message
    assert "batch.*" not in message
    assert "response.*" in message
    assert "response.completed" not in message
