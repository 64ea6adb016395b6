"""Tests of what is particular to :class:`~flask_openai_webhooks.stores.sql.SQLStore`,
against the real PostgreSQL and MariaDB servers, each test in a database of
its own. The behaviour every store shares is tested in ``test_stores.py``.
"""

from __future__ import annotations

import base64
import collections.abc as c
import multiprocessing
import os
import queue as queue_module
import socket
import threading
import time
import traceback
import typing as t

import pytest
import sqlalchemy as sa

from flask_openai_webhooks.errors import StoreError
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores import MAX_TRACEBACK
from flask_openai_webhooks.stores import ReceiverResult
from flask_openai_webhooks.stores import type_matcher
from flask_openai_webhooks.stores.sql import metadata
from flask_openai_webhooks.stores.sql import SQLStore

from .services import fresh_database

_R = t.TypeVar("_R")

LONG = 3600.0  # a lease or retention that never runs out during a test
N_PROCESSES = 24
PASSWORD = "pw-Zq8sF3kT"  # never to be seen in a message or a description
TABLES = {
    "openai_webhook_deliveries",
    "openai_webhook_rejections",
    "openai_webhook_rejection_counts",
}


@pytest.fixture(params=["postgresql", "mariadb"])
def kind(request: pytest.FixtureRequest) -> str:
    return t.cast(str, request.param)


@pytest.fixture
def url(kind: str) -> c.Iterator[str]:
    """The URL of a new, empty database, dropped afterwards."""
    with fresh_database(kind) as database_url:
        yield database_url


@pytest.fixture
def store(url: str) -> c.Iterator[SQLStore]:
    sql = SQLStore(url)
    yield sql
    sql.close()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _delivery(
    webhook_id: str,
    *,
    event_type: str = "batch.completed",
    body: bytes = b'{"type":"batch.completed"}',
    at: float | None = None,
) -> Delivery:
    return Delivery(
        webhook_id=webhook_id,
        event_type=event_type,
        event_id=f"evt_{webhook_id}",
        object_id=f"batch_{webhook_id}",
        created_at=1_750_000_000,
        body=body,
        received_at=time.time() if at is None else at,
    )


def _table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --------------------------------------------------------------------------
# URLs and engines
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://app:{pw}@db.example:5432/hooks", "postgresql+psycopg"),
        ("postgres://app:{pw}@db.example/hooks", "postgresql+psycopg"),
        ("postgres+psycopg://app:{pw}@db.example/hooks", "postgresql+psycopg"),
        ("mysql://app:{pw}@db.example:3306/hooks", "mysql+pymysql"),
        ("mariadb://app:{pw}@db.example/hooks", "mariadb+pymysql"),
        ("mysql+pymysql://app:{pw}@db.example/hooks", "mysql+pymysql"),
    ],
)
def test_url_gets_a_driver_and_hides_the_password(given: str, driver: str) -> None:
    store = SQLStore(given.format(pw=PASSWORD))  # connects on first use only
    try:
        assert store.engine.url.drivername == driver
        assert store.describe().startswith(driver + "://app:***@db.example")
        assert PASSWORD not in store.describe()
        assert PASSWORD not in repr(store)
    finally:
        store.close()


def test_url_without_driver_connects(kind: str, url: str) -> None:
    bare = url.replace("+psycopg", "").replace("+pymysql", "")
    if kind == "postgresql":
        expected = {bare: "postgresql+psycopg"}
        expected[bare.replace("postgresql://", "postgres://")] = "postgresql+psycopg"
    else:
        expected = {bare: "mysql+pymysql"}
        expected[bare.replace("mysql://", "mariadb://")] = "mariadb+pymysql"
    for given, driver in expected.items():
        store = SQLStore(given)
        try:
            store.ping()
            assert store.engine.url.drivername == driver
            assert store.claim(_delivery(driver), lease=LONG, retention=LONG).status
            assert store.get(driver) is not None
        finally:
            store.close()


