"""Signals sent for OpenAI webhook deliveries.

Every signal lives in a private :class:`blinker.Namespace`, never blinker's
global one, so no other library can collide with these names. The sender is
always the Flask application object (never the ``current_app`` proxy), so
``signal.connect_via(app)`` only hears deliveries made to that app.

Per-type receivers are called as
``receiver(app, event=..., webhook_id=..., blueprint=...)``:

-   ``event`` is the verified, typed model, for example a
    :class:`~flask_openai_webhooks.models.BatchCompletedWebhookEvent`;
-   ``webhook_id`` is the ``webhook-id`` header, the same on every retry of
    one event: the natural idempotency key for your own side effects;
-   ``blueprint`` is the registered name of the blueprint that received it,
    so an app with one blueprint per OpenAI project can route events.

Receivers of a signal run in the order they were connected: those connected
for any sender first, then those connected for the app.

Always end a receiver's signature in ``**extra``: new keyword arguments may be
added in a minor release. Return values are ignored.

.. warning::
    blinker holds receivers by weak reference. A function defined at module
    level lives as long as its module. A function defined inside
    ``create_app`` or a lambda is collected when the factory returns, and
    silently stops receiving. Connect those with ``weak=False``, or use
    :func:`receiver`, which keeps a strong reference.
"""

from __future__ import annotations

import collections.abc as c
import difflib
import fnmatch
import types
import typing as t

from blinker import ANY
from blinker import NamedSignal
from blinker import Namespace


class _OrderedSet(set[t.Any]):
    """A set that iterates in insertion order.

    blinker documents :attr:`blinker.Signal.set_class` for exactly this:
    "if receivers must be dispatched in the order they were connected, an
    ordered set implementation can be used". Receivers then run in
    connection order in every worker, which the ``#2``, ``#3`` suffixes of
    same-named receivers' keys rely on.
    """

    def __init__(self, items: c.Iterable[t.Any] = ()) -> None:
        order = dict.fromkeys(items)
        super().__init__(order)
        self._order = order

    def add(self, item: t.Any) -> None:
        super().add(item)
        self._order[item] = None

    def discard(self, item: t.Any) -> None:
        super().discard(item)
        self._order.pop(item, None)

    def remove(self, item: t.Any) -> None:
        super().remove(item)
        del self._order[item]

    def pop(self) -> t.Any:
        item = next(iter(self._order))
        self.remove(item)
        return item

    def clear(self) -> None:
        super().clear()
        self._order.clear()

    def copy(self) -> _OrderedSet:
        return _OrderedSet(self._order)

    def __iter__(self) -> c.Iterator[t.Any]:
        # A snapshot: blinker may disconnect a dead weak receiver while
        # iterating.
        return iter(tuple(self._order))

    def __or__(self, other: c.Iterable[t.Any]) -> _OrderedSet:
        # blinker sends to receivers_for(sender), which unites the ANY and
        # the sender's sets on every send: one dict merge, no Python loop.
        if not other:
            return _OrderedSet(self._order)
        return _OrderedSet({**self._order, **dict.fromkeys(other)})


class _OrderedSignal(NamedSignal):
    set_class = _OrderedSet


class _Namespace(Namespace):
    def signal(self, name: str, doc: str | None = None) -> NamedSignal:
        if name not in self:
            self[name] = _OrderedSignal(name, doc)
        return self[name]


_signals = _Namespace()

F = t.TypeVar("F", bound=c.Callable[..., t.Any])

webhook_received = _signals.signal(
    "webhook-received",
    doc="""Sent for every verified, parsed delivery that is processed,
    unknown event types included, after the per-type signal. Duplicates of a
    delivery already processed are not sent again. Sender: the app. Kwargs:
    ``event`` (a :data:`~flask_openai_webhooks.models.WebhookEvent`),
    ``webhook_id``, ``blueprint``.""",
)
webhook_rejected = _signals.signal(
    "webhook-rejected",
    doc="""Sent for every refused delivery: bad or missing headers, a
    signature that does not match, a timestamp outside the tolerance, an
    oversized or malformed body. Sender: the app. Kwargs: ``blueprint`` and ``error``, a
    :exc:`~flask_openai_webhooks.errors.WebhookError` whose message names the
    failed check. No other signal is sent for the delivery.""",
)
webhook_failed = _signals.signal(
    "webhook-failed",
    doc="""Sent once for each receiver that raised while handling an event.
    Sender: the app. Kwargs: ``event``, ``webhook_id``, ``blueprint``, ``receiver``
    (the function) and ``exception``. Use it to report errors; an exception raised
    here is logged and otherwise ignored.""",
)

