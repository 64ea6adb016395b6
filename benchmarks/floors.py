"""The dedup and store floors: the least any receiver must write per
delivery, done as cheaply as each backend allows.

The minimal floor route (:func:`benchmarks.apps.floor_app`) verifies and
parses a delivery by hand, then asks one of these to *claim* it (a false
answer means "seen before": a duplicate) and, after the receiver ran, to
*finish* it. What each writes is what a delivery log cannot do without:

-   the claim write carries the ``webhook-id``, the event's type, id,
    object id and ``created_at``, the arrival time and the raw body, and
    tells in the same statement whether the id was new;
-   the finish write carries the outcome (status and HTTP status code).

Nothing else: no lease token, no attempt counter, no receiver results, no
history, no secondary index, no JSON, no explicit transaction. That is the
floor our stores are measured against: their extra cost is the price of
the lease, the per-receiver log and the history.

:class:`MemoryFloor` is the process-local case: a dict and a lock, no log.

Connections are opened on first use, one per thread, so a floor can be
created in the parent and used in gunicorn workers and their threads.
:meth:`create` (the table, once, by the parent) is separate for the same
reason.
"""

from __future__ import annotations

import collections.abc as c
import sqlite3
import threading
import typing as t

from flask_openai_webhooks import BatchCompletedWebhookEvent

from . import services

TABLE = "bench_floor"

#: Seconds a Redis floor record lives: the real stores keep records for
#: days; one hour is as long as any run and changes nothing in the cost.
REDIS_TTL_MS = 3_600_000


class StoreFloor(t.Protocol):
    """What the minimal floor route needs from a floor."""

    def claim(
        self,
        webhook_id: str,
        event: BatchCompletedWebhookEvent,
        body: bytes,
        received_at: float,
    ) -> bool:
        """Record the delivery if its id is new; return whether it was."""
        ...

    def finish(self, webhook_id: str, status: str, status_code: int) -> None:
        """Record the outcome."""
        ...

    def close(self) -> None: ...


class MemoryFloor:
    """A dict and a lock: the dedup a process-local store cannot avoid."""

    def __init__(self) -> None:
        self.seen: dict[str, None] = {}
        self.lock = threading.Lock()

    def create(self) -> None:
        pass

    def claim(
        self,
        webhook_id: str,
        event: BatchCompletedWebhookEvent,
        body: bytes,
        received_at: float,
    ) -> bool:
        with self.lock:
            if webhook_id in self.seen:
                return False
            self.seen[webhook_id] = None
            return True

    def finish(self, webhook_id: str, status: str, status_code: int) -> None:
        pass

    def close(self) -> None:
        self.seen.clear()

    def records(self) -> int:
        return len(self.seen)


_C = t.TypeVar("_C")


class _PerThread(t.Generic[_C]):
    """One connection per thread, opened on first use, all closed by
    :meth:`close`."""

    def __init__(
        self, open_connection: c.Callable[[], _C], close: c.Callable[[_C], None]
    ) -> None:
        self._open = open_connection
        self._close = close
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[_C] = []

    def get(self) -> _C:
        conn: _C | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for conn in connections:
            self._close(conn)
        self._local = threading.local()


def _columns(
    webhook_id: str, event: BatchCompletedWebhookEvent, body: bytes, received_at: float
) -> tuple[t.Any, ...]:
    return (
        webhook_id,
        event.type,
        event.id,
        event.data.id,
        event.created_at,
        received_at,
        body,
    )


