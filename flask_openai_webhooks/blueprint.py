"""The blueprint: the only module that knows about HTTP.

A delivery goes through these steps, each of which can end it:

1.  body read, up to the size limit (413);
2.  headers and signature verified against the raw bytes (400);
3.  body parsed into a typed event (400);
4.  ``webhook-id`` claimed in the delivery store: already done (200,
    nothing runs), in flight elsewhere (409), store down (503);
5.  receivers run one by one; the outcome is recorded and turned into
    200, 500 or 503.

Everything that becomes an HTTP answer goes through :func:`_answer` or
:func:`_reject`, so the mapping lives in one place.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
import typing as t

from flask import Blueprint
from flask import current_app
from flask import Flask
from flask import request
from flask import Response
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from . import verify
from .dispatch import dispatch
from .dispatch import DispatchResult
from .errors import StoreError
from .errors import WebhookError
from .models import parse_event
from .models import UnknownWebhookEvent
from .signals import event_signal
from .signals import webhook_rejected
from .stores import DeliveryStore
from .stores import store_from_config

logger = logging.getLogger("flask_openai_webhooks")

#: Where OpenAI deliveries are received unless ``url_prefix`` says otherwise.
DEFAULT_URL = "/webhooks/openai"
#: Real deliveries are well under 1 KiB; this leaves room for SIP headers.
DEFAULT_MAX_BODY = 64 * 1024
#: Seconds a delivery stays claimed while its receivers run. OpenAI expects
#: an answer within seconds, so a lease this long only runs out when a
#: worker died.
DEFAULT_LEASE = 30
#: Seconds a processed ``webhook-id`` is remembered: OpenAI's 72-hour retry
#: window plus a day of margin.
DEFAULT_RETENTION = 96 * 3600
ON_ERROR_CHOICES = ("retry", "ack")

EXTENSION_KEY = "openai_webhooks"

_UNSET: t.Any = object()


class BodyTooLarge(WebhookError):
    """The body is over ``OPENAI_WEBHOOK_MAX_BODY``."""

    code = "body_too_large"


@dataclasses.dataclass
class WebhookState:
    """Per-app settings of one registered blueprint, resolved once at
    registration. Kept in ``app.extensions["openai_webhooks"][name]``."""

    name: str
    #: Checks deliveries; holds the decoded keys and the tolerance. Never in
    #: ``repr()``: error reporters that capture local variables (the view
    #: holds this object) would send the keys off the machine.
    verifier: verify.Verifier = dataclasses.field(repr=False)
    max_body: int
    store: DeliveryStore
    lease: float
    retention: float
    on_error: str
    secret_source: str

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The decoded HMAC keys, the one OpenAI signs with first."""
        return self.verifier.keys

    @property
    def tolerance(self) -> int:
        """Seconds a delivery's timestamp may be off, either way."""
        return self.verifier.tolerance


def make_blueprint(
    *,
    name: str = "openai_webhooks",
    secret: verify.SecretOrSecrets | None = None,
    tolerance: int | None = None,
    max_body: int | None = None,
    store: str | DeliveryStore | None = None,
    lease: float | None = None,
    retention: float | None = None,
    on_error: str | None = None,
    url_prefix: str = DEFAULT_URL,
) -> Blueprint:
    """Make a blueprint that receives OpenAI webhooks at ``POST url_prefix``.

    .. code-block:: python

        app.register_blueprint(make_blueprint())

    Every argument left as ``None`` is read from ``app.config`` when the
    blueprint is registered (``OPENAI_WEBHOOK_SECRET``,
    ``OPENAI_WEBHOOK_TOLERANCE``, ``OPENAI_WEBHOOK_MAX_BODY``,
    ``OPENAI_WEBHOOK_STORE``, ``OPENAI_WEBHOOK_LEASE``,
    ``OPENAI_WEBHOOK_RETENTION``, ``OPENAI_WEBHOOK_ON_ERROR``); the secret
    falls back to the ``OPENAI_WEBHOOK_SECRET`` environment variable, as in
    the SDK. Give each blueprint its own ``name`` and secret to receive for
    several OpenAI projects in one app.

    :raises RuntimeError: At registration, when the secret is missing or
        invalid or another setting is out of range. Failing at startup beats
        rejecting every delivery.
    """
    bp = Blueprint(name, __name__, url_prefix=url_prefix)
    overrides = {
        "SECRET": secret,
        "TOLERANCE": tolerance,
        "MAX_BODY": max_body,
        "STORE": store,
        "LEASE": lease,
        "RETENTION": retention,
        "ON_ERROR": on_error,
    }

    def setup(setup_state: t.Any) -> None:
        app: Flask = setup_state.app
        state = _resolve(app, name, overrides)
        app.extensions.setdefault(EXTENSION_KEY, {})[name] = state
        csrf = app.extensions.get("csrf")
        if csrf is not None:
            # Flask-WTF would reject every delivery: OpenAI sends no token.
            csrf.exempt(bp)
        from .cli import cli

        app.cli.add_command(cli)

    bp.record_once(setup)

    def receive() -> ResponseReturnValue:
        return _receive(current_app._get_current_object(), name)  # type: ignore[attr-defined, unused-ignore]

    bp.add_url_rule(
        "",
        endpoint="receive",
        view_func=receive,
        methods=["POST"],
        provide_automatic_options=False,
        # A url_prefix given with a trailing slash must not turn the bare
        # path into a redirect: OpenAI does not follow 3xx.
        strict_slashes=False,
    )
    return bp


