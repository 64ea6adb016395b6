"""Run an event's receivers one by one, so that one failure cannot hide
another, and report each result to the attempt that owns the delivery.

blinker's ``send`` stops at the first exception and says nothing about which
receivers ran. Here every receiver runs, each result is handed to the
:class:`~flask_openai_webhooks.attempt.Attempt` under a stable key, and
failures are returned for the caller to turn into an outcome. No Flask
import: the caller passes the sender and the wrapper that makes
``async def`` receivers callable.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import functools
import inspect
import itertools
import logging
import time
import typing as t
import weakref

from blinker import NamedSignal

from .attempt import Attempt
from .errors import PermanentFailure
from .errors import RetryLater
from .signals import EVENT_SIGNALS
from .signals import webhook_failed
from .signals import webhook_received

if t.TYPE_CHECKING:
    from .observe import Observer

logger = logging.getLogger(__name__.rpartition(".")[0])

Receiver = c.Callable[..., t.Any]
Wrap = c.Callable[[Receiver], Receiver]


class _Queued:
    def __repr__(self) -> str:
        return "QUEUED"


#: Returned by a receiver that handed the work to a task queue (see
#: :func:`flask_openai_webhooks.celery.enqueue`): its result is logged as
#: ``queued`` until the task settles it, and a retry does not run it again.
QUEUED: t.Any = _Queued()


@dataclasses.dataclass
class Failure:
    """A receiver that raised."""

    key: str
    receiver: Receiver
    exception: Exception

    @property
    def permanent(self) -> bool:
        return isinstance(self.exception, PermanentFailure)


@dataclasses.dataclass
class DispatchResult:
    """What happened to one delivery's receivers."""

    failures: list[Failure] = dataclasses.field(default_factory=list)
    #: Receivers called in this attempt.
    ran: int = 0
    #: Receivers connected for the event, skipped ones included.
    connected: int = 0

    @property
    def retryable(self) -> list[Failure]:
        """Failures that should make the sender deliver again."""
        return [f for f in self.failures if not f.permanent]

    @property
    def retry_after(self) -> int | None:
        """The ``Retry-After`` to send, if every retryable failure was a
        :exc:`RetryLater`; ``None`` if any was an unexpected error."""
        afters = []
        for failure in self.retryable:
            if not isinstance(failure.exception, RetryLater):
                return None
            afters.append(failure.exception.after)
        return max(afters) if afters else None


#: ``(key, is_async)`` by receiver function and signal name, so a delivery
#: does not rebuild names and re-inspect functions. Weak, so a receiver
#: that goes away takes its entry with it.
_INFO: weakref.WeakKeyDictionary[t.Any, dict[str, tuple[str, bool]]] = (
    weakref.WeakKeyDictionary()
)


def _receiver_info(signal: NamedSignal, receiver: Receiver) -> tuple[str, bool]:
    target = getattr(receiver, "__func__", receiver)
    try:
        by_signal = _INFO.get(target)
    except TypeError:  # not hashable or not weakly referenceable
        by_signal = None
    if by_signal is not None:
        info = by_signal.get(signal.name)
        if info is not None:
            return info
    info = (receiver_key(signal, receiver), inspect.iscoroutinefunction(target))
    try:
        _INFO.setdefault(target, {})[signal.name] = info
    except TypeError:
        pass
    return info


def receiver_key(signal: NamedSignal, receiver: Receiver) -> str:
    """A name for a receiver that is the same in every worker process and
    across restarts: the signal, the module and the qualified name.

    It is what the log records, so renaming or moving a receiver function
    makes it a new receiver, which runs for events retried after the change.
    """
    target = getattr(receiver, "__func__", receiver)
    module = getattr(target, "__module__", None) or type(target).__module__
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{signal.name}:{module}.{name}"


#: The signals of each known event type, in the order they are sent.
_SIGNALS: dict[str, tuple[NamedSignal, ...]] = {
    event_type: (signal, webhook_received)
    for event_type, signal in EVENT_SIGNALS.items()
}
_RECEIVED_ONLY: tuple[NamedSignal, ...] = (webhook_received,)


def signals_for(event_type: str) -> list[NamedSignal]:
    """The signals a delivery of ``event_type`` is sent to, in order: its
    per-type signal (none for unknown types), then :data:`webhook_received`."""
    return list(_SIGNALS.get(event_type, _RECEIVED_ONLY))


def _build(
    signals: c.Iterable[NamedSignal], sender: t.Any
) -> list[tuple[str, Receiver, bool]]:
    found: list[tuple[str, Receiver, bool]] = []
    seen: dict[str, int] = {}
    for signal in signals:
        if signal.is_muted or not signal.receivers:
            continue
        for fn in signal.receivers_for(sender):
            key, is_async = _receiver_info(signal, fn)
            count = seen.get(key, 0) + 1
            seen[key] = count
            found.append((key if count == 1 else f"{key}#{count}", fn, is_async))
    return found


