"""The hooks through which a delivery reports to metrics and traces.

Each registered blueprint has an :class:`Observer` in ``state.observer``
when ``OPENAI_WEBHOOK_METRICS`` or ``OPENAI_WEBHOOK_TRACING`` is on, and
``None`` when both are off. The blueprint, :func:`~.process.process` and
:func:`~.dispatch.dispatch` check that once per step and call it at the
points that already exist (a refusal, an answer, a receiver's result), so
with both off a delivery allocates nothing for them and neither
``prometheus_client`` nor ``opentelemetry`` is ever imported.

Metrics live in :mod:`.metrics`, spans in :mod:`.tracing`; this module only
says when each is told what. No Flask import.
"""

from __future__ import annotations

import time
import typing as t

from . import tracing as spans
from .stores.memory import MemoryStore

if t.TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .dispatch import Failure
    from .errors import WebhookError
    from .metrics import InstrumentedStore
    from .metrics import Metrics
    from .models import WebhookEvent
    from .process import Outcome
    from .stores import Delivery
    from .stores import DeliveryStore
    from .stores import ReceiverResult
    from .tracing import Active
    from .tracing import Root
    from .tracing import Tracing
    from .verify import Verified

#: Outcomes whose answer is a server-side failure (5xx): their dispatch
#: span is an error. ``retry_later`` (a receiver's own request) and the
#: 4xx ``in_flight`` are not.
_ERROR_OUTCOMES = frozenset(("failed", "store_unavailable"))


def outcome_label(outcome: Outcome) -> str:
    """The ``outcome`` label and span attribute of a processed delivery:
    the :class:`~.process.Outcome` name, except ``failed`` for a receiver's
    failure (``receiver_failed``) and ``gave_up`` for a delivery
    acknowledged although a receiver gave up or failed."""
    name = outcome.name
    if name == "receiver_failed":
        return "failed"
    if name == "processed" and outcome.status == "gave_up":
        return "gave_up"
    return name


def observer_for(name: str, *, metrics: object, tracing: object) -> Observer | None:
    """The observer of the blueprint registered as ``name``, from the
    ``OPENAI_WEBHOOK_METRICS`` and ``OPENAI_WEBHOOK_TRACING`` settings, or
    ``None`` when both are off.

    :raises RuntimeError: A setting is invalid, or the package it needs is
        not installed; the message says what to install.
    """
    metrics = _switch("METRICS", metrics)
    tracing = _switch("TRACING", tracing)
    recorder: Metrics | None = None
    if metrics is not None and metrics is not False:
        try:
            from . import metrics as prometheus
        except ImportError as e:
            if e.name is None or not e.name.startswith("prometheus_client"):
                raise
            raise RuntimeError(
                "OPENAI_WEBHOOK_METRICS is on but prometheus_client is not"
                " installed: pip install 'Flask-OpenAI-Webhooks[prometheus]'"
            ) from None
        registry = prometheus.registry_of(metrics)
        if registry is not None:
            recorder = prometheus.metrics_for(name, registry)
    tracer = spans.tracing_of(tracing)
    if recorder is None and tracer is None:
        return None
    return Observer(name, recorder, tracer)


#: Text that turns a switch off or on, as it comes from the environment
#: (``FLASK_OPENAI_WEBHOOK_METRICS=false`` is JSON-decoded by
#: ``from_prefixed_env``; the plain text forms are accepted too).
_OFF = frozenset(("", "0", "false", "no", "off"))
_ON = frozenset(("1", "true", "yes", "on"))


def _switch(key: str, value: object) -> object:
    """A setting's value with ``"false"``, ``"off"``, ``"0"``... read as
    ``False`` and ``"true"``, ``"on"``, ``"1"``... as ``True``, so that
    turning a feature off by text never turns it on.

    :raises RuntimeError: Any other text.
    """
    if not isinstance(value, str):
        return False if value == 0 and not isinstance(value, bool) else value
    word = value.strip().lower()
    if word in _OFF:
        return False
    if word in _ON:
        return True
    raise RuntimeError(
        f"OPENAI_WEBHOOK_{key} must be true or false (or, in Python, the object"
        f" to report to), not {value!r}"
    )


