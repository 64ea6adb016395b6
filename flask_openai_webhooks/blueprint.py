"""The blueprint: the only module that knows about HTTP.

A delivery goes through these steps, each of which can end it:

1.  body read, up to the size limit (413);
2.  headers and signature verified against the raw bytes (400);
3.  body parsed into a typed event (400);
4.  claimed and logged in the delivery store, receivers run, outcome
    recorded (:func:`~flask_openai_webhooks.process.process`): 200, 409, 500
    or 503.

Every HTTP answer is built by :func:`_answer` or :func:`_reject`, so the
mapping from outcomes and errors to responses lives in one place.
"""

from __future__ import annotations

import json
import logging
import time
import typing as t

from flask import Blueprint
from flask import current_app
from flask import Flask
from flask import Request
from flask import request
from flask import Response
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from . import verify
from .cli import cli
from .dispatch import notify
from .errors import BodyTooLarge
from .errors import StoreError
from .errors import WebhookError
from .models import parse_event
from .models import UnknownWebhookEvent
from .observe import Watch
from .process import delivery_of
from .process import Outcome
from .process import OUTCOME_STATUS
from .process import process
from .signals import webhook_rejected
from .state import DEFAULT_URL
from .state import EXTENSION_KEY
from .state import resolve
from .state import WebhookState
from .stores import DeliveryStore

logger = logging.getLogger(__name__.rpartition(".")[0])

#: Seconds between two warnings about refused deliveries of one blueprint.
REJECTION_WARNING_INTERVAL = 300.0
#: Refusals that point at a configuration mistake rather than junk traffic.
_LIKELY_MISCONFIGURED = {
    "signature_mismatch": (
        "no signature matches the configured secret: is OPENAI_WEBHOOK_SECRET"
        " the signing secret of THIS endpoint (whsec_...), and does a proxy"
        " change the body on its way (re-encoding JSON, adding a newline)?"
        " 'flask openai-webhooks verify' checks a captured delivery"
    ),
    "timestamp_too_old": (
        "the webhook-timestamp is outside the tolerance: is this server's clock"
        " right ('flask openai-webhooks doctor' checks it)?"
    ),
    "timestamp_too_new": (
        "the webhook-timestamp is in the future: is this server's clock right"
        " ('flask openai-webhooks doctor' checks it)?"
    ),
}


