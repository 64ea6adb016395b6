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
import inspect
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


def signals_for(event_type: str) -> list[NamedSignal]:
    """The signals a delivery of ``event_type`` is sent to, in order: its
    per-type signal (none for unknown types), then :data:`webhook_received`."""
    signal = EVENT_SIGNALS.get(event_type)
    return [webhook_received] if signal is None else [signal, webhook_received]


def receivers_of(
    signals: c.Iterable[NamedSignal], sender: t.Any
) -> list[tuple[str, Receiver, bool]]:
    """The receivers to call for an event, with their keys and whether they
    are ``async def``: each signal's in connection order (the signals use
    an ordered ``set_class``, see :mod:`~flask_openai_webhooks.signals`).

    Two receivers with the same name (say, closures made in a loop) get
    ``#2``, ``#3`` suffixes in connection order, which is the same in every
    process that connects them the same way.
    """
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
    for key, fn, is_async in receivers_of(signals_for(event.type), sender):
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
        if inspect.isawaitable(returned):
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
