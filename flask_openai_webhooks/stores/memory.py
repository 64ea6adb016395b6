"""The delivery log in a dict of this process.

Nothing survives a restart and nothing is shared with another process, so
this store suits tests, development and single-process servers only. Under
a server with several worker processes each has its own log, and a retry
that reaches another worker runs the receivers again: use
:mod:`.sqlite`, :mod:`.redis` or :mod:`.sql` there.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import threading
import time
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Sequence

from . import add_history
from . import bounded
from . import check_durations
from . import Claim
from . import decode_cursor
from . import Delivery
from . import DeliveryRecord
from . import DeliveryStatus
from . import derive_status
from . import DONE_STATUSES
from . import encode_cursor
from . import HistoryEntry
from . import MAX_MESSAGE
from . import MAX_REJECTIONS
from . import MAX_TRACEBACK
from . import new_token
from . import Page
from . import ReceiverResult
from . import Rejection
from . import Rejections
from . import Source
from . import type_matcher

__all__ = ["MemoryStore"]


@dataclasses.dataclass(slots=True)
class _Entry:
    """A delivery as this store keeps it: the mutable twin of
    :class:`DeliveryRecord`, plus the leases, which never leave the store.
    """

    webhook_id: str
    event_type: str
    event_id: str
    object_id: str | None
    created_at: int | None
    body: bytes
    first_received_at: float
    last_received_at: float
    attempts: int
    status: DeliveryStatus
    status_code: int | None
    source: Source
    #: Kept at least until then; after that it is the first to go when
    #: room is needed.
    expires_at: float
    #: Latest result per receiver key, in first-seen order.
    receivers: dict[str, ReceiverResult] = dataclasses.field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()
    #: The delivery lease; ``""`` when nobody holds it.
    token: str = ""
    lease_until: float = 0.0
    #: Task leases by receiver key: ``(token, lease_until)``.
    tasks: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)

    def leased(self, now: float) -> bool:
        return bool(self.token) and self.lease_until > now

    def live(self, now: float) -> bool:
        """Whether a worker may be running something for it right now."""
        return self.leased(now) or any(until > now for _, until in self.tasks.values())

    def keep(self, until: float) -> None:
        if until > self.expires_at:
            self.expires_at = until

    def merge(self, results: Iterable[ReceiverResult]) -> None:
        for result in results:
            self.receivers[result.key] = result

    def snapshot(self) -> DeliveryRecord:
        return DeliveryRecord(
            webhook_id=self.webhook_id,
            event_type=self.event_type,
            event_id=self.event_id,
            object_id=self.object_id,
            created_at=self.created_at,
            body=self.body,
            first_received_at=self.first_received_at,
            last_received_at=self.last_received_at,
            attempts=self.attempts,
            status=self.status,
            status_code=self.status_code,
            source=self.source,
            receivers=tuple(self.receivers.values()),
            history=self.history,
        )


def _bounded_results(results: Iterable[ReceiverResult]) -> tuple[ReceiverResult, ...]:
    # Consumed before the lock is taken: the iterable is caller code.
    out = []
    for result in results:
        message = bounded(result.error_message, MAX_MESSAGE)
        traceback = bounded(result.traceback, MAX_TRACEBACK)
        if message is not result.error_message or traceback is not result.traceback:
            result = dataclasses.replace(
                result, error_message=message, traceback=traceback
            )
        out.append(result)
    return tuple(out)


class MemoryStore:
    """Keep the delivery log in a dict in this process.

    The log is **process-local**: it is lost on restart, and each worker of
    a multi-process server (gunicorn with several workers, uWSGI, ...) has
    its own, so a retry that reaches another worker runs the receivers
    again. It is meant for tests, development and single-process servers;
    use :class:`~.sqlite.SQLiteStore`, :class:`~.redis.RedisStore` or
    :class:`~.sql.SQLStore` anywhere else.

    Memory is bounded: at most ``max_entries`` deliveries and
    :data:`~flask_openai_webhooks.stores.MAX_REJECTIONS` recent refusals
    are kept, and each record's history and tracebacks are bounded as in
    every store. When a new delivery needs room, one record goes, the first
    of: the least recently written one if its retention has passed, the
    least recently written settled one (a status in
    :data:`~flask_openai_webhooks.stores.DONE_STATUSES`), the least
    recently written one of any kind. A record whose lease (or a task's)
    is live is skipped at every step, and is evicted only when every record
    is leased. The order is a trade-off: forgetting a settled delivery only
    matters if OpenAI sends it again, and then its receivers run a second
    time; forgetting a leased one would let a duplicate run *alongside*
    it. Size ``max_entries`` for the deliveries expected over the retention
    period to avoid both.

    A record is kept at least for its retention: past it, it stays visible
    until room is needed or :meth:`prune` removes it.

    Every method takes one lock, so the store can be shared by the threads
    of one process.

    :param max_entries: The most deliveries kept.
    :param clock: Returns the current wall-clock time in Unix seconds, for
        leases and retention; injectable for tests.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # Least recently written first, so eviction finds its victim at the
        # front instead of scanning.
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        # The ids of the settled records among them, in the same order.
        self._settled: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._rejection_counts: collections.Counter[str] = collections.Counter()
        self._recent_rejections: collections.deque[Rejection] = collections.deque(
            maxlen=MAX_REJECTIONS
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every delivery and every refusal."""
        with self._lock:
            self._entries.clear()
            self._settled.clear()
            self._rejection_counts.clear()
            self._recent_rejections.clear()

    # -- bookkeeping, always under the lock ---------------------------------

    def _written(self, entry: _Entry) -> None:
        """Move ``entry`` to the end of the eviction order after a write."""
        webhook_id = entry.webhook_id
        self._entries[webhook_id] = entry
        self._entries.move_to_end(webhook_id)
        if entry.status in DONE_STATUSES:
            self._settled[webhook_id] = None
            self._settled.move_to_end(webhook_id)
        else:
            self._settled.pop(webhook_id, None)

    def _remove(self, webhook_id: str) -> None:
        del self._entries[webhook_id]
        self._settled.pop(webhook_id, None)

    def _victim(self, now: float) -> str:
        oldest_id, oldest = next(iter(self._entries.items()))
        if oldest.expires_at <= now and not oldest.live(now):
            return oldest_id
        for webhook_id in self._settled:
            if not self._entries[webhook_id].live(now):
                return webhook_id
        for webhook_id, entry in self._entries.items():
            if not entry.live(now):
                return webhook_id
        # Every record is leased: the oldest lease has run the longest.
        return oldest_id

    def _add(self, entry: _Entry, now: float) -> None:
        """Add a new record, at the end of the eviction order."""
        while len(self._entries) >= self.max_entries:
            self._remove(self._victim(now))
        self._entries[entry.webhook_id] = entry
        if entry.status in DONE_STATUSES:
            self._settled[entry.webhook_id] = None

    def _recreate(
        self,
        webhook_id: str,
        now: float,
        *,
        status: DeliveryStatus,
        source: Source,
        expires_at: float,
    ) -> _Entry:
        """A record that was pruned or evicted while a worker used it, from
        what the worker still knows: its results must not be lost."""
        entry = _Entry(
            webhook_id=webhook_id,
            event_type="",
            event_id="",
            object_id=None,
            created_at=None,
            body=b"",
            first_received_at=now,
            last_received_at=now,
            attempts=1,
            status=status,
            status_code=None,
            source=source,
            expires_at=expires_at,
        )
        self._add(entry, now)
        return entry

    # -- DeliveryStore ------------------------------------------------------

    def claim(self, delivery: Delivery, *, lease: float, retention: float) -> Claim:
        """See :meth:`.DeliveryStore.claim`."""
        check_durations(lease, retention)
        body = bytes(delivery.body)
        webhook_id = delivery.webhook_id
        with self._lock:
            now = self._clock()
            entry = self._entries.get(webhook_id)
            if entry is None:
                # New: logged and leased in one write. No record before it.
                token = new_token()
                lease_until = now + lease
                entry = _Entry(
                    webhook_id=webhook_id,
                    event_type=delivery.event_type,
                    event_id=delivery.event_id,
                    object_id=delivery.object_id,
                    created_at=delivery.created_at,
                    body=body,
                    first_received_at=delivery.received_at,
                    last_received_at=delivery.received_at,
                    attempts=1,
                    status="processing",
                    status_code=None,
                    source=delivery.source,
                    expires_at=max(now + retention, lease_until),
                    token=token,
                    lease_until=lease_until,
                )
                self._add(entry, now)
                return Claim("acquired", token)
            before = entry.snapshot()
            entry.attempts += 1
            entry.last_received_at = delivery.received_at
            entry.keep(now + retention)
            if entry.status in DONE_STATUSES and delivery.source != "replay":
                self._note(entry, delivery, "duplicate", 200)
                return Claim("done")
            if entry.leased(now):
                self._note(entry, delivery, "in_flight", 409)
                return Claim("in_flight")
            entry.token = new_token()
            entry.lease_until = now + lease
            entry.status = "processing"
            entry.keep(entry.lease_until)
            self._written(entry)
            return Claim("acquired", entry.token, before)

    def _note(
        self, entry: _Entry, delivery: Delivery, result: str, status_code: int
    ) -> None:
        entry.history = add_history(
            entry.history,
            HistoryEntry(delivery.received_at, delivery.source, result, status_code),
        )
        self._written(entry)

    def record(
        self, webhook_id: str, token: str, results: Sequence[ReceiverResult]
    ) -> None:
        """See :meth:`.DeliveryStore.record`. A record that is gone is
        recreated (status ``processing``) holding the caller's token on an
        already expired lease, so the results are not lost if the worker
        dies before :meth:`finish`, and its :meth:`finish` still settles it."""
        results = _bounded_results(results)
        if not results:
            return
        with self._lock:
            now = self._clock()
            entry = self._entries.get(webhook_id)
            if entry is None:
                entry = self._recreate(
                    webhook_id,
                    now,
                    status="processing",
                    source="delivery",
                    expires_at=now,
                )
                entry.token = token
            entry.merge(results)
            self._written(entry)

    def finish(
        self,
        webhook_id: str,
        token: str,
        results: Sequence[ReceiverResult],
        *,
        status: DeliveryStatus,
        status_code: int | None,
        source: Source,
        retention: float,
    ) -> None:
        """See :meth:`.DeliveryStore.finish`. A record that is gone is
        recreated with the results, the status and no body."""
        check_durations(None, retention)
        results = _bounded_results(results)
        with self._lock:
            now = self._clock()
            entry = self._entries.get(webhook_id)
            if entry is None:
                entry = self._recreate(
                    webhook_id, now, status=status, source=source, expires_at=now
                )
                owner = True
            else:
                owner = bool(token) and token == entry.token
            entry.merge(results)
            if owner:
                if status == "processing" and entry.receivers:
                    # Tasks still queued by the caller's view: a worker may
                    # have settled them meanwhile.
                    status = derive_status(entry.receivers.values())
                entry.status = status
                if status_code is not None:
                    entry.status_code = status_code
                entry.token = ""
                entry.lease_until = 0.0
                entry.history = add_history(
                    entry.history, HistoryEntry(now, source, status, status_code)
                )
                entry.keep(now + retention)
            self._written(entry)

    def claim_task(self, webhook_id: str, key: str, *, lease: float) -> Claim:
        """See :meth:`.DeliveryStore.claim_task`."""
        # check_durations wants a retention too; the lease stands in for it.
        check_durations(lease, lease)
        with self._lock:
            now = self._clock()
            entry = self._entries.get(webhook_id)
            if entry is None:
                raise LookupError(f"no delivery with webhook-id {webhook_id[:200]!r}")
            result = entry.receivers.get(key)
            if result is not None and result.outcome == "ok":
                return Claim("done")
            held = entry.tasks.get(key)
            if held is not None and held[1] > now:
                return Claim("in_flight")
            token = new_token()
            entry.tasks[key] = (token, now + lease)
            entry.keep(now + lease)
            self._written(entry)
            return Claim("acquired", token, entry.snapshot())

    def finish_task(
        self,
        webhook_id: str,
        token: str,
        result: ReceiverResult,
        *,
        retention: float,
    ) -> None:
        """See :meth:`.DeliveryStore.finish_task`. While a delivery lease is
        live its holder sets the status, in :meth:`finish`. A record that is
        gone is recreated with the result."""
        check_durations(None, retention)
        (result,) = _bounded_results((result,))
        with self._lock:
            now = self._clock()
            entry = self._entries.get(webhook_id)
            if entry is None:
                entry = self._recreate(
                    webhook_id, now, status="processing", source="task", expires_at=now
                )
            entry.merge((result,))
            held = entry.tasks.get(result.key)
            if held is not None and bool(token) and held[0] == token:
                del entry.tasks[result.key]
            if not entry.leased(now):
                entry.status = derive_status(entry.receivers.values())
            entry.history = add_history(
                entry.history, HistoryEntry(now, "task", entry.status)
            )
            entry.keep(now + retention)
            self._written(entry)

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        """See :meth:`.DeliveryStore.get`."""
        with self._lock:
            entry = self._entries.get(webhook_id)
            return None if entry is None else entry.snapshot()

    def list_deliveries(
        self,
        *,
        status: Collection[str] | None = None,
        type_pattern: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> Page:
        """See :meth:`.DeliveryStore.list_deliveries`.

        :raises ValueError: ``before`` is not a cursor, or ``limit`` is
            less than 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        after = None if before is None else decode_cursor(before)
        # A lone string is a Collection[str] too; it means one status.
        if isinstance(status, str):
            status = (status,)
        statuses = None if status is None else frozenset(status)
        matches_type = type_matcher(type_pattern)

        def wanted(entry: _Entry) -> bool:
            at = entry.first_received_at
            return (
                (after is None or (at, entry.webhook_id) < after)
                and (statuses is None or entry.status in statuses)
                and (since is None or at >= since)
                and (until is None or at < until)
                and (
                    search is None
                    or search in (entry.webhook_id, entry.event_id, entry.object_id)
                )
                and matches_type(entry.event_type)
            )

        with self._lock:
            # One more than asked says whether there is a next page.
            newest = heapq.nlargest(
                limit + 1,
                filter(wanted, self._entries.values()),
                key=lambda e: (e.first_received_at, e.webhook_id),
            )
            records = tuple(entry.snapshot() for entry in newest[:limit])
        cursor = None
        if len(newest) > limit:
            last = records[-1]
            cursor = encode_cursor(last.first_received_at, last.webhook_id)
        return Page(records, cursor)

    def prune(self, older_than: float) -> int:
        """See :meth:`.DeliveryStore.prune`."""
        with self._lock:
            now = self._clock()
            cutoff = now - older_than
            gone = [
                webhook_id
                for webhook_id, entry in self._entries.items()
                if entry.last_received_at < cutoff and not entry.live(now)
            ]
            for webhook_id in gone:
                self._remove(webhook_id)
            return len(gone)

    def reject(self, reason: str, webhook_id: str | None, at: float) -> None:
        """See :meth:`.DeliveryStore.reject`."""
        if webhook_id is not None:
            webhook_id = webhook_id[:200]
        with self._lock:
            self._rejection_counts[reason] += 1
            self._recent_rejections.appendleft(Rejection(at, reason, webhook_id))

    def rejections(self, limit: int = 50) -> Rejections:
        """See :meth:`.DeliveryStore.rejections`."""
        with self._lock:
            recent = tuple(self._recent_rejections)[: max(limit, 0)]
            return Rejections(dict(self._rejection_counts), recent)

    def ping(self) -> None:
        """See :meth:`.DeliveryStore.ping`. Always succeeds."""

    def describe(self) -> str:
        """See :meth:`.DeliveryStore.describe`."""
        return f"memory (process-local, at most {self.max_entries} deliveries)"

    def close(self) -> None:
        """Nothing to release; the log stays readable."""