# The receivers of a delivery are the same from one delivery to the next
# until a receiver connects or disconnects, so they are found once per
# (signals, sender) and kept until then, rather than rebuilt from blinker
# for every delivery. Two documented hooks say when:
#
# - blinker sends ``receiver_connected`` after every ``connect`` and
#   ``receiver_disconnected`` after every explicit ``disconnect`` (also
#   what ``connected_to`` does on exit): each moves ``_generation`` on,
#   which makes every kept list stale;
# - a weakly connected receiver that is garbage collected is dropped by
#   blinker without a signal (blinker documents this), so the kept list
#   holds each receiver through a weak reference: a dead one means the
#   list is rebuilt (blinker then forgets the receiver, and the ``#N``
#   keys of the others are computed again). A weak reference also keeps
#   the cache from keeping alive a receiver that blinker would let go.
#
# A list is found afresh, and not kept, when a signal is muted, is not one
# of the package's event signals (whose connections are not watched), or
# the sender cannot be weakly referenced. Lists are kept by the sender's
# identity, as blinker tells senders apart, and go with the sender.
_generation_counter = itertools.count(1)
_generation = 0
# The generation a list was built in, and for each receiver its key, a
# callable returning it (a weak reference or, for a receiver that cannot be
# weakly referenced and so can only be connected strongly, a function
# returning it) and whether it is async.
_Kept = tuple[int, tuple[tuple[str, c.Callable[[], t.Any], bool], ...]]
# By id(sender): a weak reference to the sender, and its lists by signals.
_kept: dict[int, tuple[weakref.ref[t.Any], dict[tuple[NamedSignal, ...], _Kept]]] = {}
_WATCHED: frozenset[NamedSignal] = frozenset(
    (*EVENT_SIGNALS.values(), webhook_received)
)


def _connections_changed(signal: t.Any, **kwargs: t.Any) -> None:
    global _generation
    # next() on a count is atomic in CPython: concurrent changes each get
    # a new number; a list is kept with the generation read *before* it
    # was built, so a change made meanwhile makes it stale, never current.
    _generation = next(_generation_counter)


for _signal in _WATCHED:
    _signal.receiver_connected.connect(_connections_changed, weak=False)
    _signal.receiver_disconnected.connect(_connections_changed, weak=False)


def _weak(fn: Receiver) -> c.Callable[[], t.Any]:
    try:
        if inspect.ismethod(fn):
            return weakref.WeakMethod(fn)
        return weakref.ref(fn)
    except TypeError:
        # blinker can only connect such a receiver strongly, and drops it
        # only on an explicit disconnect, which the generation sees.
        return lambda: fn


def _forget(ref: weakref.ref[t.Any], sender_id: int) -> None:
    """A sender was collected: drop its lists (unless its id was reused)."""
    kept = _kept.get(sender_id)
    if kept is not None and kept[0] is ref:
        _kept.pop(sender_id, None)


def _receivers(
    signals: tuple[NamedSignal, ...], sender: t.Any
) -> list[tuple[str, Receiver, bool]]:
    """:func:`receivers_of`, from the kept list while it is current."""
    generation = _generation
    for signal in signals:
        if signal.is_muted or signal not in _WATCHED:
            return _build(signals, sender)
    sender_id = id(sender)
    by_sender = _kept.get(sender_id)
    if by_sender is not None and by_sender[0]() is sender:
        kept = by_sender[1].get(signals)
        if kept is not None and kept[0] == generation:
            alive: list[tuple[str, Receiver, bool]] = []
            for key, ref, is_async in kept[1]:
                fn = ref()
                if fn is None:
                    break
                alive.append((key, fn, is_async))
            else:
                return alive
    found = _build(signals, sender)
    if by_sender is None or by_sender[0]() is not sender:
        forget = functools.partial(_forget, sender_id=sender_id)
        try:
            sender_ref = weakref.ref(sender, forget)
        except TypeError:  # a sender that cannot be weakly referenced
            return found
        by_sender = _kept[sender_id] = (sender_ref, {})
    by_sender[1][signals] = (
        generation,
        tuple((key, _weak(fn), is_async) for key, fn, is_async in found),
    )
    return found


def receivers_of(
    signals: c.Iterable[NamedSignal], sender: t.Any
) -> list[tuple[str, Receiver, bool]]:
    """The receivers to call for an event, with their keys and whether they
    are ``async def``: each signal's in connection order (the signals use
    an ordered ``set_class``, see :mod:`~flask_openai_webhooks.signals`).

    Two receivers with the same name (say, closures made in a loop) get
    ``#2``, ``#3`` suffixes in connection order, which is the same in every
    process that connects them the same way.

    The list is found once per signals and sender, and found again after
    any receiver connects, disconnects or is garbage collected.
    """
    return _receivers(tuple(signals), sender)


def has_any_receiver(sender: t.Any) -> bool:
    """Whether any event receiver at all is connected for ``sender``: a
    per-type signal's or :data:`webhook_received`'s. When none is, the
    receivers module was most likely never imported."""
    signals = (*EVENT_SIGNALS.values(), webhook_received)
    return any(
        not s.is_muted and any(True for _ in s.receivers_for(sender)) for s in signals
    )


