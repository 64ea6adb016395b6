"""Delivery stores: the delivery log, and the leases that keep receivers
from running twice.

OpenAI delivers every event *at least* once and retries a delivery with the
same ``webhook-id`` for up to 72 hours. Turning that into "a receiver whose
success was recorded never runs again" needs state that outlives the
request, shared by every worker: that is a store. The same records are the
**delivery log**: what arrived, when, how often, and what each receiver did,
so that a delivery can be shown, searched and replayed after the 200.

A delivery takes two store calls in the common case, each one atomic:

1.  :meth:`DeliveryStore.claim` logs the arrival (body, type, ids, one more
    attempt) and takes a lease on the ``webhook-id``, or reports that
    another worker holds it (``in_flight``) or that the delivery was already
    settled (``done``).
2.  :meth:`DeliveryStore.finish` writes each receiver's result and the
    delivery's status, and releases the lease.

:meth:`DeliveryStore.record` is only needed between receivers, so a worker
killed half way does not lose the successes of the receivers that ran.
Work handed to a task queue claims and settles its own entry in the same
record with :meth:`DeliveryStore.claim_task` and
:meth:`DeliveryStore.finish_task`.

A lease, not a "processing" flag, is what makes a crash safe: nothing
releases a flag when a worker dies with ``kill -9``, but a lease expires and
the next retry takes it.

One backend per module: :mod:`.memory` (tests and one process),
:mod:`.sqlite` (several processes on one machine), :mod:`.redis` and
:mod:`.sql` (PostgreSQL, MariaDB/MySQL through SQLAlchemy Core: several
machines). Any object implementing :class:`DeliveryStore` can be used.

This package does not import Flask; the optional backends import their
driver only when one is created.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import re
import secrets
import typing as t
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

from ..errors import StoreError

if t.TYPE_CHECKING:
    from .memory import MemoryStore
    from .redis import RedisStore
    from .sql import SQLStore
    from .sqlite import SQLiteStore

__all__ = [
    "Claim",
    "Delivery",
    "DeliveryRecord",
    "DeliveryStore",
    "HistoryEntry",
    "MemoryStore",
    "Page",
    "ReceiverResult",
    "RedisStore",
    "Rejection",
    "Rejections",
    "SQLStore",
    "SQLiteStore",
    "StoreError",
    "store_from_config",
]

ClaimStatus = t.Literal["acquired", "in_flight", "done"]

#: ``processing``: a lease is held (or was, by a worker that died);
#: ``processed``: every receiver succeeded; ``failed``: a receiver failed and
#: a retry is expected (from OpenAI, or from the task queue);
#: ``gave_up``: a receiver raised :exc:`~flask_openai_webhooks.PermanentFailure`,
#: failed under ``OPENAI_WEBHOOK_ON_ERROR="ack"`` or ran out of task retries;
#: ``unhandled``: no receiver was connected at all.
DeliveryStatus = t.Literal["processing", "processed", "failed", "gave_up", "unhandled"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = t.get_args(DeliveryStatus)

#: A receiver's latest outcome. ``queued``: a task was handed to the queue
#: and has not finished yet.
Outcome = t.Literal["ok", "failed", "retry_later", "gave_up", "queued"]
OUTCOMES: tuple[Outcome, ...] = t.get_args(Outcome)

#: How an attempt came about: a POST from OpenAI, a replay, reconciliation
#: through the API, or a task run by a worker.
Source = t.Literal["delivery", "replay", "reconcile", "task"]

#: Outcomes a retry from OpenAI skips: the receiver succeeded, gave up, or
#: its task is queued. A replay skips only ``ok`` and ``queued``, so fixing
#: a bug and replaying re-runs the receivers that gave up.
SETTLED_OUTCOMES: frozenset[str] = frozenset(("ok", "gave_up", "queued"))
REPLAY_SKIPS: frozenset[str] = frozenset(("ok", "queued"))
#: Statuses for which a new delivery with the same ``webhook-id`` is a
#: duplicate. ``failed`` and ``processing`` (an expired lease) are claimed
#: again.
DONE_STATUSES: frozenset[str] = frozenset(("processed", "gave_up", "unhandled"))

#: Bounds that keep a record small whatever a receiver raises.
MAX_TRACEBACK = 8000
MAX_MESSAGE = 1000
#: Timeline entries kept per delivery, newest last.
MAX_HISTORY = 50
#: Refused deliveries kept, newest first.
MAX_REJECTIONS = 200


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A verified delivery as it arrives: what :meth:`DeliveryStore.claim`
    logs. Never holds the ``webhook-signature`` header or a secret.
    """

    webhook_id: str
    event_type: str
    #: The event's ``id`` (``evt_...``), the same on every retry.
    event_id: str
    #: The id of the object the event names: ``data.id``, or ``data.call_id``
    #: / ``data.session_id`` for calls; ``None`` when there is none.
    object_id: str | None
    #: The event's ``created_at`` (Unix seconds).
    created_at: int | None
    #: The raw body exactly as received, so it can be parsed again after an
    #: upgrade.
    body: bytes
    #: Wall-clock time of arrival (Unix seconds).
    received_at: float
    source: Source = "delivery"


