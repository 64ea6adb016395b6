"""Delivery stores: where the blueprint remembers which deliveries it has
seen, which one is being processed right now, and which receivers already
succeeded.

OpenAI delivers every event *at least* once and keeps retrying a delivery
with the same ``webhook-id`` for up to 72 hours. Turning that into "each
receiver runs exactly once" needs shared state that survives the request,
and that state lives in a store. A delivery goes through two store calls in
the common case, each a single command or transaction:

1.  :meth:`DeliveryStore.claim` takes a lease on the ``webhook-id``, or
    reports that another worker holds it (``in_flight``) or that the
    delivery was already processed (``done``).
2.  :meth:`DeliveryStore.finish` records the receivers that succeeded and
    either marks the delivery done or releases the lease so OpenAI's retry
    can run the receivers that failed.

:meth:`DeliveryStore.record` is only needed between receivers, so a worker
that is killed half way does not lose the receivers that already ran.

A lease, rather than a plain "processing" flag, is what makes a crash safe:
if a worker dies with ``kill -9`` nothing releases the flag, but the lease
expires and the next retry acquires it again.

Three stores are provided. :class:`MemoryStore` is for tests and single
process servers, :class:`SQLiteStore` for several processes on one machine,
and :class:`RedisStore` for several machines. Any object implementing
:class:`DeliveryStore` can be used instead.

This module does not import Flask, and imports ``redis`` only when a
:class:`RedisStore` is created, so ``redis`` stays an optional dependency.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import math
import os
import secrets
import sqlite3
import threading
import time
import typing as t
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator

from .errors import StoreError

if t.TYPE_CHECKING:
    import redis

__all__ = [
    "Claim",
    "DeliveryStore",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "store_from_config",
]

ClaimStatus = t.Literal["acquired", "in_flight", "done"]

# Record states. "leased" and "released" both mean "not done yet"; only a
# "leased" record whose lease has not expired blocks a new claim.
_LEASED = "leased"
_RELEASED = "released"
_DONE = "done"
_STATES = frozenset((_LEASED, _RELEASED, _DONE))

_REDIS_MISSING = (
    "RedisStore needs the 'redis' package. Install it with"
    " 'pip install Flask-OpenAI-Webhooks[redis]'."
)


@dataclasses.dataclass(frozen=True)
class Claim:
    """The answer of :meth:`DeliveryStore.claim`.

    :param status: ``"acquired"`` if the caller now holds the lease and must
        run the receivers, ``"in_flight"`` if another worker holds an
        unexpired lease, ``"done"`` if the delivery was already processed.
    :param token: The lease token, only set when acquired. It is passed back
        to :meth:`~DeliveryStore.record` and :meth:`~DeliveryStore.finish`
        so that a worker whose lease expired and was taken over cannot
        overwrite the new owner's state.
    :param done_receivers: Receivers that earlier attempts recorded as
        succeeded, only set when acquired. The caller skips them so a retry
        runs only the receivers that failed.
    """

    status: ClaimStatus
    token: str = ""
    done_receivers: frozenset[str] = frozenset()


@t.runtime_checkable
class DeliveryStore(t.Protocol):
    """What the blueprint needs from a store. Implement it to keep delivery
    state somewhere else, e.g. in the application's database.

    Every method must be atomic with respect to concurrent calls from other
    threads, processes and machines sharing the store; that, not speed, is
    the point of a store. Every backend failure must be raised as
    :class:`~flask_openai_webhooks.errors.StoreError` so the blueprint
    answers 503 and OpenAI retries, instead of acknowledging an event whose
    processing could not be recorded.
    """

    def claim(self, webhook_id: str, *, lease: float, retention: float) -> Claim:
        """Try to take the lease on a delivery, in one atomic step.

        - If the delivery is done, return ``Claim("done")``.
        - If it is leased and the lease has not expired, return
          ``Claim("in_flight")``.
        - Otherwise (unknown, released, or the lease expired because its
          worker crashed) take the lease with a fresh random token for
          ``lease`` seconds, keep the record for ``retention`` seconds, and
          return ``Claim("acquired", token, done_receivers)``.

        :param webhook_id: The ``webhook-id`` header, the same on every
            retry of a delivery.
        :param lease: Seconds after which another worker may take over. Must
            be longer than processing a delivery normally takes.
        :param retention: Seconds to remember the delivery. Must cover the
            sender's retry window (72 hours for OpenAI), or a late retry
            runs the receivers again.
        """
        ...

    def record(self, webhook_id: str, token: str, receivers: Iterable[str]) -> None:
        """Add ``receivers`` to the delivery's done receivers and keep the
        lease, so a worker killed before :meth:`finish` does not cause them
        to run again.
        """
        ...

    def finish(
        self,
        webhook_id: str,
        token: str,
        receivers: Iterable[str],
        *,
        done: bool,
        retention: float,
    ) -> None:
        """End an attempt, in one atomic step.

        ``receivers`` are always added to the done receivers: they did
        succeed, whoever holds the lease now. If ``token`` is still the
        lease token, the delivery becomes done (``done=True``) or the lease
        is released so the next retry acquires it at once (``done=False``),
        and the record is kept for ``retention`` seconds. If the token does
        not match, the lease expired and another worker took over; the state
        and lease are left to that worker.
        """
        ...

    def ping(self) -> None:
        """Check that the store is usable. Raise
        :class:`~flask_openai_webhooks.errors.StoreError` if not.
        """
        ...

    def describe(self) -> str:
        """A short description for logs and diagnostics, e.g.
        ``"redis://127.0.0.1:6379/0"``. Never contains a password.
        """
        ...


_INF = math.inf

# Answers without a token are all alike, and Claim is frozen: share them.
_DONE_CLAIM = Claim("done")
_IN_FLIGHT_CLAIM = Claim("in_flight")
_NO_RECEIVERS: frozenset[str] = frozenset()


def _check_durations(lease: float | None, retention: float) -> None:
    # Also rejects NaN, which compares false with everything. The stores
    # call this only when their inline ``0 < x < _INF`` test fails, so the
    # valid case costs two comparisons.
    if lease is not None and not (0 < lease < math.inf):
        raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
    if not (0 < retention < math.inf):
        raise ValueError(
            f"retention must be a positive number of seconds, not {retention!r}"
        )


# Lease tokens only need to differ from every other token that can meet
# the same record, in any process or machine: 64 random bits per process
# followed by a per-process counter (16 hex digits each, 32 in all) are as
# good as 128 random bits for that and much cheaper than asking the OS for
# randomness on every claim. A child created by fork() would inherit the
# prefix and the counter, so it draws a new prefix.
_token_prefix = ""
_token_counter: Iterator[int] = iter(())


def _reseed_tokens() -> None:
    global _token_prefix, _token_counter
    _token_prefix = secrets.token_hex(8)
    _token_counter = itertools.count()


_reseed_tokens()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_tokens)


def _new_token() -> str:
    return f"{_token_prefix}{next(_token_counter):016x}"


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Entry:
    state: str
    token: str
    lease_until: float
    expires_at: float
    receivers: set[str]


class MemoryStore:
    """Keep delivery state in a dict in this process.

    The state is **process-local**: it is lost on restart, and each worker
    of a multi-process server (gunicorn with several workers, uWSGI, ...)
    has its own, so a retry reaching another worker runs the receivers
    again. Use :class:`SQLiteStore` or :class:`RedisStore` there. This store
    is meant for tests, development, and single-process servers.

    Memory use is bounded: the store never holds more than ``max_entries``
    records. When it is full, room is made by dropping, in this order,
    expired records, then the oldest *done* record, then the oldest record
    of any kind. That order is a trade-off: forgetting a done delivery only
    matters if OpenAI delivers it again (the acknowledgement was lost),
    and then its receivers run a second time; forgetting an in-flight one
    lets a concurrent duplicate run at the same time, which is worse. Size
    ``max_entries`` for the number of deliveries expected over the
    retention period to avoid both.

    Records are kept in the order their expiry was last set. With the same
    ``retention`` for every call, as the blueprint does, that is the order
    in which they expire, so expired records are found without scanning.
    An expired record is never returned, wherever it sits.

    :param max_entries: The most records kept.
    :param clock: Returns the current time in seconds. Monotonic by default
        since the records never leave the process; injectable for tests.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        # Ids of done records, oldest first, so eviction finds one in O(1).
        self._done: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _remove(self, webhook_id: str) -> None:
        del self._entries[webhook_id]
        self._done.pop(webhook_id, None)

    def _get(self, webhook_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(webhook_id)
        if entry is not None and entry.expires_at <= now:
            self._remove(webhook_id)
            return None
        return entry

    def _make_room(self, now: float) -> None:
        # Callers skip this when the store is not full and the oldest
        # record has not expired (see _needs_room), when it would do nothing.
        entries = self._entries
        # Expired records sit at the front; each is removed only once, so
        # this loop is O(1) amortized.
        while entries:
            oldest_id, oldest = next(iter(entries.items()))
            if oldest.expires_at > now:
                break
            self._remove(oldest_id)
        if len(entries) < self.max_entries:
            return
        if self._done:
            self._remove(next(iter(self._done)))
        else:
            self._remove(next(iter(entries)))

    def _needs_room(self, now: float) -> bool:
        entries = self._entries
        if len(entries) >= self.max_entries:
            return True
        for oldest in entries.values():
            return oldest.expires_at <= now
        return False

    def _touch(self, webhook_id: str, entry: _Entry) -> None:
        # Call after setting expires_at, to keep the expiry order.
        self._entries.move_to_end(webhook_id)
        if entry.state == _DONE:
            self._done[webhook_id] = None
            self._done.move_to_end(webhook_id)
        else:
            self._done.pop(webhook_id, None)

    def claim(self, webhook_id: str, *, lease: float, retention: float) -> Claim:
        """See :meth:`DeliveryStore.claim`."""
        if not (0 < lease < _INF and 0 < retention < _INF):
            _check_durations(lease, retention)
        with self._lock:
            now = self._clock()
            entry = self._get(webhook_id, now)
            if entry is not None:
                if entry.state == _DONE:
                    return _DONE_CLAIM
                if entry.state == _LEASED and entry.lease_until > now:
                    return _IN_FLIGHT_CLAIM
            token = _new_token()
            lease_until = now + lease
            # Never forget a record while it is leased, or a duplicate could
            # acquire it during processing.
            expires_at = now + retention
            if expires_at < lease_until:
                expires_at = lease_until
            if entry is None:
                if self._needs_room(now):
                    self._make_room(now)
                # A new key goes last, where _touch would move it, and is
                # not in _done: _remove takes it out of both.
                self._entries[webhook_id] = _Entry(
                    _LEASED, token, lease_until, expires_at, set()
                )
                return Claim("acquired", token, _NO_RECEIVERS)
            entry.state = _LEASED
            entry.token = token
            entry.lease_until = lease_until
            entry.expires_at = expires_at
            self._touch(webhook_id, entry)
            receivers = entry.receivers
            return Claim(
                "acquired", token, frozenset(receivers) if receivers else _NO_RECEIVERS
            )

    def record(self, webhook_id: str, token: str, receivers: Iterable[str]) -> None:
        """See :meth:`DeliveryStore.record`. Does nothing if the record was
        evicted; :meth:`finish` recreates it.
        """
        names = set(receivers)
        if not names:
            return
        with self._lock:
            entry = self._get(webhook_id, self._clock())
            if entry is not None:
                entry.receivers |= names

    def finish(
        self,
        webhook_id: str,
        token: str,
        receivers: Iterable[str],
        *,
        done: bool,
        retention: float,
    ) -> None:
        """See :meth:`DeliveryStore.finish`. If the record is gone (evicted
        or expired) nobody else holds a lease on it, so it is recreated.
        """
        if not (0 < retention < _INF):
            _check_durations(None, retention)
        # Consume the iterable before taking the lock: it is caller code.
        names = set(receivers)
        with self._lock:
            now = self._clock()
            entry = self._get(webhook_id, now)
            if entry is None:
                if self._needs_room(now):
                    self._make_room(now)
                entry = _Entry(_RELEASED, "", 0.0, 0.0, set())
                self._entries[webhook_id] = entry
            elif not token or entry.token != token:
                entry.receivers |= names
                return
            entry.receivers |= names
            entry.state = _DONE if done else _RELEASED
            entry.token = ""
            entry.lease_until = 0.0
            entry.expires_at = now + retention
            self._touch(webhook_id, entry)

    def ping(self) -> None:
        """See :meth:`DeliveryStore.ping`. Always succeeds."""

    def describe(self) -> str:
        """See :meth:`DeliveryStore.describe`."""
        return f"memory (process-local, at most {self.max_entries} records)"

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._entries.clear()
            self._done.clear()


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------

_SQLITE_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS openai_webhook_deliveries (
        webhook_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        token TEXT NOT NULL,
        lease_until REAL NOT NULL,
        expires_at REAL NOT NULL,
        receivers TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE INDEX IF NOT EXISTS openai_webhook_deliveries_expires_at
    ON openai_webhook_deliveries (expires_at)
    """,
)
# The table is clustered on webhook_id (WITHOUT ROWID), so looking a record
# up, inserting and updating one touch a single b-tree plus the expiry
# index. Nothing refers to rowid, so a table created with one still works.

# The common claim: an id never seen before is acquired by this one
# autocommit statement. The primary key makes it atomic across processes:
# of several concurrent inserts of an id exactly one adds the row, the
# others add nothing (rowcount 0) and take the BEGIN IMMEDIATE path, which
# reads the row under the write lock. OR IGNORE rather than ON CONFLICT
# works with SQLite older than 3.24; no other constraint can fail here, and
# a row that is not inserted for any reason only means the slow path.
_SQLITE_INSERT_NEW = (
    "INSERT OR IGNORE INTO openai_webhook_deliveries"
    " (webhook_id, state, token, lease_until, expires_at, receivers)"
    " VALUES (?, 'leased', ?, ?, ?, '[]')"
)

# The common finish: the caller still holds the lease (its token is the
# record's, which only a leased record has) and no receiver was recorded,
# so the new receivers are the whole list. One autocommit statement; when
# it changes no row, finish takes the BEGIN IMMEDIATE path. Whether the
# record has expired does not matter here: the slow path would write the
# same row either way.
_SQLITE_FINISH_OWNED = (
    "UPDATE openai_webhook_deliveries"
    " SET state = ?, token = '', lease_until = 0, expires_at = ?, receivers = ?"
    " WHERE webhook_id = ? AND token = ? AND state = 'leased' AND receivers = '[]'"
)

# An autocommit statement waits for the write lock inside execute(), after
# the clock was read for its lease or expiry. If it waited longer than this
# many seconds, the times are set again from a fresh reading, so a lease
# always runs from when it was taken, as on the BEGIN IMMEDIATE path.
_SQLITE_CLOCK_SLACK = 0.05

# Connections inherited through fork(). SQLite forbids using them in the
# child, and closing them there could release locks the parent holds, so
# they are kept referenced and never touched.
_inherited_connections: list[sqlite3.Connection] = []


class SQLiteStore:
    """Keep delivery state in an SQLite database file, shared by every
    process on the machine that opens the same file.

    In the common case, :meth:`claim` of a new delivery and :meth:`finish`
    by the lease holder are each a single autocommit statement (an insert
    that the primary key lets only one process make, an update conditional
    on the token). Everything else is one ``BEGIN IMMEDIATE`` transaction.
    ``IMMEDIATE`` takes the database's write lock *before* reading the
    record, so two processes can never both see a delivery as free and both
    acquire it; the second one waits (up to ``timeout``) and then sees the
    first one's lease. The database uses WAL
    mode so readers never block the writer, with ``synchronous=NORMAL``: a
    power loss may forget the last few deliveries, which only means their
    receivers may run again, the same guarantee OpenAI's at-least-once
    delivery already gives.

    Each thread uses its own connection, and a process created by ``fork``
    (gunicorn workers, for example) opens new ones rather than using the
    parent's, which SQLite does not allow. The file must be on a local disk:
    WAL and file locks do not work over network file systems. For several
    machines use :class:`RedisStore`.

    Expired rows are deleted a small batch at a time during :meth:`claim`,
    so the table stays small without a cron job and no request does
    unbounded work.

    Nothing is opened until the first call, so creating the store at import
    or configuration time is cheap and safe before forking.

    :param path: The database file. Created, with its table, if missing.
    :param timeout: Seconds to wait for another process's write lock before
        failing with :class:`~flask_openai_webhooks.errors.StoreError`.
    :param clock: Returns the current time in seconds. Wall-clock time by
        default, since leases are compared across processes.
    """

    #: Prune expired rows once every this many claims (per process).
    prune_every: int = 64
    #: Delete at most this many expired rows per prune.
    prune_batch: int = 256

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        if self.path in ("", ":memory:") or self.path.startswith("file::memory:"):
            raise ValueError(
                "SQLiteStore needs a database file: an in-memory database is"
                " private to one connection, so it could not deduplicate"
                " across threads. Use MemoryStore instead."
            )
        self.timeout = timeout
        self._clock = clock
        self._local = threading.local()
        # By thread, weakly: a thread that ends (the dev server starts one
        # per request) takes its connection with it instead of leaking it.
        self._connections: weakref.WeakKeyDictionary[
            threading.Thread, tuple[int, sqlite3.Connection]
        ] = weakref.WeakKeyDictionary()
        self._connections_lock = threading.Lock()
        self._claims = itertools.count()

    def _connect(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None:
            if local.pid == pid:
                return conn
            _inherited_connections.append(conn)
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout,
            # Transactions are started explicitly with BEGIN IMMEDIATE.
            isolation_level=None,
            # Each connection is only used by the thread that opened it;
            # this only lets close() close all of them.
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            for statement in _SQLITE_SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        local.conn = conn
        local.pid = pid
        with self._connections_lock:
            self._connections[threading.current_thread()] = (pid, conn)
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs an exclusive lock, and SQLite reports
        # "database is locked" at once instead of calling the busy handler
        # when another process holds the file open, as happens when several
        # workers create the database together. Wait here as busy_timeout
        # would. Once the file is in WAL mode, it stays so.
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"SQLite store {self.path!r}: {exc}") from exc
            raise

    def _load(
        self, conn: sqlite3.Connection, webhook_id: str, now: float
    ) -> tuple[str, str, float, set[str]] | None:
        """Return ``(state, token, lease_until, receivers)``, or ``None`` if
        there is no unexpired record.
        """
        row = conn.execute(
            "SELECT state, token, lease_until, expires_at, receivers"
            " FROM openai_webhook_deliveries WHERE webhook_id = ?",
            (webhook_id,),
        ).fetchone()
        if row is None:
            return None
        state, token, lease_until, expires_at, receivers = row
        if (
            state not in _STATES
            or not isinstance(token, str)
            or not isinstance(lease_until, (int, float))
            or not isinstance(expires_at, (int, float))
        ):
            raise StoreError(f"SQLite store {self.path!r}: corrupt record {row!r}")
        if expires_at <= now:
            return None
        return state, token, float(lease_until), self._load_receivers(receivers)

    def _load_receivers(self, text: object) -> set[str]:
        try:
            names = json.loads(text)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"SQLite store {self.path!r}: corrupt receivers {text!r}"
            ) from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise StoreError(f"SQLite store {self.path!r}: corrupt receivers {text!r}")
        return set(names)

    def _write(
        self,
        conn: sqlite3.Connection,
        webhook_id: str,
        state: str,
        token: str,
        lease_until: float,
        expires_at: float,
        receivers: set[str],
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO openai_webhook_deliveries"
            " (webhook_id, state, token, lease_until, expires_at, receivers)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                webhook_id,
                state,
                token,
                lease_until,
                expires_at,
                json.dumps(sorted(receivers)),
            ),
        )

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        # SQLite's DELETE has no LIMIT unless compiled with an option; the
        # subquery bounds the work and uses the expires_at index.
        conn.execute(
            "DELETE FROM openai_webhook_deliveries WHERE webhook_id IN ("
            " SELECT webhook_id FROM openai_webhook_deliveries"
            " WHERE expires_at <= ? LIMIT ?)",
            (now, self.prune_batch),
        )

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"SQLite store {self.path!r}: {exc}")

    def claim(self, webhook_id: str, *, lease: float, retention: float) -> Claim:
        """See :meth:`DeliveryStore.claim`."""
        if not (0 < lease < _INF and 0 < retention < _INF):
            _check_durations(lease, retention)
        if next(self._claims) % self.prune_every == 0:
            return self._claim_locked(webhook_id, lease, retention, prune=True)
        token = _new_token()
        clock = self._clock
        try:
            conn = self._connect()
            now = clock()
            lease_until = now + lease
            expires_at = now + retention
            if expires_at < lease_until:
                expires_at = lease_until
            cursor = conn.execute(
                _SQLITE_INSERT_NEW, (webhook_id, token, lease_until, expires_at)
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        if cursor.rowcount != 1:
            return self._claim_locked(webhook_id, lease, retention)
        if clock() - now > _SQLITE_CLOCK_SLACK:
            # Waited for the write lock: start the lease from now.
            return self._claim_locked(webhook_id, lease, retention, renew=token)
        return Claim("acquired", token, _NO_RECEIVERS)

    def _claim_locked(
        self,
        webhook_id: str,
        lease: float,
        retention: float,
        *,
        prune: bool = False,
        renew: str = "",
    ) -> Claim:
        """Claim in a BEGIN IMMEDIATE transaction. With ``renew``, a lease
        held with that token is taken again, keeping the token.
        """
        with self._transaction() as conn:
            # Read the clock only once the write lock is held: waiting for
            # it can take a while.
            now = self._clock()
            if prune:
                self._prune(conn, now)
            record = self._load(conn, webhook_id, now)
            receivers: set[str] = set()
            token = ""
            if record is not None:
                state, owner, lease_until, receivers = record
                if state == _DONE:
                    return _DONE_CLAIM
                if renew and state == _LEASED and owner == renew:
                    token = renew
                elif state == _LEASED and lease_until > now:
                    return _IN_FLIGHT_CLAIM
            token = token or _new_token()
            lease_until = now + lease
            expires_at = max(now + retention, lease_until)
            self._write(
                conn, webhook_id, _LEASED, token, lease_until, expires_at, receivers
            )
        return Claim(
            "acquired", token, frozenset(receivers) if receivers else _NO_RECEIVERS
        )

    def record(self, webhook_id: str, token: str, receivers: Iterable[str]) -> None:
        """See :meth:`DeliveryStore.record`."""
        names = set(receivers)
        if not names:
            return
        with self._transaction() as conn:
            record = self._load(conn, webhook_id, self._clock())
            if record is not None and not names <= record[3]:
                conn.execute(
                    "UPDATE openai_webhook_deliveries SET receivers = ?"
                    " WHERE webhook_id = ?",
                    (json.dumps(sorted(names | record[3])), webhook_id),
                )

    def finish(
        self,
        webhook_id: str,
        token: str,
        receivers: Iterable[str],
        *,
        done: bool,
        retention: float,
    ) -> None:
        """See :meth:`DeliveryStore.finish`. If the record is gone (expired)
        nobody else holds a lease on it, so it is recreated.
        """
        if not (0 < retention < _INF):
            _check_durations(None, retention)
        names = set(receivers)
        if token:
            clock = self._clock
            state = _DONE if done else _RELEASED
            try:
                conn = self._connect()
                now = clock()
                expires_at = now + retention
                cursor = conn.execute(
                    _SQLITE_FINISH_OWNED,
                    (state, expires_at, json.dumps(sorted(names)), webhook_id, token),
                )
                if cursor.rowcount == 1:
                    if clock() - now > _SQLITE_CLOCK_SLACK:
                        # Waited for the write lock: keep the record for
                        # ``retention`` from now, unless it changed since.
                        conn.execute(
                            "UPDATE openai_webhook_deliveries SET expires_at = ?"
                            " WHERE webhook_id = ? AND state = ? AND token = ''"
                            " AND expires_at = ?",
                            (clock() + retention, webhook_id, state, expires_at),
                        )
                    return
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
        with self._transaction() as conn:
            now = self._clock()
            record = self._load(conn, webhook_id, now)
            if record is None or (token and record[1] == token):
                if record is not None:
                    names |= record[3]
                state = _DONE if done else _RELEASED
                self._write(conn, webhook_id, state, "", 0.0, now + retention, names)
            elif not names <= record[3]:
                conn.execute(
                    "UPDATE openai_webhook_deliveries SET receivers = ?"
                    " WHERE webhook_id = ?",
                    (json.dumps(sorted(names | record[3])), webhook_id),
                )

    def ping(self) -> None:
        """See :meth:`DeliveryStore.ping`. Opens the database, creating it
        and its table if needed, and takes the write lock once.
        """
        with self._transaction() as conn:
            conn.execute("SELECT count(*) FROM openai_webhook_deliveries LIMIT 1")

    def describe(self) -> str:
        """See :meth:`DeliveryStore.describe`."""
        return f"sqlite:///{os.path.abspath(self.path)}"

    def close(self) -> None:
        """Close the connections this process opened, in every thread. The
        store opens new ones if used again.
        """
        pid = os.getpid()
        with self._connections_lock:
            mine = [
                (thread, conn)
                for thread, (owner, conn) in list(self._connections.items())
                if owner == pid
            ]
            for thread, _ in mine:
                del self._connections[thread]
        for _, conn in mine:
            conn.close()
        self._local = threading.local()


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------

# All times are taken from the server's clock (TIME), so the machines
# sharing the store agree on when a lease expires even if their own clocks
# drift. Receivers are stored as hash fields "r:<name>", which makes the
# union a plain HSET. Each script touches only KEYS[1], so it also runs on
# Redis Cluster.
_LUA_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
"""

_LUA_CLAIM = (
    _LUA_PRELUDE
    + """
local lease_ms = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = redis.call('HGETALL', key)
local state = false
local lease_until = 0
local result = {'acquired'}
for i = 1, #fields, 2 do
    local field = fields[i]
    if field == 'state' then
        state = fields[i + 1]
    elseif field == 'lease' then
        lease_until = tonumber(fields[i + 1]) or 0
    elseif string.sub(field, 1, 2) == 'r:' then
        result[#result + 1] = string.sub(field, 3)
    end
end
if state == 'done' then
    return {'done'}
end
if state == 'leased' then
    if lease_until > now then
        return {'in_flight'}
    end
elseif state and state ~= 'released' then
    return redis.error_reply('corrupt delivery record ' .. key)
end
redis.call('HSET', key, 'state', 'leased', 'token', ARGV[1],
    'lease', string.format('%.0f', now + lease_ms))
redis.call('PEXPIRE', key, math.max(ttl_ms, lease_ms))
return result
"""
)

_LUA_RECORD = (
    _LUA_PRELUDE
    + """
if redis.call('EXISTS', key) == 0 then
    return 0
end
for i = 1, #ARGV do
    redis.call('HSET', key, 'r:' .. ARGV[i], '1')
end
return 1
"""
)

_LUA_FINISH = (
    _LUA_PRELUDE
    + """
local token = ARGV[1]
local owner = true
if redis.call('EXISTS', key) == 1 then
    owner = token ~= '' and redis.call('HGET', key, 'token') == token
end
for i = 4, #ARGV do
    redis.call('HSET', key, 'r:' .. ARGV[i], '1')
end
if owner then
    redis.call('HSET', key, 'state', ARGV[2], 'token', '', 'lease', '0')
    redis.call('PEXPIRE', key, tonumber(ARGV[3]))
    return 1
end
return 0
"""
)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStore:
    """Keep delivery state in Redis, shared by every machine that uses the
    same server and ``prefix``.

    Each delivery is one hash, ``prefix + webhook_id``, which expires after
    the retention period, so Redis does the cleanup. :meth:`claim`,
    :meth:`record` and :meth:`finish` are each one Lua script, so one round
    trip, and Redis runs a script atomically: no other command sees a half
    updated record, and two workers can never both acquire a delivery.
    Lease expiry is computed with the server's clock (``TIME``), not the
    workers', so machines with drifting clocks still agree on it.

    Works with managed Redis services (``rediss://`` URLs for TLS, ACL user
    names and passwords in the URL) and anything speaking the Redis
    protocol with Lua scripting, such as Valkey. Only ``EVALSHA``,
    ``EVAL``, ``SCRIPT LOAD`` and ``PING`` are needed. Each script touches a
    single key, so a Redis Cluster client can be passed too.

    :param url_or_client: A ``redis://``, ``rediss://`` or ``unix://`` URL,
        or an existing :class:`redis.Redis` client to share its connection
        pool. A client created from a URL uses ``socket_timeout`` and few,
        quick retries, so that an unreachable server fails the request in
        seconds (the blueprint answers 503 and OpenAI retries) rather than
        holding the worker. A passed client is used as configured.
    :param prefix: Prepended to every key, to share a database with other
        data or other applications.
    :param socket_timeout: Seconds to wait to connect and for each reply,
        for a client created from a URL.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "openai-webhooks:",
        socket_timeout: float = 5.0,
    ) -> None:
        try:
            import redis
            from redis.backoff import EqualJitterBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise RuntimeError(_REDIS_MISSING) from exc

        if isinstance(url_or_client, str):
            # Retrying a script after a lost reply is safe: a repeated claim
            # sees our own lease ("in_flight", so 409 and OpenAI retries
            # later), a repeated record or finish changes nothing.
            client = redis.Redis.from_url(
                url_or_client,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(EqualJitterBackoff(cap=0.2, base=0.01), 2),
            )
            self._owns_client = True
        else:
            client = url_or_client
            self._owns_client = False
        self.client = client
        self.prefix = prefix
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._claim = client.register_script(_LUA_CLAIM)
        self._record = client.register_script(_LUA_RECORD)
        self._finish = client.register_script(_LUA_FINISH)

    def _run(self, script: t.Any, webhook_id: str, args: list[str | int]) -> t.Any:
        try:
            return script(keys=[self.prefix + webhook_id], args=args)
        except self._errors as exc:
            raise StoreError(f"Redis store {self.describe()}: {exc}") from exc

    def _corrupt(self, reply: object) -> StoreError:
        return StoreError(f"Redis store {self.describe()}: unexpected reply {reply!r}")

    def claim(self, webhook_id: str, *, lease: float, retention: float) -> Claim:
        """See :meth:`DeliveryStore.claim`."""
        if not (0 < lease < _INF and 0 < retention < _INF):
            _check_durations(lease, retention)
        token = _new_token()
        reply = self._run(self._claim, webhook_id, [token, _ms(lease), _ms(retention)])
        # The common replies, as bytes or, with decode_responses, str.
        if type(reply) is list and len(reply) == 1:
            first = reply[0]
            if first == b"acquired" or first == "acquired":
                return Claim("acquired", token, _NO_RECEIVERS)
            if first == b"in_flight" or first == "in_flight":
                return _IN_FLIGHT_CLAIM
            if first == b"done" or first == "done":
                return _DONE_CLAIM
        try:
            names = [
                item.decode() if isinstance(item, bytes) else item for item in reply
            ]
        except (TypeError, UnicodeDecodeError) as exc:
            raise self._corrupt(reply) from exc
        if not names or not all(isinstance(name, str) for name in names):
            raise self._corrupt(reply)
        status = names[0]
        if status == "acquired":
            return Claim("acquired", token, frozenset(names[1:]))
        if status == "in_flight":
            return _IN_FLIGHT_CLAIM
        if status == "done":
            return _DONE_CLAIM
        raise self._corrupt(reply)

    def record(self, webhook_id: str, token: str, receivers: Iterable[str]) -> None:
        """See :meth:`DeliveryStore.record`."""
        names: list[str | int] = sorted(set(receivers))
        if names:
            self._run(self._record, webhook_id, names)

    def finish(
        self,
        webhook_id: str,
        token: str,
        receivers: Iterable[str],
        *,
        done: bool,
        retention: float,
    ) -> None:
        """See :meth:`DeliveryStore.finish`. If the key is gone (expired)
        nobody else holds a lease on it, so it is recreated.
        """
        if not (0 < retention < _INF):
            _check_durations(None, retention)
        args: list[str | int] = [token, _DONE if done else _RELEASED, _ms(retention)]
        args.extend(sorted(set(receivers)))
        self._run(self._finish, webhook_id, args)

    def ping(self) -> None:
        """See :meth:`DeliveryStore.ping`."""
        try:
            self.client.ping()
        except self._errors as exc:
            raise StoreError(f"Redis store {self.describe()}: {exc}") from exc

    def describe(self) -> str:
        """See :meth:`DeliveryStore.describe`. Built from the connection
        settings, leaving out the password.
        """
        try:
            from redis.connection import SSLConnection

            pool = self.client.connection_pool
            kwargs = pool.connection_kwargs
            db = kwargs.get("db", 0)
            user = kwargs.get("username")
            userinfo = f"{user}@" if user else ""
            if "path" in kwargs:
                return f"unix://{userinfo}{kwargs['path']}?db={db}"
            scheme = (
                "rediss"
                if issubclass(pool.connection_class, SSLConnection)
                else "redis"
            )
            host = str(kwargs.get("host", "localhost"))
            if ":" in host:
                host = f"[{host}]"
            return f"{scheme}://{userinfo}{host}:{kwargs.get('port', 6379)}/{db}"
        except Exception:
            # A cluster or custom client: say what it is, nothing more.
            return f"redis ({type(self.client).__name__})"

    def close(self) -> None:
        """Close the client's connections if the store created the client
        from a URL. A client that was passed in is left to its owner.
        """
        if self._owns_client:
            self.client.close()


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

_ACCEPTED = (
    "Accepted values: 'memory'; 'sqlite:///relative/path.db' or"
    " 'sqlite:////absolute/path.db'; a 'redis://', 'rediss://' or 'unix://'"
    " URL; or an object implementing DeliveryStore."
)


def _safe_repr(value: object) -> str:
    # Never echo what could be a URL with a password in it, even a
    # mistyped one (redis:/user:pw@host).
    if isinstance(value, str) and ("://" in value or "@" in value or ":" in value):
        return repr(value.split(":", 1)[0] + ":...")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def store_from_config(value: object) -> DeliveryStore:
    """Turn a configuration value into a store.

    - ``"memory"``: a :class:`MemoryStore`.
    - ``"sqlite:///relative/path.db"`` (relative to the current directory)
      or ``"sqlite:////absolute/path.db"``, like SQLAlchemy URLs: an
      :class:`SQLiteStore`.
    - ``"redis://..."``, ``"rediss://..."`` or ``"unix://..."``: a
      :class:`RedisStore`.
    - An object implementing :class:`DeliveryStore`: returned as is.

    Nothing is connected yet, so a store that is down does not prevent the
    application from starting; it fails requests with
    :class:`~flask_openai_webhooks.errors.StoreError` until it is back.

    :raises ValueError: The value is none of the above.
    :raises RuntimeError: A Redis URL was given but ``redis`` is not
        installed.
    """
    if isinstance(value, str):
        if value == "memory":
            return MemoryStore()
        if value.startswith("sqlite:///"):
            path = value[len("sqlite:///") :]
            if not path or path == ":memory:":
                raise ValueError(
                    f"Invalid delivery store {value!r}: an SQLite store needs a"
                    " file path; use 'memory' for an in-memory store. " + _ACCEPTED
                )
            return SQLiteStore(path)
        if value.startswith(("redis://", "rediss://", "unix://")):
            return RedisStore(value)
        raise ValueError(f"Invalid delivery store {_safe_repr(value)}. {_ACCEPTED}")
    if isinstance(value, DeliveryStore) and not isinstance(value, type):
        return value
    hint = " (pass an instance, not the class)" if isinstance(value, type) else ""
    raise ValueError(f"Invalid delivery store {_safe_repr(value)}{hint}. {_ACCEPTED}")
