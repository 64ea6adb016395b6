"""The inspector: the delivery log in the browser.

A separate blueprint, off unless registered, for whoever answers "did that
webhook arrive, and what did my code do with it?":

.. code-block:: python

    from flask_login import current_user
    from flask_openai_webhooks.inspector import make_inspector_blueprint

    app.register_blueprint(
        make_inspector_blueprint(
            authorize=lambda: current_user.is_authenticated and current_user.is_admin
        ),
        url_prefix="/admin/openai-webhooks",
    )

It lists deliveries (filtered, searched, paged with the store's cursor),
shows one with its attempts, each receiver's outcome and traceback and the
pretty-printed body, counts refused deliveries, shows the ``doctor`` checks,
and replays a delivery or every failed one.

Event payloads come from the internet: every value is escaped by Jinja's
autoescaping, and the responses forbid scripts through their
``Content-Security-Policy``. No page ever shows a secret or a signature:
the log does not keep signatures, and nothing here reads the verifier.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import datetime
import hmac
import json
import secrets
import time
import typing as t

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import Flask
from flask import redirect
from flask import render_template
from flask import request
from flask import Response
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import InternalServerError

from . import log
from .checks import LEVELS
from .checks import run_checks
from .errors import StoreError
from .errors import WebhookPayloadError
from .process import OUTCOME_STATUS
from .state import get_state
from .state import webhook_url
from .state import WebhookState
from .stores import DELIVERY_STATUSES
from .stores import DeliveryRecord
from .stores import HistoryEntry

__all__ = ["make_inspector_blueprint"]

#: Deliveries per page, unless ``?limit=`` says otherwise (at most
#: :data:`MAX_PAGE_SIZE`).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Refused deliveries listed on their page.
RECENT_REJECTIONS = 50
#: The time-range presets of the deliveries page.
RANGES: c.Mapping[str, tuple[str, float]] = {
    "1h": ("Last hour", 3600),
    "24h": ("Last 24 hours", 86400),
    "7d": ("Last 7 days", 7 * 86400),
}
#: What a refusal reason usually means, for the refused-deliveries page.
REJECTION_HINTS: c.Mapping[str, str] = {
    "signature_mismatch": (
        "No signature matched the secret: OPENAI_WEBHOOK_SECRET is not this"
        " endpoint's signing secret, or a proxy changed the body."
    ),
    "timestamp_too_old": (
        "Signed too long ago: this server's clock is wrong (see Health), or a"
        " captured delivery was sent again."
    ),
    "timestamp_too_new": "Signed in the future: this server's clock is wrong.",
    "missing_header": (
        "No webhook headers: scanners, health probes, the route check of"
        " doctor and of Health, or a proxy that drops headers."
    ),
    "invalid_signature_header": "A garbled webhook-signature header.",
    "invalid_timestamp": "A garbled webhook-timestamp header.",
    "invalid_webhook_id": "A garbled webhook-id header.",
    "invalid_payload": "Signed correctly, but not an event this package can parse.",
    "body_too_large": "Larger than OPENAI_WEBHOOK_MAX_BODY.",
    "unreadable_body": "The body could not be read: a broken upload.",
}
#: What a replay's outcome means, shown after the redirect.
REPLAY_MESSAGES: c.Mapping[str, str] = {
    "processed": "the receivers that had not succeeded ran.",
    "duplicate": "it was already settled; nothing ran.",
    "unhandled": "no receiver is connected to this app, so nothing ran.",
    "in_flight": (
        "another attempt holds this delivery right now; try again in a few seconds."
    ),
    "retry_later": "a receiver asked to be retried later.",
    "receiver_failed": "a receiver failed again; its traceback is below.",
    "store_unavailable": (
        "the delivery store could not be reached; the outcome was not recorded."
    ),
    "unparseable": (
        "the stored body no longer parses as an event, so it was not replayed."
    ),
}
assert set(OUTCOME_STATUS) <= set(REPLAY_MESSAGES)

#: Where the inspector keeps its CSRF token when Flask-WTF is not in use.
_SESSION_KEY = "_openai_webhooks_inspector_csrf"

#: Sent with every response of the inspector, unless the app set them: no
#: scripts at all, no framing (the replay buttons cannot be clickjacked),
#: nothing cached (the pages hold event payloads).
SECURITY_HEADERS: c.Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def make_inspector_blueprint(
    *,
    authorize: c.Callable[[], bool] | None = None,
    blueprint: str | None = None,
    name: str = "openai_webhooks_inspector",
) -> Blueprint:
    """Make the inspector blueprint; register it with a ``url_prefix``.

    .. code-block:: python

        app.register_blueprint(
            make_inspector_blueprint(authorize=lambda: current_user.is_admin),
            url_prefix="/admin/openai-webhooks",
        )

    :param authorize: Called with no arguments before every request of the
        inspector, pages, buttons and its stylesheet alike; a false answer is
        a 403. It may also raise an HTTP error itself, e.g. ``abort(401)``
        or ``abort(redirect(url_for("login")))``. Required: the pages show
        event payloads and the buttons run receivers, so there is no open
        default.
    :param blueprint: The registered name of the webhook blueprint whose
        log to show; needed only when the app has several.
    :param name: This blueprint's name, to register more than one.
    :raises RuntimeError: ``authorize`` is missing; at registration, the
        app has no ``SECRET_KEY`` (the forms' CSRF token lives in the
        session).
    """
    if authorize is None:
        raise RuntimeError(
            "make_inspector_blueprint() needs authorize=..., a function that"
            " returns True for whoever may see the delivery log and replay"
            " deliveries, e.g. authorize=lambda: current_user.is_authenticated"
            " and current_user.is_admin. The pages show event payloads and the"
            " buttons run receivers, so there is no open default."
        )
    if not callable(authorize):
        raise TypeError(
            f"authorize must be a function taking no arguments, not {authorize!r}"
        )
    inspector = _Inspector(authorize, blueprint)
    bp = Blueprint(
        name,
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    bp.record(inspector.setup)
    bp.before_request(inspector.guard)
    bp.after_request(_security_headers)
    bp.context_processor(_template_helpers)
    bp.add_url_rule("/", "deliveries", inspector.deliveries)
    bp.add_url_rule("/deliveries/<path:webhook_id>", "delivery", inspector.delivery)
    bp.add_url_rule("/refused", "rejections", inspector.rejections)
    bp.add_url_rule("/health", "health", inspector.health)
    bp.add_url_rule("/replay", "replay", inspector.replay, methods=["POST"])
    bp.add_url_rule(
        "/replay-failed", "replay_failed", inspector.replay_failed, methods=["POST"]
    )
    return bp


@dataclasses.dataclass(frozen=True)
class _Inspector:
    """The views of one inspector blueprint, bound to its settings."""

    authorize: c.Callable[[], bool]
    blueprint: str | None

    def setup(self, setup_state: t.Any) -> None:
        app: Flask = setup_state.app
        if not app.secret_key:
            raise RuntimeError(
                "The OpenAI webhook inspector needs app.config['SECRET_KEY']:"
                " its buttons carry a CSRF token kept in the session. Set"
                " SECRET_KEY (a long random value, e.g. from"
                " secrets.token_hex()) before registering the blueprint."
            )
        csrf = app.extensions.get("csrf")
        if csrf is not None:
            # Flask-WTF checks POSTs before any blueprint hook runs; exempt
            # the inspector so that authorize() answers first (403), then
            # check the token in guard() with Flask-WTF's own protect().
            csrf.exempt(setup_state.blueprint)

    def guard(self) -> None:
        if not self.authorize():
            abort(403)
        if request.method == "POST":
            _check_csrf()

    def state(self) -> tuple[Flask, WebhookState]:
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return app, get_state(app, self.blueprint)
        except LookupError as e:
            raise InternalServerError(
                f"The OpenAI webhook inspector has no log to show: {e}. Register"
                " make_blueprint() on this app too; with several webhook"
                " blueprints, pass make_inspector_blueprint(blueprint=NAME)."
            ) from None

    # --- pages --------------------------------------------------------------

    def deliveries(self) -> ResponseReturnValue:
        app, state = self.state()
        filters = _Filters.from_args(request.args)
        records: tuple[DeliveryRecord, ...] = ()
        cursor = None
        error = filters.error
        code = 400 if error else 200
        if error is None:
            try:
                page = log.list_deliveries(
                    status=filters.statuses or None,
                    type=filters.type or None,
                    since=filters.since(),
                    until=filters.until_time,
                    search=filters.q or None,
                    limit=filters.limit,
                    before=filters.before or None,
                    app=app,
                    blueprint=state.name,
                )
            except ValueError as e:
                error, code = str(e), 400
            except StoreError as e:
                error, code = f"The delivery store is unavailable: {e}", 503
            else:
                records, cursor = page.records, page.cursor
        return render_template(
            "openai_webhooks/deliveries.html",
            page_name="deliveries",
            state_name=state.name,
            records=records,
            filters=filters,
            error=error,
            older=None if cursor is None else filters.url(before=cursor),
            newest=filters.url(before="") if filters.before else None,
            clear=url_for(".deliveries"),
            statuses=DELIVERY_STATUSES,
            ranges=RANGES,
            page_size=PAGE_SIZE,
            replayed=_replay_summary(request.args),
        ), code

    def delivery(self, webhook_id: str) -> ResponseReturnValue:
        app, state = self.state()
        try:
            record = log.get_delivery(webhook_id, app=app, blueprint=state.name)
        except StoreError as e:
            abort(503, f"The delivery store is unavailable: {e}")
        outcome = request.args.get("replayed")
        message = None if outcome is None else REPLAY_MESSAGES.get(outcome)
        return render_template(
            "openai_webhooks/delivery.html",
            page_name="deliveries",
            state_name=state.name,
            webhook_id=webhook_id,
            record=record,
            body=None if record is None else _pretty(record.body),
            answered=None if record is None else _last_answer(record),
            replayed=None if message is None else (outcome, message),
        ), (404 if record is None else 200)

    def rejections(self) -> ResponseReturnValue:
        state = self.state()[1]
        try:
            found = state.store.rejections(RECENT_REJECTIONS)
        except StoreError as e:
            abort(503, f"The delivery store is unavailable: {e}")
        counts = sorted(found.counts.items(), key=lambda item: (-item[1], item[0]))
        return render_template(
            "openai_webhooks/rejections.html",
            page_name="rejections",
            state_name=state.name,
            counts=counts,
            total=sum(found.counts.values()),
            recent=found.recent,
            hints=REJECTION_HINTS,
        )

    def health(self) -> ResponseReturnValue:
        app, state = self.state()
        checks = run_checks(app, state)
        worst = max((LEVELS.index(check.level) for check in checks), default=0)
        # Settings, never the keys: where the secret came from, not what it is.
        settings = [
            ("Webhook URL", webhook_url(app, state.name)),
            ("Delivery store", _describe(state)),
            ("Timestamp tolerance", f"{state.tolerance} s"),
            ("Lease", f"{state.lease:g} s"),
            ("Retention", _duration(state.retention)),
            ("On receiver error", state.on_error),
            ("Secret from", state.secret_source),
        ]
        return render_template(
            "openai_webhooks/health.html",
            page_name="health",
            state_name=state.name,
            checks=checks,
            failures=sum(check.failed for check in checks),
            worst=LEVELS[worst],
            settings=settings,
        )

    # --- buttons ------------------------------------------------------------

    def replay(self) -> ResponseReturnValue:
        app, state = self.state()
        webhook_id = request.form.get("webhook_id", "")
        if not webhook_id:
            raise BadRequest("The form did not say which delivery to replay.")
        try:
            done = log.replay(
                webhook_id,
                force=request.form.get("force") == "1",
                app=app,
                blueprint=state.name,
            )
        except LookupError:
            abort(404, f"No delivery with webhook-id {webhook_id!r} in the log.")
        except WebhookPayloadError:
            outcome = "unparseable"
        except StoreError as e:
            abort(503, f"The delivery store is unavailable: {e}")
        else:
            outcome = done.outcome.name
        return redirect(
            url_for(".delivery", webhook_id=webhook_id, replayed=outcome), 303
        )

    def replay_failed(self) -> ResponseReturnValue:
        """Replay every ``failed`` delivery, oldest first; one whose body no
        longer parses is counted and skipped, not a reason to stop."""
        app, state = self.state()
        replayed = succeeded = skipped = 0
        try:
            ids = log.matching(status="failed", app=app, blueprint=state.name)
            for webhook_id in ids:
                try:
                    done = log.replay(webhook_id, app=app, blueprint=state.name)
                except (LookupError, WebhookPayloadError):
                    skipped += 1
                    continue
                replayed += 1
                succeeded += done.ok
        except StoreError as e:
            abort(503, f"The delivery store is unavailable: {e}")
        return redirect(
            url_for(
                ".deliveries",
                replayed=replayed,
                succeeded=succeeded,
                skipped=skipped,
            ),
            303,
        )


# --- filters -------------------------------------------------------------------


@dataclasses.dataclass
class _Filters:
    """The deliveries page's query, as typed in and as parsed."""

    statuses: list[str]
    type: str
    q: str
    range: str
    from_text: str
    until_text: str
    limit: int
    before: str
    from_time: float | None = None
    until_time: float | None = None
    error: str | None = None

    @classmethod
    def from_args(cls, args: t.Any) -> _Filters:
        limit = args.get("limit", PAGE_SIZE, type=int)
        filters = cls(
            statuses=[s for s in args.getlist("status") if s],
            type=args.get("type", "").strip(),
            q=args.get("q", "").strip(),
            range=args.get("range", ""),
            from_text=args.get("from", "").strip(),
            until_text=args.get("until", "").strip(),
            limit=min(max(limit, 1), MAX_PAGE_SIZE),
            before=args.get("before", ""),
        )
        unknown = [s for s in filters.statuses if s not in DELIVERY_STATUSES]
        if unknown:
            filters.error = f"Unknown status {unknown[0]!r}."
        elif filters.range and filters.range not in RANGES:
            filters.error = f"Unknown time range {filters.range!r}."
        else:
            try:
                filters.from_time = _parse_local(filters.from_text, "From")
                filters.until_time = _parse_local(filters.until_text, "Before")
            except ValueError as e:
                filters.error = str(e)
        return filters

    def since(self) -> float | None:
        """The later of the preset's start and the From field."""
        starts = [self.from_time] if self.from_time is not None else []
        if self.range:
            starts.append(time.time() - RANGES[self.range][1])
        return max(starts) if starts else None

    def url(self, **changes: str) -> str:
        """This page with the same filters; an empty value drops a key."""
        args: dict[str, t.Any] = {
            "status": self.statuses,
            "type": self.type,
            "q": self.q,
            "range": self.range,
            "from": self.from_text,
            "until": self.until_text,
            "limit": "" if self.limit == PAGE_SIZE else str(self.limit),
            "before": self.before,
            **changes,
        }
        return url_for(".deliveries", **{k: v for k, v in args.items() if v})

    @property
    def active(self) -> bool:
        return bool(
            self.statuses
            or self.type
            or self.q
            or self.range
            or self.from_text
            or self.until_text
        )