class Observer:
    """What one registered blueprint reports, and to what.

    :param blueprint: The registered name.
    :param metrics: ``None`` when metrics are off.
    :param tracing: ``None`` when tracing is off.
    """

    __slots__ = ("blueprint", "metrics", "tracing", "_store")

    def __init__(
        self, blueprint: str, metrics: Metrics | None, tracing: Tracing | None
    ) -> None:
        self.blueprint = blueprint
        self.metrics = metrics
        self.tracing = tracing
        self._store: InstrumentedStore | None = None

    def __repr__(self) -> str:
        on = [n for n in ("metrics", "tracing") if getattr(self, n) is not None]
        return f"<Observer {self.blueprint!r} {'+'.join(on)}>"

    def store_for(self, store: DeliveryStore) -> DeliveryStore:
        """The store the delivery path calls: ``store`` timed and counted
        when metrics are on, else ``store`` itself. The memory store is
        never timed: its calls are dict operations that cannot fail, whose
        timing would only add to their cost."""
        if self.metrics is None or isinstance(store, MemoryStore):
            return store
        proxy = self._store
        if proxy is None or proxy.wrapped is not store:
            from .metrics import InstrumentedStore

            proxy = self._store = InstrumentedStore(store, self.metrics)
        return proxy

    def watch(self) -> Watch:
        """Observe one request, from its first byte to its answer."""
        return Watch(self)

    # The spans: called only when :attr:`tracing` is on.

    def dispatching(self, delivery: Delivery) -> Active:
        """The ``openai.webhook.dispatch`` span around processing
        ``delivery``, active meanwhile."""
        tracing = self.tracing
        assert tracing is not None
        attributes = {
            spans.WEBHOOK_ID: delivery.webhook_id,
            spans.EVENT_ID: delivery.event_id,
            spans.EVENT_TYPE: delivery.event_type,
            spans.BLUEPRINT: self.blueprint,
            spans.SOURCE: delivery.source,
        }
        if delivery.object_id is not None:
            attributes[spans.OBJECT_ID] = delivery.object_id
        return tracing.active(spans.DISPATCH_SPAN, attributes)

    def dispatched(self, span: Span, outcome: Outcome) -> None:
        """The dispatch span ends with ``outcome``; a 5xx failure is an
        error."""
        assert self.tracing is not None
        label = outcome_label(outcome)
        span.set_attribute(spans.OUTCOME, label)
        if label in _ERROR_OUTCOMES:
            self.tracing.set_error(span, f"{label} (answered {outcome.status_code})")

    def receiving(self, key: str, event: WebhookEvent, webhook_id: str) -> Active:
        """The ``openai.webhook.receiver`` span around one receiver run,
        active meanwhile, so the receiver's own spans nest under it."""
        tracing = self.tracing
        assert tracing is not None
        return tracing.active(
            spans.RECEIVER_SPAN,
            {
                spans.RECEIVER: key,
                spans.WEBHOOK_ID: webhook_id,
                spans.EVENT_TYPE: event.type,
                spans.BLUEPRINT: self.blueprint,
            },
        )

    def ran(self, span: Span, result: ReceiverResult, failure: Failure | None) -> None:
        """A receiver ran in ``span``, with ``result``; ``failure`` when it
        raised, recorded with status ``ERROR``."""
        assert self.tracing is not None
        span.set_attribute(spans.OUTCOME, result.outcome)
        if failure is not None:
            self.tracing.fail(span, failure.exception)

    # The metrics.

    def processed(self, outcome: Outcome) -> None:
        """Processing ended with ``outcome``: count its receivers' results,
        of a delivery, a replay or reconciliation alike."""
        if self.metrics is not None and outcome.results:
            self.metrics.receivers(outcome.results)


