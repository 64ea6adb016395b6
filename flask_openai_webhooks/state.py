"""The settings of each registered webhook blueprint, resolved once.

The blueprint, the CLI, the replay and the test kit all read
``app.extensions["openai_webhooks"]`` through :func:`get_state`, as
Flask-SQLAlchemy's CLI reads ``current_app.extensions["sqlalchemy"]``; none
of them imports another, so there is no import cycle.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import logging
import math
import os
import typing as t

from flask import Flask
from flask import url_for

from . import verify
from .observe import Observer
from .observe import observer_for
from .stores import DeliveryStore
from .stores import store_from_config

logger = logging.getLogger(__name__.rpartition(".")[0])

#: Where OpenAI deliveries are received unless ``url_prefix`` says otherwise.
DEFAULT_URL = "/webhooks/openai"
#: Real deliveries are well under 1 KiB; this leaves room for SIP headers.
DEFAULT_MAX_BODY = 64 * 1024
#: Seconds a delivery stays claimed while its receivers run. OpenAI expects
#: an answer within seconds, so a lease this long only runs out when a
#: worker died.
DEFAULT_LEASE = 30
#: Seconds a delivery is kept in the log: OpenAI's 72-hour retry window
#: plus a day of margin.
DEFAULT_RETENTION = 96 * 3600
ON_ERROR_CHOICES = ("retry", "ack")

#: The settings read from ``app.config`` as ``OPENAI_WEBHOOK_<KEY>`` and
#: the :func:`~flask_openai_webhooks.make_blueprint` argument for each.
CONFIG_KEYS: c.Mapping[str, str] = {
    "SECRET": "secret",
    "TOLERANCE": "tolerance",
    "MAX_BODY": "max_body",
    "STORE": "store",
    "LEASE": "lease",
    "RETENTION": "retention",
    "ON_ERROR": "on_error",
    "METRICS": "metrics",
    "TRACING": "tracing",
}

EXTENSION_KEY = "openai_webhooks"


@dataclasses.dataclass
class WebhookState:
    """Per-app settings of one registered blueprint, resolved once at
    registration. Kept in ``app.extensions["openai_webhooks"][name]``.
    """

    #: The registered name (``api.openai_webhooks`` when nested in an
    #: ``api`` blueprint), as ``request.blueprint`` gives it.
    name: str
    #: The endpoint of the receiving view, for ``url_for``.
    endpoint: str
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
    #: Reports to Prometheus metrics and OpenTelemetry spans; ``None`` when
    #: ``OPENAI_WEBHOOK_METRICS`` and ``OPENAI_WEBHOOK_TRACING`` are off,
    #: which the delivery path checks once per step.
    observer: Observer | None = None
    #: Refusals by reason since the last warning about them, and when that
    #: warning was logged (monotonic); kept by the blueprint, which rate-limits
    #: the warning.
    _refused: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)
    _warned_at: float = dataclasses.field(default=-math.inf, repr=False)
    #: When this process last found no reconciliation marker in the store
    #: (monotonic), or ``math.inf`` once it found one; see
    #: :func:`~flask_openai_webhooks.process.reconciliation_in_use`.
    _reconcile_checked: float = dataclasses.field(default=-math.inf, repr=False)

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The decoded HMAC keys, the one OpenAI signs with first."""
        return self.verifier.keys

    @property
    def tolerance(self) -> int:
        """Seconds a delivery's timestamp may be off, either way."""
        return self.verifier.tolerance