@pytest.mark.parametrize(
    "given",
    [
        f"sqlite:////tmp/x{PASSWORD}.db",
        f"mssql+pyodbc://sa:{PASSWORD}@db.example/hooks",
        f"not a url {PASSWORD}",
    ],
)
def test_unsupported_urls_are_refused_without_echo(given: str) -> None:
    with pytest.raises(ValueError) as info:
        SQLStore(given)
    assert PASSWORD not in str(info.value)


def test_missing_driver_says_what_to_install() -> None:
    import importlib.util

    if importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed, so it is not missing")
    with pytest.raises(RuntimeError, match=r"pip install Flask-OpenAI-Webhooks\[sql\]"):
        SQLStore(f"postgresql+pg8000://app:{PASSWORD}@db.example/hooks")


def test_engine_passed_in_is_used_and_not_disposed(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        store = SQLStore(engine)
        assert store.engine is engine
        assert store.claim(_delivery("wh_1"), lease=LONG, retention=LONG).status == (
            "acquired"
        )
        pool = engine.pool
        assert isinstance(pool, sa.pool.QueuePool)
        assert pool.checkedin() == 1
        store.close()
        store.close()
        # dispose() would have emptied the pool.
        assert pool.checkedin() == 1
        with engine.connect() as conn:
            count = conn.execute(
                sa.text("SELECT count(*) FROM openai_webhook_deliveries")
            ).scalar()
        assert count == 1
    finally:
        engine.dispose()

    own = SQLStore(url)
    own.ping()
    own_pool = own.engine.pool
    assert isinstance(own_pool, sa.pool.QueuePool)
    assert own_pool.checkedin() == 1
    own.close()
    own_pool = own.engine.pool
    assert isinstance(own_pool, sa.pool.QueuePool)
    assert own_pool.checkedin() == 0


def _race_ten_claims(store: SQLStore, webhook_id: str) -> list[str]:
    """Claim one new delivery from ten threads at once; their answers."""
    barrier = threading.Barrier(10)
    statuses: list[str] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            barrier.wait(timeout=30)
            got = store.claim(_delivery(webhook_id), lease=LONG, retention=LONG)
            statuses.append(got.status)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[0]
    return sorted(statuses)


def test_engine_in_autocommit_still_claims_once(url: str) -> None:
    """An engine set to AUTOCOMMIT (Flask-SQLAlchemy users may have one)
    would run the insert and the locking read as separate transactions;
    the store runs its own READ COMMITTED transaction on it."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=12)
    store = SQLStore(engine)
    try:
        store.ping()
        assert _race_ten_claims(store, "wh_auto") == ["acquired"] + ["in_flight"] * 9
        record = store.get("wh_auto")
        assert record is not None and record.attempts == 10
    finally:
        store.close()
        engine.dispose()


def test_mariadb_engine_in_autocommit_at_read_committed_still_locks() -> None:
    """The store uses a MariaDB engine as it is only if its connections
    run at READ COMMITTED *outside* autocommit: this one has the level
    but autocommits, and must still get the store's own transactions."""
    with fresh_database("mariadb") as url:
        engine = sa.create_engine(
            url,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
            },
            pool_size=12,
        )
        store = SQLStore(engine)
        try:
            store.ping()
            assert (
                _race_ten_claims(store, "wh_auto") == ["acquired"] + ["in_flight"] * 9
            )
            record = store.get("wh_auto")
            assert record is not None and record.attempts == 10
        finally:
            store.close()
            engine.dispose()


def _isolation_statements(engine: sa.Engine) -> int:
    """SET statements run so far by the session of the engine's one
    pooled connection."""
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_set_option'").one()
    return int(row[1])


@pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ"])
def test_mariadb_engine_at_read_committed_is_used_as_it_is(level: str) -> None:
    """Setting the isolation level on each checkout takes MariaDB four
    round trips; an engine already at READ COMMITTED is spared them, any
    other still gets them (so the store's transactions keep their level).
    """
    with fresh_database("mariadb") as url:
        engine = sa.create_engine(
            url, isolation_level=level, pool_size=1, max_overflow=0
        )
        store = SQLStore(engine)
        try:
            store.ping()
            before = _isolation_statements(engine)
            for i in range(3):
                webhook_id = f"wh_{i}"
                claim = store.claim(_delivery(webhook_id), lease=LONG, retention=LONG)
                assert claim.status == "acquired"
                store.finish(
                    webhook_id,
                    claim.token,
                    [ReceiverResult("app.on_batch", "ok")],
                    status="processed",
                    status_code=200,
                    source="delivery",
                    retention=LONG,
                )
            sets = _isolation_statements(engine) - before
            if level == "READ COMMITTED":
                assert sets == 0
            else:
                assert sets >= 6  # set and reset, around each transaction
            record = store.get("wh_2")
            assert record is not None and record.status == "processed"
        finally:
            store.close()
            engine.dispose()


def test_connection_returned_in_a_transaction_is_rolled_back(url: str) -> None:
    """The store's own engine skips the ROLLBACK when a connection comes
    back after the store committed, but not for anything else: work left
    uncommitted on a connection must not be committed by the store's next
    transaction on it."""
    store = SQLStore(url)
    try:
        store.ping()
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(
                "INSERT INTO openai_webhook_rejection_counts (reason, count)"
                " VALUES ('left_open', 1)"
            )
            cursor.close()
        finally:
            raw.close()  # back to the pool without a commit
        claim = store.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        assert claim.status == "acquired"
        assert "left_open" not in store.rejections().counts
    finally:
        store.close()


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def test_create_tables_false_leaves_the_database_alone(url: str) -> None:
    store = SQLStore(url, create_tables=False)
    try:
        with pytest.raises(StoreError, match="openai_webhook_deliveries"):
            store.ping()
        with pytest.raises(StoreError):
            store.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        assert _table_names(url) == set()

        # What a migration does with the module's metadata.
        engine = sa.create_engine(url)
        try:
            metadata.create_all(engine)
        finally:
            engine.dispose()
        assert _table_names(url) == TABLES
        store.ping()
        claim = store.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        assert claim.status == "acquired"
        store.reject("signature_mismatch", "wh_2", time.time())
        assert store.rejections().counts == {"signature_mismatch": 1}
    finally:
        store.close()


def test_tables_are_created_on_first_use(url: str) -> None:
    store = SQLStore(url)
    try:
        assert _table_names(url) == set()  # nothing happens before a call
        assert store.get("wh_1") is None
        assert _table_names(url) == TABLES
    finally:
        store.close()


def _create_and_claim(url: str, barrier: t.Any, results: t.Any) -> None:
    """Runs in a child: a new store on a database without tables."""
    try:
        store = SQLStore(url)
        try:
            barrier.wait(timeout=60)
            webhook_id = f"wh_{os.getpid()}"
            claim = store.claim(_delivery(webhook_id), lease=LONG, retention=LONG)
            results.put(("ok", (webhook_id, claim.status)))
        finally:
            store.close()
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_processes_racing_to_create_the_tables(url: str) -> None:
    outcomes = _run_in_processes(8, _create_and_claim, url)
    claimed = dict(detail for _, detail in outcomes)
    assert set(claimed.values()) == {"acquired"}
    assert _table_names(url) == TABLES
    store = SQLStore(url, create_tables=False)
    try:
        for webhook_id in claimed:
            assert store.get(webhook_id) is not None
    finally:
        store.close()


# --------------------------------------------------------------------------
# Concurrency across processes
# --------------------------------------------------------------------------


