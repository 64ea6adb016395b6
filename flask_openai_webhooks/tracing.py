"""OpenTelemetry spans of the webhook blueprints (extra ``[otel]``).

Turned on per blueprint with ``OPENAI_WEBHOOK_TRACING = True`` (the global
tracer provider, looked up at each span, so one set after the app is built
is used) or a :class:`~opentelemetry.trace.TracerProvider`. Each delivery
then has these spans, children of the active span (the server span of
OpenTelemetry's Flask instrumentation, when it is installed):

``openai.webhook.verify``
    Reading the body, checking the signature and parsing the event. A
    refused delivery sets ``openai.webhook.outcome`` to ``rejected`` and
    ``openai.webhook.rejection_reason`` to the error code; it is not an
    error of the server (4xx), so the status stays unset.
``openai.webhook.dispatch``
    Claiming the delivery, running its receivers, recording the outcome;
    the active span meanwhile. ``ERROR`` when the answer is a 5xx failure
    (``failed``, ``store_unavailable``).
``openai.webhook.receiver``
    One per receiver run, the active span while it runs, so the spans a
    receiver starts nest under it. An exception it raises is recorded on it,
    with status ``ERROR``.

When no span is active (no server instrumentation), an
``openai.webhook.delivery`` span of kind ``SERVER`` is started as their
parent, so one delivery is one trace.

:func:`inject` and :func:`task_span` carry the trace into work handed to a
task queue. Nothing here imports ``opentelemetry`` until a blueprint turns
tracing on: the task queue calls those two functions whatever the setting.
"""

from __future__ import annotations

import contextlib
import typing as t

if t.TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.trace import TracerProvider
    from opentelemetry.util.types import AttributeValue

    from .state import WebhookState

    Attributes = t.Mapping[str, AttributeValue]

#: Span names.
DELIVERY_SPAN = "openai.webhook.delivery"
VERIFY_SPAN = "openai.webhook.verify"
DISPATCH_SPAN = "openai.webhook.dispatch"
RECEIVER_SPAN = "openai.webhook.receiver"
#: For :func:`task_span`: a task handed to a queue by a receiver.
TASK_SPAN = "openai.webhook.task"

#: Attribute names. OpenTelemetry has no convention for webhooks.
WEBHOOK_ID = "openai.webhook.id"
EVENT_ID = "openai.webhook.event_id"
EVENT_TYPE = "openai.webhook.event_type"
OBJECT_ID = "openai.webhook.object_id"
OUTCOME = "openai.webhook.outcome"
BLUEPRINT = "openai.webhook.blueprint"
RECEIVER = "openai.webhook.receiver"
REJECTION_REASON = "openai.webhook.rejection_reason"
KEY_INDEX = "openai.webhook.key_index"
SOURCE = "openai.webhook.source"
HTTP_STATUS = "http.response.status_code"

#: What :func:`task_span` returns when tracing is off: one shared, reusable
#: object, so "off" allocates nothing.
NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext(None)

#: The tracing of the blueprint that turned it on last in this process:
#: what :func:`inject` and :func:`task_span` use when given no state.
_default: Tracing | None = None


def tracing_of(value: object) -> Tracing | None:
    """The tracing ``OPENAI_WEBHOOK_TRACING`` asks for: ``True`` for the
    global tracer provider, a ``TracerProvider`` as is, ``None`` or
    ``False`` for none.

    :raises RuntimeError: opentelemetry-api is not installed, or the value
        is none of the above.
    """
    global _default
    if value is None or value is False:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise RuntimeError(
            "OPENAI_WEBHOOK_TRACING is on but OpenTelemetry is not installed:"
            " pip install 'Flask-OpenAI-Webhooks[otel]'"
        ) from None
    if value is True:
        provider = None
    elif isinstance(value, trace.TracerProvider):
        provider = value
    else:
        raise RuntimeError(
            "OPENAI_WEBHOOK_TRACING must be True, False or an"
            f" opentelemetry.trace.TracerProvider, not {type(value).__name__}"
        )
    tracing = Tracing(provider)
    _default = tracing
    return tracing


