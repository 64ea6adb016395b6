"""Catch up on deliveries that never arrived, through the API.

OpenAI retries a delivery for 72 hours and then drops it, and it has no API
to list or redeliver events. An endpoint that was down for a weekend, or a
secret rotated in the wrong order, loses them for good. What the API does
have is the objects the events are about: :func:`reconcile` lists the
batches and fine-tuning jobs that reached a terminal state in a window,
checks the responses registered with :func:`expect_response`, and for each
whose event the delivery log has not seen, sends that event through the
same machinery as a delivery: the receivers, the log, the replay.

.. code-block:: python

    from flask_openai_webhooks.reconcile import expect_response
    from flask_openai_webhooks.reconcile import reconcile

    response = client.responses.create(..., background=True)
    expect_response(response.id)  # responses cannot be listed

    # later, from a cron job (or ``flask openai-webhooks reconcile``)
    for sent in reconcile(since=time.time() - 24 * 3600):
        print(sent.event_type, sent.object_id, sent.outcome)

An event sent this way is logged under the ``webhook-id``
``reconcile:{event type}:{object id}``, with source ``reconcile``; its
event ID is ``evt_reconciled_...`` and its ``created_at`` the time the
object reached its state. Receivers can tell it apart with
:func:`is_reconciled` (``webhook_id`` is one of their keyword arguments).
When the real delivery arrives after all, it is processed as that record:
``duplicate`` once its receivers succeeded, so no receiver runs twice for
the same (event type, object ID); if one failed, only the receivers that
have not succeeded run. The real ``webhook-id`` gets no record of its own:
its arrivals are counted in the reconciled record's history.

What is not covered: the log is checked, then the event is sent, in two
store calls; a real delivery arriving for the same object in between (a
few milliseconds, right when reconciliation sends it) can run its
receivers a second time.

Importing this module does not import ``openai``; calling
:func:`reconcile` without a client does.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import hashlib
import json
import logging
import math
import time
import typing as t

from flask import current_app
from flask import Flask

from .models import parse_event
from .process import Outcome
from .process import process
from .process import RECONCILE_MARKER
from .process import RECONCILE_MARKER_TTL
from .process import RECONCILE_MARKER_TYPE
from .process import RECONCILED_TYPES
from .process import reconciled_webhook_id
from .state import get_state
from .state import WebhookState
from .stores import Delivery
from .stores import DeliveryRecord
from .stores import DeliveryStore
from .stores import type_matcher

if t.TYPE_CHECKING:  # pragma: no cover
    from openai import OpenAI

__all__ = [
    "ClientConfigError",
    "Reconciled",
    "expect_response",
    "is_reconciled",
    "reconcile",
]

logger = logging.getLogger(__name__.rpartition(".")[0])

#: Batches are listed newest first by creation time, but the window is
#: about when they finished. A batch finishes within its 24-hour
#: completion window (then it expires) plus the time to finalize or
#: cancel, so listing stops at the first batch created this long before
#: the window starts.
BATCH_LOOKBACK = 2 * 86400
#: The same for fine-tuning jobs, which have no deadline: a job that
#: waited or ran longer than this before finishing is not found.
FINE_TUNING_LOOKBACK = 30 * 86400
#: Slack between OpenAI's clock (when an object finished) and this
#: machine's (when its delivery arrived), for looking the delivery up.
CLOCK_SKEW = 86400
#: Objects per API page.
PAGE_SIZE = 100
#: The type of the log records :func:`expect_response` writes.
EXPECTED_RESPONSE_TYPE = "expect.response"

#: Earlier than any OpenAI object: a ``since`` below it was meant as a
#: duration, not as a Unix time.
_EARLIEST = 1_500_000_000
_PREFIX = "reconcile:"
_BATCH_STAMPS: c.Mapping[str, str] = {
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelled": "cancelled_at",
}
_FINE_TUNING_DONE = frozenset(("succeeded", "failed", "cancelled"))
_RESPONSE_DONE = frozenset(("completed", "failed", "cancelled", "incomplete"))
_INSTALL = "pip install 'Flask-OpenAI-Webhooks[openai]'"


class ClientConfigError(RuntimeError):
    """No usable OpenAI client: ``openai`` is not installed, or
    ``openai.OpenAI()`` could not be built from the environment.
    """


@dataclasses.dataclass(frozen=True)
class Reconciled:
    """An event whose delivery never arrived, sent (or, in a dry run, to
    be sent) by :func:`reconcile`.
    """

    event_type: str
    object_id: str
    #: When the object reached its state (Unix seconds): the event's
    #: ``created_at``.
    finished_at: int
    #: What it is logged under.
    webhook_id: str
    #: How processing it ended; ``None`` in a dry run.
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        """Whether it was sent and every receiver that ran succeeded."""
        return (
            self.outcome is not None
            and self.outcome.name in ("processed", "duplicate")
            and not any(
                r.outcome in ("failed", "retry_later", "gave_up")
                for r in self.outcome.results
            )
        )


@dataclasses.dataclass(frozen=True)
class _Finished:
    """An object found in its terminal state."""

    event_type: str
    object_id: str
    finished_at: int
    #: The record of the expectation it settles (responses only).
    expectation: str | None = None


def is_reconciled(webhook_id: str) -> bool:
    """Whether a receiver's ``webhook_id`` is that of an event sent by
    :func:`reconcile` rather than by OpenAI.
    """
    return webhook_id.startswith(_PREFIX)


def _state(app: Flask | None, blueprint: str | None) -> tuple[Flask, WebhookState]:
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    return app, get_state(app, blueprint)


# --- Expected responses ------------------------------------------------------


def _expectation_id(response_id: str) -> str:
    return f"expect:response:{response_id}"


def _expectation(response_id: str) -> Delivery:
    # The body is deliberately not an event (it has no "type"): a replay of
    # this record by mistake refuses to parse it instead of sending it to
    # webhook_received receivers.
    body = json.dumps({"expect": "response", "id": response_id}).encode()
    now = time.time()
    return Delivery(
        webhook_id=_expectation_id(response_id),
        event_type=EXPECTED_RESPONSE_TYPE,
        event_id="",
        object_id=response_id,
        created_at=int(now),
        body=body,
        received_at=now,
        source="reconcile",
    )


def expect_response(
    response_id: str, *, app: Flask | None = None, blueprint: str | None = None
) -> None:
    """Register a background response whose ``response.*`` event should
    arrive, so that :func:`reconcile` can check on it: the API cannot list
    responses, only retrieve one by ID.

    Call it right after ``client.responses.create(..., background=True)``.
    The ID is kept in the delivery log, so every worker's reconciliation
    finds it, as a record of type ``expect.response`` with status
    ``processing`` until reconciliation finds the response's event in the
    log or sends it; then it is ``processed``. It is kept for
    ``OPENAI_WEBHOOK_RETENTION`` like a delivery, so a response that has
    not finished by then is no longer checked.

    Registering the same ID again does nothing more.

    :raises ValueError: ``response_id`` is empty.
    :raises flask_openai_webhooks.StoreError: The store is down.
    """
    if not isinstance(response_id, str) or not response_id:
        raise ValueError("response_id must be a response ID, e.g. 'resp_...'")
    _, state = _state(app, blueprint)
    store = state.store
    claim = store.claim(
        _expectation(response_id), lease=state.lease, retention=state.retention
    )
    if claim.status == "acquired":
        # Released at once: the record is a note, not work in progress.
        store.finish(
            _expectation_id(response_id),
            claim.token,
            (),
            status="processing",
            status_code=None,
            source="reconcile",
            retention=state.retention,
        )


def _expectations(store: DeliveryStore) -> c.Iterator[DeliveryRecord]:
    """The responses registered and not settled yet."""
    cursor = None
    while True:
        page = store.list_deliveries(
            status=("processing",),
            type_pattern=EXPECTED_RESPONSE_TYPE,
            limit=200,
            before=cursor,
        )
        yield from page.records
        cursor = page.cursor
        if cursor is None:
            return


def _settle(state: WebhookState, response_id: str) -> None:
    """Mark an expectation as settled: nothing is left to check."""
    store = state.store
    claim = store.claim(
        _expectation(response_id), lease=state.lease, retention=state.retention
    )
    if claim.status == "acquired":
        store.finish(
            _expectation_id(response_id),
            claim.token,
            (),
            status="processed",
            status_code=None,
            source="reconcile",
            retention=state.retention,
        )


# --- The API client ----------------------------------------------------------


def _client(app: Flask) -> tuple[OpenAI, bool]:
    """The client to list with, and whether it was made here (and is to be
    closed here).
    """
    configured = app.config.get("OPENAI_WEBHOOK_CLIENT")
    if configured is not None:
        if callable(configured):
            configured = configured()
        return configured, False
    try:
        import openai
    except ImportError:
        raise ClientConfigError(
            f"reconciliation calls the OpenAI API and needs the openai package:"
            f" {_INSTALL}"
        ) from None
    try:
        return openai.OpenAI(), True
    except openai.OpenAIError as e:
        raise ClientConfigError(
            f"could not create an OpenAI client from the environment: {e} Set"
            " OPENAI_API_KEY (and OPENAI_BASE_URL for a proxy), or put a client,"
            " or a function returning one, in app.config['OPENAI_WEBHOOK_CLIENT']."
        ) from e


# --- Finding what finished ---------------------------------------------------


def _batches(client: OpenAI, since: float) -> c.Iterator[_Finished]:
    oldest = since - BATCH_LOOKBACK
    for batch in client.batches.list(limit=PAGE_SIZE):
        if batch.created_at < oldest:
            return
        stamp = _BATCH_STAMPS.get(batch.status)
        if stamp is None:
            continue
        at = getattr(batch, stamp, None) or batch.created_at
        if at >= since:
            yield _Finished(f"batch.{batch.status}", batch.id, at)


def _fine_tuning_jobs(client: OpenAI, since: float) -> c.Iterator[_Finished]:
    oldest = since - FINE_TUNING_LOOKBACK
    for job in client.fine_tuning.jobs.list(limit=PAGE_SIZE):
        if job.created_at < oldest:
            return
        if job.status not in _FINE_TUNING_DONE:
            continue
        at = job.finished_at or job.created_at
        if at >= since:
            yield _Finished(f"fine_tuning.job.{job.status}", job.id, at)


def _responses(
    client: OpenAI, state: WebhookState, *, dry_run: bool
) -> c.Iterator[_Finished]:
    """The registered responses that finished, whatever the window: they
    were registered to be checked. Those whose event is in the log are
    settled without an API call.
    """
    for record in _expectations(state.store):
        response_id = record.object_id
        if not response_id:
            continue
        if _logged(state.store, "response.*", response_id, None):
            if not dry_run:
                _settle(state, response_id)
            continue
        try:
            response = client.responses.retrieve(response_id)
        except Exception as e:
            if getattr(e, "status_code", None) != 404:
                raise
            logger.warning(
                "expected response %s does not exist (404 from the API: another"
                " project's key?); it is no longer checked",
                response_id,
            )
            if not dry_run:
                _settle(state, response_id)
            continue
        status = response.status
        if status not in _RESPONSE_DONE:
            continue
        at = int(response.completed_at or response.created_at)
        yield _Finished(f"response.{status}", response_id, at, record.webhook_id)


def _logged(
    store: DeliveryStore, type_pattern: str, object_id: str, finished_at: int | None
) -> bool:
    """Whether the log has an event of this type for this object, delivered
    or reconciled."""
    since = None if finished_at is None else finished_at - CLOCK_SKEW
    page = store.list_deliveries(
        type_pattern=type_pattern, search=object_id, since=since, limit=1
    )
    return bool(page.records)


# --- Sending -----------------------------------------------------------------


def _send(app: Flask, state: WebhookState, item: _Finished) -> Outcome:
    """Send the event OpenAI would have sent, as a delivery."""
    digest = hashlib.sha256(f"{item.event_type}:{item.object_id}".encode())
    event_id = f"evt_reconciled_{digest.hexdigest()[:24]}"
    payload = {
        "id": event_id,
        "object": "event",
        "type": item.event_type,
        "created_at": item.finished_at,
        "data": {"id": item.object_id},
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    delivery = Delivery(
        webhook_id=reconciled_webhook_id(item.event_type, item.object_id),
        event_type=item.event_type,
        event_id=event_id,
        object_id=item.object_id,
        created_at=item.finished_at,
        body=body,
        received_at=time.time(),
        source="reconcile",
    )
    with app.app_context():
        return process(app, state, parse_event(body), delivery, wrap=app.ensure_sync)


def _mark_in_use(app: Flask, state: WebhookState) -> None:
    """Make sure the store holds the reconciliation marker before the first
    event is sent, so that every worker looks for reconciled events (see
    :func:`~flask_openai_webhooks.process.reconciliation_in_use`). The
    first time, wait until every worker has asked the store again, unless
    the app is testing (one process)."""
    if state._reconcile_checked == math.inf:
        return
    store = state.store
    marker = Delivery(
        webhook_id=RECONCILE_MARKER,
        event_type=RECONCILE_MARKER_TYPE,
        event_id="",
        object_id=None,
        created_at=None,
        body=b"{}",
        received_at=time.time(),
        source="reconcile",
    )
    # A claim keeps the marker for the retention from now, and finds it done
    # when it exists already.
    claim = store.claim(marker, lease=state.lease, retention=state.retention)
    if claim.status == "acquired":
        store.finish(
            RECONCILE_MARKER,
            claim.token,
            (),
            status="processed",
            status_code=None,
            source="reconcile",
            retention=state.retention,
        )
        if claim.record is None and not app.testing:
            logger.info(
                "first reconciliation through this store: waiting %.0f s until"
                " every worker looks for reconciled events",
                RECONCILE_MARKER_TTL,
            )
            time.sleep(RECONCILE_MARKER_TTL + 0.5)
    state._reconcile_checked = math.inf


def reconcile(
    *,
    since: float,
    type_pattern: str | None = None,
    dry_run: bool = False,
    client: OpenAI | None = None,
    app: Flask | None = None,
    blueprint: str | None = None,
) -> list[Reconciled]:
    """Send the events whose delivery never arrived, oldest first, and
    return them.

    Looks at the batches and fine-tuning jobs that reached a terminal state
    at or after ``since`` (listed through the API), and at every response
    registered with :func:`expect_response` that has finished since. Each
    whose event the log has neither received nor reconciled before is sent
    as a delivery (see the module's documentation); the rest are left
    alone, including those whose delivery failed: replay those.

    Every object is listed before anything is sent, so an API error sends
    nothing. Running it again, or in several workers at once, sends
    nothing twice.

    :param since: Unix time, e.g. ``time.time() - 24 * 3600``.
    :param type_pattern: Only event types matching this glob, e.g.
        ``batch.*``.
    :param dry_run: Send nothing and write nothing; return what would be
        sent.
    :param client: An ``openai.OpenAI`` client. By default
        ``app.config["OPENAI_WEBHOOK_CLIENT"]`` (a client, or a function
        returning one, which is not closed here), else ``openai.OpenAI()``
        configured by the environment (``OPENAI_API_KEY``,
        ``OPENAI_BASE_URL``), closed when done.
    :raises ValueError: ``since`` is not a Unix time, or ``type_pattern``
        matches no type reconciliation sends.
    :raises ClientConfigError: No client was given and none can be made.
    :raises openai.APIError: Whatever the SDK raises once its retries are
        used up.
    :raises flask_openai_webhooks.StoreError: The store is down.
    """
    if since < _EARLIEST:
        raise ValueError(
            f"since={since!r} is not a Unix time; for the last 24 hours pass"
            " time.time() - 24 * 3600"
        )
    wanted = type_matcher(type_pattern)
    types = {event_type for event_type in RECONCILED_TYPES if wanted(event_type)}
    if not types:
        raise ValueError(
            f"{type_pattern!r} matches no event type that reconciliation sends:"
            " batch.*, fine_tuning.job.* and response.* terminal states"
        )
    app, state = _state(app, blueprint)
    owned = False
    if client is None:
        client, owned = _client(app)
    try:
        found: list[_Finished] = []
        if any(event_type.startswith("batch.") for event_type in types):
            found.extend(_batches(client, since))
        if any(event_type.startswith("fine_tuning.") for event_type in types):
            found.extend(_fine_tuning_jobs(client, since))
        if any(event_type.startswith("response.") for event_type in types):
            found.extend(_responses(client, state, dry_run=dry_run))
    finally:
        if owned:
            client.close()
    found.sort(key=lambda item: (item.finished_at, item.event_type, item.object_id))

    sent: list[Reconciled] = []
    for item in found:
        if item.event_type not in types:
            continue
        webhook_id = reconciled_webhook_id(item.event_type, item.object_id)
        # Checked right before sending, not when listing, so a delivery that
        # arrived meanwhile is seen.
        if _logged(state.store, item.event_type, item.object_id, item.finished_at):
            if item.expectation is not None and not dry_run:
                _settle(state, item.object_id)
            continue
        outcome = None
        if not dry_run:
            _mark_in_use(app, state)
            outcome = _send(app, state, item)
            logger.info(
                "reconciled %s of %s, whose delivery never arrived: %s",
                item.event_type,
                item.object_id,
                outcome.name,
            )
            if item.expectation is not None and outcome.name != "store_unavailable":
                _settle(state, item.object_id)
        sent.append(
            Reconciled(
                item.event_type, item.object_id, item.finished_at, webhook_id, outcome
            )
        )
    return sent