def _run_in_processes(
    count: int, target: c.Callable[..., None], *args: object
) -> list[tuple[str, t.Any]]:
    """Run ``target(*args, barrier, results)`` in ``count`` spawned
    processes that start together; return what each put in ``results``,
    failing on the first error one reported."""
    # Real processes, as separate workers or machines would be. Where
    # there is one, the fork server imports this module once and forks a
    # clean copy of itself for each worker, instead of each importing it.
    ctx: multiprocessing.context.BaseContext
    if "forkserver" in multiprocessing.get_all_start_methods():
        forkserver = multiprocessing.get_context("forkserver")
        forkserver.set_forkserver_preload([__name__])
        ctx = forkserver
    else:
        ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=target, args=(*args, barrier, results)) for _ in range(count)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = []
        for _ in processes:
            try:
                outcomes.append(results.get(timeout=180))
            except queue_module.Empty:
                pytest.fail("a worker process did not report")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors[0]
    assert all(process.exitcode == 0 for process in processes)
    return outcomes


def _claim_same_delivery(url: str, barrier: t.Any, results: t.Any) -> None:
    """Runs in a child: claim one new delivery at the same moment as every
    other child, and settle it at once if acquired."""
    try:
        store = SQLStore(url)
        try:
            store.ping()
            barrier.wait(timeout=60)
            claim = store.claim(_delivery("wh_race"), lease=LONG, retention=LONG)
            if claim.status == "acquired":
                store.finish(
                    "wh_race",
                    claim.token,
                    [ReceiverResult("app.on_batch", "ok")],
                    status="processed",
                    status_code=200,
                    source="delivery",
                    retention=LONG,
                )
            results.put(("ok", claim.status))
        finally:
            store.close()
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_one_process_acquires_a_delivery_claimed_by_many(
    store: SQLStore, url: str
) -> None:
    store.ping()  # the tables exist before the race
    outcomes = _run_in_processes(N_PROCESSES, _claim_same_delivery, url)
    statuses = [status for _, status in outcomes]
    assert statuses.count("acquired") == 1
    assert set(statuses) <= {"acquired", "in_flight", "done"}

    record = store.get("wh_race")
    assert record is not None
    # No lost update: every claim counted, every refusal noted.
    assert record.attempts == N_PROCESSES
    assert record.status == "processed"
    results = sorted(entry.result for entry in record.history)
    assert results.count("processed") == 1
    assert results.count("duplicate") == statuses.count("done")
    assert results.count("in_flight") == statuses.count("in_flight")


