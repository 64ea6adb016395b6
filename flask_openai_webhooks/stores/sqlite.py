"""The SQLite delivery store: one database file shared by every process on
one machine.

Every call that writes is one ``BEGIN IMMEDIATE`` transaction.
``IMMEDIATE`` takes the database's write lock *before* the record is read,
so two processes can never both see a delivery as free and both take its
lease: the second one waits (up to ``timeout``) and then sees the first
one's lease. The receivers, the history and the task leases are JSON
columns, read, changed and written back under that lock. A delivery's
common path takes one statement in each transaction: the insert that finds
it new, and the update that finishes a first attempt (whose record holds
nothing yet that the finish would have to read).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import sqlite3
import threading
import time
import typing as t
import weakref
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Sequence

from ..errors import StoreError
from . import add_history
from . import bounded
from . import check_durations
from . import Claim
from . import decode_cursor
from . import Delivery
from . import DELIVERY_STATUSES
from . import DeliveryRecord
from . import DeliveryStatus
from . import derive_status
from . import DONE_STATUSES
from . import encode_cursor
from . import history_from_json
from . import history_to_json
from . import HistoryEntry
from . import MAX_MESSAGE
from . import MAX_REJECTIONS
from . import MAX_TRACEBACK
from . import merge_results
from . import new_token
from . import Page
from . import ReceiverResult
from . import Rejection
from . import Rejections
from . import results_from_json
from . import results_to_json
from . import Source
from . import type_matcher

__all__ = ["SQLiteStore"]

_DELIVERIES = "openai_webhook_deliveries"
_REJECTIONS = "openai_webhook_rejections"
_COUNTS = "openai_webhook_rejection_counts"

# The body comes last: SQLite stores a row's columns in order, so a large
# body spilling into overflow pages leaves the other columns on the row's
# first page, where listing and lease checks read them.
_SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {_DELIVERIES} (
        webhook_id TEXT PRIMARY KEY NOT NULL,
        event_type TEXT NOT NULL,
        event_id TEXT NOT NULL,
        object_id TEXT,
        created_at INTEGER,
        first_received_at REAL NOT NULL,
        last_received_at REAL NOT NULL,
        attempts INTEGER NOT NULL,
        status TEXT NOT NULL,
        status_code INTEGER,
        source TEXT NOT NULL,
        lease_token TEXT NOT NULL,
        lease_until REAL NOT NULL,
        expires_at REAL NOT NULL,
        task_leases TEXT NOT NULL,
        receivers TEXT NOT NULL,
        history TEXT NOT NULL,
        body BLOB NOT NULL
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {_DELIVERIES}_listing"
    f" ON {_DELIVERIES} (first_received_at, webhook_id)",
    f"CREATE INDEX IF NOT EXISTS {_DELIVERIES}_event_id ON {_DELIVERIES} (event_id)",
    f"CREATE INDEX IF NOT EXISTS {_DELIVERIES}_object_id ON {_DELIVERIES} (object_id)",
    f"CREATE INDEX IF NOT EXISTS {_DELIVERIES}_expires_at"
    f" ON {_DELIVERIES} (expires_at)",
    f"""
    CREATE TABLE IF NOT EXISTS {_REJECTIONS} (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        reason TEXT NOT NULL,
        webhook_id TEXT
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {_COUNTS} (
        reason TEXT PRIMARY KEY NOT NULL,
        count INTEGER NOT NULL
    )
    """,
)

# SQLite opens a file it may not write (permissions, a read-only mount, the
# immutable attribute) read-only without a word, and such a connection
# stays read-only after the file is fixed. A statement that starts a write
# transaction fails on it at once, and changes nothing on any other.
_WRITE_PROBE = f"DELETE FROM {_COUNTS} WHERE 0"

# Everything but the body, in the order of _Row's fields.
_COLUMNS = (
    "webhook_id, event_type, event_id, object_id, created_at,"
    " first_received_at, last_received_at, attempts, status, status_code,"
    " source, lease_token, lease_until, expires_at, task_leases, receivers,"
    " history"
)

_INSERT_VALUES = " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# A new delivery, in the one statement that also tells whether it is new:
# of several processes inserting one webhook_id, the primary key lets
# exactly one add the row.
_INSERT_NEW = (
    f"INSERT INTO {_DELIVERIES} ({_COLUMNS}, body){_INSERT_VALUES}"
    " ON CONFLICT (webhook_id) DO NOTHING"
)
# A record written whole over an expired one, or recreated by a finish.
_REPLACE = f"INSERT OR REPLACE INTO {_DELIVERIES} ({_COLUMNS}, body){_INSERT_VALUES}"
# What changes after a delivery is first logged; its ids and body never do.
_UPDATE = (
    f"UPDATE {_DELIVERIES} SET last_received_at = ?, attempts = ?, status = ?,"
    " status_code = ?, lease_token = ?, lease_until = ?, expires_at = ?,"
    " task_leases = ?, receivers = ?, history = ? WHERE webhook_id = ?"
)

# The JSON columns of a record with no task lease, result or history, as
# json.dumps writes them.
_NO_TASKS = "{}"
_NO_RESULTS = "[]"
_NO_HISTORY = "[]"

# The finish of a first attempt by its lease holder, the common case: the
# record is still as the claim that created it left it (no result, no
# history, no task lease written since), so what the finish writes is
# known without reading it. Any other record (a retry's, one with results
# written between receivers, a lease taken over, a corrupt one) matches
# nothing here and is read, merged and written in the same transaction.
_FINISH_FIRST = (
    f"UPDATE {_DELIVERIES} SET status = ?, status_code = coalesce(?, status_code),"
    " lease_token = '', lease_until = 0.0, expires_at = max(expires_at, ?),"
    " receivers = ?, history = ?"
    " WHERE webhook_id = ? AND lease_token = ? AND expires_at > ?"
    f" AND status = 'processing' AND task_leases = '{_NO_TASKS}'"
    f" AND receivers = '{_NO_RESULTS}' AND history = '{_NO_HISTORY}'"
)

_TYPE_MATCH = "openai_webhooks_type_match"

# Connections held when the process forks, and connections inherited
# through fork. SQLite forbids using a connection in a child, and closing
# one there is a use: they are kept referenced and never touched, so
# neither the child's garbage collector nor close() runs into them.
_forking: list[sqlite3.Connection] = []
_inherited: list[sqlite3.Connection] = []
_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
# Held from before a fork until after it, so no other thread can be
# changing _stores in the middle.
_stores_lock = threading.Lock()


def _before_fork() -> None:
    _stores_lock.acquire()
    for store in _stores:
        _forking.extend(store._open_connections())


def _after_fork_in_parent() -> None:
    _forking.clear()
    _stores_lock.release()


def _after_fork_in_child() -> None:
    _inherited.extend(_forking)
    _forking.clear()
    for store in _stores:
        store._forget_connections()
    _stores_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


@functools.lru_cache(maxsize=64)
def _matcher(pattern: str) -> Callable[[str], bool]:
    return type_matcher(pattern)


def _type_match(pattern: str, event_type: str) -> bool:
    return _matcher(pattern)(event_type)


def _bounded(result: ReceiverResult) -> ReceiverResult:
    """``result`` with its message and traceback cut to size, so a record
    stays small whatever a receiver raises."""
    message = bounded(result.error_message, MAX_MESSAGE)
    traceback = bounded(result.traceback, MAX_TRACEBACK)
    if message is result.error_message and traceback is result.traceback:
        return result
    return dataclasses.replace(result, error_message=message, traceback=traceback)


@dataclasses.dataclass
class _Row:
    """A row of the deliveries table but its body, decoded."""

    webhook_id: str
    event_type: str
    event_id: str
    object_id: str | None
    created_at: int | None
    first_received_at: float
    last_received_at: float
    attempts: int
    status: DeliveryStatus
    status_code: int | None
    source: Source
    lease_token: str
    lease_until: float
    expires_at: float
    #: Task key -> (token, lease_until) for each task lease taken and not
    #: released; an expired one is as good as none.
    task_leases: dict[str, tuple[str, float]]
    receivers: tuple[ReceiverResult, ...]
    history: tuple[HistoryEntry, ...]

    @classmethod
    def decode(cls, row: Sequence[t.Any]) -> _Row:
        """Check and decode the columns of :data:`_COLUMNS`."""
        try:
            (
                webhook_id,
                event_type,
                event_id,
                object_id,
                created_at,
                first_received_at,
                last_received_at,
                attempts,
                status,
                status_code,
                source,
                lease_token,
                lease_until,
                expires_at,
                task_leases,
                receivers,
                history,
            ) = row[:17]
            if status not in DELIVERY_STATUSES:
                raise ValueError(f"unknown status {status!r}")
            return cls(
                webhook_id=webhook_id,
                event_type=event_type,
                event_id=event_id,
                object_id=object_id,
                created_at=created_at,
                first_received_at=float(first_received_at),
                last_received_at=float(last_received_at),
                attempts=int(attempts),
                status=status,
                status_code=status_code,
                source=source,
                lease_token=str(lease_token),
                lease_until=float(lease_until),
                expires_at=float(expires_at),
                task_leases={
                    str(key): (str(token), float(until))
                    for key, (token, until) in json.loads(task_leases).items()
                },
                receivers=results_from_json(receivers),
                history=history_from_json(history),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreError(
                f"a stored delivery record is corrupt: {str(exc)[:200]}"
            ) from None

    @classmethod
    def new(
        cls,
        webhook_id: str,
        *,
        at: float,
        source: Source,
        expires_at: float,
        delivery: Delivery | None = None,
    ) -> _Row:
        """A new record, of ``delivery`` when there is one; else known only
        by its id, as when a finish recreates a record pruned meanwhile."""
        return cls(
            webhook_id=webhook_id,
            event_type=delivery.event_type if delivery else "",
            event_id=delivery.event_id if delivery else "",
            object_id=delivery.object_id if delivery else None,
            created_at=delivery.created_at if delivery else None,
            first_received_at=at,
            last_received_at=at,
            attempts=1,
            status="processing",
            status_code=None,
            source=source,
            lease_token="",
            lease_until=0.0,
            expires_at=expires_at,
            task_leases={},
            receivers=(),
            history=(),
        )

    def record(self, body: bytes) -> DeliveryRecord:
        return DeliveryRecord(
            webhook_id=self.webhook_id,
            event_type=self.event_type,
            event_id=self.event_id,
            object_id=self.object_id,
            created_at=self.created_at,
            body=body,
            first_received_at=self.first_received_at,
            last_received_at=self.last_received_at,
            attempts=self.attempts,
            status=self.status,
            status_code=self.status_code,
            source=self.source,
            receivers=self.receivers,
            history=self.history,
        )

    def leased(self, now: float) -> bool:
        return bool(self.lease_token) and self.lease_until > now

    def task_leased(self, now: float) -> bool:
        return any(until > now for _, until in self.task_leases.values())

    def json_columns(self) -> tuple[str, str, str]:
        """``task_leases``, ``receivers`` and ``history`` as stored. A new
        record's are empty: their text is known without encoding."""
        return (
            json.dumps(self.task_leases, separators=(",", ":"))
            if self.task_leases
            else _NO_TASKS,
            results_to_json(self.receivers) if self.receivers else _NO_RESULTS,
            history_to_json(self.history) if self.history else _NO_HISTORY,
        )

    def update_values(self) -> tuple[t.Any, ...]:
        """The parameters of :data:`_UPDATE`."""
        return (
            self.last_received_at,
            self.attempts,
            self.status,
            self.status_code,
            self.lease_token,
            self.lease_until,
            self.expires_at,
            *self.json_columns(),
            self.webhook_id,
        )

    def insert_values(self, body: bytes) -> tuple[t.Any, ...]:
        """The parameters of :data:`_INSERT_NEW` and :data:`_REPLACE`."""
        return (
            self.webhook_id,
            self.event_type,
            self.event_id,
            self.object_id,
            self.created_at,
            self.first_received_at,
            self.last_received_at,
            self.attempts,
            self.status,
            self.status_code,
            self.source,
            self.lease_token,
            self.lease_until,
            self.expires_at,
            *self.json_columns(),
            body,
        )


class _Write:
    """What :meth:`SQLiteStore._write` returns: a class rather than a
    generator-based context manager, since every delivery enters two."""

    __slots__ = ("_store", "_conn")

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        try:
            conn = store._connect()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            store._drop_connection()
            raise store._error(exc) from exc
        self._conn = conn
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: object,
    ) -> None:
        conn = self._conn
        if exc is None:
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.Error as error:
                exc = error
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            store = self._store
            store._drop_connection()
            raise store._error(exc) from exc
        # Any other exception goes on as it is.


