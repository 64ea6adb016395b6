"""The setup checks behind ``flask openai-webhooks doctor`` and the
inspector's health panel.

Each check looks at one thing a delivery depends on (the secret, the
route, CSRF protection, the store, the clock, the receivers) and says what
is wrong and how to fix it. They are data, not printed lines, so the CLI
and the inspector show the same diagnosis. No check ever reports a secret
or a signature.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import datetime
import re
import time
import typing as t

from blinker import NamedSignal
from flask import Flask

from . import verify
from .errors import StoreError
from .signals import EVENT_SIGNALS
from .signals import webhook_received
from .signals import webhook_rejected
from .state import webhook_url
from .state import WebhookState
from .stores.memory import MemoryStore

__all__ = ["Check", "LEVELS", "iter_checks", "run_checks"]

Level = t.Literal["ok", "info", "warn", "FAIL"]
#: From good to bad. ``info`` is worth knowing and needs no action;
#: ``warn`` works but should be fixed; ``FAIL`` breaks deliveries.
LEVELS: tuple[Level, ...] = t.get_args(Level)

#: OpenAI webhooks did not exist before this year: a clock showing an
#: earlier one is wrong, and every delivery would be "too new".
_EARLIEST_YEAR = 2025
_LATEST_YEAR = 2100


@dataclasses.dataclass(frozen=True)
class Check:
    """The result of one check."""

    level: Level
    #: What was checked: ``secret``, ``route``, ``csrf``, ``store``,
    #: ``clock``, ``receivers`` (``blueprint`` when none was found).
    name: str
    message: str
    #: How to fix it, for ``warn`` and ``FAIL``.
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.level == "FAIL"


def run_checks(app: Flask, state: WebhookState) -> list[Check]:
    """Check the setup of one registered webhook blueprint.

    The route check posts an unsigned request to the blueprint with
    :data:`~flask_openai_webhooks.signals.webhook_rejected` muted, so the
    app's receivers do not count it; the store counts it among the refused
    deliveries, as any request it refuses.
    """
    return list(iter_checks(app, state))


def iter_checks(app: Flask, state: WebhookState) -> c.Iterator[Check]:
    """:func:`run_checks`, one check at a time, so the CLI can print each
    as it ends: a store that takes seconds to time out then shows where the
    wait is."""
    yield _check_secret(state)
    route = _check_route(app, state)
    yield route
    yield _check_csrf(app, route_ok=route.level == "ok")
    yield _check_store(state)
    yield _check_clock(state)
    yield _check_receivers(app)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _receiver_count(signal: NamedSignal, app: Flask) -> int:
    """Receivers that hear deliveries to this app: connected for it or for
    any sender."""
    return sum(1 for _ in signal.receivers_for(app))


def _check_secret(state: WebhookState) -> Check:
    keys = state.keys
    count = _plural(len(keys), "key")
    rotating = " (rotating: any of them verifies)" if len(keys) > 1 else ""
    short = [
        f"#{index + 1} ({len(key)} bytes)"
        for index, key in enumerate(keys)
        if len(key) < verify.MIN_RECOMMENDED_KEY_BYTES
    ]
    if short:
        return Check(
            "warn",
            "secret",
            f"{count} from {state.secret_source}{rotating}; short: {', '.join(short)}",
            f"use the whsec_ secret the OpenAI dashboard generated; keys should be"
            f" at least {verify.MIN_RECOMMENDED_KEY_BYTES} random bytes",
        )
    shortest = min(len(key) for key in keys)
    return Check(
        "ok",
        "secret",
        f"{count} from {state.secret_source}{rotating}, {shortest}+ bytes each",
    )


def _check_route(app: Flask, state: WebhookState) -> Check:
    """Probe the route; ``ok`` only if the probe reached the blueprint."""
    url = webhook_url(app, state.name)
    # The probe is not a real delivery: keep it from the app's
    # webhook_rejected receivers (alerting, metrics).
    with webhook_rejected.muted():
        response = app.test_client().post(
            url, data=b"", content_type="application/json"
        )
    code = response.status_code
    # The blueprint's own rejections are JSON with "error" and "message";
    # a 400 from anything in front of it (CSRF protection) is not.
    payload = response.get_json(silent=True) if response.is_json else None
    error = None
    if isinstance(payload, dict) and "message" in payload:
        error = payload.get("error")
    if code == 400 and error is not None:
        return Check(
            "ok",
            "route",
            f"POST {url} reaches the blueprint (an unsigned probe got 400 {error})",
        )
    if 300 <= code < 400:
        return Check(
            "FAIL",
            "route",
            f"POST {url} is redirected ({code}) to {response.headers.get('Location')}",
            "deliveries are not redirected: give OpenAI the final URL and make"
            " sure nothing in front of the blueprint redirects (HTTPS, slashes)",
        )
    if code == 404:
        return Check(
            "FAIL",
            "route",
            f"POST {url} is not found (404)",
            "check SERVER_NAME, subdomains and anything rewriting paths",
        )
    if code == 405:
        return Check(
            "FAIL",
            "route",
            f"POST {url} is not allowed (405): another route takes the path",
            "give the blueprint its own url_prefix",
        )
    if code == 400:
        return Check(
            "FAIL",
            "route",
            f"POST {url} got a 400 that is not from the blueprint"
            f" (CSRF protection?): {_gist(response.get_data(as_text=True))}",
            "exempt the blueprint from CSRF protection: csrf.exempt(blueprint)",
        )
    return Check(
        "FAIL",
        "route",
        f"POST {url} answered {response.status}, not the blueprint's 400",
        "a before_request hook or middleware answers first: let webhook"
        " deliveries through (they carry no cookie or token)",
    )


def _gist(text: str, limit: int = 100) -> str:
    """The message of an error page: its first paragraph if it is HTML,
    as Werkzeug's are, on one short line."""
    found = re.search(r"<p>(.*?)</p>", text, re.DOTALL | re.IGNORECASE)
    if found:
        text = found.group(1)
    text = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    if not text:
        return "empty body"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_csrf(app: Flask, *, route_ok: bool) -> Check:
    if app.extensions.get("csrf") is None:
        return Check("ok", "csrf", "Flask-WTF CSRF protection is not in use")
    if route_ok:
        return Check(
            "ok",
            "csrf",
            "Flask-WTF CSRF protection is in use and lets deliveries through"
            " (the route probe reached the blueprint)",
        )
    return Check(
        "warn",
        "csrf",
        "Flask-WTF CSRF protection is in use; the route check failed",
        "csrf.exempt(blueprint), or set up CSRFProtect before registering the"
        " blueprint, which then exempts itself",
    )


