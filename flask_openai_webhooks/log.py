"""The delivery log from Python: look deliveries up, list them, prune
them, and replay them.

OpenAI keeps no delivery history an app can query and has no redeliver
API: once a delivery was answered, this log is the only place that knows
what arrived and what each receiver did.

.. code-block:: python

    from flask_openai_webhooks import log

    for record in log.list_deliveries(status=["failed", "gave_up"]).records:
        log.replay(record.webhook_id)

Every function works on the app in context (``current_app``) unless given
``app=``, and on its only webhook blueprint unless given ``blueprint=``.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import re
import time

from flask import current_app
from flask import Flask

from .dispatch import receivers_of
from .dispatch import signals_for
from .models import parse_event
from .process import Outcome
from .process import process
from .state import get_state
from .state import WebhookState
from .stores import Delivery
from .stores import DELIVERY_STATUSES
from .stores import DeliveryRecord
from .stores import Page

__all__ = [
    "Replayed",
    "get_delivery",
    "list_deliveries",
    "matching",
    "parse_duration",
    "prune_deliveries",
    "replay",
    "replay_where",
]

#: Replays run at most this many deliveries per call of
#: :func:`replay_where`, so a bad filter cannot run the whole log at once.
MAX_REPLAY = 1000


@dataclasses.dataclass(frozen=True)
class Replayed:
    """What one replay did."""

    webhook_id: str
    #: How processing ended: ``processed``, ``in_flight`` (a retry holds the
    #: lease right now), ``receiver_failed``, ``store_unavailable``...
    outcome: Outcome
    #: The delivery as logged after the replay.
    record: DeliveryRecord | None

    @property
    def ok(self) -> bool:
        """Whether every receiver that ran succeeded."""
        return self.outcome.name == "processed" and not any(
            r.outcome in ("failed", "retry_later", "gave_up")
            for r in self.outcome.results
        )


def _state(app: Flask | None, blueprint: str | None) -> tuple[Flask, WebhookState]:
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    return app, get_state(app, blueprint)


def get_delivery(
    webhook_id: str, *, app: Flask | None = None, blueprint: str | None = None
) -> DeliveryRecord | None:
    """One delivery by its ``webhook-id``, or ``None``."""
    return _state(app, blueprint)[1].store.get(webhook_id)


def list_deliveries(
    *,
    status: str | c.Collection[str] | None = None,
    type: str | None = None,
    since: float | None = None,
    until: float | None = None,
    search: str | None = None,
    limit: int = 50,
    before: str | None = None,
    app: Flask | None = None,
    blueprint: str | None = None,
) -> Page:
    """Deliveries newest first, filtered; see
    :meth:`~flask_openai_webhooks.stores.DeliveryStore.list_deliveries`.

    :param status: One status or several (``processed``, ``failed``,
        ``gave_up``, ``unhandled``, ``processing``).
    :param type: A glob over the event type, e.g. ``batch.*``.
    :param since: Unix time; first arrival at or after it.
    :param until: Unix time; first arrival before it.
    :param before: The ``cursor`` of the previous page.
    :raises ValueError: An unknown status, a limit below 1, a bad cursor.
    """
    statuses = _statuses(status)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    page = _state(app, blueprint)[1].store.list_deliveries(
        status=statuses,
        type_pattern=type,
        since=since,
        until=until,
        search=search,
        limit=limit,
        before=before,
    )
    if type is not None and type.startswith(_BOOKKEEPING):
        return page
    kept = tuple(r for r in page.records if not r.event_type.startswith(_BOOKKEEPING))
    if len(kept) == len(page.records):
        return page
    # The page may hold fewer than ``limit`` records; its cursor stays right.
    return Page(kept, page.cursor)


#: Event types of the records reconciliation keeps for itself (its marker,
#: the responses it expects): not deliveries, so listings leave them out
#: unless asked for by type.
_BOOKKEEPING = ("reconcile.", "expect.")


def _statuses(status: str | c.Collection[str] | None) -> list[str] | None:
    if status is None:
        return None
    statuses = [status] if isinstance(status, str) else list(status)
    for value in statuses:
        if value not in DELIVERY_STATUSES:
            raise ValueError(
                f"unknown delivery status {value!r}; use one of"
                f" {', '.join(DELIVERY_STATUSES)}"
            )
    return statuses


def prune_deliveries(
    older_than: float, *, app: Flask | None = None, blueprint: str | None = None
) -> int:
    """Forget deliveries last received more than ``older_than`` seconds
    ago; return how many. Stores also forget them by themselves after
    ``OPENAI_WEBHOOK_RETENTION``.

    :raises ValueError: ``older_than`` is not positive.
    """
    if not older_than > 0:
        raise ValueError("older_than must be a positive number of seconds")
    return _state(app, blueprint)[1].store.prune(older_than)


def replay(
    webhook_id: str,
    *,
    force: bool = False,
    receiver: str | None = None,
    app: Flask | None = None,
    blueprint: str | None = None,
) -> Replayed:
    """Run a logged delivery again, through the same machinery as OpenAI's
    retry: the stored body is parsed again, the delivery is claimed with a
    lease (a replay and a real retry never run the same receiver at once),
    and only the receivers that have not succeeded run. An ``unhandled``
    delivery runs the receivers connected now. The replay is one more
    attempt in the record.

    :param force: Run every receiver, those that succeeded included.
    :param receiver: Run only the receiver with this key (as ``show``
        lists it), whatever its last outcome.
    :raises LookupError: No delivery has that ``webhook-id``.
    :raises flask_openai_webhooks.WebhookPayloadError: The stored body no
        longer parses (an event type whose shape changed).
    """
    app, state = _state(app, blueprint)
    record = state.store.get(webhook_id)
    if record is None:
        raise LookupError(f"no delivery with webhook-id {webhook_id!r} in the log")
    event = parse_event(record.body)
    if receiver is not None:
        connected = [key for key, _, _ in receivers_of(signals_for(event.type), app)]
        if receiver not in connected:
            raise LookupError(
                f"no receiver {receiver!r} is connected for {event.type}; connected:"
                f" {', '.join(connected) or 'none'} ('show {webhook_id}' lists the"
                " keys that ran)"
            )
    delivery = Delivery(
        webhook_id=record.webhook_id,
        event_type=record.event_type,
        event_id=record.event_id,
        object_id=record.object_id,
        created_at=record.created_at,
        body=record.body,
        received_at=time.time(),
        source="replay",
    )
    with app.app_context():
        outcome = process(
            app,
            state,
            event,
            delivery,
            wrap=app.ensure_sync,
            force=force or receiver is not None,
            only=receiver,
        )
    return Replayed(webhook_id, outcome, state.store.get(webhook_id))


def matching(
    *,
    status: str | c.Collection[str],
    type: str | None = None,
    since: float | None = None,
    app: Flask | None = None,
    blueprint: str | None = None,
) -> list[str]:
    """The ``webhook-id`` of every logged delivery with one of these
    statuses, oldest first, at most :data:`MAX_REPLAY`.

    :param since: Unix time; first arrival at or after it.
    """
    ids: list[str] = []
    cursor = None
    while True:
        page = list_deliveries(
            status=status,
            type=type,
            since=since,
            limit=200,
            before=cursor,
            app=app,
            blueprint=blueprint,
        )
        ids.extend(r.webhook_id for r in page.records)
        cursor = page.cursor
        if cursor is None or len(ids) >= MAX_REPLAY:
            break
    # Oldest first: replay in the order the events happened.
    return list(reversed(ids[:MAX_REPLAY]))


def replay_where(
    *,
    status: str | c.Collection[str],
    type: str | None = None,
    since: float | None = None,
    force: bool = False,
    receiver: str | None = None,
    app: Flask | None = None,
    blueprint: str | None = None,
) -> list[Replayed]:
    """Replay every logged delivery with one of these statuses (see
    :func:`matching`), e.g. every ``gave_up`` one after a bug fix."""
    ids = matching(status=status, type=type, since=since, app=app, blueprint=blueprint)
    return [
        replay(webhook_id, force=force, receiver=receiver, app=app, blueprint=blueprint)
        for webhook_id in ids
    ]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"30d"``, ``"2w"`` or plain
    seconds, as seconds.

    :raises ValueError: Anything else; the message shows the forms.
    """
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(
            f"{text!r} is not a duration; write e.g. 90s, 15m, 24h, 30d or 2w"
        )
    seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds
