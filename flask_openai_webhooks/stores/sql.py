"""Keep the delivery log in PostgreSQL or MariaDB/MySQL, through
SQLAlchemy Core, shared by every machine that uses the same database.

Each delivery is one row of ``openai_webhook_deliveries``. The common
path of a delivery takes one statement to claim and one to finish:

-   A new delivery is claimed by inserting its row with the lease already
    in it. On PostgreSQL that is ``INSERT ... ON CONFLICT DO NOTHING
    RETURNING`` in autocommit, which returns the row only if it inserted
    it. On MariaDB/MySQL it is a plain ``INSERT``: a duplicate key error
    means the row exists. (The no-op ``ON DUPLICATE KEY UPDATE`` cannot tell:
    SQLAlchemy always sets ``CLIENT_FOUND_ROWS``, under which a duplicate
    counts one row, like an insert; and ``INSERT IGNORE`` turns more than
    duplicates into warnings.)
-   The lease holder finishes with one ``UPDATE`` on the condition that the
    row's ``version`` is the one it last wrote or read. Every write raises
    ``version``, so when the condition holds nobody else wrote meanwhile
    (a retry's claim noting ``in_flight``, a task settled by a worker, a
    worker whose lease ran out) and the receivers and history the holder
    computed from what it knows are exact. :meth:`SQLStore.record` between
    receivers does the same.

Everything else, and any of the above whose condition fails, is one short
transaction that locks the row (``SELECT ... FOR UPDATE``) before deciding
anything, so two workers, wherever they run, can never both see a delivery
as free: the second waits for the first to commit and then sees its lease.

Transactions run at ``READ COMMITTED``. MariaDB's default, ``REPEATABLE
READ``, adds gap locks, on which inserts of unrelated deliveries wait and
deadlock, and (MariaDB 11.8 and later) fails a locking read of a row
changed since the transaction began; this store gains nothing from either.
A transaction that still loses a deadlock or a serialization check is run
again, twice at most. Connections are not checked before use: one that the
server closed while it sat in the pool (a restart, an idle timeout) fails
its first statement, and the transaction is run once more on a new
connection. Each call is one transaction, so running it again is safe; if
the connection dropped during a ``COMMIT`` that did happen, the second run
finds the first one's lease token or ``version`` and does not apply it
twice (an arrival or a refusal may then be counted twice). Every other
database error becomes :class:`~flask_openai_webhooks.errors.StoreError`,
whose message never contains the password.

The tables are in :data:`metadata`. By default they are created on first
use if missing. When migrations own the schema, pass
``create_tables=False`` and add the tables to Alembic or Flask-Migrate in
``env.py``::

    import flask_openai_webhooks.stores.sql

    target_metadata = flask_openai_webhooks.stores.sql.metadata
    # or, next to the app's own tables:
    target_metadata = [db.metadata, flask_openai_webhooks.stores.sql.metadata]
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import random
import threading
import time
import typing as t
import weakref
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
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

_MISSING = (
    "SQLStore needs SQLAlchemy and a database driver. Install them with"
    " 'pip install Flask-OpenAI-Webhooks[sql]'."
)

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql
    from sqlalchemy.dialects import postgresql
except ImportError as exc:  # pragma: no cover - the [sql] extra is missing
    raise RuntimeError(_MISSING) from exc

__all__ = ["SQLStore", "metadata"]

_T = t.TypeVar("_T")

# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------


def _exact(length: int) -> sa.types.TypeEngine[str]:
    """A string compared byte for byte. MariaDB/MySQL compare text without
    case by default, which would make ``wh_A`` a duplicate of ``wh_a``, and
    PostgreSQL's locale collations order ids unlike Python does.
    """
    return (
        sa.String(length)
        .with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")
        .with_variant(
            mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"),
            "mysql",
            "mariadb",
        )
    )


# MySQL's BLOB and TEXT stop at 64 KiB: too small for some bodies, and for
# a few receivers' tracebacks.
_BODY = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
_JSON_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# InnoDB for transactions and row locks; utf8mb4 for any text at all.
_MYSQL_TABLE: dict[str, t.Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
}
_ID_LENGTH = 255
_REASON_LENGTH = 100
_REJECTED_ID_LENGTH = 200
# How long a record recreated by SQLStore.record() is kept at least, until
# finish() sets its retention: OpenAI's retry window.
_RECREATED_KEEP = 72 * 3600.0

#: The tables of :class:`SQLStore`, for ``metadata.create_all(engine)`` or
#: an Alembic ``target_metadata``.
metadata = sa.MetaData()

deliveries = sa.Table(
    "openai_webhook_deliveries",
    metadata,
    sa.Column("webhook_id", _exact(_ID_LENGTH), primary_key=True),
    sa.Column("event_type", _exact(_ID_LENGTH), nullable=False),
    sa.Column("event_id", _exact(_ID_LENGTH), nullable=False),
    sa.Column("object_id", _exact(_ID_LENGTH)),
    sa.Column("created_at", sa.BigInteger),
    sa.Column("body", _BODY, nullable=False),
    sa.Column("first_received_at", sa.Double, nullable=False),
    sa.Column("last_received_at", sa.Double, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("source", sa.String(16), nullable=False),
    # The delivery's lease: a token, empty when released, and its end.
    sa.Column("lease_token", sa.String(64), nullable=False),
    sa.Column("lease_until", sa.Double, nullable=False),
    # Task leases as JSON, {key: [token, until]}, and the latest "until",
    # so prune can skip leased records without reading the JSON.
    sa.Column("tasks", _JSON_TEXT, nullable=False),
    sa.Column("task_lease_until", sa.Double, nullable=False),
    sa.Column("receivers", _JSON_TEXT, nullable=False),
    sa.Column("history", _JSON_TEXT, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    # 0 when inserted, one more on every update: a writer that knows the
    # row as of some version can update it in one statement on the
    # condition that it is still that version.
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Index("openai_webhook_deliveries_listing", "first_received_at", "webhook_id"),
    sa.Index("openai_webhook_deliveries_status", "status", "first_received_at"),
    sa.Index("openai_webhook_deliveries_event_id", "event_id"),
    sa.Index("openai_webhook_deliveries_object_id", "object_id"),
    sa.Index("openai_webhook_deliveries_last_received", "last_received_at"),
    sa.Index("openai_webhook_deliveries_expires_at", "expires_at"),
    **_MYSQL_TABLE,
)

# The statements of the common path, built once with their values left to
# execute(): SQLAlchemy then finds each compiled in its cache at once,
# rather than coercing some twenty values into a new statement and
# hashing them on every call (most of a claim's CPU time otherwise).
_c = deliveries.c
_INSERT = sa.insert(deliveries)
_PG_INSERT_NEW = (
    postgresql.insert(deliveries)
    .on_conflict_do_nothing(index_elements=[_c.webhook_id])
    # A row comes back only if one was inserted. (SQLAlchemy keeps no
    # row count for an INSERT.)
    .returning(_c.webhook_id)
)
_LOCK = (
    sa.select(deliveries)
    .where(_c.webhook_id == sa.bindparam("key_webhook_id"))
    .with_for_update()
)
# The SET clause is made of the columns given to execute(), plus version.
_UPDATE = (
    sa.update(deliveries)
    .where(_c.webhook_id == sa.bindparam("key_webhook_id"))
    .values(version=_c.version + 1)
)
_UPDATE_KNOWN = _UPDATE.where(
    _c.lease_token == sa.bindparam("key_token"),
    _c.version == sa.bindparam("key_version"),
)

rejections = sa.Table(
    "openai_webhook_rejections",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("reason", sa.String(_REASON_LENGTH), nullable=False),
    sa.Column("webhook_id", sa.String(_REJECTED_ID_LENGTH)),
    sa.Index("openai_webhook_rejections_recent", "at", "id"),
    **_MYSQL_TABLE,
)

rejection_counts = sa.Table(
    "openai_webhook_rejection_counts",
    metadata,
    sa.Column("reason", _exact(_REASON_LENGTH), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    **_MYSQL_TABLE,
)

# --------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------

_DIALECTS = ("postgresql", "mysql", "mariadb")
# The driver used when a URL names none: psycopg 3 rather than SQLAlchemy's
# default psycopg2, and PyMySQL, the pure-Python one in the [sql] extra.
_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
# Drivers whose connect() takes ``connect_timeout`` in seconds.
_TIMEOUT_DRIVERS = ("psycopg", "psycopg2", "pymysql", "mysqldb")
#: Seconds to wait for a connection, so a database that is down turns
#: into a quick 503 rather than a worker stuck until the sender gives up.
CONNECT_TIMEOUT = 2
#: Seconds PyMySQL waits for any reply, the server's greeting included
#: (its ``connect_timeout`` only covers the TCP connection). A sender waits
#: 15 to 30 seconds for an answer: a reply later than that is of no use to
#: a delivery, and the store's queries are index lookups and small batches.
PYMYSQL_READ_TIMEOUT = 15
_RETRIES = 2
# SQLSTATEs (PostgreSQL) and error numbers (MariaDB/MySQL) that mean "the
# transaction was rolled back because of another one; run it again":
# serialization failure, deadlock, and MariaDB's "record has changed since
# last read".
_PG_CONFLICTS = frozenset(("40001", "40P01"))
_MYSQL_CONFLICTS = frozenset((1213, 1020))
# MariaDB/MySQL's "duplicate entry for key".
_MYSQL_DUPLICATE = 1062
# Set in a pooled connection's info by the store once its transaction has
# ended, so returning it to the pool needs no ROLLBACK (a round trip on
# MariaDB/MySQL).
_ENDED = "flask_openai_webhooks.sql.ended"

# Engines created by a store, emptied in a child created by fork() so the
# child opens its own connections instead of sharing the parent's sockets
# (what SQLAlchemy documents for multiprocessing).
_owned_engines: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    for engine in list(_owned_engines):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_connections)


def _normalise_url(value: str | sa.URL) -> sa.URL:
    """Parse ``value`` and name a driver if it names none.

    :raises ValueError: Not a PostgreSQL or MariaDB/MySQL URL. The message
        never repeats the URL, which may hold a password.
    """
    try:
        url = sa.make_url(value)
    except sa.exc.ArgumentError:
        raise ValueError(
            "SQLStore: not a database URL (expected 'postgresql://...',"
            " 'mysql://...' or 'mariadb://...')"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if not driver and backend in _DEFAULT_DRIVERS:
        return url.set(drivername=_DEFAULT_DRIVERS[backend])
    if backend == "postgres":
        return url.set(drivername=f"postgresql+{driver}")
    if backend not in _DIALECTS:
        raise ValueError(
            f"SQLStore supports PostgreSQL and MariaDB/MySQL, not {backend!r};"
            " use SQLiteStore for SQLite."
        )
    return url


def _create_engine(value: str | sa.URL) -> sa.Engine:
    url = _normalise_url(value)
    connect_args: dict[str, t.Any] = {}
    driver = url.get_driver_name()
    if driver in _TIMEOUT_DRIVERS and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    if driver == "pymysql":
        for name in ("read_timeout", "write_timeout"):
            if name not in url.query:
                connect_args[name] = PYMYSQL_READ_TIMEOUT
    try:
        engine = sa.create_engine(
            url,
            connect_args=connect_args,
            isolation_level="READ COMMITTED",
            # No pool_pre_ping: a round trip before every transaction.
            # SQLStore._run runs a transaction again instead when its
            # connection turns out to be closed.
            #
            # No ROLLBACK when a connection is returned after the store
            # ended its transaction; see _reset_unless_ended.
            pool_reset_on_return=None,
            # Error messages name the statement but not its values, which
            # include bodies.
            hide_parameters=True,
        )
    except ImportError as exc:
        raise RuntimeError(_MISSING) from exc
    except sa.exc.NoSuchModuleError:
        raise ValueError(
            f"SQLStore: SQLAlchemy has no driver {url.drivername!r}"
        ) from None
    sa.event.listen(engine, "reset", _reset_unless_ended)
    return engine


def _reset_unless_ended(
    dbapi_connection: t.Any, connection_record: t.Any, reset_state: t.Any
) -> None:
    """Roll back a connection returned to the pool of an engine the store
    created, unless the store marked its transaction as ended (committed).
    SQLAlchemy's own reset (``pool_reset_on_return``, turned off) would
    roll back every connection, which PyMySQL sends to the server even
    when there is nothing to roll back; this keeps the reset for anything
    else that uses the engine.
    """
    if not connection_record.info.pop(_ENDED, False):
        dbapi_connection.rollback()


def _mysql_code(exc: sa.exc.DBAPIError) -> object:
    """The error number of a MariaDB/MySQL driver's error, else ``None``."""
    args: tuple[t.Any, ...] = getattr(exc.orig, "args", ())
    return args[0] if args else None