def _resolve(app: Flask, name: str, overrides: c.Mapping[str, t.Any]) -> WebhookState:
    def setting(key: str, default: t.Any = None) -> t.Any:
        value = overrides[key]
        if value is None:
            value = app.config.get(f"OPENAI_WEBHOOK_{key}", default)
        return value

    secret = setting("SECRET")
    source = "make_blueprint(secret=...)" if overrides["SECRET"] else "app.config"
    if secret is None or secret == "":
        secret = os.environ.get("OPENAI_WEBHOOK_SECRET") or None
        source = "the OPENAI_WEBHOOK_SECRET environment variable"
    if not secret:
        raise RuntimeError(
            f"OPENAI_WEBHOOK_SECRET is not set for blueprint {name!r}. Copy the"
            " signing secret (whsec_...) of your endpoint from the OpenAI"
            " dashboard into app.config['OPENAI_WEBHOOK_SECRET'] or the"
            " OPENAI_WEBHOOK_SECRET environment variable."
        )
    try:
        keys = verify.decode_secrets(secret)
    except ValueError as e:
        raise RuntimeError(
            f"OPENAI_WEBHOOK_SECRET for blueprint {name!r} is invalid: {e}."
            " Copy the signing secret exactly as the OpenAI dashboard shows it."
        ) from None
    for index, key in enumerate(keys):
        if len(key) < verify.MIN_RECOMMENDED_KEY_BYTES:
            logger.warning(
                "OPENAI_WEBHOOK_SECRET #%d for blueprint %r is only %d bytes;"
                " at least %d random bytes are recommended",
                index + 1,
                name,
                len(key),
                verify.MIN_RECOMMENDED_KEY_BYTES,
            )

    tolerance = _number(
        setting("TOLERANCE", verify.DEFAULT_TOLERANCE), "TOLERANCE", minimum=0
    )
    max_body = _number(setting("MAX_BODY", DEFAULT_MAX_BODY), "MAX_BODY", minimum=1)
    lease = _number(setting("LEASE", DEFAULT_LEASE), "LEASE", minimum=0.001)
    retention = _number(setting("RETENTION", DEFAULT_RETENTION), "RETENTION", minimum=1)
    on_error = setting("ON_ERROR", "retry")
    if on_error not in ON_ERROR_CHOICES:
        raise RuntimeError(
            f"OPENAI_WEBHOOK_ON_ERROR must be 'retry' or 'ack', not {on_error!r}"
        )
    try:
        store = store_from_config(setting("STORE", "memory"))
    except ValueError as e:
        raise RuntimeError(f"OPENAI_WEBHOOK_STORE: {e}") from None
    return WebhookState(
        name=name,
        verifier=verify.Verifier(keys, tolerance=int(tolerance)),
        max_body=int(max_body),
        store=store,
        lease=float(lease),
        retention=float(retention),
        on_error=on_error,
        secret_source=source,
    )


def _number(value: t.Any, key: str, *, minimum: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
    ):
        raise RuntimeError(
            f"OPENAI_WEBHOOK_{key} must be a number >= {minimum}, not {value!r}"
        )
    return value


def get_state(app: Flask, name: str | None = None) -> WebhookState:
    """The settings of a registered blueprint; the only one if ``name`` is
    not given.

    :raises LookupError: No such blueprint is registered on the app.
    """
    states: dict[str, WebhookState] = app.extensions.get(EXTENSION_KEY, {})
    if name is None:
        if len(states) == 1:
            return next(iter(states.values()))
        if not states:
            raise LookupError("no OpenAI webhook blueprint is registered on this app")
        raise LookupError(
            f"several OpenAI webhook blueprints are registered ({', '.join(states)});"
            " say which"
        )
    try:
        return states[name]
    except KeyError:
        raise LookupError(f"no OpenAI webhook blueprint named {name!r}") from None