def notify(signal: NamedSignal, sender: t.Any, wrap: Wrap, **kwargs: t.Any) -> None:
    """Send a meta-signal (rejected, failed) to each receiver and log what
    they raise: a broken error reporter must not change the answer."""
    if signal.is_muted:
        return
    for fn in signal.receivers_for(sender):
        try:
            wrap(fn)(sender, **kwargs)
        except Exception:
            logger.exception("a %s receiver raised; ignored", signal.name)


def dispatch(
    sender: t.Any,
    event: t.Any,
    *,
    webhook_id: str,
    blueprint: str,
    attempt: Attempt,
    wrap: Wrap,
    skip: c.Container[str] = frozenset(),
    only: str | None = None,
    observer: Observer | None = None,
) -> DispatchResult:
    """Call the per-type signal's receivers, then :data:`webhook_received`'s,
    each once, reporting every result to ``attempt``.

    :param sender: The app, passed as the first argument to receivers.
    :param event: The verified event model.
    :param blueprint: The registered name of the receiving blueprint,
        passed to receivers.
    :param attempt: Owns the delivery's results and writes them.
    :param wrap: Turns an ``async def`` function into a plain callable; the
        blueprint passes ``app.ensure_sync``.
    :param skip: Keys of receivers not to run (they succeeded before).
    :param only: Run only the receiver with this key (a targeted replay).
    :param observer: The blueprint's metrics and traces, if any: when it
        traces, each receiver run gets a span (metrics count the results
        once the delivery is settled, in ``process``).
    """
    result = DispatchResult()
    signals = _SIGNALS.get(event.type, _RECEIVED_ONLY)
    for key, fn, is_async in _receivers(signals, sender):
        result.connected += 1
        if key in skip or (only is not None and key != only):
            continue
        attempt.before_receiver()
        result.ran += 1
        if observer is None or observer.tracing is None:
            failure = _run(
                sender, event, webhook_id, blueprint, attempt, wrap, key, fn, is_async
            )
        else:
            with observer.receiving(key, event, webhook_id) as span:
                failure = _run(
                    sender,
                    event,
                    webhook_id,
                    blueprint,
                    attempt,
                    wrap,
                    key,
                    fn,
                    is_async,
                )
                observer.ran(span, attempt.results[-1], failure)
        if failure is not None:
            result.failures.append(failure)
    return result


def _run(
    sender: t.Any,
    event: t.Any,
    webhook_id: str,
    blueprint: str,
    attempt: Attempt,
    wrap: Wrap,
    key: str,
    fn: Receiver,
    is_async: bool,
) -> Failure | None:
    """Run one receiver and hand its result to ``attempt``. A failure is
    logged and sent to ``webhook_failed`` (inside the receiver's span, so an
    error reporter sees its trace) and returned."""
    started = time.monotonic()
    try:
        returned = (wrap(fn) if is_async else fn)(
            sender, event=event, webhook_id=webhook_id, blueprint=blueprint
        )
        # Most receivers return None: no need to ask whether it is
        # awaitable (an ABC check) then.
        if returned is not None and inspect.isawaitable(returned):
            # An async callable that is not an ``async def`` function
            # (a class with ``async def __call__``, a decorated
            # coroutine): run what it returned, or it never runs.
            returned = wrap(_wait_for)(returned)
    except Exception as e:
        attempt.ran(attempt.result_for(key, started, e))
        failure = Failure(key, fn, e)
        _report(sender, event, webhook_id, blueprint, failure, wrap)
        return failure
    outcome: t.Literal["queued", "ok"] = "queued" if returned is QUEUED else "ok"
    attempt.ran(attempt.result_for(key, started, outcome=outcome))
    return None


async def _wait_for(awaitable: c.Awaitable[t.Any]) -> t.Any:
    return await awaitable


def _report(
    sender: t.Any,
    event: t.Any,
    webhook_id: str,
    blueprint: str,
    failure: Failure,
    wrap: Wrap,
) -> None:
    exc = failure.exception
    if isinstance(exc, PermanentFailure):
        logger.warning(
            "receiver %s gave up on %s (webhook-id %s): %s",
            failure.key,
            event.type,
            webhook_id,
            exc.reason or "permanent failure",
        )
    elif isinstance(exc, RetryLater):
        logger.warning(
            "receiver %s asked to retry %s (webhook-id %s) after %s s: %s",
            failure.key,
            event.type,
            webhook_id,
            exc.after,
            exc.reason,
        )
    else:
        logger.error(
            "receiver %s failed on %s (webhook-id %s)",
            failure.key,
            event.type,
            webhook_id,
            exc_info=exc,
        )
    notify(
        webhook_failed,
        sender,
        wrap,
        event=event,
        webhook_id=webhook_id,
        blueprint=blueprint,
        receiver=failure.receiver,
        exception=exc,
    )