def _is_conflict(exc: sa.exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _PG_CONFLICTS:
        return True
    return _mysql_code(exc) in _MYSQL_CONFLICTS


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


def _check_lengths(delivery: Delivery) -> None:
    for name in ("webhook_id", "event_type", "event_id", "object_id"):
        value = getattr(delivery, name)
        if value is not None and len(value) > _ID_LENGTH:
            raise ValueError(
                f"SQLStore keeps {name} up to {_ID_LENGTH} characters, not {len(value)}"
            )


def _check_id(webhook_id: str) -> None:
    if len(webhook_id) > _ID_LENGTH:
        raise ValueError(
            f"SQLStore keeps webhook_id up to {_ID_LENGTH} characters,"
            f" not {len(webhook_id)}"
        )


def _bounded(result: ReceiverResult) -> ReceiverResult:
    """``result`` with its message and traceback cut to size, so whatever
    a receiver raises the row stays small."""
    message = bounded(result.error_message, MAX_MESSAGE)
    traceback = bounded(result.traceback, MAX_TRACEBACK)
    if message is result.error_message and traceback is result.traceback:
        return result
    return ReceiverResult(
        key=result.key,
        outcome=result.outcome,
        attempts=result.attempts,
        duration=result.duration,
        at=result.at,
        error_type=result.error_type,
        error_message=message,
        traceback=traceback,
    )


class _Known(t.NamedTuple):
    """A lease holder's record as of its last write or locked read: enough
    to write the next state in one conditional ``UPDATE``."""

    version: int
    receivers: tuple[ReceiverResult, ...]
    history: tuple[HistoryEntry, ...]
    expires_at: float


#: Lease holders remembered per store: more than the attempts one process
#: runs at once. An attempt forgotten (one that never finished, or one of
#: too many) only takes the locking path.
_KNOWN_MAX = 1024


_TaskLeases = dict[str, tuple[str, float]]


def _tasks_from_json(text: str | None, now: float) -> _TaskLeases:
    """The task leases that have not expired at ``now``."""
    try:
        data = json.loads(text or "{}")
        leases = {
            str(k): (str(token), float(until)) for k, (token, until) in data.items()
        }
    except (ValueError, TypeError, AttributeError) as e:
        raise StoreError(f"a stored task lease list is corrupt: {e}") from None
    return {key: lease for key, lease in leases.items() if lease[1] > now}


def _tasks_to_json(leases: _TaskLeases) -> dict[str, t.Any]:
    """The column values for ``leases``."""
    return {
        "tasks": json.dumps(
            {key: [token, until] for key, (token, until) in leases.items()},
            separators=(",", ":"),
        ),
        "task_lease_until": max((until for _, until in leases.values()), default=0.0),
    }


def _to_record(row: sa.Row[t.Any]) -> DeliveryRecord:
    status = row.status
    if status not in DELIVERY_STATUSES:
        raise StoreError(f"delivery {row.webhook_id!r} has a corrupt status {status!r}")
    return DeliveryRecord(
        webhook_id=row.webhook_id,
        event_type=row.event_type,
        event_id=row.event_id,
        object_id=row.object_id,
        created_at=None if row.created_at is None else int(row.created_at),
        body=bytes(row.body),
        first_received_at=float(row.first_received_at),
        last_received_at=float(row.last_received_at),
        attempts=int(row.attempts),
        status=status,
        status_code=None if row.status_code is None else int(row.status_code),
        source=row.source,
        receivers=results_from_json(row.receivers),
        history=history_from_json(row.history),
    )


def _delivery_columns(delivery: Delivery) -> dict[str, t.Any]:
    return {
        "event_type": delivery.event_type,
        "event_id": delivery.event_id,
        "object_id": delivery.object_id,
        "created_at": delivery.created_at,
        "body": delivery.body,
    }


def _like(pattern: str) -> str:
    """A ``LIKE`` pattern (escape character ``/``) matching everything the
    glob ``pattern`` matches; exactly that unless it has a ``[...]`` class,
    which ``LIKE`` cannot say (the rest is then matched in Python)."""
    out = []
    for char in pattern:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char == "[":
            out.append("%")
            break
        elif char in "%_/":
            out.append("/" + char)
        else:
            out.append(char)
    return "".join(out)


# --------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------


class SQLStore:
    """Keep the delivery log in PostgreSQL or MariaDB/MySQL, shared by
    every machine that uses the same database.

    :meth:`claim` and :meth:`finish` are atomic, each one statement in the
    common case (see the module's description). Lease times come from
    ``clock`` on the worker, as for every store: keep the workers' clocks
    in sync (NTP), or a lease may be taken over a little early or late.

    A record is kept at least for its retention. Past it, it stays visible
    until it is deleted, a batch at a time during :meth:`claim` (once every
    :attr:`cleanup_every` claims, so the table stays bounded without a cron
    job), or by :meth:`prune`. A record with a live lease is never deleted.

    Nothing connects until the first call, so a database that is down does
    not keep the app from starting.

    :param url_or_engine: A URL, ``postgresql://`` (or ``postgres://``)
        for psycopg 3, ``mysql://`` or ``mariadb://`` for PyMySQL, or with
        an explicit driver (``postgresql+psycopg2://``). The store then owns
        its engine: connecting gives up after :data:`CONNECT_TIMEOUT`
        seconds unless the URL sets ``connect_timeout`` (PyMySQL also waits
        at most :data:`PYMYSQL_READ_TIMEOUT` seconds for any reply), and
        transactions run at ``READ COMMITTED``. Or an
        :class:`~sqlalchemy.engine.Engine`, such as Flask-SQLAlchemy's
        ``db.engine``, never disposed by :meth:`close` and used as
        configured, except that the store's transactions run at ``READ
        COMMITTED`` and its single statements on PostgreSQL in autocommit
        (through :meth:`~sqlalchemy.engine.Engine.execution_options`, which
        costs psycopg no round trip). On MariaDB/MySQL, setting the level
        takes four round trips per transaction, which an engine created
        with ``isolation_level="READ COMMITTED"`` saves: the store checks
        once, on first use, whether its connections already run at that
        level, outside autocommit.
    :param create_tables: Create the tables on first use if they are
        missing. Pass ``False`` when migrations own them (see
        :data:`metadata`).
    :param clock: Returns wall-clock Unix seconds; injectable for tests.
    :raises RuntimeError: SQLAlchemy or the URL's driver is not installed.
    :raises ValueError: Not a PostgreSQL or MariaDB/MySQL URL or engine.
    """

    #: Delete expired records once every this many claims (per store).
    cleanup_every: int = 100
    #: Delete at most this many records per statement.
    delete_batch: int = 500

    def __init__(
        self,
        url_or_engine: str | sa.URL | sa.Engine,
        *,
        create_tables: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(url_or_engine, sa.Engine):
            engine = url_or_engine
            self._owns_engine = False
        elif isinstance(url_or_engine, (str, sa.URL)):
            engine = _create_engine(url_or_engine)
            self._owns_engine = True
            _owned_engines.add(engine)
        else:
            raise TypeError(
                "SQLStore needs a database URL or an sqlalchemy Engine, not"
                f" {type(url_or_engine).__name__}"
            )
        if engine.dialect.name not in _DIALECTS:
            raise ValueError(
                "SQLStore supports PostgreSQL and MariaDB/MySQL, not"
                f" {engine.dialect.name!r}"
            )
        self.engine = engine
        self.create_tables = create_tables
        self._clock = clock
        self._postgresql = engine.dialect.name == "postgresql"
        self._password = engine.url.password
        # Transactions use _transactions, single statements _single (the
        # same pool). An engine the store created runs at READ COMMITTED
        # already; one passed in gets it on each checkout, unless the
        # first use finds its connections already there (MariaDB/MySQL
        # only: on PostgreSQL setting it costs nothing).
        self._transactions = engine
        self._probe_isolation = False
        if not self._owns_engine:
            self._transactions = engine.execution_options(
                isolation_level="READ COMMITTED"
            )
            self._probe_isolation = not self._postgresql
        # A single statement is atomic by itself: on PostgreSQL, autocommit
        # saves its BEGIN and COMMIT. PyMySQL would pay more round trips
        # switching autocommit on and off than it saves.
        self._single = self._transactions
        if self._postgresql:
            self._single = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._ready = False
        self._ready_lock = threading.Lock()
        # What each lease holder of this store knows of its record, by
        # (webhook_id, token), oldest first.
        self._known: collections.OrderedDict[tuple[str, str], _Known] = (
            collections.OrderedDict()
        )
        self._known_lock = threading.Lock()
        # Starting at a random point keeps workers started together from
        # all cleaning up on their first claim.
        self._claims = itertools.count(random.randrange(1, self.cleanup_every + 1))

    # -- plumbing ----------------------------------------------------------

    def _error(self, exc: BaseException) -> StoreError:
        """A :class:`StoreError` saying what failed: the driver's message,
        first line only (never the statement or its values), with the
        password blanked out in case a driver ever echoes it."""
        orig = getattr(exc, "orig", None)
        detail = orig if isinstance(orig, BaseException) else exc
        lines = str(detail).strip().splitlines()
        text = lines[0][:500] if lines else ""
        if self._password:
            text = text.replace(self._password, "***")
        return StoreError(
            f"SQL store {self.describe()}: {type(detail).__name__}: {text}"
        )

    def _ensure_ready(self) -> None:
        """Create the tables if that is the store's job, and see whether
        an engine passed in needs its isolation level set; once."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            if self.create_tables:
                self._create_tables()
            if self._probe_isolation:
                self._check_isolation()
            self._ready = True

    def _create_tables(self) -> None:
        for attempt in itertools.count():
            # A failure to connect is reported at once; one while creating
            # is most likely another process creating the same tables, and
            # the next check finds them.
            try:
                conn = self.engine.connect()
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                raise self._error(exc) from exc
            try:
                with conn, conn.begin():
                    metadata.create_all(conn, checkfirst=True)
                return
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                if attempt >= _RETRIES:
                    raise self._error(exc) from exc
            time.sleep(random.uniform(0.05, 0.2))

    def _check_isolation(self) -> None:
        """Use a MariaDB/MySQL engine passed in as it is if its connections
        run at ``READ COMMITTED`` outside autocommit; SQLAlchemy gives every
        connection of an engine the same settings when it is checked out."""
        try:
            with self.engine.connect() as conn:
                level = conn.get_isolation_level()
                autocommit = conn.exec_driver_sql("SELECT @@autocommit").scalar()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise self._error(exc) from exc
        if level == "READ COMMITTED" and autocommit == 0:
            self._transactions = self._single = self.engine

    def _run(self, work: Callable[[sa.Connection], _T], *, single: bool = False) -> _T:
        """Run ``work`` in a transaction, again after a deadlock or a
        serialization failure, and once more if the connection turns out to
        be closed. ``work`` must only touch the database.

        :param single: ``work`` runs one statement, atomic by itself, in
            autocommit where that saves round trips.
        """
        self._ensure_ready()
        engine = self._single if single else self._transactions
        conflicts = 0
        reconnected = False
        while True:
            # A failure to connect is not run again: the pool had no
            # connection to replace, and a server that is down or silent
            # would only make the caller wait twice as long.
            try:
                conn = engine.connect()
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                raise self._error(exc) from exc
            try:
                with conn:
                    with conn.begin():
                        result = work(conn)
                    if self._owns_engine:
                        conn.info[_ENDED] = True
                return result
            except sa.exc.DBAPIError as exc:
                # SQLAlchemy invalidates the connection, and every other
                # connection of the pool opened before it; the next
                # checkout connects again.
                if exc.connection_invalidated and not reconnected:
                    reconnected = True
                    continue
                if conflicts >= _RETRIES or not _is_conflict(exc):
                    raise self._error(exc) from exc
                conflicts += 1
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                raise self._error(exc) from exc
            time.sleep(random.uniform(0.001, 0.02) * conflicts)

    def _remember(self, webhook_id: str, token: str, known: _Known) -> None:
        with self._known_lock:
            self._known[webhook_id, token] = known
            self._known.move_to_end((webhook_id, token))
            while len(self._known) > _KNOWN_MAX:
                self._known.popitem(last=False)

    def _recall(self, webhook_id: str, token: str) -> _Known | None:
        with self._known_lock:
            return self._known.get((webhook_id, token))

    def _forget(self, webhook_id: str, token: str) -> _Known | None:
        with self._known_lock:
            return self._known.pop((webhook_id, token), None)

    def _update_known(
        self, webhook_id: str, token: str, known: _Known, values: Mapping[str, t.Any]
    ) -> bool:
        """Write ``values`` in one statement if the lease is still
        ``token``'s and nobody wrote since ``known``; return whether it
        was written."""
        params = {
            **values,
            "key_webhook_id": webhook_id,
            "key_token": token,
            "key_version": known.version,
        }
        return self._run(
            lambda conn: conn.execute(_UPDATE_KNOWN, params).rowcount == 1,
            single=True,
        )

    def _lock(self, conn: sa.Connection, webhook_id: str) -> sa.Row[t.Any] | None:
        row = conn.execute(_LOCK, {"key_webhook_id": webhook_id}).one_or_none()
        if row is not None and row.webhook_id != webhook_id:
            # MariaDB/MySQL ignore trailing spaces when comparing strings.
            raise StoreError(
                f"webhook-id {webhook_id!r} collides with {row.webhook_id!r}"
                " in the database"
            )
        return row

    def _insert_new(self, values: Mapping[str, t.Any]) -> bool:
        """Insert a row in one statement; return whether it was new."""
        if self._postgresql:
            return self._run(
                lambda conn: conn.execute(_PG_INSERT_NEW, values).first() is not None,
                single=True,
            )

        def work(conn: sa.Connection) -> bool:
            try:
                conn.execute(_INSERT, values)
            except sa.exc.IntegrityError as exc:
                if _mysql_code(exc) != _MYSQL_DUPLICATE:
                    raise
                # The failed statement is undone; committing releases the
                # shared lock it took on the existing row.
                return False
            return True

        return self._run(work, single=True)

    def _insert_if_absent(
        self, conn: sa.Connection, values: Mapping[str, t.Any]
    ) -> None:
        if self._postgresql:
            conn.execute(
                postgresql.insert(deliveries)
                .values(values)
                .on_conflict_do_nothing(index_elements=[deliveries.c.webhook_id])
            )
        else:
            # Not INSERT IGNORE: on a duplicate it takes a shared lock, and
            # two claims upgrading theirs to FOR UPDATE deadlock. ON
            # DUPLICATE KEY UPDATE takes the exclusive lock at once. It sets
            # the id to the stored one: the new one may differ by trailing
            # spaces, which MariaDB/MySQL ignore when comparing.
            stmt = mysql.insert(deliveries).values(values)
            conn.execute(
                stmt.on_duplicate_key_update(webhook_id=deliveries.c.webhook_id)
            )

    def _update(
        self, conn: sa.Connection, webhook_id: str, values: Mapping[str, t.Any]
    ) -> None:
        conn.execute(_UPDATE, {**values, "key_webhook_id": webhook_id})

    def _lock_or_insert(
        self, conn: sa.Connection, webhook_id: str, values: Mapping[str, t.Any]
    ) -> sa.Row[t.Any]:
        """The locked row, inserted with ``values`` first if there is
        none."""
        row = self._lock(conn, webhook_id)
        if row is not None:
            return row
        self._insert_if_absent(conn, values)
        row = self._lock(conn, webhook_id)
        if row is None:  # pragma: no cover - deleted between two statements
            raise StoreError(f"delivery {webhook_id!r} vanished while being written")
        return row

    def _lock_or_recreate(
        self,
        conn: sa.Connection,
        webhook_id: str,
        *,
        lease_token: str,
        source: Source,
        now: float,
        keep: float,
    ) -> sa.Row[t.Any]:
        """The locked row, recreated from what is known if it is gone
        (pruned, or deleted by hand) so a result is never lost silently.
        A recreated row holds an expired lease with ``lease_token``, so the
        worker that had the lease can still finish it."""
        return self._lock_or_insert(
            conn,
            webhook_id,
            {
                "webhook_id": webhook_id,
                "event_type": "",
                "event_id": "",
                "object_id": None,
                "created_at": None,
                "body": b"",
                "first_received_at": now,
                "last_received_at": now,
                "attempts": 1,
                "status": "processing",
                "status_code": None,
                "source": source,
                "lease_token": lease_token,
                "lease_until": now,
                "tasks": "{}",
                "task_lease_until": 0.0,
                "receivers": "[]",
                "history": "[]",
                "expires_at": now + keep,
                "version": 0,
            },
        )

    def _delete_some(
        self, conn: sa.Connection, condition: sa.ColumnElement[bool]
    ) -> tuple[int, int]:
        """Delete at most :attr:`delete_batch` rows matching ``condition``;
        return how many matched and how many were deleted.

        The rows are found by a plain read, which locks nothing, then
        deleted by primary key with the condition checked again: a range
        delete would lock index ranges that concurrent claims write to, and
        deadlock with them. A row a claim renewed meanwhile no longer
        matches and is kept.
        """
        ids = (
            conn.execute(
                sa.select(deliveries.c.webhook_id)
                .where(condition)
                .limit(self.delete_batch)
            )
            .scalars()
            .all()
        )
        if not ids:
            return 0, 0
        deleted = conn.execute(
            sa.delete(deliveries).where(deliveries.c.webhook_id.in_(ids), condition)
        ).rowcount
        return len(ids), deleted

    def _delete_expired(self, conn: sa.Connection) -> None:
        now = self._clock()
        c = deliveries.c
        self._delete_some(
            conn,
            sa.and_(
                c.expires_at <= now, c.lease_until <= now, c.task_lease_until <= now
            ),
        )

    # -- deliveries --------------------------------------------------------

    def claim(self, delivery: Delivery, *, lease: float, retention: float) -> Claim:
        """See :meth:`DeliveryStore.claim`."""
        check_durations(lease, retention)
        _check_lengths(delivery)
        if next(self._claims) % self.cleanup_every == 0:
            try:
                self._run(self._delete_expired)
            except StoreError:
                # Cleaning up is best effort: it may lose a deadlock to
                # another worker doing the same, and if the database is
                # down the claim below says so.
                pass
        now = self._clock()
        token = new_token()
        lease_until = now + lease
        fresh = {
            "webhook_id": delivery.webhook_id,
            **_delivery_columns(delivery),
            "first_received_at": delivery.received_at,
            "last_received_at": delivery.received_at,
            "attempts": 1,
            "status": "processing",
            "status_code": None,
            "source": delivery.source,
            "lease_token": token,
            "lease_until": lease_until,
            "tasks": "{}",
            "task_lease_until": 0.0,
            "receivers": "[]",
            "history": "[]",
            "expires_at": max(now + retention, lease_until),
            "version": 0,
        }
        if self._insert_new(fresh):
            known = _Known(0, (), (), fresh["expires_at"])
            self._remember(delivery.webhook_id, token, known)
            return Claim("acquired", token)
        claim, known_or_none = self._run(
            lambda conn: self._claim_existing(conn, delivery, fresh, lease, retention)
        )
        if known_or_none is not None:
            self._remember(delivery.webhook_id, token, known_or_none)
        return claim

    def _claim_existing(
        self,
        conn: sa.Connection,
        delivery: Delivery,
        fresh: Mapping[str, t.Any],
        lease: float,
        retention: float,
    ) -> tuple[Claim, _Known | None]:
        """Claim a delivery whose row existed a moment ago, with the row
        locked; inserted as ``fresh`` if it was deleted since."""
        token: str = fresh["lease_token"]
        row = self._lock_or_insert(conn, delivery.webhook_id, fresh)
        if row.lease_token == token:
            # This call's own row: inserted just now, or by a first run of
            # this claim whose commit a dropped connection hid (a record
            # that existed before then keeps its receivers' results, which
            # say what to skip).
            record = _to_record(row)
            known = _Known(
                row.version, record.receivers, record.history, row.expires_at
            )
            return Claim("acquired", token, record), known

        # Another worker's row. The clock is read again: waiting for its
        # lock may have taken a while, and the lease runs from now.
        now = self._clock()
        lease_until = now + lease
        record = _to_record(row)
        values: dict[str, t.Any] = {
            "attempts": row.attempts + 1,
            "last_received_at": delivery.received_at,
            "expires_at": max(row.expires_at, now + retention),
        }
        if not row.event_id:
            # Recreated by finish() without the delivery: fill it in.
            values.update(_delivery_columns(delivery))
        if row.status in DONE_STATUSES and delivery.source != "replay":
            answer = Claim("done")
            entry = HistoryEntry(
                delivery.received_at, delivery.source, "duplicate", 200
            )
        elif row.lease_token and row.lease_until > now:
            answer = Claim("in_flight")
            entry = HistoryEntry(
                delivery.received_at, delivery.source, "in_flight", 409
            )
        else:
            values.update(
                status="processing",
                lease_token=token,
                lease_until=lease_until,
                expires_at=max(values["expires_at"], lease_until),
            )
            self._update(conn, delivery.webhook_id, values)
            known = _Known(
                row.version + 1, record.receivers, record.history, values["expires_at"]
            )
            return Claim("acquired", token, record), known
        values["history"] = history_to_json(add_history(record.history, entry))
        self._update(conn, delivery.webhook_id, values)
        return answer, None

    def record(
        self, webhook_id: str, token: str, results: Sequence[ReceiverResult]
    ) -> None:
        """See :meth:`DeliveryStore.record`. A record that is gone is
        recreated holding an expired lease with ``token``, so
        :meth:`finish` still settles it."""
        _check_id(webhook_id)
        new = [_bounded(r) for r in results]
        if not new:
            return
        known = self._recall(webhook_id, token) if token else None
        if known is not None:
            merged = merge_results(known.receivers, new)
            values = {"receivers": results_to_json(merged)}
            if self._update_known(webhook_id, token, known, values):
                known = known._replace(version=known.version + 1, receivers=merged)
                self._remember(webhook_id, token, known)
                return

        def work(conn: sa.Connection) -> _Known | None:
            now = self._clock()
            row = self._lock_or_recreate(
                conn,
                webhook_id,
                lease_token=token,
                source="delivery",
                now=now,
                keep=_RECREATED_KEEP,
            )
            merged = merge_results(results_from_json(row.receivers), new)
            self._update(conn, webhook_id, {"receivers": results_to_json(merged)})
            if not token or row.lease_token != token:
                return None
            history = history_from_json(row.history)
            return _Known(row.version + 1, merged, history, row.expires_at)

        known = self._run(work)
        if known is None:
            self._forget(webhook_id, token)
        else:
            self._remember(webhook_id, token, known)

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
        """See :meth:`DeliveryStore.finish`."""
        check_durations(None, retention)
        _check_id(webhook_id)
        if status not in DELIVERY_STATUSES:
            raise ValueError(f"not a delivery status: {status!r}")
        new = [_bounded(r) for r in results]

        known = self._forget(webhook_id, token) if token else None
        if known is not None:
            now = self._clock()
            merged = merge_results(known.receivers, new)
            # "processing": tasks still queued by the caller's view; the
            # version check below proves nobody settled one meanwhile.
            settled = (
                derive_status(merged) if status == "processing" and merged else status
            )
            entry = HistoryEntry(now, source, settled, status_code)
            values: dict[str, t.Any] = {
                "receivers": results_to_json(merged),
                "status": settled,
                "lease_token": "",
                "lease_until": 0.0,
                "history": history_to_json(add_history(known.history, entry)),
                "expires_at": max(known.expires_at, now + retention),
            }
            if status_code is not None:
                values["status_code"] = status_code
            if self._update_known(webhook_id, token, known, values):
                return

        # A record recreated here holds a lease with this token, so it is
        # settled below even when the caller has no token.
        holder = token or new_token()

        def work(conn: sa.Connection) -> None:
            now = self._clock()
            row = self._lock_or_recreate(
                conn,
                webhook_id,
                lease_token=holder,
                source=source,
                now=now,
                keep=retention,
            )
            merged = merge_results(results_from_json(row.receivers), new)
            values: dict[str, t.Any] = {"receivers": results_to_json(merged)}
            if row.lease_token == holder:
                # "processing": tasks still queued by the caller's view; a
                # worker may have settled them meanwhile.
                settled = (
                    derive_status(merged)
                    if status == "processing" and merged
                    else status
                )
                entry = HistoryEntry(now, source, settled, status_code)
                history = add_history(history_from_json(row.history), entry)
                if status_code is not None:
                    values["status_code"] = status_code
                values.update(
                    status=settled,
                    lease_token="",
                    lease_until=0.0,
                    history=history_to_json(history),
                    expires_at=max(row.expires_at, now + retention),
                )
            self._update(conn, webhook_id, values)

        self._run(work)

    def claim_task(self, webhook_id: str, key: str, *, lease: float) -> Claim:
        """See :meth:`DeliveryStore.claim_task`."""
        check_durations(lease, lease)
        _check_id(webhook_id)

        def work(conn: sa.Connection) -> Claim:
            row = self._lock(conn, webhook_id)
            if row is None:
                raise LookupError(webhook_id)
            now = self._clock()
            record = _to_record(row)
            result = record.receiver(key)
            if result is not None and result.outcome == "ok":
                return Claim("done")
            leases = _tasks_from_json(row.tasks, now)
            if key in leases:
                return Claim("in_flight")
            token = new_token()
            leases[key] = (token, now + lease)
            values = _tasks_to_json(leases)
            values["expires_at"] = max(row.expires_at, now + lease)
            self._update(conn, webhook_id, values)
            return Claim("acquired", token, record)

        return self._run(work)

    def finish_task(
        self,
        webhook_id: str,
        token: str,
        result: ReceiverResult,
        *,
        retention: float,
    ) -> None:
        """See :meth:`DeliveryStore.finish_task`. A record that is gone is
        recreated with this result."""
        check_durations(None, retention)
        _check_id(webhook_id)
        new = _bounded(result)

        def work(conn: sa.Connection) -> None:
            now = self._clock()
            row = self._lock_or_recreate(
                conn, webhook_id, lease_token="", source="task", now=now, keep=retention
            )
            merged = merge_results(results_from_json(row.receivers), [new])
            leases = _tasks_from_json(row.tasks, now)
            held = leases.get(new.key)
            if token and held is not None and held[0] == token:
                del leases[new.key]
            # While a delivery lease is live, its holder sets the status
            # in finish().
            status = row.status
            if not (row.lease_token and row.lease_until > now):
                status = derive_status(merged)
            entry = HistoryEntry(now, "task", status)
            history = add_history(history_from_json(row.history), entry)
            values = _tasks_to_json(leases)
            values.update(
                receivers=results_to_json(merged),
                status=status,
                history=history_to_json(history),
                expires_at=max(row.expires_at, now + retention),
            )
            self._update(conn, webhook_id, values)

        self._run(work)

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        """See :meth:`DeliveryStore.get`."""
        if len(webhook_id) > _ID_LENGTH:
            return None

        def work(conn: sa.Connection) -> DeliveryRecord | None:
            row = conn.execute(
                sa.select(deliveries).where(deliveries.c.webhook_id == webhook_id)
            ).one_or_none()
            if row is None or row.webhook_id != webhook_id:
                return None
            return _to_record(row)

        return self._run(work, single=True)

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
        """See :meth:`DeliveryStore.list_deliveries`.

        :raises ValueError: ``limit`` is less than 1, or ``before`` is not
            a cursor.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        position = decode_cursor(before) if before is not None else None
        c = deliveries.c
        conditions: list[sa.ColumnElement[bool]] = []
        if isinstance(status, str):
            status = (status,)  # a lone string is a Collection[str] too
        if status is not None:
            conditions.append(c.status.in_(list(status)))
        if type_pattern:
            conditions.append(c.event_type.like(_like(type_pattern), escape="/"))
        if since is not None:
            conditions.append(c.first_received_at >= since)
        if until is not None:
            conditions.append(c.first_received_at < until)
        if search is not None:
            conditions.append(
                sa.or_(
                    c.webhook_id == search, c.event_id == search, c.object_id == search
                )
            )
        matches = type_matcher(type_pattern)
        # LIKE cannot say every glob (and MariaDB ignores trailing spaces),
        # so rows are checked again here, fetching more until a page is
        # full.
        chunk = limit + 1

        def work(conn: sa.Connection) -> list[DeliveryRecord]:
            found: list[DeliveryRecord] = []
            after = position
            while True:
                stmt = sa.select(deliveries).where(*conditions)
                if after is not None:
                    at, webhook_id = after
                    stmt = stmt.where(
                        sa.or_(
                            c.first_received_at < at,
                            sa.and_(
                                c.first_received_at == at, c.webhook_id < webhook_id
                            ),
                        )
                    )
                rows = conn.execute(
                    stmt.order_by(
                        c.first_received_at.desc(), c.webhook_id.desc()
                    ).limit(chunk)
                ).all()
                for row in rows:
                    if matches(row.event_type) and (
                        search is None
                        or search in (row.webhook_id, row.event_id, row.object_id)
                    ):
                        found.append(_to_record(row))
                        if len(found) > limit:
                            return found
                if len(rows) < chunk:
                    return found
                after = (float(rows[-1].first_received_at), rows[-1].webhook_id)

        found = self._run(work)
        records = tuple(found[:limit])
        cursor = None
        if len(found) > limit:
            last = records[-1]
            cursor = encode_cursor(last.first_received_at, last.webhook_id)
        return Page(records, cursor)

    def prune(self, older_than: float) -> int:
        """See :meth:`DeliveryStore.prune`. Deletes in batches of
        :attr:`delete_batch`, each its own transaction, so claims never
        wait long behind it."""
        if not (0 <= older_than < math.inf):
            raise ValueError(
                "older_than must be a non-negative number of seconds,"
                f" not {older_than!r}"
            )
        c = deliveries.c

        def work(conn: sa.Connection) -> tuple[int, int]:
            now = self._clock()
            return self._delete_some(
                conn,
                sa.and_(
                    c.last_received_at < now - older_than,
                    c.lease_until <= now,
                    c.task_lease_until <= now,
                ),
            )

        total = 0
        while True:
            found, deleted = self._run(work)
            total += deleted
            if found < self.delete_batch:
                return total

    # -- rejections --------------------------------------------------------

    def reject(self, reason: str, webhook_id: str | None, at: float) -> None:
        """See :meth:`DeliveryStore.reject`."""
        reason = reason[:_REASON_LENGTH]
        if webhook_id is not None:
            webhook_id = webhook_id[:_REJECTED_ID_LENGTH]

        def work(conn: sa.Connection) -> None:
            conn.execute(
                sa.insert(rejections).values(
                    at=at, reason=reason, webhook_id=webhook_id
                )
            )
            counts = rejection_counts
            if self._postgresql:
                stmt = postgresql.insert(counts).values(reason=reason, count=1)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[counts.c.reason],
                        set_={"count": counts.c.count + 1},
                    )
                )
            else:
                conn.execute(
                    mysql.insert(counts)
                    .values(reason=reason, count=1)
                    .on_duplicate_key_update(count=counts.c.count + 1)
                )
            # Keep the newest MAX_REJECTIONS: find the first one too many.
            r = rejections.c
            oldest_kept = conn.execute(
                sa.select(r.at, r.id)
                .order_by(r.at.desc(), r.id.desc())
                .offset(MAX_REJECTIONS)
                .limit(1)
            ).one_or_none()
            if oldest_kept is not None:
                conn.execute(
                    sa.delete(rejections).where(
                        sa.or_(
                            r.at < oldest_kept.at,
                            sa.and_(r.at == oldest_kept.at, r.id <= oldest_kept.id),
                        )
                    )
                )

        self._run(work)

    def rejections(self, limit: int = 50) -> Rejections:
        """See :meth:`DeliveryStore.rejections`."""
        limit = max(0, min(limit, MAX_REJECTIONS))

        def work(conn: sa.Connection) -> Rejections:
            counts = {
                str(reason): int(count)
                for reason, count in conn.execute(
                    sa.select(rejection_counts.c.reason, rejection_counts.c.count)
                )
            }
            r = rejections.c
            rows = conn.execute(
                sa.select(r.at, r.reason, r.webhook_id)
                .order_by(r.at.desc(), r.id.desc())
                .limit(limit)
            ).all()
            recent = tuple(
                Rejection(float(row.at), row.reason, row.webhook_id) for row in rows
            )
            return Rejections(counts, recent)

        return self._run(work)

    # -- the rest ----------------------------------------------------------

    def ping(self) -> None:
        """See :meth:`DeliveryStore.ping`. Connects, creates the tables if
        that is the store's job, and reads the deliveries table, so missing
        tables are reported too."""
        self._run(
            lambda conn: conn.execute(
                sa.select(deliveries.c.webhook_id).limit(1)
            ).all(),
            single=True,
        )

    def describe(self) -> str:
        """See :meth:`DeliveryStore.describe`: the URL without its
        password."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Close the connections of an engine the store created. An engine
        that was passed in is left to its owner. Safe to call twice; the
        store reconnects if used again."""
        if self._owns_engine:
            self.engine.dispose()

    def __repr__(self) -> str:
        return f"<SQLStore {self.describe()}>"
