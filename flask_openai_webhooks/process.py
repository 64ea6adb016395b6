"""Process one verified delivery: claim it, run its receivers, settle it.

The blueprint (a POST from OpenAI), the replay (``flask openai-webhooks
replay``) and reconciliation all go through :func:`process`, so a replay
and a real retry use the same lease and can never run the same receiver at
once. It returns an :class:`Outcome` by name; turning it into an HTTP
answer is the blueprint's job alone.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import typing as t

from .attempt import Attempt
from .dispatch import dispatch
from .dispatch import DispatchResult
from .dispatch import has_any_receiver
from .dispatch import Wrap
from .errors import StoreError
from .models import object_id_of
from .models import WebhookEvent
from .stores import Delivery
from .stores import DeliveryStatus
from .stores import DeliveryStore
from .stores import derive_status
from .stores import merge_results
from .stores import ReceiverResult
from .stores import REPLAY_SKIPS
from .stores import SETTLED_OUTCOMES
from .stores import Source

if t.TYPE_CHECKING:
    from .observe import Observer
    from .state import WebhookState

logger = logging.getLogger(__name__.rpartition(".")[0])

#: Every way a delivery can end, with the HTTP status it is answered with.
#: 2xx tells OpenAI to stop; anything else makes it retry.
OUTCOME_STATUS: t.Mapping[str, int] = {
    "processed": 200,
    "duplicate": 200,
    "unhandled": 200,
    "in_flight": 409,
    "retry_later": 503,
    "receiver_failed": 500,
    "store_unavailable": 503,
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How processing a delivery ended."""

    #: A key of :data:`OUTCOME_STATUS`.
    name: str
    #: The delivery's status in the log, when it was settled.
    status: DeliveryStatus | None = None
    #: Seconds for a ``Retry-After`` header, if any.
    retry_after: int | None = None
    #: The results of the receivers that ran in this attempt.
    results: tuple[ReceiverResult, ...] = ()

    @property
    def status_code(self) -> int:
        return OUTCOME_STATUS[self.name]


#: The receivers to skip when none is: a first attempt, or a forced replay.
_NOTHING: frozenset[str] = frozenset()

#: The event types :mod:`~flask_openai_webhooks.reconcile` can send: the
#: terminal states of what the API lists (batches, fine-tuning jobs) or
#: retrieves (responses registered with ``expect_response``).
RECONCILED_TYPES: frozenset[str] = frozenset(
    (
        "batch.cancelled",
        "batch.completed",
        "batch.expired",
        "batch.failed",
        "fine_tuning.job.cancelled",
        "fine_tuning.job.failed",
        "fine_tuning.job.succeeded",
        "response.cancelled",
        "response.completed",
        "response.failed",
        "response.incomplete",
    )
)


#: The log record that says reconciliation has sent events through a
#: store. Until it exists, deliveries skip the look-up of a reconciled
#: record, which would otherwise cost a store round trip each.
RECONCILE_MARKER = "reconcile:marker"
#: Its event type; :mod:`~flask_openai_webhooks.log` listings leave it out.
RECONCILE_MARKER_TYPE = "reconcile.marker"
#: Seconds a worker trusts that the marker is absent before asking the store
#: again. Reconciliation waits this long after writing the marker for the
#: first time, so that every worker knows before anything is sent.
RECONCILE_MARKER_TTL = 5.0


def reconciliation_in_use(state: WebhookState, store: DeliveryStore) -> bool:
    """Whether reconciliation ever sent events through ``state``'s store:
    known for good once seen; an absence is asked again after
    :data:`RECONCILE_MARKER_TTL` seconds."""
    checked = state._reconcile_checked
    if checked == math.inf:
        return True
    now = time.monotonic()
    if now - checked < RECONCILE_MARKER_TTL:
        return False
    if store.get(RECONCILE_MARKER) is not None:
        state._reconcile_checked = math.inf
        return True
    state._reconcile_checked = now
    return False


def reconciled_webhook_id(event_type: str, object_id: str) -> str:
    """The ``webhook-id`` under which reconciliation logs the event it sent
    for an object: one per (event type, object id), so that it is sent once.
    """
    return f"reconcile:{event_type}:{object_id}"


def delivery_of(
    event: WebhookEvent, body: bytes, webhook_id: str, source: Source = "delivery"
) -> Delivery:
    """What the log keeps of a verified delivery; never a signature."""
    return Delivery(
        webhook_id=webhook_id,
        event_type=event.type,
        event_id=event.id or "",
        object_id=object_id_of(event),
        created_at=event.created_at,
        body=body,
        received_at=time.time(),
        source=source,
    )


def process(
    sender: t.Any,
    state: WebhookState,
    event: WebhookEvent,
    delivery: Delivery,
    *,
    wrap: Wrap,
    force: bool = False,
    only: str | None = None,
) -> Outcome:
    """Claim ``delivery``, run the receivers it still needs, and record
    the outcome.

    :param sender: The app; receivers get it as their first argument.
    :param state: The receiving blueprint's settings.
    :param event: ``delivery``'s body, verified and parsed.
    :param wrap: Makes ``async def`` receivers callable (``app.ensure_sync``).
    :param force: Run every receiver, successful ones included (replay).
    :param only: Run only this receiver key (replay).
    """
    observer = state.observer
    if observer is None:
        return _process(sender, state, event, delivery, wrap, force, only, None)
    if observer.tracing is None:
        outcome = _process(sender, state, event, delivery, wrap, force, only, observer)
    else:
        with observer.dispatching(delivery) as span:
            outcome = _process(
                sender, state, event, delivery, wrap, force, only, observer
            )
            observer.dispatched(span, outcome)
    observer.processed(outcome)
    return outcome