def _receive(app: Flask, name: str) -> ResponseReturnValue:
    state: WebhookState = app.extensions[EXTENSION_KEY][name]
    try:
        # One byte over the limit: Werkzeug truncates a chunked body at the
        # limit instead of failing, so only a longer read tells them apart.
        request.max_content_length = state.max_body + 1
        try:
            body = request.get_data(cache=True)
        except RequestEntityTooLarge:
            body = None
        except Exception as e:
            # Only the read of the request body is in this try: whatever the
            # server's input stream raises (gunicorn's own ParseException
            # subclasses for broken chunked encoding, OSError, Werkzeug's
            # ClientDisconnected) is junk input, not a server failure.
            logger.info("could not read a delivery's body: %s", type(e).__name__)
            raise WebhookError(
                "the body could not be read: broken chunked encoding or an"
                " incomplete upload",
                code="unreadable_body",
            ) from None
        if body is None or len(body) > state.max_body:
            raise BodyTooLarge(f"the body is larger than {state.max_body} bytes")
        environ = request.environ
        verified = state.verifier.verify(
            body,
            environ.get("HTTP_WEBHOOK_ID"),
            environ.get("HTTP_WEBHOOK_TIMESTAMP"),
            environ.get("HTTP_WEBHOOK_SIGNATURE"),
        )
        event = parse_event(body)
    except WebhookError as e:
        return _reject(app, e)

    webhook_id = verified.webhook_id
    if verified.key_index:
        logger.info(
            "webhook-id %s matched secret #%d: an older secret is still in use",
            webhook_id,
            verified.key_index + 1,
        )
    if isinstance(event, UnknownWebhookEvent):
        logger.info(
            "webhook-id %s has unknown event type %r; only webhook_received is sent",
            webhook_id,
            event.type,
        )

    store = state.store
    try:
        claim = store.claim(webhook_id, lease=state.lease, retention=state.retention)
    except StoreError:
        logger.exception("could not claim webhook-id %s", webhook_id)
        return _answer(503, "store_unavailable", retry_after=5)
    if claim.status == "done":
        return _answer(200, "duplicate")
    if claim.status == "in_flight":
        return _answer(409, "in_flight", retry_after=math.ceil(state.lease))

    def record(keys: list[str]) -> None:
        # Best effort between receivers; whatever fails to be written here
        # is written by finish, or the delivery is answered 503.
        store.record(webhook_id, claim.token, keys)

    started = time.monotonic()
    try:
        result = dispatch(
            app,
            event,
            event_signal(event.type),
            webhook_id=webhook_id,
            skip=claim.done_receivers,
            wrap=app.ensure_sync,
            record=record,
        )
    except BaseException:
        # A receiver raised past Exception (a worker timeout's SystemExit,
        # a cancelled task): release the claim so OpenAI's retry runs now
        # rather than after the lease, then let the server handle it.
        with contextlib.suppress(Exception):
            store.finish(
                webhook_id, claim.token, [], done=False, retention=state.retention
            )
        raise
    elapsed = time.monotonic() - started
    if elapsed > state.lease:
        logger.warning(
            "receivers of webhook-id %s ran %.1f s, longer than"
            " OPENAI_WEBHOOK_LEASE (%s s): a retry may have run them concurrently;"
            " raise the lease or hand slow work to a queue",
            webhook_id,
            elapsed,
            state.lease,
        )
    return _settle(state, webhook_id, claim.token, result)


def _settle(
    state: WebhookState, webhook_id: str, token: str, result: DispatchResult
) -> ResponseReturnValue:
    """Record the outcome and choose the status OpenAI will act on."""
    unrecorded = [k for k in result.done if k not in result.recorded]
    retry = bool(result.retryable) and state.on_error == "retry"
    try:
        state.store.finish(
            webhook_id, token, unrecorded, done=not retry, retention=state.retention
        )
    except StoreError:
        # The receivers ran but that could not be written down. Ask for a
        # retry: running a receiver again beats losing the event.
        logger.exception("could not record the outcome of webhook-id %s", webhook_id)
        return _answer(503, "store_unavailable", retry_after=5)
    if not retry:
        return _answer(200, "processed")
    after = result.retry_after
    if after is not None:
        return _answer(503, "retry_later", retry_after=after)
    return _answer(500, "receiver_failed")


_MESSAGES = {
    "in_flight": "this webhook-id is being processed by another request; retry later",
    "store_unavailable": "the delivery store is unavailable; retry later",
    "retry_later": "a receiver asked for the delivery to be retried",
    "receiver_failed": "a receiver failed; the delivery will be retried",
}
_JSON = "application/json"
# Answers are a handful of constants: encode them once, not per delivery.
_BODIES = {
    **{key: json.dumps({"status": key}).encode() for key in ("processed", "duplicate")},
    **{
        key: json.dumps({"error": key, "message": message}).encode()
        for key, message in _MESSAGES.items()
    },
}


def _answer(
    status_code: int, outcome: str, *, retry_after: int | None = None
) -> Response:
    """Build the answer for an outcome of :func:`_receive`: a status such
    as ``processed``, or an error name such as ``in_flight``."""
    response = Response(_BODIES[outcome], status_code, content_type=_JSON)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _reject(app: Flask, error: WebhookError) -> ResponseReturnValue:
    """Refuse a delivery: log it, tell ``webhook_rejected``, answer 4xx.

    The message names the failed check and never echoes the secret, the
    expected signature or the body.
    """
    status_code = 413 if isinstance(error, BodyTooLarge) else 400
    logger.info("rejected an OpenAI webhook delivery: %s", error.message)
    receivers = () if webhook_rejected.is_muted else webhook_rejected.receivers_for(app)
    for fn in receivers:
        try:
            app.ensure_sync(fn)(app, error=error)
        except Exception:
            logger.exception("a webhook_rejected receiver raised; ignored")
    body = json.dumps({"error": error.code, "message": error.message})
    return Response(body, status_code, content_type=_JSON)