def _check_store(state: WebhookState) -> Check:
    store = state.store
    try:
        description = store.describe()
        store.ping()
    except Exception as e:
        # Reporting is the point here: any error the store raises is the
        # diagnosis, not a crash.
        path = getattr(store, "path", None)
        if isinstance(path, str):
            fix = (
                f"the SQLite file {path} must be on a local disk, and it and its"
                " folder writable by the user the server runs as (relative"
                " paths are resolved against the app's instance folder)"
            )
        else:
            fix = (
                "start the server or fix OPENAI_WEBHOOK_STORE; meanwhile every"
                " delivery is answered 503 and retried by OpenAI"
            )
        return Check("FAIL", "store", f"cannot be reached: {e}", fix)
    if isinstance(store, MemoryStore):
        return Check(
            "warn",
            "store",
            f"{description}: duplicates are only caught within this process, and"
            " the delivery log is lost on restart",
            "with several worker processes on one machine set OPENAI_WEBHOOK_STORE"
            " to 'sqlite:///webhooks.db'; with several machines, a redis:// URL"
            " or your PostgreSQL/MariaDB URL",
        )
    persistence = getattr(store, "persistence", None)
    try:
        warning = persistence() if callable(persistence) else None
    except StoreError:
        # The server went away between the ping and this question; the
        # ping answered, so report what is known.
        warning = None
    if warning:
        return Check(
            "warn",
            "store",
            f"{description} answers, but {warning}",
            "enable AOF (appendonly yes) on the Redis server: without persistence"
            " a restart forgets every delivery, and OpenAI's retries then run"
            " receivers again",
        )
    return Check("ok", "store", f"{description} answers")


def _check_clock(state: WebhookState) -> Check:
    now = time.time()
    year = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc).year
    if not _EARLIEST_YEAR <= year <= _LATEST_YEAR:
        return Check(
            "FAIL",
            "clock",
            f"this machine's clock says {_iso(now)}",
            "synchronise the clock (NTP): deliveries more than"
            f" {state.tolerance} s off are rejected",
        )
    client = getattr(state.store, "client", None)
    if client is None or not callable(getattr(client, "time", None)):
        return Check("ok", "clock", f"{_iso(now)} (tolerance {state.tolerance} s)")
    try:
        seconds, micros = client.time()
    except Exception:
        # The store check has already reported why.
        return Check(
            "ok",
            "clock",
            f"{_iso(now)} (tolerance {state.tolerance} s); not compared with"
            " the Redis server's clock, which did not answer",
        )
    # Rounded first, so that a tiny negative skew does not print as -0.0.
    skew = round(now - (seconds + micros / 1e6), 1) + 0.0
    if abs(skew) >= state.tolerance:
        return Check(
            "FAIL",
            "clock",
            f"{_iso(now)}, {skew:+.1f} s from the Redis server's clock, more"
            f" than the {state.tolerance} s tolerance",
            "synchronise the clocks (NTP) of this machine and the Redis server",
        )
    return Check(
        "ok",
        "clock",
        f"{_iso(now)}, {skew:+.1f} s from the Redis server's clock"
        f" (tolerance {state.tolerance} s)",
    )


def _check_receivers(app: Flask) -> Check:
    missing = [
        event_type
        for event_type, signal in sorted(EVENT_SIGNALS.items())
        if not _receiver_count(signal, app)
    ]
    catch_all = _receiver_count(webhook_received, app)
    total = len(EVENT_SIGNALS)
    if not missing:
        return Check("ok", "receivers", f"every one of the {total} event types has one")
    if len(missing) == total and not catch_all:
        return Check(
            "warn",
            "receivers",
            "none connected: deliveries are verified and acknowledged, and nothing"
            " runs",
            "connect receivers in a module the app imports, e.g."
            " @receiver('batch.*') from flask_openai_webhooks.signals",
        )
    heard = (
        f"; webhook_received ({_plural(catch_all, 'receiver')}) hears them"
        if catch_all
        else ""
    )
    return Check(
        "info",
        "receivers",
        f"{len(missing)} of {total} event types have none{heard}:"
        f" {', '.join(_families(missing))}",
    )


def _families(event_types: list[str]) -> list[str]:
    """Shorten a list of types: a family that is complete, say every
    ``batch.`` type, becomes ``batch.*``, a pattern :func:`receiver` takes.
    """
    result: list[str] = []
    for event_type in event_types:
        family = event_type.split(".")[0]
        members = [name for name in EVENT_SIGNALS if name.split(".")[0] == family]
        if all(name in event_types for name in members) and len(members) > 1:
            if f"{family}.*" not in result:
                result.append(f"{family}.*")
        else:
            result.append(event_type)
    return result
