"""The ``flask openai-webhooks`` commands.

Registering the blueprint adds this group to the app's CLI:

-   ``types`` lists the event types, their signals and receivers;
-   ``send TYPE`` signs a sample event and delivers it, through the app
    itself or to a URL;
-   ``verify`` checks a captured delivery offline;
-   ``doctor`` checks the setup and says how to fix what is wrong (the
    checks are in :mod:`~flask_openai_webhooks.checks`).

No command ever prints a secret or an expected signature.
"""

from __future__ import annotations

import collections.abc as c
import datetime
import difflib
import http.client
import json
import typing as t
import urllib.error
import urllib.parse
import urllib.request

import click
from blinker import NamedSignal
from flask import current_app
from flask import Flask
from flask.cli import AppGroup

from . import verify
from .checks import Check
from .checks import iter_checks
from .cli_log import COMMANDS
from .cli_reconcile import reconcile_command
from .errors import WebhookError
from .errors import WebhookPayloadError
from .models import EVENT_TYPES
from .models import parse_event
from .models import UnknownWebhookEvent
from .samples import encode_body
from .samples import make_event
from .samples import new_webhook_id
from .signals import EVENT_SIGNALS
from .signals import signal_name
from .signals import webhook_received
from .state import get_state
from .state import webhook_url
from .state import WebhookState

cli = AppGroup(
    "openai-webhooks",
    help="Inspect, exercise and check the OpenAI webhook endpoint of this app,"
    " and read and replay its delivery log.",
)
for _command in (*COMMANDS, reconcile_command):
    cli.add_command(_command)

_blueprint_option = click.option(
    "--blueprint",
    metavar="NAME",
    help="The webhook blueprint to use; needed only when several are registered.",
)


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined, no-any-return, unused-ignore]


def _state(name: str | None) -> WebhookState:
    try:
        return get_state(_app(), name)
    except LookupError as e:
        hint = " with --blueprint NAME" if name is None else ""
        raise click.UsageError(f"{e}{hint}.") from None


def _receiver_count(signal: NamedSignal, app: Flask) -> int:
    """Receivers that hear deliveries to this app: connected for it or for
    any sender."""
    return sum(1 for _ in signal.receivers_for(app))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --------------------------------------------------------------------------
# types
# --------------------------------------------------------------------------


@cli.command("types")
def types_command() -> None:
    """List every known event type with its signal and how many receivers
    it has in this app."""
    app = _app()
    rows = [
        (event_type, signal_name(event_type), _receiver_count(signal, app))
        for event_type, signal in sorted(EVENT_SIGNALS.items())
    ]
    type_width = max(len(row[0]) for row in rows)
    name_width = max(len(row[1]) for row in rows)
    click.echo(f"{'EVENT TYPE':<{type_width}}  {'SIGNAL':<{name_width}}  RECEIVERS")
    for event_type, name, count in rows:
        click.echo(f"{event_type:<{type_width}}  {name:<{name_width}}  {count}")
    covered = sum(1 for row in rows if row[2])
    click.echo()
    click.echo(f"{covered} of {len(rows)} event types have a receiver.")
    click.echo(
        f"webhook_received (every event, unknown types too):"
        f" {_plural(_receiver_count(webhook_received, app), 'receiver')}."
    )


# --------------------------------------------------------------------------
# send
# --------------------------------------------------------------------------


def _reject_constant(name: str) -> t.NoReturn:
    raise ValueError(name)


def _parse_value(raw: str) -> t.Any:
    """JSON when it parses, so ``1``, ``true`` and ``null`` are typed and
    ``'"1"'`` is a string; anything else is taken as a string."""
    try:
        # NaN and Infinity are not JSON: keep them as text.
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return raw