class SQLiteFloor:
    """Two autocommit statements on a WAL database with the store's
    durability (``synchronous=NORMAL``): ``INSERT ... ON CONFLICT DO
    NOTHING`` (its row count tells new from seen) and one ``UPDATE``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._connections: _PerThread[sqlite3.Connection] = _PerThread(
            self._connect, sqlite3.Connection.close
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=False
        )
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def create(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (webhook_id TEXT PRIMARY KEY,"
                " event_type TEXT NOT NULL, event_id TEXT NOT NULL, object_id TEXT,"
                " created_at INTEGER, received_at REAL NOT NULL, status TEXT NOT NULL"
                " DEFAULT 'processing', status_code INTEGER, body BLOB NOT NULL)"
                " WITHOUT ROWID"
            )
        finally:
            conn.close()

    def claim(
        self,
        webhook_id: str,
        event: BatchCompletedWebhookEvent,
        body: bytes,
        received_at: float,
    ) -> bool:
        cursor = self._connections.get().execute(
            f"INSERT INTO {TABLE} (webhook_id, event_type, event_id, object_id,"
            " created_at, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (webhook_id) DO NOTHING",
            _columns(webhook_id, event, body, received_at),
        )
        return cursor.rowcount == 1

    def finish(self, webhook_id: str, status: str, status_code: int) -> None:
        self._connections.get().execute(
            f"UPDATE {TABLE} SET status = ?, status_code = ? WHERE webhook_id = ?",
            (status, status_code, webhook_id),
        )

    def close(self) -> None:
        self._connections.close()

    def records(self) -> int:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            (count,) = conn.execute(
                f"SELECT count(*) FROM {TABLE} WHERE status = 'processed'"
            ).fetchone()
        finally:
            conn.close()
        return int(count)


class RedisFloor:
    """Two commands, one round trip each: ``SET key value NX PX`` (the
    ids and the body, packed; its reply tells new from seen) and
    ``APPEND`` (the outcome, without sending the body again)."""

    def __init__(self, prefix: str) -> None:
        import redis

        self.prefix = prefix
        # redis-py's client is thread-safe: it keeps a connection pool.
        self.client = redis.Redis.from_url(services.REDIS_URL, socket_timeout=5.0)

    def create(self) -> None:
        pass

    def claim(
        self,
        webhook_id: str,
        event: BatchCompletedWebhookEvent,
        body: bytes,
        received_at: float,
    ) -> bool:
        head = (
            f"{event.type}\n{event.id}\n{event.data.id}\n{event.created_at}\n"
            f"{received_at!r}\n"
        )
        return bool(
            self.client.set(
                self.prefix + webhook_id,
                head.encode() + body,
                nx=True,
                px=REDIS_TTL_MS,
            )
        )

    def finish(self, webhook_id: str, status: str, status_code: int) -> None:
        self.client.append(self.prefix + webhook_id, f"\n{status} {status_code}")

    def close(self) -> None:
        self.client.close()

    def records(self) -> int:
        return services.count_redis_keys(self.prefix + "*")


_SQL_INSERT_COLUMNS = (
    f"{TABLE} (webhook_id, event_type, event_id, object_id, created_at,"
    " received_at, body) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_SQL_UPDATE = f"UPDATE {TABLE} SET status = %s, status_code = %s WHERE webhook_id = %s"


class PostgreSQLFloor:
    """Two autocommit statements over psycopg 3, no SQLAlchemy:
    ``INSERT ... ON CONFLICT DO NOTHING`` and ``UPDATE``. psycopg prepares
    both on the server after a few uses, as it does for the store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connections: _PerThread[t.Any] = _PerThread(
            self._connect, lambda conn: conn.close()
        )

    def _connect(self) -> t.Any:
        import psycopg

        args = services.sql_connect_args(self.url)
        return psycopg.connect(
            host=args["host"],
            port=args["port"] or 5432,
            user=args["user"],
            dbname=args["database"],
            autocommit=True,
            connect_timeout=5,
        )

    def create(self) -> None:
        conn = self._connect()
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                ' webhook_id VARCHAR(255) COLLATE "C" PRIMARY KEY,'
                ' event_type VARCHAR(255) COLLATE "C" NOT NULL,'
                ' event_id VARCHAR(255) COLLATE "C" NOT NULL,'
                ' object_id VARCHAR(255) COLLATE "C", created_at BIGINT,'
                " received_at DOUBLE PRECISION NOT NULL,"
                " status VARCHAR(16) NOT NULL DEFAULT 'processing',"
                " status_code INTEGER, body BYTEA NOT NULL)"
            )
        finally:
            conn.close()

    def claim(
        self,
        webhook_id: str,
        event: BatchCompletedWebhookEvent,
        body: bytes,
        received_at: float,
    ) -> bool:
        cursor = self._connections.get().execute(
            f"INSERT INTO {_SQL_INSERT_COLUMNS} ON CONFLICT (webhook_id) DO NOTHING",
            _columns(webhook_id, event, body, received_at),
        )
        return bool(cursor.rowcount == 1)

    def finish(self, webhook_id: str, status: str, status_code: int) -> None:
        self._connections.get().execute(_SQL_UPDATE, (status, status_code, webhook_id))

    def close(self) -> None:
        self._connections.close()

    def records(self) -> int:
        return services.sql_count(
            self.url, f"SELECT count(*) FROM {TABLE} WHERE status = 'processed'"
        )