class Watch:
    """One request through the blueprint: when it started, how it ended,
    and the spans it opened. A context manager around the view's work, made
    only when the blueprint has an observer. The request's figures are
    computed and noted when it exits, in one call, so its duration includes
    building the answer.
    """

    __slots__ = (
        "observer",
        "started",
        "verified_as",
        "event",
        "outcome",
        "error",
        "_root",
        "_verify",
    )

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.started = time.perf_counter()
        #: What :meth:`verified`, :meth:`answered` and :meth:`rejected` say.
        self.verified_as: Verified | None = None
        self.event: WebhookEvent | None = None
        self.outcome: Outcome | None = None
        self.error: WebhookError | None = None
        self._root: Root | None = None
        self._verify: Span | None = None
        tracing = observer.tracing
        if tracing is not None:
            attributes = {spans.BLUEPRINT: observer.blueprint}
            self._root = tracing.open_root(attributes)
            self._verify = tracing.start(spans.VERIFY_SPAN, attributes)

    def __enter__(self) -> Watch:
        return self

    def verified(self, verified: Verified, event: WebhookEvent) -> None:
        """The delivery is authentic and parsed."""
        self.verified_as = verified
        self.event = event
        span = self._verify
        if span is not None:
            self._verify = None
            span.set_attributes(
                {
                    spans.WEBHOOK_ID: verified.webhook_id,
                    spans.EVENT_TYPE: event.type,
                    spans.KEY_INDEX: verified.key_index,
                }
            )
            if event.id:
                span.set_attribute(spans.EVENT_ID, event.id)
            span.end()
        if self._root is not None:
            self._root.span.set_attributes(
                {
                    spans.WEBHOOK_ID: verified.webhook_id,
                    spans.EVENT_TYPE: event.type,
                }
            )

    def rejected(self, error: WebhookError) -> None:
        """The delivery is refused with ``error`` (a 4xx). Not an error of
        the server: no span is marked as one."""
        self.error = error
        span = self._verify
        if span is not None:
            self._verify = None
            span.set_attributes(
                {spans.OUTCOME: "rejected", spans.REJECTION_REASON: error.code}
            )
            span.end()
        if self._root is not None:
            self._root.span.set_attributes(
                {spans.OUTCOME: "rejected", spans.REJECTION_REASON: error.code}
            )

    def answered(self, outcome: Outcome) -> None:
        """A verified delivery was processed with ``outcome``."""
        self.outcome = outcome
        if self._root is not None:
            self._root.span.set_attribute(spans.OUTCOME, outcome_label(outcome))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: object,
    ) -> None:
        metrics = self.observer.metrics
        if metrics is not None:
            seconds = time.perf_counter() - self.started
            outcome = self.outcome
            verified = self.verified_as
            event = self.event
            if outcome is not None and verified is not None and event is not None:
                now = time.time()
                created_at = event.created_at
                metrics.delivery(
                    event.type,
                    outcome_label(outcome),
                    seconds,
                    key_index=verified.key_index,
                    age=None if created_at is None else max(0.0, now - created_at),
                    skew=now - verified.timestamp,
                    at=now,
                )
            elif self.error is not None:
                metrics.rejection(self.error.code, seconds)
        if self.observer.tracing is not None:
            self._close_spans(exc)

    def _close_spans(self, exc: BaseException | None) -> None:
        tracing = self.observer.tracing
        assert tracing is not None
        if self._verify is not None:
            # Only an unexpected exception leaves the verify span open.
            if exc is not None:
                tracing.fail(self._verify, exc)
            self._verify.end()
            self._verify = None
        if self._root is not None:
            if self.outcome is not None:
                status_code: int | None = self.outcome.status_code
            elif self.error is not None:
                status_code = self.error.status_code
            else:
                status_code = None
            self._root.close(status_code, exc)
            self._root = None