def make_blueprint(
    *,
    name: str = "openai_webhooks",
    secret: verify.SecretOrSecrets | None = None,
    tolerance: int | None = None,
    max_body: int | None = None,
    store: str | DeliveryStore | t.Any | None = None,
    lease: float | None = None,
    retention: float | None = None,
    on_error: str | None = None,
    metrics: bool | t.Any | None = None,
    tracing: bool | t.Any | None = None,
    url_prefix: str = DEFAULT_URL,
) -> Blueprint:
    """Make a blueprint that receives OpenAI webhooks at ``POST url_prefix``.

    .. code-block:: python

        app.register_blueprint(make_blueprint())

    Every argument left as ``None`` is read from ``app.config`` when the
    blueprint is registered (``OPENAI_WEBHOOK_SECRET``,
    ``OPENAI_WEBHOOK_TOLERANCE``, ``OPENAI_WEBHOOK_MAX_BODY``,
    ``OPENAI_WEBHOOK_STORE``, ``OPENAI_WEBHOOK_LEASE``,
    ``OPENAI_WEBHOOK_RETENTION``, ``OPENAI_WEBHOOK_ON_ERROR``,
    ``OPENAI_WEBHOOK_METRICS``, ``OPENAI_WEBHOOK_TRACING``); the secret
    falls back to the ``OPENAI_WEBHOOK_SECRET`` environment variable, as in
    the SDK. Give each blueprint its own ``name`` and secret to receive for
    several OpenAI projects in one app; receivers get the registered name as
    their ``blueprint`` argument.

    ``metrics`` is ``True`` for Prometheus metrics in ``prometheus_client``'s
    default registry, or a ``CollectorRegistry`` (extra ``[prometheus]``);
    ``tracing`` is ``True`` for OpenTelemetry spans from the global tracer
    provider, or a ``TracerProvider`` (extra ``[otel]``). Both are off by
    default, and cost nothing then.

    The blueprint may be nested in another one, and registered more than
    once under different names (``app.register_blueprint(bp, name="b",
    url_prefix=...)``): each registration gets its own settings, kept under
    its registered name.

    :raises RuntimeError: At registration, when the secret is missing or
        invalid or another setting is out of range. Failing at startup beats
        rejecting every delivery.
    """
    # cli_group=None merges the "openai-webhooks" group into the app's
    # commands, Flask's own way for a blueprint to bring commands.
    bp = Blueprint(name, __name__, url_prefix=url_prefix, cli_group=None)
    bp.cli.add_command(cli)
    overrides = {
        "SECRET": secret,
        "TOLERANCE": tolerance,
        "MAX_BODY": max_body,
        "STORE": store,
        "LEASE": lease,
        "RETENTION": retention,
        "ON_ERROR": on_error,
        "METRICS": metrics,
        "TRACING": tracing,
    }

    def setup(setup_state: t.Any) -> None:
        app: Flask = setup_state.app
        # The registered name, as Flask builds endpoints
        # (BlueprintSetupState.add_url_rule): nesting and name= included.
        registered = f"{setup_state.name_prefix}.{setup_state.name}".lstrip(".")
        # Flask itself refuses a second registration under the same name
        # (ValueError), so each registered name has one state.
        state = resolve(app, registered, f"{registered}.receive", overrides)
        app.extensions.setdefault(EXTENSION_KEY, {})[registered] = state
        csrf = app.extensions.get("csrf")
        if csrf is not None:
            # Flask-WTF would reject every delivery: OpenAI sends no token.
            csrf.exempt(bp)
        _warn_process_local(app, state)

    bp.record(setup)
    bp.add_url_rule(
        "",
        endpoint="receive",
        view_func=_view,
        methods=["POST"],
        provide_automatic_options=False,
        # A url_prefix given with a trailing slash must not turn the bare
        # path into a redirect: OpenAI does not follow 3xx.
        strict_slashes=False,
    )
    return bp


def _warn_process_local(app: Flask, state: WebhookState) -> None:
    from .stores.memory import MemoryStore

    if isinstance(state.store, MemoryStore) and not (app.debug or app.testing):
        logger.warning(
            "OpenAI webhook blueprint %r uses the memory store: it is private to"
            " this process, so with several worker processes (gunicorn -w N) a"
            " retry reaching another worker runs receivers again, and a restart"
            " forgets the delivery log. Set OPENAI_WEBHOOK_STORE to"
            " 'sqlite:///webhooks.db' (one machine), a redis:// URL, or your"
            " PostgreSQL/MariaDB URL",
            state.name,
        )


def _view() -> ResponseReturnValue:
    # The objects behind the proxies, looked up once rather than on every
    # attribute access.
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    state: WebhookState = app.extensions[EXTENSION_KEY][req.blueprint]
    observer = state.observer
    if observer is None:
        return _receive(app, req, state)
    with observer.watch() as watch:
        return _receive(app, req, state, watch)


def _receive(
    app: Flask, req: Request, state: WebhookState, watch: Watch | None = None
) -> ResponseReturnValue:
    try:
        # One byte over the limit: Werkzeug truncates a chunked body at the
        # limit instead of failing, so only a longer read tells them apart.
        req.max_content_length = state.max_body + 1
        try:
            body = req.get_data(cache=True)
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
        environ = req.environ
        verified = state.verifier.verify(
            body,
            environ.get("HTTP_WEBHOOK_ID"),
            environ.get("HTTP_WEBHOOK_TIMESTAMP"),
            environ.get("HTTP_WEBHOOK_SIGNATURE"),
        )
        event = parse_event(body)
    except WebhookError as e:
        return _reject(app, state, e, watch)
    if watch is not None:
        watch.verified(verified, event)

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
    outcome = process(
        app,
        state,
        event,
        delivery_of(event, body, webhook_id),
        wrap=app.ensure_sync,
    )
    if watch is not None:
        watch.answered(outcome)
    return _answer(outcome)