class MariaDBFloor:
    """Two autocommit statements over PyMySQL (the store's driver), no
    SQLAlchemy: ``INSERT IGNORE`` (its row count tells new from seen) and
    ``UPDATE``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connections: _PerThread[t.Any] = _PerThread(
            self._connect, lambda conn: conn.close()
        )

    def _connect(self) -> t.Any:
        import pymysql

        args = services.sql_connect_args(self.url)
        return pymysql.connect(
            host=args["host"],
            port=args["port"] or 3306,
            user=args["user"],
            database=args["database"],
            autocommit=True,
            connect_timeout=5,
            charset="utf8mb4",
        )

    def create(self) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                    " webhook_id VARCHAR(255) COLLATE utf8mb4_bin PRIMARY KEY,"
                    " event_type VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,"
                    " event_id VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,"
                    " object_id VARCHAR(255) COLLATE utf8mb4_bin, created_at BIGINT,"
                    " received_at DOUBLE NOT NULL,"
                    " status VARCHAR(16) NOT NULL DEFAULT 'processing',"
                    " status_code INTEGER, body LONGBLOB NOT NULL)"
                    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                )
        finally:
            conn.close()

    def claim(
        self,
        webhook_id: str,
        event: BatchCompletedWebhookEvent,
        body: bytes,
        received_at: float,
    ) -> bool:
        with self._connections.get().cursor() as cursor:
            inserted = cursor.execute(
                f"INSERT IGNORE INTO {_SQL_INSERT_COLUMNS}",
                _columns(webhook_id, event, body, received_at),
            )
        return bool(inserted == 1)

    def finish(self, webhook_id: str, status: str, status_code: int) -> None:
        with self._connections.get().cursor() as cursor:
            cursor.execute(_SQL_UPDATE, (status, status_code, webhook_id))

    def close(self) -> None:
        self._connections.close()

    def records(self) -> int:
        return services.sql_count(
            self.url, f"SELECT count(*) FROM {TABLE} WHERE status = 'processed'"
        )


class CountingFloor(StoreFloor, t.Protocol):
    """A floor that can also say how many deliveries it recorded as
    processed (to check that no request was answered as a duplicate)."""

    def create(self) -> None: ...

    def records(self) -> int: ...


def make_floor(backend: str, target: str = "") -> CountingFloor:
    """The floor of ``backend`` (``memory`` or a key of
    :data:`~benchmarks.services.BACKENDS`) at ``target`` (see
    :class:`~benchmarks.services.Place`). Its table is not created: call
    :meth:`create` once, before the first claim."""
    if backend == "memory":
        return MemoryFloor()
    if backend == "sqlite":
        return SQLiteFloor(f"{target}/floor.db")
    if backend == "redis":
        return RedisFloor(target + "floor:")
    if backend == "postgresql":
        return PostgreSQLFloor(target)
    if backend == "mariadb":
        return MariaDBFloor(target)
    raise ValueError(f"no floor for {backend!r}")