@dataclasses.dataclass(frozen=True)
class ReceiverResult:
    """The latest result of one receiver (or task) for one delivery."""

    #: The receiver's stable key (see
    #: :func:`~flask_openai_webhooks.dispatch.receiver_key`).
    key: str
    outcome: Outcome
    #: How many times it ran for this delivery, this run included.
    attempts: int = 1
    #: Seconds the last run took.
    duration: float = 0.0
    #: Wall-clock time the last run ended.
    at: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    #: At most :data:`MAX_TRACEBACK` characters, the end of the traceback
    #: (where the error is) kept when it is longer.
    traceback: str | None = None

    def to_dict(self) -> dict[str, t.Any]:
        # Written for every receiver of every delivery: a flat dict is ten
        # times cheaper than dataclasses.asdict's recursive copy.
        return {
            "key": self.key,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "duration": self.duration,
            "at": self.at,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "traceback": self.traceback,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> ReceiverResult:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One attempt in a delivery's timeline."""

    at: float
    source: Source
    #: What the attempt ended as: a :data:`DeliveryStatus`, or
    #: ``duplicate`` / ``in_flight`` for an attempt that ran nothing.
    result: str
    #: The HTTP status answered, when the attempt was a request.
    status_code: int | None = None

    def to_dict(self) -> dict[str, t.Any]:
        return {
            "at": self.at,
            "source": self.source,
            "result": self.result,
            "status_code": self.status_code,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> HistoryEntry:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclasses.dataclass(frozen=True)
class DeliveryRecord:
    """A delivery as the log keeps it."""

    webhook_id: str
    event_type: str
    event_id: str
    object_id: str | None
    created_at: int | None
    body: bytes
    first_received_at: float
    last_received_at: float
    #: Arrivals, replays and reconciliations counted together.
    attempts: int
    status: DeliveryStatus
    #: The HTTP status last answered for it, if any.
    status_code: int | None
    #: How it first arrived (``reconcile`` if found through the API first).
    source: Source
    receivers: tuple[ReceiverResult, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def receiver(self, key: str) -> ReceiverResult | None:
        for result in self.receivers:
            if result.key == key:
                return result
        return None

    def keys_with(self, outcomes: Collection[str]) -> frozenset[str]:
        """Keys of the receivers whose latest outcome is in ``outcomes``."""
        return frozenset(r.key for r in self.receivers if r.outcome in outcomes)

    def to_json(self, *, body: bool = False) -> dict[str, t.Any]:
        """The record as JSON-ready data; the field names are a contract
        (``flask openai-webhooks log --json``)."""
        data: dict[str, t.Any] = {
            "webhook_id": self.webhook_id,
            "type": self.event_type,
            "event_id": self.event_id,
            "object_id": self.object_id,
            "created_at": self.created_at,
            "status": self.status,
            "status_code": self.status_code,
            "attempts": self.attempts,
            "received_at": self.first_received_at,
            "last_received_at": self.last_received_at,
            "source": self.source,
            "receivers": [r.to_dict() for r in self.receivers],
            "history": [h.to_dict() for h in self.history],
        }
        if body:
            data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclasses.dataclass(frozen=True)
class Claim:
    """The answer of :meth:`DeliveryStore.claim` and
    :meth:`DeliveryStore.claim_task`.

    :param status: ``"acquired"``: the caller holds the lease and must run
        the receivers; ``"in_flight"``: another worker holds an unexpired
        lease; ``"done"``: already settled.
    :param token: The lease token when acquired, passed back to
        :meth:`~DeliveryStore.record` and :meth:`~DeliveryStore.finish` so a
        worker whose lease expired and was taken over cannot overwrite the
        new owner's state.
    :param record: The record as it was before this claim, when acquired
        and it existed: its receivers' results say what to skip.
    """

    status: ClaimStatus
    token: str = ""
    record: DeliveryRecord | None = None

    def keys_with(self, outcomes: Collection[str]) -> frozenset[str]:
        if self.record is None:
            return frozenset()
        return self.record.keys_with(outcomes)


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of :meth:`DeliveryStore.list_deliveries`, newest first.

    :param cursor: Pass as ``before`` for the next page; ``None`` on the
        last page. Pages are ordered by first arrival, so deliveries that
        arrive meanwhile never shift a later page.
    """

    records: tuple[DeliveryRecord, ...]
    cursor: str | None


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A refused delivery: never a body, a signature or a secret."""

    at: float
    #: The error code (``signature_mismatch``, ``body_too_large``, ...).
    reason: str
    #: The ``webhook-id`` header if one was sent, cut to 200 characters.
    webhook_id: str | None


@dataclasses.dataclass(frozen=True)
class Rejections:
    #: Refusals by reason since the store was created.
    counts: Mapping[str, int]
    #: The most recent ones, newest first, at most :data:`MAX_REJECTIONS`.
    recent: tuple[Rejection, ...]


@t.runtime_checkable
class DeliveryStore(t.Protocol):
    """What the blueprint, the replay and the task queue need from a store.
    Implement it to keep the log somewhere else.

    Every method must be atomic with respect to concurrent calls from other
    threads, processes and machines sharing the store. Every backend failure
    is raised as :class:`~flask_openai_webhooks.errors.StoreError`, so the
    blueprint answers 503 and OpenAI retries instead of acknowledging an
    event whose processing could not be recorded. Times are wall-clock Unix
    seconds from the caller, so every worker agrees on them.
    """

    def claim(self, delivery: Delivery, *, lease: float, retention: float) -> Claim:
        """Log an arrival and try to take the lease, in one atomic step.

        Always: create the record if it is new (status ``processing``, the
        body and ids of ``delivery``, ``first_received_at``), else count one
        more attempt and set ``last_received_at``; keep it ``retention``
        seconds from now at least.

        - If its status is in :data:`DONE_STATUSES` and ``delivery.source``
          is not ``replay``: append a ``duplicate`` history entry (status
          code 200) and return ``Claim("done")``.
        - If it is leased and the lease has not expired: append an
          ``in_flight`` entry (409) and return ``Claim("in_flight")``.
        - Otherwise take the lease with a fresh token (:func:`new_token`)
          for ``lease`` seconds, set the status to ``processing`` and return
          ``Claim("acquired", token, record_before_or_None)``.
        """
        ...

    def record(
        self, webhook_id: str, token: str, results: Sequence[ReceiverResult]
    ) -> None:
        """Merge ``results`` into the record (by key, replacing the older
        result) and keep the lease, so a worker killed before
        :meth:`finish` does not run them again. Results are merged whoever
        holds the lease now: they did happen.
        """
        ...

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
        """End an attempt, atomically: merge ``results`` (always, as in
        :meth:`record`); if ``token`` is still the lease token, set
        ``status`` (``processing``, the caller's view while tasks are queued,
        is derived again with :func:`derive_status` from the merged
        receivers when there are any, since a worker may have settled a
        task meanwhile) and
        ``status_code`` (``None``, for an attempt that
        answered no request, leaves the last code answered), release the
        lease, append a history entry (with ``status_code`` as given) and
        keep the record ``retention`` seconds. If the token does
        not match, another worker took over after the lease expired: its
        status and lease are left alone. If the record is gone (pruned or
        evicted), it is recreated from what is known, never lost silently.
        """
        ...

    def claim_task(self, webhook_id: str, key: str, *, lease: float) -> Claim:
        """Take the lease on one task of a delivery (a receiver entry run by
        a worker): ``done`` if its outcome is ``ok``, ``in_flight`` if
        another worker holds an unexpired task lease, else ``acquired``
        with a token and the current record.

        :raises LookupError: No record has that ``webhook_id``.
        """
        ...

    def finish_task(
        self,
        webhook_id: str,
        token: str,
        result: ReceiverResult,
        *,
        retention: float,
    ) -> None:
        """Settle a task: merge ``result``, release the task lease (if
        ``token`` still holds it), and set the delivery's status from its
        receivers with :func:`derive_status`, all in one atomic step so two
        tasks of one delivery finishing together cannot lose each other's
        result.
        """
        ...

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        """One delivery, or ``None``."""
        ...

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
        """Deliveries newest first (by first arrival, then ``webhook_id``).

        :param status: Keep these statuses only.
        :param type_pattern: A glob over the event type (``batch.*``).
        :param since: First arrival at or after this time.
        :param until: First arrival before this time.
        :param search: Exact match of the ``webhook_id``, event id or
            object id.
        :param before: A :attr:`Page.cursor` from the previous page.
        """
        ...

    def prune(self, older_than: float) -> int:
        """Forget deliveries last received more than ``older_than`` seconds
        ago and not leased now; return how many."""
        ...

    def reject(self, reason: str, webhook_id: str | None, at: float) -> None:
        """Count a refused delivery and keep it among the recent ones."""
        ...

    def rejections(self, limit: int = 50) -> Rejections:
        """Refusals by reason and the ``limit`` most recent."""
        ...

    def ping(self) -> None:
        """Check that the store is usable; raise
        :class:`~flask_openai_webhooks.errors.StoreError` if not."""
        ...

    def describe(self) -> str:
        """A short description for logs and diagnostics, never with a
        password, e.g. ``"redis://127.0.0.1:6379/0"``."""
        ...


def new_token() -> str:
    """A fresh lease token: 128 random bits."""
    return secrets.token_hex(16)


def derive_status(
    results: Iterable[ReceiverResult], *, handled: bool = True
) -> DeliveryStatus:
    """The status a delivery's receivers add up to: ``failed`` if any
    failed or asked to retry, else ``processing`` if a task is queued, else
    ``gave_up`` if any gave up, else ``processed``; ``unhandled`` when no
    receiver was connected (``handled=False`` and no results).
    """
    outcomes = {r.outcome for r in results}
    if not outcomes:
        return "processed" if handled else "unhandled"
    if "failed" in outcomes or "retry_later" in outcomes:
        return "failed"
    if "queued" in outcomes:
        return "processing"
    if "gave_up" in outcomes:
        return "gave_up"
    return "processed"


def merge_results(
    old: Iterable[ReceiverResult], new: Iterable[ReceiverResult]
) -> tuple[ReceiverResult, ...]:
    """``old`` with each result of ``new`` replacing the one with its key,
    in first-seen order."""
    merged = {r.key: r for r in old}
    for result in new:
        merged[result.key] = result
    return tuple(merged.values())


#: One compact encoder for every record written: ``json.dumps`` builds a
#: new one per call when given ``separators``.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def results_to_json(results: Iterable[ReceiverResult]) -> str:
    return _encode([r.to_dict() for r in results])


def results_from_json(text: str | bytes | None) -> tuple[ReceiverResult, ...]:
    if not text:
        return ()
    try:
        return tuple(ReceiverResult.from_dict(d) for d in json.loads(text))
    except (ValueError, TypeError, AttributeError) as e:
        raise StoreError(f"a stored receiver list is corrupt: {e}") from None


def history_to_json(history: Iterable[HistoryEntry]) -> str:
    return _encode([h.to_dict() for h in history])


def history_from_json(text: str | bytes | None) -> tuple[HistoryEntry, ...]:
    if not text:
        return ()
    try:
        return tuple(HistoryEntry.from_dict(d) for d in json.loads(text))
    except (ValueError, TypeError, AttributeError) as e:
        raise StoreError(f"a stored history is corrupt: {e}") from None


def add_history(
    history: Sequence[HistoryEntry], entry: HistoryEntry
) -> tuple[HistoryEntry, ...]:
    """``history`` with ``entry`` appended, the oldest dropped past
    :data:`MAX_HISTORY`."""
    return (*history, entry)[-MAX_HISTORY:]


def type_matcher(pattern: str | None) -> t.Callable[[str], bool]:
    """A predicate for :meth:`DeliveryStore.list_deliveries`'s
    ``type_pattern``; the same glob rules as
    :func:`~flask_openai_webhooks.receiver`."""
    if not pattern:
        return lambda _type: True
    regex = re.compile(fnmatch.translate(pattern))
    return lambda event_type: regex.match(event_type) is not None


def encode_cursor(first_received_at: float, webhook_id: str) -> str:
    return json.dumps([first_received_at, webhook_id], separators=(",", ":"))


def decode_cursor(cursor: str) -> tuple[float, str]:
    """:raises ValueError: The cursor was not made by :func:`encode_cursor`."""
    try:
        at, webhook_id = json.loads(cursor)
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise TypeError
        if not isinstance(webhook_id, str):
            raise TypeError
    except (ValueError, TypeError):
        raise ValueError(f"not a delivery-log cursor: {cursor[:40]!r}") from None
    return float(at), webhook_id


def check_durations(lease: float | None, retention: float) -> None:
    """:raises ValueError: ``lease`` or ``retention`` is not a positive,
    finite number of seconds (NaN included)."""
    if lease is not None and not (0 < lease < math.inf):
        raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
    if not (0 < retention < math.inf):
        raise ValueError(
            f"retention must be a positive number of seconds, not {retention!r}"
        )


def bounded(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, keeping the end (where a
    traceback's error is)."""
    if text is None or len(text) <= limit:
        return text
    return "...\n" + text[-(limit - 4) :]


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

_ACCEPTED = (
    "Accepted values: 'memory'; 'sqlite:///relative/path.db' (relative to the"
    " app's instance folder) or 'sqlite:////absolute/path.db'; a 'redis://',"
    " 'rediss://' or 'unix://' URL; a 'postgresql://', 'mysql+pymysql://' or"
    " 'mariadb+pymysql://' URL or an sqlalchemy Engine; or an object"
    " implementing DeliveryStore."
)
_SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb")


def _safe_repr(value: object) -> str:
    # Never echo what could be a URL with a password in it, even a
    # mistyped one (redis:/user:pw@host).
    if isinstance(value, str) and ("://" in value or "@" in value or ":" in value):
        return repr(value.split(":", 1)[0] + ":...")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def store_from_config(value: object, *, root: str | None = None) -> DeliveryStore:
    """Turn a configuration value into a store.

    - ``"memory"``: a :class:`~.memory.MemoryStore`.
    - ``"sqlite:///relative/path.db"`` or ``"sqlite:////absolute/path.db"``,
      as SQLAlchemy URLs: an :class:`~.sqlite.SQLiteStore`. A relative path
      is resolved against ``root`` (the app's instance folder), as
      Flask-SQLAlchemy does, so every worker opens the same file whatever
      its working directory.
    - ``"redis://..."``, ``"rediss://..."`` or ``"unix://..."``: a
      :class:`~.redis.RedisStore`.
    - ``"postgresql://..."``, ``"mysql+pymysql://..."``,
      ``"mariadb+pymysql://..."`` or an :class:`sqlalchemy.engine.Engine`:
      an :class:`~.sql.SQLStore`.
    - An object implementing :class:`DeliveryStore`: returned as is.

    Nothing connects yet, so a store that is down does not keep the app
    from starting; requests fail with ``StoreError`` (503) until it is back.

    :raises ValueError: The value is none of the above.
    :raises RuntimeError: The backend's optional package is not installed.
    """
    if isinstance(value, str):
        if value == "memory":
            from .memory import MemoryStore

            return MemoryStore()
        if value.startswith("sqlite:///"):
            path = value[len("sqlite:///") :]
            if not path or path == ":memory:":
                raise ValueError(
                    f"Invalid delivery store {value!r}: an SQLite store needs a"
                    " file path; use 'memory' for an in-memory store. " + _ACCEPTED
                )
            if not os.path.isabs(path) and root is not None:
                path = os.path.join(root, path)
            from .sqlite import SQLiteStore

            return SQLiteStore(path)
        if value.startswith(("redis://", "rediss://", "unix://")):
            from .redis import RedisStore

            return RedisStore(value)
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if "://" in value and scheme in _SQL_SCHEMES:
            from .sql import SQLStore

            return SQLStore(value)
        raise ValueError(f"Invalid delivery store {_safe_repr(value)}. {_ACCEPTED}")
    if type(value).__module__.startswith("sqlalchemy") and hasattr(value, "connect"):
        # An Engine (Flask-SQLAlchemy's db.engine); checked by module name so
        # that SQLAlchemy is not imported for anyone who does not use it.
        from .sql import SQLStore

        return SQLStore(t.cast(t.Any, value))
    if isinstance(value, DeliveryStore) and not isinstance(value, type):
        return value
    hint = " (pass an instance, not the class)" if isinstance(value, type) else ""
    raise ValueError(f"Invalid delivery store {_safe_repr(value)}{hint}. {_ACCEPTED}")


def __getattr__(name: str) -> t.Any:
    # The backends are importable from here, as they were from the old
    # single ``stores`` module, without importing every driver up front.
    if name == "MemoryStore":
        from .memory import MemoryStore

        return MemoryStore
    if name == "SQLiteStore":
        from .sqlite import SQLiteStore

        return SQLiteStore
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    if name == "SQLStore":
        from .sql import SQLStore

        return SQLStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
