"""Background work on Celery, with the delivery guarantee carried into the
worker (the ``[celery]`` extra).

OpenAI wants an answer within seconds; fetching a batch's output file takes
longer. :func:`enqueue` connects a receiver that hands the event to a task
and lets the blueprint answer 2xx only once the broker has accepted the
message. From then on a failure is ours to keep: the worker records every
attempt in the delivery log, retries with backoff, and gives up visibly.

.. code-block:: python

    from celery import shared_task
    from flask_openai_webhooks.celery import enqueue, webhook_task

    @webhook_task(shared_task)
    def import_batch(event, webhook_id, **extra):
        ...

    enqueue("batch.completed", task=import_batch)

The message carries the ``webhook-id``, the blueprint's name and the task's
key in the delivery record, never the payload: the worker parses the body
kept in the blueprint's store again, so a model fixed by an upgrade
applies, and the store is the one place that says whether the task already
succeeded.

How the guarantee is kept:

-   The publishing receiver returns :data:`~flask_openai_webhooks.dispatch.QUEUED`,
    so its entry in the delivery record is ``queued`` and neither OpenAI's
    retry nor a replay publishes again (``replay --force`` does).
-   The worker waits until the request that published has finished writing
    the record, then claims the task's entry with a lease
    (:meth:`~flask_openai_webhooks.stores.DeliveryStore.claim_task`), skips
    it if it succeeded, postpones it if another worker holds the lease, and
    settles it with
    :meth:`~flask_openai_webhooks.stores.DeliveryStore.finish_task`.
-   Tasks acknowledge their message after they ran (``acks_late``) and give
    it back when the worker process is killed (``reject_on_worker_lost``).

The package never imports this module by itself, so it works without
Celery installed.
"""

from __future__ import annotations

import collections.abc as c
import contextvars
import dataclasses
import logging
import random
import time
import typing as t

from blinker import ANY
from flask import current_app
from flask import Flask
from flask import has_app_context

from . import tracing
from .attempt import result_for
from .dispatch import notify
from .dispatch import QUEUED
from .errors import PermanentFailure
from .errors import RetryLater
from .errors import StoreError
from .errors import WebhookPayloadError
from .models import parse_event
from .models import WebhookEvent
from .signals import EVENT_SIGNALS
from .signals import match_event_types
from .signals import webhook_failed
from .state import get_state
from .state import WebhookState
from .stores import DELIVERY_STATUSES
from .stores import DeliveryRecord
from .stores import DeliveryStore
from .stores import ReceiverResult
from .stores.memory import MemoryStore

try:
    from celery import Celery
    from celery import shared_task
    from celery import Task
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "flask_openai_webhooks.celery needs Celery:"
        " pip install 'Flask-OpenAI-Webhooks[celery]'"
    ) from e

__all__ = [
    "CelerySetupError",
    "PublishError",
    "Publisher",
    "celery_init_app",
    "enqueue",
    "webhook_task",
]

logger = logging.getLogger(__name__.rpartition(".")[0])