def resolve(
    app: Flask, name: str, endpoint: str, overrides: c.Mapping[str, t.Any]
) -> WebhookState:
    """Read and check every setting of a blueprint being registered.

    :param overrides: ``make_blueprint``'s arguments by config key; ``None``
        means "read ``app.config``".
    :raises RuntimeError: A setting is missing or invalid; the message names
        the key and never contains the secret.
    """

    def setting(key: str, default: t.Any = None) -> t.Any:
        value = overrides.get(key)
        if value is None:
            value = app.config.get(f"OPENAI_WEBHOOK_{key}", default)
        return value

    secret = setting("SECRET")
    source = "make_blueprint(secret=...)" if overrides.get("SECRET") else "app.config"
    if source == "app.config" and "FLASK_OPENAI_WEBHOOK_SECRET" in os.environ:
        source = "app.config, set from FLASK_OPENAI_WEBHOOK_SECRET"
    if secret is None or secret == "":
        secret = os.environ.get("OPENAI_WEBHOOK_SECRET") or None
        source = "the OPENAI_WEBHOOK_SECRET environment variable"
    if secret is None or (isinstance(secret, (str, bytes, list, tuple)) and not secret):
        raise RuntimeError(
            f"OPENAI_WEBHOOK_SECRET is not set for blueprint {name!r}. Copy the"
            " signing secret (whsec_...) of your endpoint from the OpenAI"
            " dashboard into app.config['OPENAI_WEBHOOK_SECRET'] or the"
            " OPENAI_WEBHOOK_SECRET environment variable, before the blueprint"
            " is registered."
        )
    try:
        keys = verify.decode_secrets(secret)
    except (ValueError, TypeError) as e:
        raise RuntimeError(
            f"OPENAI_WEBHOOK_SECRET for blueprint {name!r} (from {source}) is"
            f" invalid: {e}."
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
    if retention <= tolerance + lease:
        # A captured delivery replayed after its record expired, but still
        # within the tolerance, would verify and run every receiver again.
        raise RuntimeError(
            f"OPENAI_WEBHOOK_RETENTION ({retention:g} s) must be longer than"
            f" OPENAI_WEBHOOK_TOLERANCE ({tolerance:g} s) plus"
            f" OPENAI_WEBHOOK_LEASE ({lease:g} s): a delivery forgotten while"
            " its signature is still valid could be replayed. Keep the default"
            f" ({DEFAULT_RETENTION} s), which covers OpenAI's 72-hour retries."
        )
    on_error = setting("ON_ERROR", "retry")
    if on_error not in ON_ERROR_CHOICES:
        raise RuntimeError(
            f"OPENAI_WEBHOOK_ON_ERROR must be 'retry' or 'ack', not {on_error!r}"
        )
    configured = setting("STORE", "memory")
    if (
        isinstance(configured, str)
        and configured.startswith("sqlite:///")
        and not os.path.isabs(configured[len("sqlite:///") :])
    ):
        # A relative SQLite path lives in the instance folder, as with
        # Flask-SQLAlchemy; create the folder as it does.
        os.makedirs(app.instance_path, exist_ok=True)
    # Before the store, which may open connections: a wrong setting here
    # must not leave them behind.
    observer = observer_for(
        name, metrics=setting("METRICS"), tracing=setting("TRACING")
    )
    try:
        store = store_from_config(configured, root=app.instance_path)
    except ValueError as e:
        raise RuntimeError(f"OPENAI_WEBHOOK_STORE: {e}") from None
    return WebhookState(
        name=name,
        endpoint=endpoint,
        verifier=verify.Verifier(keys, tolerance=int(tolerance)),
        max_body=int(max_body),
        store=store,
        lease=float(lease),
        retention=float(retention),
        on_error=on_error,
        secret_source=source,
        observer=observer,
    )


def _number(value: t.Any, key: str, *, minimum: float) -> float:
    if isinstance(value, str):
        # Values from the environment arrive as text; "300" means 300.
        try:
            value = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            pass
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


def states(app: Flask) -> dict[str, WebhookState]:
    """Every registered blueprint's state on ``app``, by registered name."""
    return app.extensions.get(EXTENSION_KEY, {})  # type: ignore[no-any-return]


def get_state(app: Flask, name: str | None = None) -> WebhookState:
    """The settings of a registered blueprint; the only one if ``name`` is
    not given.

    :raises LookupError: No such blueprint is registered on the app.
    """
    found = states(app)
    if name is None:
        if len(found) == 1:
            return next(iter(found.values()))
        if not found:
            raise LookupError("no OpenAI webhook blueprint is registered on this app")
        raise LookupError(
            f"several OpenAI webhook blueprints are registered ({', '.join(found)});"
            " say which"
        )
    try:
        return found[name]
    except KeyError:
        known = ", ".join(found) or "none"
        raise LookupError(
            f"no OpenAI webhook blueprint named {name!r} (registered: {known})"
        ) from None


def webhook_url(app: Flask, blueprint: str | None = None) -> str:
    """The path a registered blueprint receives deliveries at, as
    ``url_for`` builds it, so a ``url_prefix`` and nesting are respected.

    :raises LookupError: No such blueprint, or several and ``blueprint`` was
        not given.
    """
    state = get_state(app, blueprint)
    with app.test_request_context():
        return url_for(state.endpoint)
