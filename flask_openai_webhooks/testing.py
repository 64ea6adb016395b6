"""Helpers for testing code that receives OpenAI webhooks.

Build a realistic event, sign it as OpenAI would, post it through Flask's
test client and see which signals fired, without a network or a real
OpenAI project:

.. code-block:: python

    from flask_openai_webhooks.testing import capture_signals
    from flask_openai_webhooks.testing import post_event

    def test_batch_completed(app, client) -> None:
        with capture_signals(app) as sent:
            response = post_event(client, "batch.completed", data={"id": "batch_1"})

        assert response.status_code == 200
        assert sent.types == ["batch.completed"]
        assert sent.events[0].data.id == "batch_1"

The signatures are real: they are checked by the blueprint's own verifier,
so a test that passes here exercises the same code path as a delivery from
OpenAI. With pytest, the ``openai_webhooks`` and ``webhook_signals``
fixtures of :mod:`flask_openai_webhooks.pytest_plugin` wrap these helpers.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import copy
import dataclasses
import typing as t

from blinker import ANY
from blinker import NamedSignal
from flask import Flask

from . import verify
from .samples import deep_merge
from .samples import encode_body as encode_body
from .samples import make_event as make_event
from .samples import new_webhook_id as new_webhook_id
from .signals import EVENT_SIGNALS
from .signals import webhook_failed
from .signals import webhook_received
from .signals import webhook_rejected
from .state import get_state
from .state import webhook_url as webhook_url

if t.TYPE_CHECKING:  # pragma: no cover
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

__all__ = [
    "RecordedSignal",
    "SignalRecorder",
    "WebhookClient",
    "capture_signals",
    "encode_body",
    "make_event",
    "new_webhook_id",
    "post_event",
    "signed_headers",
    "webhook_url",
]

#: What can be signed: raw bytes as sent, text (encoded as UTF-8), or a
#: payload dict (encoded compactly by :func:`encode_body`).
Body: t.TypeAlias = bytes | str | c.Mapping[str, t.Any]


def signed_headers(
    body: Body,
    secret: verify.Secret,
    *,
    webhook_id: str | None = None,
    timestamp: int | float | None = None,
) -> dict[str, str]:
    """Return the three Standard Webhooks headers OpenAI would send with a
    body: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.

    :param body: The body as bytes or text, or a payload dict. For a dict,
        the signature covers :func:`encode_body`'s bytes, so send those.
    :param secret: The signing secret (``whsec_...``), or the raw key as
        ``bytes``, such as ``get_state(app).keys[0]``.
    :param webhook_id: Defaults to a fresh :func:`new_webhook_id`. Reuse an
        id to simulate OpenAI retrying a delivery.
    :param timestamp: Unix time of the signature; defaults to now. Pass an
        old one to test the tolerance.
    """
    return verify.signed_headers(
        encode_body(body),
        secret=secret,
        webhook_id=new_webhook_id() if webhook_id is None else webhook_id,
        timestamp=None if timestamp is None else int(timestamp),
    )


def post_event(
    client: FlaskClient,
    event_or_type: str | bytes | c.Mapping[str, t.Any],
    *,
    secret: verify.Secret | None = None,
    url: str | None = None,
    webhook_id: str | None = None,
    timestamp: int | float | None = None,
    headers: c.Mapping[str, str] | None = None,
    blueprint: str | None = None,
    **overrides: t.Any,
) -> TestResponse:
    """Sign an event and post it through a Flask test client.

    .. code-block:: python

        post_event(client, "batch.completed", data={"id": "batch_1"})
        post_event(client, make_event("response.failed"), webhook_id="wh_1")

    :param client: A test client of an app with the blueprint registered.
    :param event_or_type: An event type, built with :func:`make_event` and
        ``overrides``; a payload dict, into which ``overrides`` are merged
        the same way; or a raw body as ``bytes``, sent as is, to test bodies
        that are signed correctly but malformed.
    :param secret: Defaults to the app's configured key, so the delivery
        verifies. Pass another to test a wrong secret.
    :param url: Defaults to the blueprint's URL.
    :param webhook_id: Defaults to a fresh one: reuse one to test retries.
    :param timestamp: Defaults to now.
    :param headers: Extra headers, replacing the signed ones of the same
        name: pass ``{"webhook-signature": "v1,bad"}`` to test a bad
        signature, or an empty value to test a missing header.
    :param blueprint: The blueprint's name, needed only when several are
        registered on the app.
    :param overrides: Event fields, merged recursively into the sample (see
        :func:`make_event`); ``allow_unknown=True`` builds an event of a type
        this package does not model.
    """
    app = client.application
    if isinstance(event_or_type, str):
        body = encode_body(make_event(event_or_type, **overrides))
    elif isinstance(event_or_type, bytes):
        if overrides:
            raise TypeError("a raw body cannot take event field overrides")
        body = event_or_type
    else:
        # Any payload may be posted; allow_unknown only matters to make_event.
        overrides.pop("allow_unknown", None)
        payload = copy.deepcopy(dict(event_or_type))
        deep_merge(payload, overrides)
        body = encode_body(payload)
    if secret is None:
        secret = get_state(app, blueprint).keys[0]
    if url is None:
        url = webhook_url(app, blueprint)
    signed = signed_headers(body, secret, webhook_id=webhook_id, timestamp=timestamp)
    for name, value in (headers or {}).items():
        # Replace, whatever the case: two webhook-signature headers would
        # test something else.
        signed.pop(name.lower(), None)
        signed[name] = value
    return client.post(url, data=body, headers=signed, content_type="application/json")


@dataclasses.dataclass(frozen=True)
class RecordedSignal:
    """One signal sent, as recorded by :func:`capture_signals`."""

    #: The signal's name: an event type such as ``batch.completed``, or
    #: ``webhook-received``, ``webhook-rejected``, ``webhook-failed``.
    signal: str
    #: The app the signal was sent for.
    sender: t.Any
    #: Every keyword argument the receivers got.
    kwargs: dict[str, t.Any]

    @property
    def event(self) -> t.Any:
        """The event model, or ``None`` for ``webhook-rejected``."""
        return self.kwargs.get("event")

    @property
    def webhook_id(self) -> str | None:
        """The delivery's ``webhook-id``, or ``None`` for
        ``webhook-rejected``."""
        return self.kwargs.get("webhook_id")

    @property
    def error(self) -> BaseException | None:
        """The :exc:`~flask_openai_webhooks.errors.WebhookError` of a
        rejection, or the exception a receiver raised for
        ``webhook-failed``."""
        return self.kwargs.get("error", self.kwargs.get("exception"))


class SignalRecorder(c.Sequence[RecordedSignal]):
    """The signals sent while :func:`capture_signals` was active, in order.

    It is a sequence of :class:`RecordedSignal`, with shortcuts for the
    questions tests usually ask.
    """

    def __init__(self) -> None:
        #: Every recorded signal, in the order it was sent.
        self.calls: list[RecordedSignal] = []

    @t.overload
    def __getitem__(self, index: int) -> RecordedSignal: ...

    @t.overload
    def __getitem__(self, index: slice) -> list[RecordedSignal]: ...

    def __getitem__(self, index: int | slice) -> RecordedSignal | list[RecordedSignal]:
        return self.calls[index]

    def __len__(self) -> int:
        return len(self.calls)

    def __repr__(self) -> str:
        return f"<SignalRecorder {self.names!r}>"

    @property
    def names(self) -> list[str]:
        """The name of every signal sent, in order, for example
        ``["batch.completed", "webhook-received"]``."""
        return [call.signal for call in self.calls]

    @property
    def types(self) -> list[str]:
        """The type of every event that reached :data:`webhook_received`, one
        per processed delivery, unknown types included."""
        return [call.event.type for call in self.of(webhook_received)]

    @property
    def events(self) -> list[t.Any]:
        """The event models that reached :data:`webhook_received`."""
        return [call.event for call in self.of(webhook_received)]

    @property
    def rejected(self) -> list[BaseException]:
        """The errors of the deliveries that were refused."""
        return [call.kwargs["error"] for call in self.of(webhook_rejected)]

    @property
    def failed(self) -> list[RecordedSignal]:
        """One record per receiver that raised, with ``kwargs["receiver"]``
        and ``kwargs["exception"]``."""
        return self.of(webhook_failed)

    def of(self, signal: str | NamedSignal) -> list[RecordedSignal]:
        """The recorded sends of one signal, given by name or object."""
        name = signal if isinstance(signal, str) else signal.name
        return [call for call in self.calls if call.signal == name]

    def clear(self) -> None:
        """Forget what was recorded so far, to check a second step alone."""
        self.calls.clear()


class _Listener:
    """Receiver for one signal. A callable object rather than a closure: one
    per signal is needed to know which signal fired, since blinker does not
    tell receivers."""

    def __init__(self, recorder: SignalRecorder, name: str) -> None:
        self.recorder = recorder
        self.name = name

    def __call__(self, sender: t.Any, /, **kwargs: t.Any) -> None:
        self.recorder.calls.append(RecordedSignal(self.name, sender, dict(kwargs)))


#: Every signal :func:`capture_signals` listens to.
_ALL_SIGNALS: tuple[NamedSignal, ...] = (
    *EVENT_SIGNALS.values(),
    webhook_received,
    webhook_rejected,
    webhook_failed,
)


@contextlib.contextmanager
def capture_signals(app: Flask | None = None) -> c.Iterator[SignalRecorder]:
    """Record every signal of this package sent inside the block: each
    per-type signal, :data:`webhook_received`, :data:`webhook_rejected` and
    :data:`webhook_failed`.

    .. code-block:: python

        with capture_signals(app) as sent:
            post_event(client, "batch.failed")

        assert sent.names == ["batch.failed", "webhook-received"]

    The recorders are connected with blinker's ``connected_to``, so they
    are always disconnected, even if the block raises.

    The recorders are receivers like any other: while the block runs they
    count for a delivery, and the delivery store remembers that they
    succeeded, so a retry with the same ``webhook-id`` does not record them
    again.

    :param app: Only record signals sent for this app. Defaults to any app,
        which can pick up deliveries made by other tests' apps in the same
        thread.
    """
    recorder = SignalRecorder()
    sender: t.Any = ANY if app is None else app
    with contextlib.ExitStack() as stack:
        for signal in _ALL_SIGNALS:
            stack.enter_context(
                signal.connected_to(_Listener(recorder, signal.name), sender)
            )
        yield recorder


class WebhookClient:
    """Post signed events to one app through its test client.

    This is what the ``openai_webhooks`` pytest fixture returns; make one
    yourself when not using pytest-flask.

    .. code-block:: python

        hooks = WebhookClient(app.test_client())
        response = hooks.send("batch.completed", data={"id": "batch_1"})

    :param client: A test client of an app with the blueprint registered.
    :param blueprint: The blueprint's name, needed only when several are
        registered on the app.
    """

    def __init__(self, client: FlaskClient, *, blueprint: str | None = None) -> None:
        #: The test client deliveries are posted through.
        self.client = client
        #: The blueprint's name, or ``None`` for the only one.
        self.blueprint = blueprint

    @property
    def app(self) -> Flask:
        """The app of the client."""
        return self.client.application

    @property
    def key(self) -> bytes:
        """The app's signing key, as decoded from its secret. The first key
        while rotating, as OpenAI signs with the newest secret."""
        return get_state(self.app, self.blueprint).keys[0]

    @property
    def url(self) -> str:
        """The path the blueprint receives deliveries at."""
        return webhook_url(self.app, self.blueprint)

    def send(
        self, event_or_type: str | bytes | c.Mapping[str, t.Any], **kwargs: t.Any
    ) -> TestResponse:
        """:func:`post_event` through this client and blueprint: an event
        type, a payload dict or a raw body, with the same keyword arguments
        (``webhook_id``, ``timestamp``, ``secret``, ``headers``, ``url``)
        and event fields to override."""
        return post_event(
            self.client, event_or_type, blueprint=self.blueprint, **kwargs
        )