#: Task options :func:`webhook_task` sets unless given: the message is
#: acknowledged after the task ran, and given back to the broker when the
#: process running it dies, so a killed worker loses nothing.
TASK_DEFAULTS: c.Mapping[str, t.Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
}
#: Failed runs retried before the task gives up (so ``max_retries + 1``
#: runs in all).
DEFAULT_MAX_RETRIES = 5
#: Seconds before the first retry; doubled for each further one.
DEFAULT_RETRY_BACKOFF = 5.0
#: The longest wait between two retries, in seconds; also the most a
#: :exc:`~flask_openai_webhooks.RetryLater` raised by a task waits.
DEFAULT_RETRY_BACKOFF_MAX = 600.0
#: Wait a random time between zero and the backoff (Celery's full
#: jitter), so tasks that failed together do not retry together.
DEFAULT_RETRY_JITTER = True
#: One reconnection when publishing: it repairs a pooled connection the
#: broker dropped (a restart), and fails in milliseconds when the broker
#: refuses connections, so a dead broker does not hold the request. A host
#: that does not answer at all costs Celery's ``broker_connection_timeout``
#: (4 s by default) per try.
PUBLISH_RETRY_POLICY: c.Mapping[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
#: ``Retry-After`` when the broker did not accept a message.
PUBLISH_RETRY_AFTER = 30
#: Transports that acknowledge a publish before the broker has the message
#: unless publisher confirms are on.
_AMQP_SCHEMES = frozenset(("amqp", "amqps", "pyamqp", "librabbitmq"))
#: Stores a worker in another process can share, for error messages.
_SHARED_STORES = (
    "'sqlite:///webhooks.db' (workers on the same machine), a 'redis://' URL,"
    " or a 'postgresql://' / 'mysql+pymysql://' URL"
)
#: Seconds a worker polls the record, in-process, for the request that
#: published to finish, before it postpones the task through the broker.
_SETTLE_POLL = 2.0
#: Seconds a worker waits before trying a task whose task lease another
#: worker holds, at most.
_MAX_POSTPONE = 10.0
#: Seconds added to a lease before a deadline built on it, for clock
#: differences between machines.
_GRACE = 1.0


class CelerySetupError(RuntimeError):
    """A configuration under which a task could run twice or be lost: the
    memory store with a worker in another process, or RabbitMQ without
    publisher confirms. The message names what to change."""


class PublishError(RetryLater):
    """The broker did not accept the task's message. The delivery is
    answered 503 with ``Retry-After`` and logged as failed, so OpenAI's
    retry publishes it again."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What :func:`webhook_task` knows about a task, beyond Celery's
    options."""

    fn: c.Callable[..., t.Any]
    name: str
    max_retries: int
    retry_backoff: float
    retry_backoff_max: float
    retry_jitter: bool
    #: Seconds of a task lease; ``None`` for the blueprint's
    #: ``OPENAI_WEBHOOK_LEASE``.
    lease: float | None

    def lease_for(self, state: WebhookState) -> float:
        return state.lease if self.lease is None else self.lease

    def backoff(self, failures: int) -> float:
        """Seconds before the retry that follows ``failures`` failed runs."""
        delay = min(
            self.retry_backoff_max, self.retry_backoff * 2 ** max(failures - 1, 0)
        )
        return random.uniform(0, delay) if self.retry_jitter else delay


#: Specs by ``id()`` of the object :func:`webhook_task` returned, which is
#: kept alive here so the id stays its own. Celery's task objects may be
#: lazy proxies; reading an attribute of one would finalize the Celery app
#: before it is configured, so :func:`enqueue` must not touch them.
_SPECS: dict[int, tuple[object, _Spec]] = {}
#: The same specs by task name, for a task object taken from the registry.
_SPECS_BY_NAME: dict[str, _Spec] = {}
#: One publisher per task, so connecting a task twice connects it once.
_PUBLISHERS: dict[int, Publisher] = {}


@dataclasses.dataclass(frozen=True)
class _Eager:
    app: Flask


#: Set while an eager task runs inside the request that published it: the
#: app that received the delivery, whichever app the Celery app's task
#: class pushes.
_EAGER: contextvars.ContextVar[_Eager | None] = contextvars.ContextVar(
    "flask_openai_webhooks_eager", default=None
)


# --------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for ``app``, as Flask's "Background Tasks with
    Celery" pattern does: tasks run inside ``app.app_context()``, settings
    come from ``app.config["CELERY"]``, and the Celery app is the default
    one (so ``shared_task`` tasks use it) and kept in
    ``app.extensions["celery"]``.

    One addition: with a RabbitMQ broker (``amqp://``), publisher confirms
    are turned on (``broker_transport_options = {"confirm_publish": True}``,
    kombu's documented option), so a delivery is answered 2xx only once
    RabbitMQ has the message.

    :raises CelerySetupError: ``confirm_publish`` was set to something else
        than ``True`` for a RabbitMQ broker.
    """

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(dict(app.config.get("CELERY", {})))
    conf = celery_app.conf
    if _is_amqp(conf):
        options = dict(conf.broker_transport_options or {})
        options.setdefault("confirm_publish", True)
        conf.broker_transport_options = options
        _require_confirms(conf)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def _broker_scheme(conf: t.Any) -> str:
    url = conf.broker_write_url or conf.broker_url or "amqp://"
    if not isinstance(url, str):  # a failover list
        url = next(iter(url), "amqp://")
    url = url.split(";", 1)[0]
    return str(url.split("://", 1)[0].split("+", 1)[0].lower())


def _is_amqp(conf: t.Any) -> bool:
    return _broker_scheme(conf) in _AMQP_SCHEMES


def _require_confirms(conf: t.Any) -> None:
    """Refuse an AMQP broker without publisher confirms: ``basic.publish``
    returns before RabbitMQ has the message, so the delivery could be
    answered 2xx for a message RabbitMQ then drops."""
    scheme = _broker_scheme(conf)
    if scheme not in _AMQP_SCHEMES:
        return
    if scheme == "librabbitmq":
        raise CelerySetupError(
            "the librabbitmq transport has no publisher confirms; use an"
            " 'amqp://' broker URL (py-amqp) with"
            " broker_transport_options={'confirm_publish': True}"
        )
    options = conf.broker_transport_options or {}
    if options.get("confirm_publish") is not True:
        raise CelerySetupError(
            "a RabbitMQ broker without publisher confirms may lose a message"
            " after the delivery was answered 2xx: set the Celery setting"
            " broker_transport_options={'confirm_publish': True}"
            " (celery_init_app does it for you)"
        )


def _check_setup(celery_app: t.Any, state: WebhookState) -> None:
    """Refuse, at publish time, what cannot work with a worker."""
    if isinstance(state.store, MemoryStore):
        raise CelerySetupError(
            f"OpenAI webhook blueprint {state.name!r} uses the memory store,"
            " which a Celery worker in another process cannot read: set"
            f" OPENAI_WEBHOOK_STORE to {_SHARED_STORES}. (With"
            " task_always_eager, as in tests, every store works.)"
        )
    _require_confirms(celery_app.conf)


# --------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------

_OWN_OPTIONS = (
    "max_retries",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "lease",
)
_REFUSED_OPTIONS = {
    "bind": "webhook_task binds the task itself",
    "autoretry_for": "webhook_task retries failures itself; use max_retries,"
    " retry_backoff, retry_backoff_max and retry_jitter",
    "retry_kwargs": "webhook_task retries failures itself; use max_retries,"
    " retry_backoff, retry_backoff_max and retry_jitter",
}

F = t.TypeVar("F", bound=c.Callable[..., t.Any])


def webhook_task(celery_app: t.Any, **task_options: t.Any) -> c.Callable[[F], t.Any]:
    """Turn ``fn(event, webhook_id, **extra)`` into a Celery task for
    :func:`enqueue`.

    .. code-block:: python

        @webhook_task(celery_app, max_retries=8)
        def import_batch(event, webhook_id, **extra):
            ...

    The task body gets the typed event, parsed again from the body kept in
    the delivery log, and ``webhook_id`` and ``blueprint`` (the registered
    name of the blueprint that received it) as keywords. It runs inside
    the Flask app context (Flask's task class, see :func:`celery_init_app`).
    Raise :exc:`~flask_openai_webhooks.RetryLater` to be retried after its
    ``after`` seconds (at most ``retry_backoff_max``), and
    :exc:`~flask_openai_webhooks.PermanentFailure` to give up at once; any
    other exception is retried with backoff. Every failed run is in the
    delivery log; when the retries are used up the delivery is ``gave_up``,
    ``webhook_failed`` is sent in the worker, and
    ``flask openai-webhooks replay`` publishes it again.

    :param celery_app: The Celery app, or ``celery.shared_task`` for tasks
        that use whichever Celery app is current (Flask's factory pattern).
    :param task_options: Celery task options. Defaults:
        ``acks_late=True``, ``reject_on_worker_lost=True``,
        ``ignore_result=True``. Handled here: ``max_retries`` (failed runs
        retried, default :data:`DEFAULT_MAX_RETRIES`), ``retry_backoff``
        (seconds before the first retry, doubled each time, default
        :data:`DEFAULT_RETRY_BACKOFF`), ``retry_backoff_max`` (default
        :data:`DEFAULT_RETRY_BACKOFF_MAX`), ``retry_jitter`` (default
        ``True``), ``lease`` (seconds a run holds its claim, default the
        blueprint's ``OPENAI_WEBHOOK_LEASE``; keep it above the task's
        longest run).
    :raises TypeError: ``bind``, ``autoretry_for`` or ``retry_kwargs`` is
        given, or ``celery_app`` is neither a Celery app nor
        ``shared_task``.
    """
    if not (isinstance(celery_app, Celery) or celery_app is shared_task):
        raise TypeError(
            "webhook_task() takes the Celery app (or celery.shared_task):"
            " write @webhook_task(celery_app), with the parentheses"
        )
    for option, why in _REFUSED_OPTIONS.items():
        if option in task_options:
            raise TypeError(f"webhook_task() does not take {option}=: {why}")
    options = dict(task_options)
    own = {key: options.pop(key) for key in _OWN_OPTIONS if key in options}
    max_retries = own.get("max_retries", DEFAULT_MAX_RETRIES)
    lease = own.get("lease")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, not {max_retries!r}")
    if lease is not None and not lease > 0:
        raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")

    def decorator(fn: F) -> t.Any:
        name = options.get("name") or f"{fn.__module__}.{fn.__qualname__}"
        spec = _Spec(
            fn=fn,
            name=name,
            max_retries=max_retries,
            retry_backoff=float(own.get("retry_backoff", DEFAULT_RETRY_BACKOFF)),
            retry_backoff_max=float(
                own.get("retry_backoff_max", DEFAULT_RETRY_BACKOFF_MAX)
            ),
            retry_jitter=bool(own.get("retry_jitter", DEFAULT_RETRY_JITTER)),
            lease=None if lease is None else float(lease),
        )

        def run(
            self: t.Any,
            webhook_id: str,
            blueprint: str,
            key: str,
            published_at: float,
            failures: int = 0,
            trace: dict[str, str] | None = None,
            **extra: t.Any,
        ) -> None:
            _run(
                self,
                spec,
                _Message(
                    webhook_id, blueprint, key, published_at, failures, trace or {}
                ),
            )

        run.__module__ = fn.__module__
        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__doc__ = fn.__doc__
        factory = celery_app.task if isinstance(celery_app, Celery) else celery_app
        task = factory(
            **{
                **TASK_DEFAULTS,
                **options,
                "name": name,
                "bind": True,
                "max_retries": max_retries,
            }
        )(run)
        _SPECS[id(task)] = (task, spec)
        _SPECS_BY_NAME[name] = spec
        return task

    return decorator


@dataclasses.dataclass(frozen=True)
class _Message:
    webhook_id: str
    blueprint: str
    key: str
    #: ``time.time()`` in the process that published, just before.
    published_at: float
    #: Failed runs so far in this chain of retries.
    failures: int
    #: The trace context of the delivery (W3C ``traceparent``), empty when
    #: tracing is off, so the task's span continues the delivery's trace.
    trace: dict[str, str] = dataclasses.field(default_factory=dict)

    def kwargs(self, **changes: t.Any) -> dict[str, t.Any]:
        return dataclasses.asdict(dataclasses.replace(self, **changes))


def _flask_app() -> Flask:
    eager = _EAGER.get()
    if eager is not None:
        return eager.app
    if not has_app_context():
        raise CelerySetupError(
            "a webhook task ran outside a Flask app context: create the"
            " Celery app with flask_openai_webhooks.celery.celery_init_app(app)"
            " (Flask's 'Background Tasks with Celery' pattern), whose task"
            " class pushes app.app_context()"
        )
    return current_app._get_current_object()  # type: ignore[attr-defined, no-any-return]


def _run(task: t.Any, spec: _Spec, message: _Message) -> None:
    if _EAGER.get() is not None or task.request.is_eager:
        _run_inline(spec, message)
        return
    try:
        app = _flask_app()
        state = get_state(app, message.blueprint)
    except (CelerySetupError, LookupError) as e:
        # A worker deployed wrong: keep the message until it is fixed.
        logger.error("task %s cannot run: %s; retrying in 60 s", spec.name, e)
        raise _postpone(task, message, 60.0) from e
    _Worker(task, spec, message, app, state).run()


def _run_inline(spec: _Spec, message: _Message) -> None:
    """Eager mode (``task_always_eager``, common in tests): run the body in
    the request that published, as a receiver. Its exception is the
    receiver's, so the blueprint answers as for any receiver and the
    attempt records the result; Celery's retries do not apply."""
    app = _flask_app()
    state = get_state(app, message.blueprint)
    record = state.store.get(message.webhook_id)
    if record is None:
        raise LookupError(
            f"no delivery with webhook-id {message.webhook_id!r} in the log of"
            f" blueprint {state.name!r}"
        )
    event = parse_event(record.body)
    app.ensure_sync(spec.fn)(
        event, webhook_id=message.webhook_id, blueprint=message.blueprint
    )


def _postpone(task: t.Any, message: _Message, countdown: float) -> BaseException:
    """A Celery retry that is not a failed run: the failure count stays."""
    exc: BaseException = task.retry(
        kwargs=message.kwargs(),
        countdown=countdown,
        max_retries=task.request.retries + 1,
    )
    return exc


def _finished_after(record: DeliveryRecord, published_at: float) -> bool:
    """Whether an attempt (a delivery or a replay) ended after
    ``published_at``: the one that published has written its results then.
    Both times come from the clock of the process that published."""
    return any(
        entry.source != "task"
        and entry.result in DELIVERY_STATUSES
        and entry.at >= published_at
        for entry in record.history
    )


def _request_side(result: ReceiverResult) -> bool:
    """Whether a failed result was written by the request that tried to
    publish (the broker refused, the set-up was refused), not by a run."""
    return (result.error_type or "").startswith(__name__ + ".")


class _Worker:
    """One delivery of one task message to a worker."""

    def __init__(
        self,
        task: t.Any,
        spec: _Spec,
        message: _Message,
        app: Flask,
        state: WebhookState,
    ) -> None:
        self.task = task
        self.spec = spec
        self.message = message
        self.app = app
        self.state = state
        self.store: DeliveryStore = state.store
        self.lease = spec.lease_for(state)

    def run(self) -> None:
        message = self.message
        try:
            record = self._wait_for_publisher()
            if record is None:
                return
            claim = self.store.claim_task(
                message.webhook_id, message.key, lease=self.lease
            )
        except LookupError:
            self._missing()
            return
        except StoreError as e:
            delay = max(1.0, self.spec.backoff(1))
            logger.warning(
                "task %s of webhook-id %s: the delivery store failed (%s);"
                " trying again in %.0f s",
                self.spec.name,
                message.webhook_id,
                e,
                delay,
            )
            raise _postpone(self.task, message, delay) from e
        if claim.status == "done":
            logger.info(
                "task %s of webhook-id %s already succeeded; skipped",
                self.spec.name,
                message.webhook_id,
            )
            return
        if claim.status == "in_flight":
            delay = min(max(self.lease / 4, 0.5), _MAX_POSTPONE)
            logger.info(
                "task %s of webhook-id %s is running in another worker;"
                " trying again in %.1f s",
                self.spec.name,
                message.webhook_id,
                delay,
            )
            raise _postpone(self.task, message, delay)
        assert claim.record is not None
        current = claim.record.receiver(message.key)
        if current is not None and (
            current.outcome == "gave_up" or _request_side(current)
        ):
            # Gave up (only a replay runs it again), or the request reported
            # this message as not published: OpenAI's retry publishes anew.
            logger.info(
                "task %s of webhook-id %s is %s; this message is dropped",
                self.spec.name,
                message.webhook_id,
                current.outcome,
            )
            self._settle(claim.token, current)
            return
        self._run_body(claim.token, claim.record)

    def _wait_for_publisher(self) -> DeliveryRecord | None:
        """The record once the attempt that published has ended, so that its
        own write of ``queued`` can never replace this run's result.

        Waits in-process for a short while, then postpones through the
        broker. Past the publisher's lease (it died, or overran it) the
        task runs anyway: running beats losing it.
        """
        message = self.message
        deadline = message.published_at + self.state.lease + _GRACE
        poll_until = time.monotonic() + _SETTLE_POLL
        pause = 0.002
        while True:
            record = self.store.get(message.webhook_id)
            if record is None:
                raise LookupError(message.webhook_id)
            if _finished_after(record, message.published_at):
                return record
            now = time.time()
            if now >= deadline:
                logger.warning(
                    "task %s of webhook-id %s: the request that published it"
                    " did not finish within its lease; running it anyway",
                    self.spec.name,
                    message.webhook_id,
                )
                return record
            if time.monotonic() >= poll_until:
                raise _postpone(self.task, message, min(deadline - now, _MAX_POSTPONE))
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _missing(self) -> None:
        message = self.message
        logger.error(
            "task %s: no delivery with webhook-id %s in the log of blueprint %r"
            " (%s); dropped. Was it pruned, or does the worker use another"
            " store than the web app? The memory store cannot be shared: set"
            " OPENAI_WEBHOOK_STORE to %s",
            self.spec.name,
            message.webhook_id,
            self.state.name,
            self.store.describe(),
            _SHARED_STORES,
        )

    def _run_body(self, token: str, record: DeliveryRecord) -> None:
        message = self.message
        started = time.monotonic()
        try:
            event = parse_event(record.body)
            with tracing.task_span(
                tracing.TASK_SPAN,
                message.trace,
                {
                    tracing.WEBHOOK_ID: message.webhook_id,
                    tracing.RECEIVER: message.key,
                    tracing.BLUEPRINT: message.blueprint,
                },
                state=self.state,
            ):
                self.app.ensure_sync(self.spec.fn)(
                    event, webhook_id=message.webhook_id, blueprint=message.blueprint
                )
        except Exception as e:
            self._failed(token, record, started, e)
        except BaseException as e:
            # A hard stop (a cold shutdown): release the claim now, so the
            # message the broker gives back need not wait for the lease.
            try:
                self.store.finish_task(
                    message.webhook_id,
                    token,
                    self._result(record, started, e, outcome="failed"),
                    retention=self.state.retention,
                )
            except Exception:
                logger.exception(
                    "could not record the interrupted task %s of webhook-id %s",
                    self.spec.name,
                    message.webhook_id,
                )
            raise
        else:
            self._settle(token, self._result(record, started))

    def _result(
        self,
        record: DeliveryRecord,
        started: float,
        error: BaseException | None = None,
        outcome: t.Any = None,
    ) -> ReceiverResult:
        """The run's result; ``attempts`` counts runs, not the hand-off
        that wrote ``queued``."""
        key = self.message.key
        result = result_for(
            key, previous=record, started=started, error=error, outcome=outcome
        )
        earlier = record.receiver(key)
        if earlier is not None and earlier.outcome == "queued":
            result = dataclasses.replace(result, attempts=max(result.attempts - 1, 1))
        return result

    def _settle(self, token: str, result: ReceiverResult) -> None:
        """Write the result; a store that keeps failing makes Celery retry
        the task, which runs it again: running twice beats losing it."""
        message = self.message
        for pause in (0.1, 0.5, 2.0, None):
            try:
                self.store.finish_task(
                    message.webhook_id,
                    token,
                    result,
                    retention=self.state.retention,
                )
                return
            except StoreError as e:
                if pause is None:
                    logger.error(
                        "could not record the %s run of task %s for webhook-id"
                        " %s: %s; it will run again",
                        result.outcome,
                        self.spec.name,
                        message.webhook_id,
                        e,
                    )
                    delay = max(1.0, self.spec.backoff(1))
                    raise _postpone(self.task, message, delay) from e
                time.sleep(pause)

    def _failed(
        self, token: str, record: DeliveryRecord, started: float, error: Exception
    ) -> None:
        message = self.message
        spec = self.spec
        permanent = isinstance(error, (PermanentFailure, WebhookPayloadError))
        exhausted = not permanent and message.failures >= spec.max_retries
        result = self._result(
            record,
            started,
            error,
            outcome="gave_up" if permanent or exhausted else None,
        )
        self._settle(token, result)
        if permanent or exhausted:
            if exhausted:
                logger.error(
                    "task %s gave up on webhook-id %s after %d runs;"
                    " 'flask openai-webhooks replay %s' runs it again",
                    spec.name,
                    message.webhook_id,
                    message.failures + 1,
                    message.webhook_id,
                    exc_info=error,
                )
            else:
                logger.warning(
                    "task %s gave up on webhook-id %s: %s",
                    spec.name,
                    message.webhook_id,
                    error,
                )
            self._report(record, error)
            return
        if isinstance(error, RetryLater):
            delay = min(float(error.after), spec.retry_backoff_max)
        else:
            delay = spec.backoff(message.failures + 1)
        logger.warning(
            "task %s failed on webhook-id %s (run %d of at most %d): %s;"
            " retrying in %.1f s",
            spec.name,
            message.webhook_id,
            message.failures + 1,
            spec.max_retries + 1,
            error,
            delay,
        )
        raise self.task.retry(
            kwargs=message.kwargs(failures=message.failures + 1),
            countdown=delay,
            max_retries=self.task.request.retries + 1,
            exc=error,
        )

    def _report(self, record: DeliveryRecord, error: Exception) -> None:
        try:
            event: WebhookEvent | None = parse_event(record.body)
        except WebhookPayloadError:
            event = None
        notify(
            webhook_failed,
            self.app,
            self.app.ensure_sync,
            event=event,
            webhook_id=self.message.webhook_id,
            blueprint=self.message.blueprint,
            receiver=self.spec.fn,
            exception=error,
        )


# --------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------


def _spec_of(task: object) -> _Spec:
    found = _SPECS.get(id(task))
    if found is not None and found[0] is task:
        return found[1]
    # A task object taken from Celery's registry: its name is safe to read.
    name = getattr(task, "name", None) if isinstance(task, Task) else None
    if isinstance(name, str) and name in _SPECS_BY_NAME:
        return _SPECS_BY_NAME[name]
    raise TypeError(
        "enqueue(task=...) takes a task made with"
        " flask_openai_webhooks.celery.webhook_task"
    )


class Publisher:
    """The receiver :func:`enqueue` connects: it publishes the task and
    returns :data:`~flask_openai_webhooks.dispatch.QUEUED`.

    Its ``__module__`` and ``__qualname__`` are the task function's, so its
    receiver key (``batch.completed:yourapp.tasks.import_batch``) names the
    task; the worker settles the same entry of the delivery record.
    """

    def __init__(self, task: t.Any, spec: _Spec) -> None:
        self.task = task
        self.spec = spec
        self.__module__ = spec.fn.__module__
        self.__qualname__ = spec.fn.__qualname__

    def __repr__(self) -> str:
        return f"<Publisher of task {self.spec.name!r}>"

    def key(self, event_type: str) -> str:
        """The task's key in the delivery record of an ``event_type``
        delivery."""
        return f"{event_type}:{self.__module__}.{self.__qualname__}"

    def __call__(
        self,
        sender: Flask,
        /,
        *,
        event: WebhookEvent,
        webhook_id: str,
        blueprint: str,
        **extra: t.Any,
    ) -> t.Any:
        task = self.task
        message = _Message(
            webhook_id=webhook_id,
            blueprint=blueprint,
            key=self.key(event.type),
            published_at=0.0,
            failures=0,
        )
        celery_app = task.app
        if celery_app.conf.task_always_eager:
            token = _EAGER.set(_Eager(sender))
            try:
                task.apply(kwargs=message.kwargs(published_at=time.time()), throw=True)
            finally:
                _EAGER.reset(token)
            return None
        state = get_state(sender, blueprint)
        _check_setup(celery_app, state)
        if self._retry_pending(state, message):
            return QUEUED
        published_at = time.time()
        try:
            task.apply_async(
                kwargs=message.kwargs(
                    published_at=published_at, trace=tracing.inject(state)
                ),
                retry=True,
                retry_policy=dict(PUBLISH_RETRY_POLICY),
            )
        except Exception as e:
            raise PublishError(
                PUBLISH_RETRY_AFTER,
                f"the broker did not accept task {self.spec.name}:"
                f" {type(e).__name__}: {str(e)[:200]}",
            ) from e
        return QUEUED

    def _retry_pending(self, state: WebhookState, message: _Message) -> bool:
        """Whether a failed run of this task has a Celery retry on its way.

        A retry from OpenAI or a replay of a delivery whose task failed
        must not publish a second message: the retry already will run it,
        and the request's ``queued`` could land after the retry's success.
        After the longest retry delay plus a lease the retry is presumed
        lost (a broker that lost it), and the task is published again.
        """
        try:
            record = state.store.get(message.webhook_id)
        except StoreError as e:
            raise PublishError(5, "the delivery store is unavailable") from e
        earlier = None if record is None else record.receiver(message.key)
        if earlier is None or earlier.outcome not in ("failed", "retry_later"):
            return False
        if _request_side(earlier):
            return False
        window = self.spec.retry_backoff_max + self.spec.lease_for(state) + _GRACE
        return time.time() < earlier.at + window


def enqueue(*patterns: str, task: t.Any, sender: t.Any = ANY) -> Publisher:
    """Publish ``task`` for every delivery of a matching event type.

    .. code-block:: python

        enqueue("batch.completed", "batch.failed", task=import_batch)

    The delivery is answered 2xx only once the broker accepted the message
    (with RabbitMQ, publisher confirms must be on; see
    :func:`celery_init_app`); a broker that refuses it makes the answer 503
    with ``Retry-After``, and OpenAI's retry publishes it again. The task's
    entry in the delivery record reads ``queued`` until a worker settles it.

    :param patterns: Event types or :mod:`fnmatch` patterns, checked as by
        :func:`~flask_openai_webhooks.receiver`.
    :param task: A task made with :func:`webhook_task`.
    :param sender: Only deliveries to this app. Defaults to any app.
    :returns: The connected receiver.
    :raises ValueError: A pattern matches no known type.
    :raises TypeError: ``task`` was not made with :func:`webhook_task`.
    """
    if patterns and callable(patterns[0]):
        raise TypeError(
            "enqueue() takes event types and a task:"
            " enqueue('batch.completed', task=import_batch)"
        )
    event_types = match_event_types(*patterns)
    spec = _spec_of(task)
    publisher = _PUBLISHERS.get(id(task))
    if publisher is None or publisher.task is not task:
        publisher = _PUBLISHERS[id(task)] = Publisher(task, spec)
    for event_type in event_types:
        EVENT_SIGNALS[event_type].connect(publisher, sender=sender, weak=False)
    return publisher