class SQLiteStore:
    """Keep the delivery log and the leases in an SQLite database file,
    shared by every process on the machine that opens the same file.

    The database uses WAL mode, so readers never block the writer, with
    ``synchronous=NORMAL``: a power loss may forget the last deliveries,
    which only means their receivers may run again, the guarantee OpenAI's
    at-least-once delivery gives anyway. The file must be on a local disk
    (WAL and file locks do not work over network file systems), and the
    process needs to write the file and its directory, where SQLite keeps
    the ``-wal`` and ``-shm`` files; readers need that too. For several
    machines use :class:`~.redis.RedisStore` or :class:`~.sql.SQLStore`.

    Each thread uses its own connection. A process created by ``fork``
    (gunicorn workers, for example) opens new ones rather than use its
    parent's, which SQLite forbids. A connection is never kept after a
    failed statement: one opened while the file could not be written is
    read-only for good, so the next call opens a fresh one and succeeds as
    soon as the file is fixed, without a restart.

    Expired records are deleted a small batch at a time during claims, so
    the table stays small without a cron job and no request does unbounded
    work. Nothing is opened before the first call, so creating the store at
    import or configuration time is cheap and safe before forking.

    :param path: The database file. Created, with its tables, if missing.
    :param timeout: Seconds to wait for another process's write lock before
        failing with :class:`~flask_openai_webhooks.errors.StoreError`.
    :param clock: Returns the current wall-clock time in seconds; leases
        are compared across processes. Injectable for tests.
    """

    #: Delete expired records once every this many claims (per process).
    prune_every: int = 64
    #: Delete at most this many expired records at a time.
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
        self._claims = itertools.count()
        self._forget_connections()
        with _stores_lock:
            _stores.add(self)

    # ----------------------------------------------------------------------
    # Connections
    # ----------------------------------------------------------------------

    def _forget_connections(self) -> None:
        # Also what a forked child does: the lock could have been held by a
        # thread that does not exist there.
        self._local = threading.local()
        self._lock = threading.Lock()
        # By thread, weakly: a thread that ends (the dev server starts one
        # per request) takes its connection with it instead of leaking it.
        self._connections: weakref.WeakKeyDictionary[
            threading.Thread, tuple[int, sqlite3.Connection]
        ] = weakref.WeakKeyDictionary()

    def _open_connections(self) -> list[sqlite3.Connection]:
        with self._lock:
            return [conn for _, conn in self._connections.values()]

    def _connect(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        pid = os.getpid()
        if conn is not None:
            if local.pid == pid:
                return conn
            # Inherited through a fork the handlers did not see.
            _inherited.append(conn)
            local.conn = None
        conn = self._open()
        local.conn = conn
        local.pid = pid
        with self._lock:
            self._connections[threading.current_thread()] = (pid, conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout,
            # Transactions are started explicitly, with BEGIN IMMEDIATE.
            isolation_level=None,
            # Each connection is used by the thread that opened it only;
            # this lets close() close them all.
            check_same_thread=False,
        )
        try:
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function(_TYPE_MATCH, 2, _type_match, deterministic=True)
            conn.execute("BEGIN IMMEDIATE")
            table, *others = _SCHEMA
            conn.execute(table)
            self._check_columns(conn)
            for statement in others:
                conn.execute(statement)
            conn.execute(_WRITE_PROBE)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_columns(self, conn: sqlite3.Connection) -> None:
        # A file from before the delivery log (0.1.0 development versions)
        # has a table of the same name with leases only: say so, rather
        # than fail every call with "no such column".
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({_DELIVERIES})")}
        if "body" not in columns:
            raise StoreError(
                f"SQLite store {os.path.abspath(self.path)}: the table"
                f" {_DELIVERIES} was made by an earlier version of"
                " Flask-OpenAI-Webhooks and holds no delivery log. Point the"
                " store at a new file, or delete this one once no delivery"
                " of the last 72 hours can be retried."
            )

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs an exclusive lock, and SQLite reports
        # "database is locked" at once instead of calling the busy handler
        # when another process has the file open, as when several workers
        # create the database together. Wait here as busy_timeout would.
        # Once the file is in WAL mode, it stays so.
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

    def _drop_connection(self) -> None:
        """Close this thread's connection, so the next call opens a fresh
        one instead of reusing one that may be read-only or broken."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        local.conn = None
        if conn is None or local.pid != os.getpid():
            return
        with self._lock:
            self._connections.pop(threading.current_thread(), None)
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def _error(self, exc: sqlite3.Error) -> StoreError:
        where = os.path.abspath(self.path)
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            hint = (
                f" (another connection held the write lock for more than"
                f" {self.timeout:g} seconds)"
            )
        elif any(
            word in lowered
            for word in ("readonly", "read-only", "unable to open", "i/o", "access")
        ):
            hint = (
                ". Check that the directory exists and that this process may"
                " write the database file, its directory and its -wal and -shm"
                " files (ownership, permissions, read-only mounts, immutable"
                " attributes)"
            )
        elif "full" in lowered:
            hint = ". Free some disk space on the file's file system"
        else:
            hint = ""
        return StoreError(f"SQLite store {where}: {text}{hint}")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite's errors into :class:`StoreError`, dropping the
        connection that failed."""
        try:
            yield
        except sqlite3.Error as exc:
            self._drop_connection()
            raise self._error(exc) from exc

    def _write(self) -> _Write:
        """One ``BEGIN IMMEDIATE`` transaction, committed if the block
        returns, rolled back if it raises; SQLite's errors are turned into
        :class:`StoreError` as by :meth:`_errors`."""
        return _Write(self)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read-only transaction: its statements see one snapshot."""
        with self._errors():
            conn = self._connect()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("COMMIT")

    # ----------------------------------------------------------------------
    # Rows
    # ----------------------------------------------------------------------

    @staticmethod
    def _load(conn: sqlite3.Connection, webhook_id: str, now: float) -> _Row | None:
        """The record, or ``None`` if there is none that has not expired."""
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM {_DELIVERIES} WHERE webhook_id = ?",
            (webhook_id,),
        ).fetchone()
        if row is None:
            return None
        record = _Row.decode(row)
        return record if record.expires_at > now else None

    @staticmethod
    def _body(conn: sqlite3.Connection, webhook_id: str) -> bytes:
        (body,) = conn.execute(
            f"SELECT body FROM {_DELIVERIES} WHERE webhook_id = ?", (webhook_id,)
        ).fetchone()
        return bytes(body)

    def _prune_expired(self, conn: sqlite3.Connection, now: float) -> None:
        # A record never expires while leased: every lease pushes
        # expires_at past its end. SQLite's DELETE has no LIMIT unless
        # compiled with an option; the subquery bounds the work.
        conn.execute(
            f"DELETE FROM {_DELIVERIES} WHERE rowid IN (SELECT rowid"
            f" FROM {_DELIVERIES} WHERE expires_at <= ? LIMIT ?)",
            (now, self.prune_batch),
        )

    # ----------------------------------------------------------------------
    # The protocol
    # ----------------------------------------------------------------------

    def claim(self, delivery: Delivery, *, lease: float, retention: float) -> Claim:
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.claim`.
        A new delivery takes one insert."""
        check_durations(lease, retention)
        prune = next(self._claims) % self.prune_every == 0
        token = new_token()
        at = delivery.received_at
        with self._write() as conn:
            # Read the clock once the write lock is held: waiting for it can
            # take a while, and a lease counts from when it was taken.
            now = self._clock()
            if prune:
                self._prune_expired(conn, now)
            lease_until = now + lease
            new = _Row.new(
                delivery.webhook_id,
                at=at,
                source=delivery.source,
                expires_at=max(now + retention, lease_until),
                delivery=delivery,
            )
            new.lease_token = token
            new.lease_until = lease_until
            values = new.insert_values(delivery.body)
            if conn.execute(_INSERT_NEW, values).rowcount == 1:
                return Claim("acquired", token)
            row = self._load(conn, delivery.webhook_id, now)
            if row is None:
                # Expired, not deleted yet: as good as gone.
                conn.execute(_REPLACE, values)
                return Claim("acquired", token)
            before = row.record(self._body(conn, delivery.webhook_id))
            row.attempts += 1
            row.last_received_at = at
            row.expires_at = max(row.expires_at, now + retention)
            if row.status in DONE_STATUSES and delivery.source != "replay":
                claim = Claim("done")
                row.history = add_history(
                    row.history, HistoryEntry(at, delivery.source, "duplicate", 200)
                )
            elif row.leased(now):
                claim = Claim("in_flight")
                row.history = add_history(
                    row.history, HistoryEntry(at, delivery.source, "in_flight", 409)
                )
            else:
                claim = Claim("acquired", token, before)
                row.status = "processing"
                row.lease_token = token
                row.lease_until = lease_until
                row.expires_at = max(row.expires_at, lease_until)
            conn.execute(_UPDATE, row.update_values())
        return claim

    def record(
        self, webhook_id: str, token: str, results: Sequence[ReceiverResult]
    ) -> None:
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.record`.
        Does nothing if the record is gone: :meth:`finish` recreates it."""
        if not results:
            return
        with self._write() as conn:
            row = self._load(conn, webhook_id, self._clock())
            if row is not None:
                row.receivers = merge_results(row.receivers, map(_bounded, results))
                conn.execute(_UPDATE, row.update_values())

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
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.finish`.
        A record that is gone is recreated with the results, the status and
        no body."""
        check_durations(None, retention)
        # One result per key, as merging them into the record leaves them:
        # the one-statement finish writes the list as it is.
        results = merge_results((), map(_bounded, results))
        with self._write() as conn:
            now = self._clock()
            if token and self._finish_first(
                conn,
                webhook_id,
                token,
                results,
                status,
                status_code,
                source,
                now + retention,
                now,
            ):
                return
            row = self._load(conn, webhook_id, now)
            gone = row is None
            if row is None:
                # Nobody can hold the lease of a record that is gone.
                row = _Row.new(
                    webhook_id, at=now, source=source, expires_at=now + retention
                )
                owner = True
            else:
                owner = bool(token) and row.lease_token == token
            row.receivers = merge_results(row.receivers, results)
            if owner:
                if status == "processing" and row.receivers:
                    # Tasks still queued by the caller's view: a worker may
                    # have settled them meanwhile.
                    status = derive_status(row.receivers)
                row.status = status
                if status_code is not None:
                    row.status_code = status_code
                row.lease_token = ""
                row.lease_until = 0.0
                row.history = add_history(
                    row.history, HistoryEntry(now, source, status, status_code)
                )
                row.expires_at = max(row.expires_at, now + retention)
            if gone:
                conn.execute(_REPLACE, row.insert_values(b""))
            else:
                conn.execute(_UPDATE, row.update_values())

    @staticmethod
    def _finish_first(
        conn: sqlite3.Connection,
        webhook_id: str,
        token: str,
        results: tuple[ReceiverResult, ...],
        status: DeliveryStatus,
        status_code: int | None,
        source: Source,
        keep_until: float,
        now: float,
    ) -> bool:
        """Finish a record still as its claim created it, in one statement
        (see :data:`_FINISH_FIRST`); ``False`` if it is not."""
        history = history_to_json((HistoryEntry(now, source, status, status_code),))
        cursor = conn.execute(
            _FINISH_FIRST,
            (
                status,
                status_code,
                keep_until,
                results_to_json(results) if results else _NO_RESULTS,
                history,
                webhook_id,
                token,
                now,
            ),
        )
        return cursor.rowcount == 1

    def claim_task(self, webhook_id: str, key: str, *, lease: float) -> Claim:
        """See
        :meth:`~flask_openai_webhooks.stores.DeliveryStore.claim_task`."""
        # check_durations wants a retention too; the lease stands in for it.
        check_durations(lease, lease)
        token = new_token()
        with self._write() as conn:
            now = self._clock()
            row = self._load(conn, webhook_id, now)
            if row is None:
                raise LookupError(f"no delivery with webhook-id {webhook_id[:200]!r}")
            done = next((r for r in row.receivers if r.key == key), None)
            if done is not None and done.outcome == "ok":
                return Claim("done")
            held = row.task_leases.get(key)
            if held is not None and held[1] > now:
                return Claim("in_flight")
            record = row.record(self._body(conn, webhook_id))
            row.task_leases[key] = (token, now + lease)
            row.expires_at = max(row.expires_at, now + lease)
            conn.execute(_UPDATE, row.update_values())
        return Claim("acquired", token, record)

    def finish_task(
        self,
        webhook_id: str,
        token: str,
        result: ReceiverResult,
        *,
        retention: float,
    ) -> None:
        """See
        :meth:`~flask_openai_webhooks.stores.DeliveryStore.finish_task`.
        While a delivery lease is live its holder sets the status, in
        :meth:`finish`. A record that is gone is recreated with the
        result."""
        check_durations(None, retention)
        with self._write() as conn:
            now = self._clock()
            row = self._load(conn, webhook_id, now)
            gone = row is None
            if row is None:
                row = _Row.new(
                    webhook_id, at=now, source="task", expires_at=now + retention
                )
            held = row.task_leases.get(result.key)
            if held is not None and token and held[0] == token:
                del row.task_leases[result.key]
            row.receivers = merge_results(row.receivers, [_bounded(result)])
            if not row.leased(now):
                row.status = derive_status(row.receivers)
            row.history = add_history(
                row.history, HistoryEntry(now, "task", row.status)
            )
            row.expires_at = max(row.expires_at, now + retention)
            if gone:
                conn.execute(_REPLACE, row.insert_values(b""))
            else:
                conn.execute(_UPDATE, row.update_values())

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.get`."""
        with self._errors():
            conn = self._connect()
            row = conn.execute(
                f"SELECT {_COLUMNS}, body FROM {_DELIVERIES}"
                " WHERE webhook_id = ? AND expires_at > ?",
                (webhook_id, self._clock()),
            ).fetchone()
        if row is None:
            return None
        return _Row.decode(row).record(bytes(row[-1]))

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
        """See
        :meth:`~flask_openai_webhooks.stores.DeliveryStore.list_deliveries`.
        One query, on the ``(first_received_at, webhook_id)`` index; the
        type pattern is matched by the same function as every backend's.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        where = ["expires_at > ?"]
        params: list[t.Any] = [self._clock()]
        if status is not None:
            # A lone string is a Collection[str] too; it means one status.
            statuses = [status] if isinstance(status, str) else sorted(set(status))
            if not statuses:
                return Page((), None)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if type_pattern:
            where.append(f"{_TYPE_MATCH}(?, event_type)")
            params.append(type_pattern)
        if since is not None:
            where.append("first_received_at >= ?")
            params.append(since)
        if until is not None:
            where.append("first_received_at < ?")
            params.append(until)
        if search:
            where.append("(webhook_id = ? OR event_id = ? OR object_id = ?)")
            params.extend((search, search, search))
        if before is not None:
            where.append("(first_received_at, webhook_id) < (?, ?)")
            params.extend(decode_cursor(before))
        params.append(limit + 1)
        with self._errors():
            conn = self._connect()
            rows = conn.execute(
                f"SELECT {_COLUMNS}, body FROM {_DELIVERIES}"
                f" WHERE {' AND '.join(where)}"
                " ORDER BY first_received_at DESC, webhook_id DESC LIMIT ?",
                params,
            ).fetchall()
        records = tuple(_Row.decode(row).record(bytes(row[-1])) for row in rows)
        if len(records) <= limit:
            return Page(records, None)
        last = records[limit - 1]
        return Page(
            records[:limit], encode_cursor(last.first_received_at, last.webhook_id)
        )

    def prune(self, older_than: float) -> int:
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.prune`.
        Records whose retention has passed go too, uncounted: they were
        gone already for every reader."""
        with self._write() as conn:
            now = self._clock()
            conn.execute(f"DELETE FROM {_DELIVERIES} WHERE expires_at <= ?", (now,))
            old = conn.execute(
                f"SELECT {_COLUMNS} FROM {_DELIVERIES} WHERE last_received_at < ?"
                " AND NOT (lease_token != '' AND lease_until > ?)",
                (now - older_than, now),
            ).fetchall()
            doomed = [
                (row.webhook_id,)
                for row in map(_Row.decode, old)
                if not row.task_leased(now)
            ]
            conn.executemany(f"DELETE FROM {_DELIVERIES} WHERE webhook_id = ?", doomed)
        return len(doomed)

    def reject(self, reason: str, webhook_id: str | None, at: float) -> None:
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.reject`."""
        if webhook_id is not None:
            webhook_id = webhook_id[:200]
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO {_COUNTS} (reason, count) VALUES (?, 1)"
                " ON CONFLICT (reason) DO UPDATE SET count = count + 1",
                (reason,),
            )
            conn.execute(
                f"INSERT INTO {_REJECTIONS} (at, reason, webhook_id) VALUES (?, ?, ?)",
                (at, reason, webhook_id),
            )
            conn.execute(
                f"DELETE FROM {_REJECTIONS} WHERE id NOT IN (SELECT id"
                f" FROM {_REJECTIONS} ORDER BY at DESC, id DESC LIMIT ?)",
                (MAX_REJECTIONS,),
            )

    def rejections(self, limit: int = 50) -> Rejections:
        """See
        :meth:`~flask_openai_webhooks.stores.DeliveryStore.rejections`."""
        limit = max(0, min(limit, MAX_REJECTIONS))
        with self._read() as conn:
            counts = dict(conn.execute(f"SELECT reason, count FROM {_COUNTS}"))
            recent = conn.execute(
                f"SELECT at, reason, webhook_id FROM {_REJECTIONS}"
                " ORDER BY at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return Rejections(
            counts={str(k): int(v) for k, v in counts.items()},
            recent=tuple(Rejection(float(a), r, w) for a, r, w in recent),
        )

    def ping(self) -> None:
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.ping`.
        Opens the database, creating it and its tables if needed, and
        takes the write lock once: a store that cannot write is not
        usable."""
        with self._write() as conn:
            conn.execute(_WRITE_PROBE)

    def describe(self) -> str:
        """See :meth:`~flask_openai_webhooks.stores.DeliveryStore.describe`."""
        return f"sqlite:///{os.path.abspath(self.path)}"

    def close(self) -> None:
        """Close the connections this process opened, in every thread. The
        store opens new ones if used again. Safe to call twice.
        """
        pid = os.getpid()
        with self._lock:
            mine = [
                (thread, conn)
                for thread, (owner, conn) in list(self._connections.items())
                if owner == pid
            ]
            for thread, _ in mine:
                del self._connections[thread]
            self._local = threading.local()
        for _, conn in mine:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.describe()}>"