batch_completed = _signals.signal("batch.completed")
batch_failed = _signals.signal("batch.failed")
batch_expired = _signals.signal("batch.expired")
batch_cancelled = _signals.signal("batch.cancelled")
response_completed = _signals.signal("response.completed")
response_failed = _signals.signal("response.failed")
response_cancelled = _signals.signal("response.cancelled")
response_incomplete = _signals.signal("response.incomplete")
eval_run_succeeded = _signals.signal("eval.run.succeeded")
eval_run_failed = _signals.signal("eval.run.failed")
eval_run_canceled = _signals.signal("eval.run.canceled")
fine_tuning_job_succeeded = _signals.signal("fine_tuning.job.succeeded")
fine_tuning_job_failed = _signals.signal("fine_tuning.job.failed")
fine_tuning_job_cancelled = _signals.signal("fine_tuning.job.cancelled")
realtime_call_incoming = _signals.signal("realtime.call.incoming")
live_transport_incoming = _signals.signal("live.transport.incoming")
live_call_incoming = _signals.signal("live.call.incoming")
live_transport_connected = _signals.signal("live.transport.connected")
agent_environment_ready = _signals.signal("agent.environment.ready")
agent_environment_failed = _signals.signal("agent.environment.failed")
agent_environment_suspended = _signals.signal("agent.environment.suspended")
agent_environment_expired = _signals.signal("agent.environment.expired")
agent_session_created = _signals.signal("agent.session.created")
agent_session_action_required = _signals.signal("agent.session.action_required")
agent_session_in_progress = _signals.signal("agent.session.in_progress")
agent_session_idle = _signals.signal("agent.session.idle")
agent_session_failed = _signals.signal("agent.session.failed")
safety_alert_created = _signals.signal("safety.alert.created")
safety_org_alert_created = _signals.signal("safety.org_alert.created")
safety_warning_issued = _signals.signal("safety.warning_issued")
safety_deactivation_issued = _signals.signal("safety.deactivation_issued")
safety_identifier_blocked = _signals.signal("safety_identifier.blocked")

#: Every per-type signal by its OpenAI event type. Built from the names
#: above, never from request input.
EVENT_SIGNALS: c.Mapping[str, NamedSignal] = types.MappingProxyType(
    {
        name: signal
        for name, signal in _signals.items()
        if name not in {"webhook-received", "webhook-rejected", "webhook-failed"}
    }
)


def signal_name(event_type: str) -> str:
    """The Python attribute name of an event type's signal:
    ``fine_tuning.job.succeeded`` is ``fine_tuning_job_succeeded``."""
    return event_type.replace(".", "_")


def event_signal(event_type: str) -> NamedSignal | None:
    """Return the signal for a known event type, or ``None``.

    Unknown types have no signal of their own; they reach
    :data:`webhook_received` only.
    """
    return EVENT_SIGNALS.get(event_type)


def match_event_types(*patterns: str) -> list[str]:
    """Expand glob patterns (``batch.*``, ``*.failed``) to known types.

    :raises ValueError: A pattern matches no known type. The message
        suggests the closest names, which catches ``batch.canceled`` for
        ``batch.cancelled`` (OpenAI spells it both ways).
    """
    if not patterns:
        raise ValueError("give at least one event type or pattern")
    matched: dict[str, None] = {}
    for pattern in patterns:
        found = fnmatch.filter(EVENT_SIGNALS, pattern)
        if not found:
            close = difflib.get_close_matches(pattern, EVENT_SIGNALS, n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"{pattern!r} matches no known event type{hint}")
        matched.update(dict.fromkeys(found))
    return list(matched)


def receiver(*patterns: str, sender: t.Any = ANY) -> c.Callable[[F], F]:
    """Connect a function to every event-type signal matching the patterns.

    .. code-block:: python

        @receiver("batch.*")
        def on_batch(app, event, **extra):
            ...

    Unlike ``signal.connect``, the function is held by a strong reference,
    so it may be defined inside an application factory.

    :param patterns: Event types or :mod:`fnmatch` patterns, e.g.
        ``"*.failed"``.
    :param sender: Only hear deliveries to this app. Defaults to any app.
    :raises ValueError: A pattern matches no known type.
    """
    if patterns and callable(patterns[0]):
        raise TypeError(
            "receiver() takes event types: write @receiver('batch.*') or"
            " @receiver('batch.completed'), with the parentheses and a pattern,"
            " not a bare @receiver"
        )
    event_types = match_event_types(*patterns)

    def decorator(fn: F) -> F:
        for event_type in event_types:
            EVENT_SIGNALS[event_type].connect(fn, sender=sender, weak=False)
        return fn

    return decorator