class Tracing:
    """Starts the spans of one blueprint.

    :param provider: ``None`` for the global tracer provider.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        from opentelemetry import context
        from opentelemetry import propagate
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace import Status
        from opentelemetry.trace import StatusCode

        #: Without a provider, ``get_tracer`` returns a tracer that follows
        #: the global provider, even one set later.
        self.tracer = trace.get_tracer(
            __name__.rpartition(".")[0], tracer_provider=provider
        )
        # Bound once: a delivery looks nothing up in the modules.
        self._current_span = trace.get_current_span
        self._in_context = trace.set_span_in_context
        self.attach = context.attach
        self.detach = context.detach
        self._inject = propagate.inject
        self._extract = propagate.extract
        self._server = SpanKind.SERVER
        self._consumer = SpanKind.CONSUMER
        self._status = Status
        self._error = StatusCode.ERROR

    def start(self, name: str, attributes: Attributes | None = None) -> Span:
        """Start a child of the active span, without making it active:
        for a step that starts no spans of its own. End it with
        ``span.end()``."""
        return self.tracer.start_span(name, attributes=attributes)

    def active(self, name: str, attributes: Attributes | None = None) -> Active:
        """Start a child of the active span, to be the active one in a
        ``with`` block; an exception leaving the block is recorded, with
        status ``ERROR``."""
        return Active(self, self.tracer.start_span(name, attributes=attributes))

    def open_root(self, attributes: Attributes | None = None) -> Root | None:
        """Start an ``openai.webhook.delivery`` server span and make it
        active, if no span is active; else ``None``."""
        if self._current_span().get_span_context().is_valid:
            return None
        span = self.tracer.start_span(
            DELIVERY_SPAN, kind=self._server, attributes=attributes
        )
        return Root(self, span, self.attach(self._in_context(span)))

    def fail(self, span: Span, error: BaseException) -> None:
        """Record ``error`` on ``span`` and set its status to ``ERROR``."""
        span.record_exception(error)
        span.set_status(self._status(self._error, f"{type(error).__name__}: {error}"))

    def set_error(self, span: Span, description: str) -> None:
        span.set_status(self._status(self._error, description))

    def carrier(self) -> dict[str, str]:
        """The active context in the configured propagators' format (W3C
        ``traceparent`` by default)."""
        carrier: dict[str, str] = {}
        self._inject(carrier)
        return carrier

    def task(
        self,
        name: str,
        carrier: t.Mapping[str, str],
        attributes: Attributes | None = None,
    ) -> Active:
        """A span of kind ``CONSUMER``, child of the context in
        ``carrier``, to be the active one in a ``with`` block."""
        parent: Context = self._extract(carrier)
        span = self.tracer.start_span(
            name, context=parent, kind=self._consumer, attributes=attributes
        )
        return Active(self, span)


class Active:
    """Makes a started span the active one for a ``with`` block, records an
    exception that leaves it, and ends the span. What
    ``start_as_current_span`` does, in a plain class: it runs for every
    receiver of every delivery."""

    __slots__ = ("_tracing", "_span", "_token")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self._tracing = tracing
        self._span = span
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = self._tracing.attach(self._tracing._in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: object,
    ) -> None:
        try:
            if exc is not None:
                self._tracing.fail(self._span, exc)
        finally:
            self._tracing.detach(self._token)  # type: ignore[arg-type]
            self._span.end()


class Root:
    """The ``openai.webhook.delivery`` span this package started, active
    until :meth:`close`, because no server span was."""

    __slots__ = ("_tracing", "span", "_token")

    def __init__(self, tracing: Tracing, span: Span, token: object) -> None:
        self._tracing = tracing
        self.span = span
        self._token = token

    def close(self, status_code: int | None, error: BaseException | None) -> None:
        span = self.span
        try:
            if status_code is not None:
                span.set_attribute(HTTP_STATUS, status_code)
            if error is not None:
                self._tracing.fail(span, error)
            elif status_code is not None and status_code >= 500:
                # As for HTTP server spans: a 5xx is an error, a 4xx the
                # client's problem.
                self._tracing.set_error(span, f"answered {status_code}")
        finally:
            self._tracing.detach(self._token)  # type: ignore[arg-type]
            span.end()


def _tracing(state: WebhookState | None) -> Tracing | None:
    if state is None:
        return _default
    observer = state.observer
    return None if observer is None else observer.tracing


def inject(state: WebhookState | None = None) -> dict[str, str]:
    """The active trace context as a carrier to send along with a task
    (``{"traceparent": "00-..."}`` with the default propagators), or ``{}``
    when tracing is off.

    :param state: The blueprint the work comes from; when not given,
        tracing is on if a blueprint of this process turned it on.
    """
    tracing = _tracing(state)
    if tracing is None:
        return {}
    return tracing.carrier()


def task_span(
    name: str,
    carrier: t.Mapping[str, str] | None,
    attributes: Attributes | None = None,
    *,
    state: WebhookState | None = None,
) -> t.ContextManager[Span | None]:
    """Run a task in a span that continues the trace of the delivery that
    queued it: a child of the context in ``carrier`` (from :func:`inject`),
    active while the task runs, its exception recorded with status
    ``ERROR``. A no-op, yielding ``None``, when tracing is off.

    .. code-block:: python

        with task_span(TASK_SPAN, carrier, {WEBHOOK_ID: webhook_id}, state=state):
            run_the_task()

    :param state: The blueprint the task belongs to; see :func:`inject`.
    """
    tracing = _tracing(state)
    if tracing is None:
        return NO_SPAN
    return tracing.task(name, carrier or {}, attributes)