_MESSAGES = {
    "in_flight": "this webhook-id is being processed by another request; retry later",
    "store_unavailable": "the delivery store is unavailable; retry later",
    "retry_later": "a receiver asked for the delivery to be retried",
    "receiver_failed": "a receiver failed; the delivery will be retried",
}
_JSON = "application/json"
# Answers are a handful of constants: encode them once, not per delivery.
_BODIES = {
    **{
        key: json.dumps({"status": key}).encode()
        for key in ("processed", "duplicate", "unhandled")
    },
    **{
        key: json.dumps({"error": key, "message": message}).encode()
        for key, message in _MESSAGES.items()
    },
}
assert set(_BODIES) == set(OUTCOME_STATUS)


def _answer(outcome: Outcome) -> Response:
    """The answer for an outcome of
    :func:`~flask_openai_webhooks.process.process`."""
    response = Response(_BODIES[outcome.name], outcome.status_code, content_type=_JSON)
    if outcome.retry_after is not None:
        response.headers["Retry-After"] = str(outcome.retry_after)
    return response


def _reject(
    app: Flask, state: WebhookState, error: WebhookError, watch: Watch | None = None
) -> Response:
    """Refuse a delivery: log it, count it, tell ``webhook_rejected``,
    answer 4xx.

    The message names the failed check and never echoes the secret, the
    expected signature or the body.
    """
    _log_rejection(state, error)
    if webhook_rejected.is_muted:
        # The checks' own unsigned probe (doctor, the inspector's health
        # page) mutes webhook_rejected in this process: it is not a refused
        # delivery, so it is not counted either. No request can mute it.
        return _refusal(error)
    header_id = request.headers.get(verify.HEADER_ID)
    store = state.store
    if watch is not None:
        watch.rejected(error)
        store = watch.observer.store_for(store)
    try:
        store.reject(error.code, header_id[:200] if header_id else None, time.time())
    except StoreError:
        logger.warning("could not count a refused delivery: the store is down")
    notify(webhook_rejected, app, app.ensure_sync, error=error, blueprint=state.name)
    return _refusal(error)


def _refusal(error: WebhookError) -> Response:
    body = json.dumps({"error": error.code, "message": error.message})
    return Response(body, error.status_code, content_type=_JSON)


def _log_rejection(state: WebhookState, error: WebhookError) -> None:
    """Refusals are INFO, since the internet sends junk; those that point at
    a misconfiguration are a WARNING the first time, then at most once per
    :data:`REJECTION_WARNING_INTERVAL`, with a count of those in between, so
    that a wrong secret shows under any server's default logging without
    flooding it.
    """
    hint = _LIKELY_MISCONFIGURED.get(error.code)
    if hint is None:
        logger.info("rejected an OpenAI webhook delivery: %s", error.message)
        return
    now = time.monotonic()
    refused = state._refused
    refused[error.code] = refused.get(error.code, 0) + 1
    if now - state._warned_at < REJECTION_WARNING_INTERVAL:
        logger.info("rejected an OpenAI webhook delivery: %s", error.message)
        return
    counts = ", ".join(f"{n} {code}" for code, n in refused.items())
    refused.clear()
    state._warned_at = now
    logger.warning(
        "blueprint %r refused deliveries (%s in the last %d s or since start): %s",
        state.name,
        counts,
        int(REJECTION_WARNING_INTERVAL),
        hint,
    )