def _run_tasks(url: str, barrier: t.Any, results: t.Any) -> None:
    """Runs in a child: claim a task every child wants, then run one of
    its own and settle it, all at the same time as the others."""
    try:
        store = SQLStore(url)
        try:
            store.ping()
            key = f"task-{os.getpid()}"
            barrier.wait(timeout=60)
            shared = store.claim_task("wh_tasks", "shared", lease=LONG)
            own = store.claim_task("wh_tasks", key, lease=LONG)
            assert own.status == "acquired", own
            store.finish_task(
                "wh_tasks", own.token, ReceiverResult(key, "ok"), retention=LONG
            )
            results.put(("ok", (key, shared.status)))
        finally:
            store.close()
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_tasks_settled_together_lose_nothing(store: SQLStore, url: str) -> None:
    claim = store.claim(_delivery("wh_tasks"), lease=LONG, retention=LONG)
    store.finish(
        "wh_tasks",
        claim.token,
        [],
        status="processing",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    outcomes = _run_in_processes(N_PROCESSES, _run_tasks, url)
    keys = {key for _, (key, _) in outcomes}
    shared = [status for _, (_, status) in outcomes]
    assert shared.count("acquired") == 1
    assert shared.count("in_flight") == N_PROCESSES - 1

    record = store.get("wh_tasks")
    assert record is not None
    assert record.keys_with({"ok"}) == keys
    assert len(keys) == N_PROCESSES
    assert record.status == "processed"
    assert [e.source for e in record.history].count("task") == N_PROCESSES


# --------------------------------------------------------------------------
# One statement per step
# --------------------------------------------------------------------------


def _finish(
    store: SQLStore, webhook_id: str, token: str, *results: ReceiverResult
) -> None:
    store.finish(
        webhook_id,
        token,
        results,
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )


def test_new_delivery_takes_one_statement_per_step(store: SQLStore) -> None:
    """Claiming a new delivery, recording a receiver and finishing are one
    statement each; a delivery that exists takes the locking path."""
    store.cleanup_every = 10**9  # no clean-up statements in the count
    store.ping()
    statements: list[str] = []

    def note(*args: t.Any) -> None:
        statements.append(args[2].split(None, 1)[0].upper())

    sa.event.listen(store.engine, "before_cursor_execute", note)
    try:
        claim = store.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        assert (claim.status, claim.record) == ("acquired", None)
        assert statements == ["INSERT"]
        statements.clear()
        store.record("wh_1", claim.token, [ReceiverResult("app.first", "ok")])
        assert statements == ["UPDATE"]
        statements.clear()
        _finish(store, "wh_1", claim.token, ReceiverResult("app.second", "ok"))
        assert statements == ["UPDATE"]
        statements.clear()
        assert store.claim(_delivery("wh_1"), lease=LONG, retention=LONG).status == (
            "done"
        )
        assert "SELECT" in statements  # ... FOR UPDATE
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", note)

    record = store.get("wh_1")
    assert record is not None
    assert record.keys_with({"ok"}) == {"app.first", "app.second"}
    assert (record.status, record.status_code, record.attempts) == ("processed", 200, 2)
    assert [h.result for h in record.history] == ["processed", "duplicate"]


def _retry_arrives(other: SQLStore, webhook_id: str) -> None:
    claim = other.claim(_delivery(webhook_id), lease=LONG, retention=LONG)
    assert claim.status == "in_flight"


def _task_settled(other: SQLStore, webhook_id: str) -> None:
    task = other.claim_task(webhook_id, "app.task", lease=LONG)
    assert task.status == "acquired"
    other.finish_task(
        webhook_id, task.token, ReceiverResult("app.task", "ok"), retention=LONG
    )


def _late_worker_records(other: SQLStore, webhook_id: str) -> None:
    other.record(webhook_id, "an-expired-token", [ReceiverResult("app.late", "ok")])


@pytest.mark.parametrize(
    "meanwhile",
    [_retry_arrives, _task_settled, _late_worker_records],
    ids=["retry", "task", "late_record"],
)
@pytest.mark.parametrize("recorded", [False, True], ids=["claimed", "recorded"])
def test_finish_keeps_what_others_wrote_during_the_lease(
    url: str, meanwhile: c.Callable[[SQLStore, str], None], recorded: bool
) -> None:
    """The holder's one-statement finish assumes nobody wrote since its
    claim (or its last record); whoever did, finish must keep it."""
    holder = SQLStore(url)
    other = SQLStore(url)  # another worker, or a task worker
    try:
        claim = holder.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        if recorded:
            holder.record("wh_1", claim.token, [ReceiverResult("app.first", "ok")])
        meanwhile(other, "wh_1")
        before = other.get("wh_1")
        assert before is not None
        _finish(holder, "wh_1", claim.token, ReceiverResult("app.second", "ok"))

        record = holder.get("wh_1")
        assert record is not None
        expected = {r.key for r in before.receivers} | {"app.second"}
        assert record.keys_with({"ok"}) == expected
        assert record.history[:-1] == before.history
        assert (record.history[-1].result, record.history[-1].status_code) == (
            "processed",
            200,
        )
        assert (record.status, record.status_code) == ("processed", 200)
        assert record.attempts == before.attempts
        # The lease was released: the next arrival is a duplicate.
        assert other.claim(_delivery("wh_1"), lease=LONG, retention=LONG).status == (
            "done"
        )
    finally:
        holder.close()
        other.close()


def test_finish_by_another_store_object_takes_the_locking_path(url: str) -> None:
    """A holder's knowledge of its record lives in the store object that
    claimed; another one (another process) finishes through the lock."""
    first = SQLStore(url)
    second = SQLStore(url)
    try:
        claim = first.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        first.record("wh_1", claim.token, [ReceiverResult("app.first", "ok")])
        _finish(second, "wh_1", claim.token, ReceiverResult("app.second", "ok"))
        # The first one's knowledge is now stale; its finish merges, and
        # leaves the released lease and the status alone.
        first.finish(
            "wh_1",
            claim.token,
            [ReceiverResult("app.third", "failed")],
            status="failed",
            status_code=500,
            source="delivery",
            retention=LONG,
        )
        record = first.get("wh_1")
        assert record is not None
        assert {r.key: r.outcome for r in record.receivers} == {
            "app.first": "ok",
            "app.second": "ok",
            "app.third": "failed",
        }
        assert (record.status, record.status_code) == ("processed", 200)
        assert [h.result for h in record.history] == ["processed"]
    finally:
        first.close()
        second.close()


# --------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_database_down_is_a_store_error_without_password(scheme: str) -> None:
    store = SQLStore(f"{scheme}://app:{PASSWORD}@127.0.0.1:{_closed_port()}/hooks")
    try:
        for call in (
            store.ping,
            lambda: store.claim(_delivery("wh_1"), lease=LONG, retention=LONG),
            lambda: store.get("wh_1"),
        ):
            with pytest.raises(StoreError) as info:
                call()
            message = str(info.value)
            assert PASSWORD not in message
            assert "app:***@127.0.0.1" in message
    finally:
        store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_silent_server_is_a_store_error_not_a_hang(scheme: str) -> None:
    """A server that accepts the connection and never answers (a hung
    host, a firewall that black-holes) must fail the call after the
    connect timeout, not hold the worker until the sender gives up; the
    test's own timeout is what fails if it hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    store = SQLStore(f"{scheme}://app:{PASSWORD}@127.0.0.1:{port}/hooks")
    try:
        with pytest.raises(StoreError) as info:
            store.ping()
        assert PASSWORD not in str(info.value)
    finally:
        store.close()
        listener.close()


def _backend_id(engine: sa.Engine, kind: str) -> int:
    """The server's id for the session of the engine's pooled connection."""
    query = (
        "SELECT pg_backend_pid()" if kind == "postgresql" else "SELECT CONNECTION_ID()"
    )
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(query).scalar_one())


def _kill(url: str, kind: str, backend: int) -> None:
    """Close a session from the server's side, as a restart or an idle
    timeout does, and wait until it is gone."""
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_terminate_backend(:id)"), {"id": backend}
                )
                alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = :id"
            else:
                conn.exec_driver_sql(f"KILL CONNECTION {backend}")
                alive = (
                    "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = :id"
                )
            for _ in range(3000):
                if not conn.execute(sa.text(alive), {"id": backend}).scalar_one():
                    return
                time.sleep(0.01)
        pytest.fail(f"session {backend} was not closed")
    finally:
        admin.dispose()


def test_connection_closed_by_the_server_is_replaced(kind: str, url: str) -> None:
    """Connections are not checked before use: a step whose pooled
    connection the server closed is run again, once, on a new one."""
    store = SQLStore(url)
    store.cleanup_every = 10**9
    try:
        store.ping()
        # What the store meets: a pooled connection that fails when used.
        _kill(url, kind, _backend_id(store.engine, kind))
        with store.engine.connect() as conn:
            with pytest.raises(sa.exc.DBAPIError) as info:
                conn.exec_driver_sql("SELECT 1")
        assert info.value.connection_invalidated

        def closed_first(step: c.Callable[[], _R]) -> _R:
            backend = _backend_id(store.engine, kind)
            _kill(url, kind, backend)
            result = step()
            assert _backend_id(store.engine, kind) != backend
            return result

        claim = closed_first(
            lambda: store.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        )
        assert claim.status == "acquired"
        closed_first(
            lambda: store.record("wh_1", claim.token, [ReceiverResult("app.a", "ok")])
        )
        closed_first(
            lambda: _finish(store, "wh_1", claim.token, ReceiverResult("app.b", "ok"))
        )
        again = closed_first(
            lambda: store.claim(_delivery("wh_1"), lease=LONG, retention=LONG)
        )
        assert again.status == "done"
        record = closed_first(lambda: store.get("wh_1"))
        assert record is not None
        assert record.keys_with({"ok"}) == {"app.a", "app.b"}
        assert (record.status, record.attempts) == ("processed", 2)
        assert [h.result for h in record.history] == ["processed", "duplicate"]
    finally:
        store.close()


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def test_ids_are_compared_exactly(kind: str, store: SQLStore) -> None:
    for webhook_id in ("wh_A", "wh_a", "wh_ä"):
        claim = store.claim(_delivery(webhook_id), lease=LONG, retention=LONG)
        assert claim.status == "acquired", webhook_id
    assert {r.webhook_id for r in store.list_deliveries().records} == {
        "wh_A",
        "wh_a",
        "wh_ä",
    }
    assert store.list_deliveries(search="wh_a").records[0].webhook_id == "wh_a"
    if kind == "mariadb":
        # MariaDB compares strings ignoring trailing spaces: refused rather
        # than taken for wh_a.
        with pytest.raises(StoreError, match="collides"):
            store.claim(_delivery("wh_a "), lease=LONG, retention=LONG)
        record = store.get("wh_a")
        assert record is not None and record.attempts == 1
    else:
        claim = store.claim(_delivery("wh_a "), lease=LONG, retention=LONG)
        assert claim.status == "acquired"
    with pytest.raises(ValueError, match="255"):
        store.claim(_delivery("w" * 256), lease=LONG, retention=LONG)


def test_large_body_and_results_round_trip(store: SQLStore) -> None:
    # Past MySQL's 64 KiB BLOB and TEXT.
    body = os.urandom(3 * 1024 * 1024)
    claim = store.claim(_delivery("wh_big", body=body), lease=LONG, retention=LONG)
    results = [
        ReceiverResult(
            f"app.receiver_{i}",
            "failed",
            error_type="RuntimeError",
            error_message="boom",
            traceback="x" * MAX_TRACEBACK,
        )
        for i in range(30)
    ]
    store.finish(
        "wh_big",
        claim.token,
        results,
        status="failed",
        status_code=500,
        source="delivery",
        retention=LONG,
    )
    record = store.get("wh_big")
    assert record is not None
    assert record.body == body
    assert record.receivers == tuple(results)


def test_type_patterns_are_globs_not_like(store: SQLStore) -> None:
    types = [
        "batch.completed",
        "batch.failed",
        "batch.cancelled",
        "batchXcompleted",
        "a_b",
        "aXb",
        "a%b",
        "a/b",
        "A_B",
    ]
    for i, event_type in enumerate(types):
        store.claim(
            _delivery(f"wh_{i}", event_type=event_type), lease=LONG, retention=LONG
        )
    for pattern in (
        "batch.*",
        "batch?completed",
        "batch.[!c]*",
        "batch.[cf]*led",
        "a_b",
        "a%b",
        "a/b",
        "a?b",
        "*",
    ):
        page = store.list_deliveries(type_pattern=pattern, limit=2)
        found = set()
        while True:
            found |= {r.event_type for r in page.records}
            if page.cursor is None:
                break
            page = store.list_deliveries(
                type_pattern=pattern, limit=2, before=page.cursor
            )
        assert found == {x for x in types if type_matcher(pattern)(x)}, pattern


def test_expired_records_are_deleted_during_claims(url: str) -> None:
    clock = Clock()
    store = SQLStore(url, clock=clock)
    store.cleanup_every = 1
    try:
        first = store.claim(_delivery("wh_old"), lease=5, retention=10)
        store.finish(
            "wh_old",
            first.token,
            [],
            status="processed",
            status_code=200,
            source="delivery",
            retention=10,
        )
        store.claim(_delivery("wh_leased"), lease=LONG, retention=10)
        clock.now += 60
        assert store.get("wh_old") is not None  # kept past retention until...
        store.claim(_delivery("wh_new"), lease=5, retention=10)
        assert store.get("wh_old") is None  # ...a claim cleans up
        assert store.get("wh_leased") is not None  # never while leased
        assert store.get("wh_new") is not None
    finally:
        store.close()


def test_prune_deletes_in_batches_and_keeps_leased(url: str) -> None:
    clock = Clock()
    store = SQLStore(url, clock=clock)
    store.delete_batch = 3
    try:
        for i in range(10):
            claim = store.claim(_delivery(f"wh_{i}"), lease=5, retention=LONG)
            store.finish(
                f"wh_{i}",
                claim.token,
                [],
                status="processed",
                status_code=200,
                source="delivery",
                retention=LONG,
            )
        store.claim(_delivery("wh_leased"), lease=LONG, retention=LONG)
        clock.now += 100
        store.claim(_delivery("wh_recent", at=clock.now), lease=5, retention=LONG)
        assert store.prune(50) == 10
        assert {r.webhook_id for r in store.list_deliveries().records} == {
            "wh_leased",
            "wh_recent",
        }
        assert store.prune(50) == 0
    finally:
        store.close()


def _all_stored_bytes(url: str) -> bytes:
    """Every column of every row of every table in the database, as bytes:
    what a dump or a stolen backup would show."""
    out: list[bytes] = []
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for name in sa.inspect(conn).get_table_names():
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                for row in conn.execute(sa.select(table)):
                    for value in row:
                        if isinstance(value, (bytes, bytearray, memoryview)):
                            out.append(bytes(value))
                        else:
                            out.append(str(value).encode())
    finally:
        engine.dispose()
    return b"\n".join(out)


def test_no_secret_or_signature_is_ever_stored(url: str) -> None:
    """Deliveries through the real blueprint, into the SQL store: one that
    succeeds, one whose receiver fails, a retry, and a forged one."""
    # Imported here, not at the top: the worker processes of the other
    # tests import this module, and need none of it.
    from flask import Flask

    from flask_openai_webhooks.blueprint import make_blueprint
    from flask_openai_webhooks.signals import batch_completed
    from flask_openai_webhooks.state import get_state
    from flask_openai_webhooks.testing import encode_body
    from flask_openai_webhooks.testing import make_event
    from flask_openai_webhooks.testing import signed_headers
    from flask_openai_webhooks.testing import webhook_url

    from .conftest import SECRET

    app = Flask(__name__)
    app.config.update(
        TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_STORE=url
    )
    app.register_blueprint(make_blueprint())
    target = webhook_url(app)
    signatures: list[str] = []

    def on_batch(sender: Flask, **extra: t.Any) -> None:
        if extra["event"].data.id == "batch_bad":
            raise RuntimeError("the receiver failed")

    batch_completed.connect(on_batch, sender=app, weak=False)
    try:
        with app.test_client() as client:
            for webhook_id, batch_id in (
                ("wh_good", "batch_ok"),
                ("wh_bad", "batch_bad"),
                ("wh_good", "batch_ok"),
            ):
                event = make_event("batch.completed", data={"id": batch_id})
                body = encode_body(event)
                headers = signed_headers(body, SECRET, webhook_id=webhook_id)
                signatures.append(headers["webhook-signature"])
                client.post(target, data=body, headers=headers)
            forged = dict(headers, **{"webhook-id": "wh_forged"})
            forged["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
            signatures.append(forged["webhook-signature"])
            assert client.post(target, data=body, headers=forged).status_code >= 400
        state_store = get_state(app).store
        assert state_store.get("wh_good") is not None
        assert state_store.get("wh_bad") is not None
        assert state_store.rejections().recent
    finally:
        batch_completed.disconnect(on_batch, sender=app)
        t.cast(SQLStore, get_state(app).store).close()

    stored = _all_stored_bytes(url)
    assert b"the receiver failed" in stored  # the dump does see the data
    key = SECRET.removeprefix("whsec_")
    for secret in (SECRET, key, base64.b64decode(key).decode("latin-1")):
        assert secret.encode("latin-1") not in stored
    assert b"v1," not in stored
    for header in signatures:
        for signature in header.split():
            assert signature.split(",", 1)[1].encode() not in stored
