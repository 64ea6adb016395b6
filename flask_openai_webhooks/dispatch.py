"""Run an event's receivers one by one, so that one failure cannot hide
another, and keep track of which succeeded.

blinker's ``send`` stops at the first exception and says nothing about which
receivers ran. Here every receiver runs, each success is remembered by a
stable key, and failures are returned for the blueprint to turn into a
status code. No Flask import: the caller passes the sender and the wrapper
that makes ``async def`` receivers callable.
"""

from __future__ import annotations

import asyncio
import collections.abc as c
import dataclasses
import inspect
import logging
import typing as t
import weakref

from blinker import NamedSignal

from .errors import PermanentFailure
from .errors import RetryLater
from .errors import StoreError
from .signals import webhook_failed
from .signals import webhook_received

logger = logging.getLogger("flask_openai_webhooks")

Receiver = c.Callable[..., t.Any]


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

    #: Keys of receivers that succeeded in this attempt, or failed with
    #: :exc:`PermanentFailure`: neither must run again.
    done: list[str] = dataclasses.field(default_factory=list)
    #: Keys of earlier successes that were already written to the store.
    recorded: list[str] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)

    @property
    def retryable(self) -> list[Failure]:
        """Failures that should make OpenAI deliver again."""
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


def _receiver_id(receiver: Receiver) -> t.Hashable:
    """The id blinker files a receiver under (``blinker._utilities.make_id``)."""
    if inspect.ismethod(receiver):
        return id(receiver.__func__), id(receiver.__self__)
    return id(receiver)


def receiver_key(signal: NamedSignal, receiver: Receiver) -> str:
    """A name for a receiver that is the same in every worker process and
    across restarts: the signal, the module and the qualified name.

    It is what the store records, so renaming or moving a receiver function
    makes it a new receiver, which runs for events retried after the change.
    """
    target = getattr(receiver, "__func__", receiver)
    module = getattr(target, "__module__", None) or type(target).__module__
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{signal.name}:{module}.{name}"


def receivers_of(
    signals: c.Iterable[NamedSignal], sender: t.Any
) -> list[tuple[str, Receiver, bool]]:
    """The receivers to call for an event, with their keys and whether they
    are ``async def``: the per-type signal's first, each signal's in the
    order they were connected.

    Two receivers with the same name (say, closures made in a loop) get
    ``#2``, ``#3`` suffixes in connection order, which is the same in every
    process that connects them the same way.
    """
    found: list[tuple[str, Receiver, bool]] = []
    seen: dict[str, int] = {}
    for signal in signals:
        if signal.is_muted or not signal.receivers:
            continue
        fns = list(signal.receivers_for(sender))
        if len(fns) > 1:
            # blinker yields from a set of ids, an order that differs from
            # process to process; connection order is the same everywhere,
            # which the #N keys below rely on.
            # A copy: blinker edits the dict when a weak receiver dies or
            # another thread connects one.
            position = {rid: i for i, rid in enumerate(tuple(signal.receivers))}
            fns.sort(key=lambda fn: position.get(_receiver_id(fn), len(position)))
        for fn in fns:
            key, is_async = _receiver_info(signal, fn)
            count = seen.get(key, 0) + 1
            seen[key] = count
            found.append((key if count == 1 else f"{key}#{count}", fn, is_async))
    return found


def dispatch(
    sender: t.Any,
    event: t.Any,
    signal: NamedSignal | None,
    *,
    webhook_id: str,
    skip: c.Container[str] = frozenset(),
    wrap: c.Callable[[Receiver], Receiver] | None = None,
    record: c.Callable[[list[str]], None] | None = None,
) -> DispatchResult:
    """Call the per-type signal's receivers, then :data:`webhook_received`'s.

    :param sender: The app, passed as the first argument to receivers.
    :param event: The verified event model.
    :param signal: The per-type signal, or ``None`` for unknown types.
    :param skip: Keys of receivers that already succeeded for this
        ``webhook_id`` in an earlier attempt.
    :param wrap: Turns an ``async def`` function into a plain callable; the
        blueprint passes ``app.ensure_sync``. The default runs it with
        :func:`asyncio.run`.
    :param record: Persists successes before the next receiver runs, so a
        crash part-way does not re-run the receivers that finished. The
        successes of the last receivers are left for the caller to record
        together with the outcome, saving a round trip to the store.
    """
    if wrap is None:
        wrap = _run_async
    signals = [webhook_received] if signal is None else [signal, webhook_received]
    result = DispatchResult()
    pending: list[str] = []
    for key, fn, is_async in receivers_of(signals, sender):
        if key in skip:
            continue
        if pending and record is not None:
            try:
                record(pending)
            except StoreError:
                # Not fatal: the keys stay pending and go to the final write.
                logger.warning(
                    "could not record receivers of webhook-id %s yet", webhook_id
                )
            else:
                result.recorded.extend(pending)
                pending = []
        try:
            returned = (wrap(fn) if is_async else fn)(
                sender, event=event, webhook_id=webhook_id
            )
            if inspect.isawaitable(returned):
                # An async callable that is not an ``async def`` function
                # (a class with ``async def __call__``, a decorated
                # coroutine): run what it returned, or it never runs.
                wrap(_wait_for)(returned)
        except Exception as e:
            failure = Failure(key, fn, e)
            result.failures.append(failure)
            if failure.permanent:
                result.done.append(key)
                pending.append(key)
            _report(sender, event, webhook_id, failure, wrap)
        else:
            result.done.append(key)
            pending.append(key)
    return result


def _run_async(fn: Receiver) -> Receiver:
    """Outside Flask, run an ``async def`` receiver in its own event loop."""
    if not inspect.iscoroutinefunction(fn):
        return fn
    return lambda *args, **kwargs: asyncio.run(fn(*args, **kwargs))


async def _wait_for(awaitable: c.Awaitable[t.Any]) -> t.Any:
    return await awaitable


def _report(
    sender: t.Any,
    event: t.Any,
    webhook_id: str,
    failure: Failure,
    wrap: c.Callable[[Receiver], Receiver],
) -> None:
    exc = failure.exception
    if isinstance(exc, PermanentFailure):
        logger.warning(
            "receiver %s gave up on %s (webhook-id %s): %s",
            failure.key,
            getattr(event, "type", "?"),
            webhook_id,
            exc.reason or "permanent failure",
        )
    elif isinstance(exc, RetryLater):
        logger.warning(
            "receiver %s asked to retry %s (webhook-id %s) after %s s: %s",
            failure.key,
            getattr(event, "type", "?"),
            webhook_id,
            exc.after,
            exc.reason,
        )
    else:
        logger.error(
            "receiver %s failed on %s (webhook-id %s)",
            failure.key,
            getattr(event, "type", "?"),
            webhook_id,
            exc_info=exc,
        )
    if webhook_failed.is_muted:
        return
    for fn in webhook_failed.receivers_for(sender):
        try:
            wrap(fn)(
                sender,
                event=event,
                webhook_id=webhook_id,
                receiver=failure.receiver,
                exception=exc,
            )
        except Exception:
            logger.exception("a webhook_failed receiver raised; ignored")