def _parse_assignments(items: c.Iterable[str]) -> dict[str, t.Any]:
    """Turn ``data.id=batch_1`` items into nested overrides for
    :func:`~flask_openai_webhooks.samples.make_event`."""
    overrides: dict[str, t.Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE, e.g. data.id=batch_123.",
                param_hint="'--set'",
            )
        node = overrides
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise click.BadParameter(
                    f"{key!r} conflicts with the value already set for {where!r}.",
                    param_hint="'--set'",
                )
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise click.BadParameter(
                f"{key!r} conflicts with the keys already set inside it.",
                param_hint="'--set'",
            )
        node[parts[-1]] = _parse_value(raw)
    return overrides


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects instead of following them: a redirected POST turns
    into a GET in most clients, so a delivery URL must be the final one."""

    def redirect_request(self, *args: t.Any, **kwargs: t.Any) -> None:
        return None


def _post_http(
    url: str, body: bytes, headers: c.Mapping[str, str], timeout: float
) -> tuple[int, str, str, str | None]:
    """POST over HTTP; return the status code, status line, body text and
    ``Location`` header."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            **headers,
            "Content-Type": "application/json",
            "User-Agent": "flask-openai-webhooks send",
        },
    )
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
            return (
                response.status,
                f"{response.status} {response.reason}",
                text,
                response.headers.get("Location"),
            )
    except urllib.error.HTTPError as e:
        with e:
            text = e.read().decode("utf-8", "replace")
        return e.code, f"{e.code} {e.reason}", text, e.headers.get("Location")
    except urllib.error.URLError as e:
        raise click.ClickException(f"could not deliver to {url}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:
        raise click.ClickException(f"could not deliver to {url}: {e}") from e


@cli.command("send")
@click.argument("event_type", metavar="TYPE")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help=(
        "Set a field of the event, with dots for nesting: --set data.id=batch_123."
        " The value is parsed as JSON if it can be, else taken as text."
        " Repeatable."
    ),
)
@click.option(
    "--url",
    metavar="URL",
    help=(
        "Deliver over HTTP to this URL, e.g. a running server. By default the"
        " event goes through the app's test client, in this process."
    ),
)
@click.option(
    "--webhook-id",
    metavar="ID",
    help="The webhook-id to send. Default: a fresh one. Repeat one to test retries.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds to wait for an answer from --url.",
)
@_blueprint_option
def send_command(
    event_type: str,
    assignments: tuple[str, ...],
    url: str | None,
    webhook_id: str | None,
    timeout: float,
    blueprint: str | None,
) -> None:
    """Sign a sample event of TYPE with the app's secret and deliver it.

    Without --url the delivery goes through the app in this process, so
    your receivers really run, with no server and no network. Exits with
    status 1 unless the answer is 2xx.
    """
    if event_type not in EVENT_TYPES:
        close = difflib.get_close_matches(event_type, EVENT_TYPES, n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise click.BadParameter(
            f"{event_type!r} is not a known event type.{hint}"
            " 'flask openai-webhooks types' lists them.",
            param_hint="'TYPE'",
        )
    if url is not None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(
                f"{url!r} is not an http:// or https:// URL.", param_hint="'--url'"
            )
    overrides = _parse_assignments(assignments)
    app = _app()
    state = _state(blueprint)
    event = make_event(event_type, **overrides)
    # OpenAI signs with the newest secret, the first one while rotating.
    body = encode_body(event)
    headers = verify.signed_headers(
        body, secret=state.keys[0], webhook_id=webhook_id or new_webhook_id()
    )

    if url is None:
        target = webhook_url(app, state.name)
        response = app.test_client().post(
            target, data=body, headers=headers, content_type="application/json"
        )
        code = response.status_code
        status = response.status
        text = response.get_data(as_text=True)
        location = response.headers.get("Location")
    else:
        target = url
        code, status, text, location = _post_http(url, body, headers, timeout)

    click.echo(
        f"POST {target}  {event_type}  event {event.get('id')}"
        f"  webhook-id {headers[verify.HEADER_ID]}"
    )
    click.echo(status)
    if location:
        click.echo(f"Location: {location} (deliveries are not redirected; use it)")
    if text:
        click.echo(text.rstrip("\n"))
    if not 200 <= code < 300:
        raise click.exceptions.Exit(1)


# --------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------


def _parse_headers(lines: c.Iterable[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name:
            # Not echoed: it may be a signature pasted without its name.
            raise click.BadParameter(
                f"--header #{number} is not 'Name: value', e.g. 'webhook-id: wh_123'.",
                param_hint="'--header'",
            )
        if name in headers:
            raise click.BadParameter(
                f"the {name} header is given twice.", param_hint="'--header'"
            )
        headers[name] = value.strip()
    return headers


def _iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _verification_hint(
    error: WebhookError, body: bytes, headers: c.Mapping[str, str], now: float | None
) -> str | None:
    """A likely cause for the usual failures with a captured delivery."""
    if error.code in ("timestamp_too_old", "timestamp_too_new") and now is None:
        stamp = headers.get(verify.HEADER_TIMESTAMP, "").strip()
        if stamp.isdigit():
            return f"to check an old capture, pass --now {stamp}"
    if error.code == "signature_mismatch":
        if body.endswith(b"\n"):
            return (
                "the body file ends with a newline; the body must be byte for"
                " byte what was received"
            )
        return (
            "the body must be byte for byte what was received, and the secret"
            " the one of this endpoint"
        )
    return None


@cli.command("verify")
@click.option(
    "--body",
    "body_file",
    type=click.File("rb"),
    metavar="FILE",
    required=True,
    help="File holding the raw request body, exactly as received ('-': stdin).",
)
@click.option(
    "--header",
    "header_lines",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A request header, e.g. 'webhook-id: wh_123'. Repeat for each header.",
)
@click.option(
    "--secret",
    metavar="SECRET",
    help=(
        "Check with this secret (whsec_...) instead of the app's. It stays in"
        " your shell history."
    ),
)
@click.option(
    "--tolerance",
    type=click.IntRange(min=0),
    metavar="SECONDS",
    help="Seconds the timestamp may be off. Default: the app's setting.",
)
@click.option(
    "--now",
    type=float,
    metavar="UNIX",
    help="Unix time to check the timestamp against. Default: the clock.",
)
@_blueprint_option
def verify_command(
    body_file: t.BinaryIO,
    header_lines: tuple[str, ...],
    secret: str | None,
    tolerance: int | None,
    now: float | None,
    blueprint: str | None,
) -> None:
    """Check a captured delivery offline: its headers, signature, timestamp
    and body, as the blueprint would.

    Says OK with the event type, or which check failed; exits with status 1
    on failure.
    """
    body = body_file.read()
    headers = _parse_headers(header_lines)
    state: WebhookState | None = None
    if secret is None:
        state = _state(blueprint)
        keys = state.keys
    else:
        try:
            keys = verify.decode_secrets(secret)
        except ValueError as e:
            raise click.BadParameter(f"{e}.", param_hint="'--secret'") from None
        if tolerance is None:
            try:
                state = get_state(_app(), blueprint)
            except LookupError:
                state = None
    if tolerance is None:
        tolerance = verify.DEFAULT_TOLERANCE if state is None else state.tolerance

    try:
        verified = verify.verify_with_keys(
            body, headers, keys, tolerance=tolerance, now=now
        )
    except WebhookError as e:
        click.echo(f"FAIL signature: {e.message}")
        hint = _verification_hint(e, body, headers, now)
        if hint:
            click.echo(f"     hint: {hint}")
        raise click.exceptions.Exit(1) from None

    key = f"key #{verified.key_index + 1} of {len(keys)}"
    signed = f"signed {_iso(verified.timestamp)} with {key}"
    try:
        event = parse_event(body)
    except WebhookPayloadError as e:
        click.echo(f"FAIL payload: {e.message} (the signature is valid, {signed})")
        raise click.exceptions.Exit(1) from None

    detail = f"event {event.id}, webhook-id {verified.webhook_id}, {signed}"
    if isinstance(event, UnknownWebhookEvent):
        click.echo(
            f"OK {event.type} (an unknown type: only webhook_received is sent;"
            f" {detail})"
        )
    else:
        click.echo(f"OK {event.type} ({detail})")


# --------------------------------------------------------------------------
# doctor
# --------------------------------------------------------------------------


def _echo_check(check: Check) -> None:
    click.echo(f"{check.level:<4} {check.name}: {check.message}")
    if check.fix:
        click.echo(f"     fix: {check.fix}")


@cli.command("doctor")
@_blueprint_option
def doctor_command(blueprint: str | None) -> None:
    """Check the setup: secret, route, CSRF exemption, delivery store, clock
    and receivers.

    Prints one line per check, ok, warn, info or FAIL, with a fix for each
    problem, and exits with status 1 if a check failed. The route check
    posts an unsigned request to the blueprint, with webhook_rejected muted
    so your receivers do not count it.
    """
    app = _app()
    try:
        state = get_state(app, blueprint)
    except LookupError as e:
        _echo_check(
            Check(
                "FAIL",
                "blueprint",
                str(e),
                "app.register_blueprint(make_blueprint()), or pass --blueprint NAME",
            )
        )
        raise click.exceptions.Exit(1) from None
    failures = 0
    for check in iter_checks(app, state):
        _echo_check(check)
        failures += check.failed
    if failures:
        click.echo(f"\n{_plural(failures, 'check')} failed.")
        raise click.exceptions.Exit(1)