def _process(
    sender: t.Any,
    state: WebhookState,
    event: WebhookEvent,
    delivery: Delivery,
    wrap: Wrap,
    force: bool,
    only: str | None,
    observer: Observer | None,
) -> Outcome:
    store = state.store if observer is None else observer.store_for(state.store)
    try:
        if delivery.source == "delivery":
            delivery = _after_reconcile(state, store, delivery)
        claim = store.claim(delivery, lease=state.lease, retention=state.retention)
    except StoreError:
        logger.exception("could not claim webhook-id %s", delivery.webhook_id)
        return Outcome("store_unavailable", retry_after=5)
    webhook_id = delivery.webhook_id
    if claim.status == "done":
        return Outcome("duplicate")
    if claim.status == "in_flight":
        return Outcome("in_flight", retry_after=math.ceil(state.lease))

    previous = claim.record
    if force or previous is None:
        skip = _NOTHING
    else:
        replay = delivery.source == "replay"
        skip = previous.keys_with(REPLAY_SKIPS if replay else SETTLED_OUTCOMES)
    attempt = Attempt(
        store,
        webhook_id,
        claim.token,
        previous=previous,
        source=delivery.source,
        retention=state.retention,
    )
    started = time.monotonic()
    try:
        result = dispatch(
            sender,
            event,
            webhook_id=webhook_id,
            blueprint=state.name,
            attempt=attempt,
            wrap=wrap,
            skip=skip,
            only=only,
            observer=observer,
        )
    except BaseException:
        attempt.abandon()
        raise
    elapsed = time.monotonic() - started
    if elapsed > state.lease:
        logger.warning(
            "receivers of webhook-id %s ran %.1f s, longer than"
            " OPENAI_WEBHOOK_LEASE (%s s): a retry may have run them concurrently;"
            " raise the lease or hand slow work to a queue",
            webhook_id,
            elapsed,
            state.lease,
        )
    outcome = _settle(sender, state, event, result, attempt)
    try:
        # Only a delivery was answered over HTTP; for a replay or a
        # reconciliation the store keeps the code last answered to OpenAI.
        attempt.finish(
            outcome.status or "failed",
            outcome.status_code if delivery.source == "delivery" else None,
        )
    except StoreError:
        # The receivers ran but that could not be written down. Ask for a
        # retry: running a receiver again beats losing the event.
        logger.exception("could not record the outcome of webhook-id %s", webhook_id)
        return Outcome("store_unavailable", retry_after=5, results=outcome.results)
    return outcome


def _after_reconcile(
    state: WebhookState, store: DeliveryStore, delivery: Delivery
) -> Delivery:
    """``delivery`` as the one reconciliation already sent for its (event
    type, object id), if it did; else unchanged.

    The real delivery then claims the reconciled record: a settled one
    answers ``duplicate`` (and counts the arrival there), a leased one
    ``in_flight``, and a failed one runs only the receivers that have not
    succeeded. One ``get`` for the types reconciliation covers, once the
    store holds the reconciliation marker (see
    :func:`reconciliation_in_use`), so that every worker sees what any
    other reconciled.
    """
    object_id = delivery.object_id
    if object_id is None or delivery.event_type not in RECONCILED_TYPES:
        return delivery
    if not reconciliation_in_use(state, store):
        return delivery
    reconciled = reconciled_webhook_id(delivery.event_type, object_id)
    if store.get(reconciled) is None:
        return delivery
    logger.info(
        "webhook-id %s (%s of %s) was already reconciled: processed as %s",
        delivery.webhook_id,
        delivery.event_type,
        object_id,
        reconciled,
    )
    return dataclasses.replace(delivery, webhook_id=reconciled)


def _settle(
    sender: t.Any,
    state: WebhookState,
    event: WebhookEvent,
    result: DispatchResult,
    attempt: Attempt,
) -> Outcome:
    """Choose the delivery's status and outcome from its receivers'."""
    results = tuple(attempt.results)
    previous = attempt.previous
    if result.connected == 0:
        if not has_any_receiver(sender):
            logger.warning(
                "webhook-id %s (%s) arrived but no receiver at all is connected"
                " for this app: is the module with your receivers imported? It"
                " is logged as 'unhandled'; run 'flask openai-webhooks replay"
                " --unhandled' once receivers are connected",
                attempt.webhook_id,
                event.type,
            )
            return Outcome("unhandled", "unhandled", results=results)
        if previous is None:
            logger.info(
                "webhook-id %s: no receiver for %s", attempt.webhook_id, event.type
            )
        return Outcome("processed", "processed", results=results)
    if result.failures and state.on_error == "retry":
        retryable = result.retryable
        if retryable:
            after = result.retry_after
            if after is not None:
                return Outcome("retry_later", "failed", after, results)
            return Outcome("receiver_failed", "failed", results=results)
    if previous is None:
        # A first attempt: its results are the whole record.
        status = derive_status(results)
    else:
        status = derive_status(merge_results(previous.receivers, results))
    if status == "failed":
        # A failure acknowledged anyway (on_error="ack"), or one a targeted
        # replay did not re-run: OpenAI stops, and the log keeps it for a
        # replay.
        status = "gave_up"
    return Outcome("processed", status, results=results)