def _parse_local(text: str, label: str) -> float | None:
    """A ``datetime-local`` input's value, taken as UTC."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{label} is not a date and time like 2025-06-30T14:00: {text!r}."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _replay_summary(args: t.Any) -> tuple[int, int, int] | None:
    """What "replay all failed" did, from the query of its redirect."""
    replayed = args.get("replayed", type=int)
    if replayed is None:
        return None
    return (
        replayed,
        args.get("succeeded", 0, type=int),
        args.get("skipped", 0, type=int),
    )


# --- CSRF ------------------------------------------------------------------------


def _csrf_field() -> str:
    if current_app.extensions.get("csrf") is not None:
        return str(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"))
    return "csrf_token"


def _csrf_token() -> str:
    """Flask-WTF's token when it is in use, else one of our own, random and
    kept in the session (signed by the app's ``SECRET_KEY``)."""
    if current_app.extensions.get("csrf") is not None:
        from flask_wtf.csrf import generate_csrf

        return str(generate_csrf())
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def _check_csrf() -> None:
    """:raises BadRequest: The POST's token is missing or wrong (400)."""
    csrf = current_app.extensions.get("csrf")
    if csrf is not None:
        # Flask-WTF's check, referrer check on HTTPS included; it raises
        # its CSRFError (400). WTF_CSRF_ENABLED = False turns it off here as
        # everywhere else in the app.
        if current_app.config.get("WTF_CSRF_ENABLED", True):
            csrf.protect()
        return
    sent = request.form.get("csrf_token", "")
    expected = session.get(_SESSION_KEY)
    if not isinstance(expected, str) or not hmac.compare_digest(
        sent.encode(), expected.encode()
    ):
        raise BadRequest(
            "The form's CSRF token is missing or wrong, or the session"
            " expired: go back, reload the page and press the button again."
        )


# --- rendering -------------------------------------------------------------------


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _template_helpers() -> dict[str, t.Any]:
    return {
        "inspector_csrf_field": _csrf_field,
        "inspector_csrf_token": _csrf_token,
        "iso": _iso,
        "ago": _ago,
    }


def _iso(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(timestamp: float | None) -> str:
    """``"5 min ago"``: how long ago, roughly."""
    if not timestamp:
        return ""
    seconds = time.time() - timestamp
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def _describe(state: WebhookState) -> str:
    try:
        return state.store.describe()
    except Exception as e:
        # Shown, not raised: the health page is where a broken store is
        # diagnosed.
        return f"(cannot describe: {type(e).__name__})"


def _last_answer(record: DeliveryRecord) -> HistoryEntry | None:
    """The last attempt that was answered over HTTP: a replay is not, so
    the record's own ``status_code`` is empty after one."""
    answered = [entry for entry in record.history if entry.status_code]
    return answered[-1] if answered else None


def _pretty(body: bytes) -> str:
    """The body as indented JSON, or as text if it is not JSON."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", "replace")
