"""Tests for :mod:`flask_openai_webhooks.stores.sqlite` beyond the contract
that ``tests/test_stores.py`` checks for every backend: the file itself,
permissions, real processes, fork, pruning, and what the file holds.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gc
import hashlib
import hmac
import multiprocessing
import os
import pathlib
import queue
import secrets
import shutil
import sqlite3
import stat
import subprocess
import threading
import traceback
import typing as t
import warnings
from collections.abc import Callable
from collections.abc import Iterator

import pytest

from flask_openai_webhooks.errors import StoreError
from flask_openai_webhooks.stores import Claim
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores import ReceiverResult
from flask_openai_webhooks.stores.sqlite import SQLiteStore

LONG = 600.0  # a lease or retention that never expires during a test
N_PROCESSES = 8
T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def delivery(
    webhook_id: str,
    *,
    at: float = T0,
    body: bytes = b'{"type":"batch.completed"}',
    event_type: str = "batch.completed",
) -> Delivery:
    return Delivery(
        webhook_id=webhook_id,
        event_type=event_type,
        event_id=f"evt_{webhook_id}",
        object_id=f"batch_{webhook_id}",
        created_at=int(at),
        body=body,
        received_at=at,
    )


def ok(key: str) -> ReceiverResult:
    return ReceiverResult(key, "ok", at=T0)


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "deliveries.db"


@pytest.fixture
def store(path: pathlib.Path) -> Iterator[SQLiteStore]:
    sqlite_store = SQLiteStore(path)
    yield sqlite_store
    sqlite_store.close()


@contextlib.contextmanager
def connect(path: pathlib.Path | str) -> Iterator[sqlite3.Connection]:
    """A connection of the test's own, closed afterwards."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def count_rows(path: pathlib.Path) -> int:
    with connect(path) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM openai_webhook_deliveries"
        ).fetchone()
    return int(count)


# --------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------


def test_nothing_is_opened_before_the_first_call(path: pathlib.Path) -> None:
    store = SQLiteStore(path)
    assert not path.exists()
    assert store.describe() == f"sqlite:///{path}"
    store.close()
    assert not path.exists()


def test_schema_wal_and_synchronous(store: SQLiteStore, path: pathlib.Path) -> None:
    store.ping()
    with connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        columns = [
            row[1]
            for row in conn.execute("PRAGMA table_info(openai_webhook_deliveries)")
        ]
    assert {
        "openai_webhook_deliveries",
        "openai_webhook_rejections",
        "openai_webhook_rejection_counts",
        "openai_webhook_deliveries_listing",
        "openai_webhook_deliveries_event_id",
        "openai_webhook_deliveries_object_id",
        "openai_webhook_deliveries_expires_at",
    } <= names
    # The body last, so a large one does not push the other columns into
    # overflow pages.
    assert columns[-1] == "body"
    # synchronous is a setting of each connection: ask the store's own.
    assert store._connect().execute("PRAGMA synchronous").fetchone() == (1,)


def test_shared_between_instances(path: pathlib.Path) -> None:
    one, two = SQLiteStore(path), SQLiteStore(str(path))
    try:
        first = one.claim(delivery("wh_1"), lease=LONG, retention=LONG)
        assert first.status == "acquired"
        assert two.claim(delivery("wh_1"), lease=LONG, retention=LONG) == Claim(
            "in_flight"
        )
        one.finish(
            "wh_1",
            first.token,
            [ok("a")],
            status="processed",
            status_code=200,
            source="delivery",
            retention=LONG,
        )
        assert two.claim(delivery("wh_1"), lease=LONG, retention=LONG) == Claim("done")
        record = two.get("wh_1")
        assert record is not None
        assert record.attempts == 3
        assert [h.result for h in record.history] == [
            "in_flight",
            "processed",
            "duplicate",
        ]
    finally:
        one.close()
        two.close()


def test_close_twice_and_reuse(store: SQLiteStore) -> None:
    assert store.claim(delivery("wh_1"), lease=LONG, retention=LONG).status == (
        "acquired"
    )
    store.close()
    store.close()
    # Usable again: it opens a new connection.
    assert store.claim(delivery("wh_1"), lease=LONG, retention=LONG).status == (
        "in_flight"
    )


def test_in_memory_database_is_refused() -> None:
    for where in ["", ":memory:", "file::memory:?cache=shared"]:
        with pytest.raises(ValueError, match="MemoryStore"):
            SQLiteStore(where)


class StatementLog:
    """The statements the store runs on this thread's connection, as SQLite
    reports them."""

    def __init__(self, store: SQLiteStore) -> None:
        self.statements: list[str] = []
        store._connect().set_trace_callback(self.statements.append)

    def take(self) -> list[str]:
        taken = [" ".join(s.split()).upper() for s in self.statements]
        self.statements.clear()
        return taken


def test_common_path_is_one_transaction_each(store: SQLiteStore) -> None:
    store.prune_every = 1_000_000
    store.claim(delivery("warm-up"), lease=LONG, retention=LONG)  # the pruning one
    log = StatementLog(store)

    # A new delivery: the insert that finds it new is all there is.
    claim = store.claim(delivery("wh_1"), lease=LONG, retention=LONG)
    assert claim.status == "acquired"
    begin, insert, commit = log.take()
    assert (begin, commit) == ("BEGIN IMMEDIATE", "COMMIT")
    assert insert.startswith("INSERT INTO OPENAI_WEBHOOK_DELIVERIES")

    # Its finish by the lease holder, on the record as the claim left it:
    # one update, which needs no read.
    store.finish(
        "wh_1",
        claim.token,
        [ok("a")],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    begin, update, commit = log.take()
    assert (begin, commit) == ("BEGIN IMMEDIATE", "COMMIT")
    assert update.startswith("UPDATE OPENAI_WEBHOOK_DELIVERIES")


def test_finish_of_a_retry_reads_then_writes_in_one_transaction(
    store: SQLiteStore,
) -> None:
    """A record with results already (a retry's) does not match the
    one-statement finish of a first attempt: it is read, merged and written
    under the same write lock."""
    first = store.claim(delivery("wh_1"), lease=LONG, retention=LONG)
    failed = ReceiverResult("a", "failed", at=T0, error_type="ValueError")
    store.finish(
        "wh_1",
        first.token,
        [failed, ok("b")],
        status="failed",
        status_code=500,
        source="delivery",
        retention=LONG,
    )
    retry = store.claim(delivery("wh_1"), lease=LONG, retention=LONG)
    assert retry.status == "acquired"
    log = StatementLog(store)
    store.finish(
        "wh_1",
        retry.token,
        [ok("a")],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    begin, first_only, select, update, commit = log.take()
    assert (begin, commit) == ("BEGIN IMMEDIATE", "COMMIT")
    assert first_only.startswith("UPDATE OPENAI_WEBHOOK_DELIVERIES")
    assert select.startswith("SELECT ")
    assert update.startswith("UPDATE OPENAI_WEBHOOK_DELIVERIES")
    record = store.get("wh_1")
    assert record is not None
    assert record.status == "processed"
    assert [(r.key, r.outcome) for r in record.receivers] == [("a", "ok"), ("b", "ok")]
    assert [(h.result, h.status_code) for h in record.history] == [
        ("failed", 500),
        ("processed", 200),
    ]


@pytest.mark.parametrize("same_token", [True, False])
def test_one_statement_finish_writes_what_the_general_one_does(
    path: pathlib.Path, same_token: bool
) -> None:
    """The finish of a first attempt, in one statement, leaves the record
    exactly as reading, merging and writing it does: here the general path
    is taken by a second store whose record had a result recorded first
    (by ``record``, which the one-statement finish does not match), and
    both are compared but for that result."""
    clock = FakeClock()
    fast = SQLiteStore(path, clock=clock)
    general = SQLiteStore(path.with_name("general.db"), clock=clock)
    try:
        claims = [
            s.claim(delivery("wh_1"), lease=LONG, retention=LONG)
            for s in (fast, general)
        ]
        general.record("wh_1", claims[1].token, [ReceiverResult("z", "ok", at=T0)])
        clock.advance(3.0)
        results = [ok("a"), ReceiverResult("b", "queued", at=T0), ok("a")]
        for s, claim in zip((fast, general), claims, strict=True):
            s.finish(
                "wh_1",
                claim.token if same_token else "another worker's token",
                results,
                status="processing",
                status_code=200,
                source="delivery",
                retention=LONG * 2,
            )
        a, b = fast.get("wh_1"), general.get("wh_1")
        assert a is not None and b is not None
        assert b.receivers[0].key == "z"
        assert a.receivers == b.receivers[1:]
        assert (a.status, a.status_code, a.history) == (
            b.status,
            b.status_code,
            b.history,
        )
        rows = []
        for db in (path, path.with_name("general.db")):
            with connect(db) as conn:
                rows.append(
                    conn.execute(
                        "SELECT status, status_code, lease_until, expires_at,"
                        " history, task_leases, lease_token"
                        " FROM openai_webhook_deliveries"
                    ).fetchone()
                )
        assert rows[0][:-1] == rows[1][:-1]
        if same_token:
            assert rows[0][2:4] == (0.0, T0 + 3.0 + LONG * 2)
            assert rows[0][-1] == rows[1][-1] == ""
        else:
            # Another worker's lease: only the results are merged.
            assert rows[0][0] == "processing"
            assert rows[0][2:4] == (T0 + LONG, T0 + LONG)
            assert [row[-1] for row in rows] == [c.token for c in claims]
    finally:
        fast.close()
        general.close()


# --------------------------------------------------------------------------
# Errors, and recovering from them without a restart
# --------------------------------------------------------------------------


class Worker:
    """A thread that runs the calls it is given one at a time, so a test can
    use one thread's connection over several steps."""

    def __init__(self) -> None:
        self._calls: queue.Queue[Callable[[], t.Any] | None] = queue.Queue()
        self._results: queue.Queue[tuple[bool, t.Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                self._results.put((True, call()))
            except BaseException as exc:  # handed to the caller
                self._results.put((False, exc))

    def run(self, call: Callable[[], t.Any]) -> t.Any:
        self._calls.put(call)
        succeeded, value = self._results.get(timeout=120)
        if not succeeded:
            raise value
        return value

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join(timeout=60)


@contextlib.contextmanager
def unwritable(path: pathlib.Path) -> Iterator[None]:
    """Make the file ``path`` unwritable for this process, and writable
    again afterwards whatever happens: the immutable attribute as root,
    whom permissions do not stop, read-only permissions otherwise."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip(
            "running as root, whom only the immutable attribute keeps from"
            " writing a file, and chattr (e2fsprogs) is not installed"
        )
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(
            f"chattr +i does not work on this file system: {done.stderr.strip()}"
        )
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_unwritable_file_fails_then_recovers_in_every_thread(
    store: SQLiteStore, path: pathlib.Path
) -> None:
    """Issue 8: SQLite opens a file it may not write read-only, silently,
    and the connection stays read-only after the file is fixed. A store
    that kept it answered 503 in that thread until a restart."""
    store.ping()
    store.close()  # the file exists, and no connection is open
    readers, writers = [Worker() for _ in range(3)], [Worker() for _ in range(3)]
    claim = functools.partial(store.claim, lease=LONG, retention=LONG)
    try:
        with unwritable(path):
            with pytest.raises(PermissionError):
                path.open("r+b").close()
            with pytest.raises(StoreError) as info:
                claim(delivery("wh_main"))
            message = str(info.value)
            assert str(path) in message
            assert "permissions" in message
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            # Every thread makes its first connection now. A writer fails;
            # a reader may fail or not, but a connection that can only read
            # must not be kept for its later writes.
            for n, writer in enumerate(writers):
                with pytest.raises(StoreError, match="permissions"):
                    writer.run(functools.partial(claim, delivery(f"wh_{n}")))
            for reader in readers:
                with contextlib.suppress(StoreError):
                    assert reader.run(functools.partial(store.get, "wh_0")) is None

        # Fixed: the very next call of every thread succeeds.
        assert claim(delivery("wh_main")).status == "acquired"
        for n, worker in enumerate(writers + readers):
            acquired = worker.run(functools.partial(claim, delivery(f"wh_{n}")))
            assert acquired.status == "acquired"
            finish = functools.partial(
                store.finish,
                f"wh_{n}",
                acquired.token,
                [ok("r")],
                status="processed",
                status_code=200,
                source="delivery",
                retention=LONG,
            )
            worker.run(finish)
        # Nothing was half written while the file could not be.
        for n in range(len(writers + readers)):
            record = store.get(f"wh_{n}")
            assert record is not None
            assert (record.attempts, record.status) == (1, "processed")
    finally:
        for worker in writers + readers:
            worker.stop()


def test_missing_directory_fails_every_method_then_recovers(
    tmp_path: pathlib.Path,
) -> None:
    where = tmp_path / "instance" / "deliveries.db"
    store = SQLiteStore(where)
    calls: list[Callable[[], object]] = [
        store.ping,
        lambda: store.claim(delivery("wh_1"), lease=LONG, retention=LONG),
        lambda: store.record("wh_1", "t", [ok("a")]),
        lambda: store.finish(
            "wh_1",
            "t",
            [ok("a")],
            status="processed",
            status_code=200,
            source="delivery",
            retention=LONG,
        ),
        lambda: store.claim_task("wh_1", "a", lease=LONG),
        lambda: store.finish_task("wh_1", "t", ok("a"), retention=LONG),
        lambda: store.get("wh_1"),
        lambda: store.list_deliveries(),
        lambda: store.prune(LONG),
        lambda: store.reject("signature_mismatch", "wh_1", T0),
        lambda: store.rejections(),
    ]
    for call in calls:
        with pytest.raises(StoreError) as info:
            call()
        assert str(where) in str(info.value)
        assert "directory exists" in str(info.value)
    # Created meanwhile: no restart needed.
    where.parent.mkdir()
    assert store.claim(delivery("wh_1"), lease=LONG, retention=LONG).status == (
        "acquired"
    )
    store.close()


def test_lock_timeout_is_store_error(store: SQLiteStore, path: pathlib.Path) -> None:
    store.ping()
    impatient = SQLiteStore(path, timeout=0.1)
    failed = impatient._connect()
    with connect(path) as blocker:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            impatient.claim(delivery("wh_1"), lease=LONG, retention=LONG)
        blocker.execute("ROLLBACK")
    # A connection is never kept after an error: the next call opens anew.
    assert impatient._connect() is not failed
    # The failed transaction left nothing behind.
    claim = impatient.claim(delivery("wh_1"), lease=LONG, retention=LONG)
    assert claim.status == "acquired"
    record = store.get("wh_1")
    assert record is not None
    assert record.attempts == 1
    impatient.close()


def test_not_a_database_is_store_error(path: pathlib.Path) -> None:
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    store = SQLiteStore(path)
    with pytest.raises(StoreError):
        store.claim(delivery("wh_1"), lease=LONG, retention=LONG)
    with pytest.raises(StoreError):
        store.get("wh_1")
    store.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("receivers", "not json"),
        ("receivers", '{"a": 1}'),
        ("history", "[1, 2]"),
        ("task_leases", "[]"),
        ("status", "bogus"),
    ],
)
def test_corrupt_record_is_store_error(
    store: SQLiteStore, path: pathlib.Path, column: str, value: str
) -> None:
    store.claim(delivery("wh_1"), lease=LONG, retention=LONG)
    with connect(path) as conn:
        conn.execute(f"UPDATE openai_webhook_deliveries SET {column} = ?", (value,))
    calls: list[Callable[[], object]] = [
        lambda: store.get("wh_1"),
        lambda: store.list_deliveries(),
        lambda: store.claim(delivery("wh_1"), lease=LONG, retention=LONG),
        lambda: store.finish(
            "wh_1",
            "t",
            [ok("a")],
            status="processed",
            status_code=200,
            source="delivery",
            retention=LONG,
        ),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="corrupt"):
            call()


# --------------------------------------------------------------------------
# Threads, processes, fork
# --------------------------------------------------------------------------


def test_connections_of_finished_threads_are_released(store: SQLiteStore) -> None:
    """The dev server starts a thread per request: their connections must
    not pile up."""
    store.ping()

    def one_request(n: int) -> None:
        store.claim(delivery(f"wh_{n}"), lease=LONG, retention=LONG)

    def run_threads(first: int) -> int:
        for n in range(first, first + 100):
            thread = threading.Thread(target=one_request, args=(n,))
            thread.start()
            thread.join()
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    after_100 = run_threads(0)
    after_300 = run_threads(100) and run_threads(200)
    assert len(store._connections) <= 1
    assert after_300 - after_100 < 10
    assert len(store.list_deliveries(limit=500).records) == 300


def _run_in_processes(target: Callable[..., None], *args: object) -> list[t.Any]:
    """Run ``target(*args, barrier, results)`` in N_PROCESSES spawned
    processes that start together; return what each put in ``results``."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=target, args=(*args, barrier, results))
        for _ in range(N_PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = []
        for _ in processes:
            try:
                outcomes.append(results.get(timeout=180))
            except queue.Empty:
                pytest.fail("a worker process did not report")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    assert [process.exitcode for process in processes] == [0] * N_PROCESSES
    return outcomes


def _claim_together(path: str, ids: list[str], barrier: t.Any, results: t.Any) -> None:
    """Claim the same deliveries as every other process, in the same order,
    starting at the same moment. Runs in a child."""
    try:
        store = SQLiteStore(path)
        barrier.wait(timeout=60)
        outcomes = []
        for wid in ids:
            claim = store.claim(delivery(wid), lease=LONG, retention=LONG)
            outcomes.append((wid, claim.status, claim.token))
        store.close()
        results.put(("ok", outcomes))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_processes_claiming_one_delivery_acquire_it_once(
    path: pathlib.Path,
) -> None:
    # The file does not exist yet: the processes create it together too.
    ids = [f"wh_{n}" for n in range(30)]
    outcomes = _run_in_processes(_claim_together, str(path), ids)
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors[0]

    claims = [claim for _, claims in outcomes for claim in claims]
    assert len(claims) == N_PROCESSES * len(ids)
    winners = {wid: token for wid, status, token in claims if status == "acquired"}
    acquired = [wid for wid, status, _ in claims if status == "acquired"]
    assert sorted(acquired) == sorted(ids)  # each one exactly once
    assert {status for _, status, _ in claims} == {"acquired", "in_flight"}
    with connect(path) as conn:
        leases = dict(
            conn.execute(
                "SELECT webhook_id, lease_token FROM openai_webhook_deliveries"
            )
        )
    assert leases == winners
    store = SQLiteStore(path)
    for wid in ids:
        record = store.get(wid)
        assert record is not None
        assert record.attempts == N_PROCESSES
        assert [h.result for h in record.history] == ["in_flight"] * (N_PROCESSES - 1)
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_opens_its_own_connection(
    store: SQLiteStore, path: pathlib.Path
) -> None:
    store.claim(delivery("parent"), lease=LONG, retention=LONG)
    parent_conn = store._connect()
    # Another thread holds a connection of its own across the fork.
    other = Worker()
    try:
        other.run(lambda: store.claim(delivery("other"), lease=LONG, retention=LONG))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                gc.collect()
                fresh = store._connect() is not parent_conn
                child = store.claim(delivery("child"), lease=LONG, retention=LONG)
                parent = store.claim(delivery("parent"), lease=LONG, retention=LONG)
                store.close()
                answers = (child.status, parent.status)
                code = 0 if fresh and answers == ("acquired", "in_flight") else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connections work as before, and see the child's work.
        assert store._connect() is parent_conn
        assert store.claim(delivery("child"), lease=LONG, retention=LONG) == Claim(
            "in_flight"
        )
        again = other.run(
            lambda: store.claim(delivery("other"), lease=LONG, retention=LONG)
        )
        assert again == Claim("in_flight")
        record = store.get("parent")
        assert record is not None
        assert record.attempts == 2
    finally:
        other.stop()


# --------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------


def test_expired_rows_are_pruned_a_batch_at_a_time(path: pathlib.Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(path, clock=clock)
    store.prune_every = 1
    store.prune_batch = 10
    for n in range(50):
        store.claim(delivery(f"old_{n}"), lease=1, retention=5)
    assert count_rows(path) == 50
    clock.advance(10)
    # Expired is gone for every reader at once, deleted or not ...
    assert store.get("old_0") is None
    assert store.list_deliveries(limit=100).records == ()
    # ... and a claim deletes one batch of them, no more.
    store.claim(delivery("new_0", at=clock.now), lease=LONG, retention=LONG)
    assert count_rows(path) == 50 - 10 + 1
    for n in range(1, 6):
        store.claim(delivery(f"new_{n}", at=clock.now), lease=LONG, retention=LONG)
    assert count_rows(path) == 6
    # An expired id arrives again: a new record, not the old one.
    claim = store.claim(delivery("old_0", at=clock.now), lease=LONG, retention=LONG)
    assert claim == Claim("acquired", claim.token)
    store.close()


def test_default_pruning_is_occasional(path: pathlib.Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(path, clock=clock)
    for n in range(store.prune_every):
        store.claim(delivery(f"old_{n}"), lease=1, retention=5)
    clock.advance(10)
    store.claim(delivery("trigger", at=clock.now), lease=LONG, retention=LONG)
    assert count_rows(path) == 1
    store.close()


def test_prune_keeps_what_is_leased(path: pathlib.Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(path, clock=clock)
    leased = store.claim(delivery("leased"), lease=LONG, retention=LONG)
    settled = store.claim(delivery("settled"), lease=LONG, retention=LONG)
    store.finish(
        "settled",
        settled.token,
        [ok("r")],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    queued = store.claim(delivery("queued"), lease=LONG, retention=LONG)
    store.finish(
        "queued",
        queued.token,
        [ReceiverResult("task", "queued")],
        status="processing",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    task = store.claim_task("queued", "task", lease=LONG)
    assert task.status == "acquired"

    clock.advance(100)
    assert store.prune(200) == 0  # nothing that old
    assert store.prune(50) == 1
    assert store.get("settled") is None
    assert store.get("leased") is not None
    assert store.get("queued") is not None

    store.finish_task("queued", task.token, ok("task"), retention=LONG)
    store.finish(
        "leased",
        leased.token,
        [],
        status="unhandled",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    assert store.prune(50) == 2
    assert count_rows(path) == 0
    store.close()


def test_rejections_table_is_bounded(store: SQLiteStore, path: pathlib.Path) -> None:
    from flask_openai_webhooks.stores import MAX_REJECTIONS

    for n in range(MAX_REJECTIONS + 50):
        store.reject("signature_mismatch", f"wh_{n}", T0 + n)
    with connect(path) as conn:
        (kept,) = conn.execute(
            "SELECT count(*) FROM openai_webhook_rejections"
        ).fetchone()
    assert kept == MAX_REJECTIONS
    rejections = store.rejections(limit=MAX_REJECTIONS)
    assert rejections.counts == {"signature_mismatch": MAX_REJECTIONS + 50}
    assert rejections.recent[0].webhook_id == f"wh_{MAX_REJECTIONS + 49}"
    assert rejections.recent[-1].webhook_id == "wh_50"


# --------------------------------------------------------------------------
# What the file holds
# --------------------------------------------------------------------------


def test_file_holds_bodies_and_never_a_secret_or_signature(
    store: SQLiteStore, path: pathlib.Path
) -> None:
    """Every byte of the database and its WAL: the bodies are there, the
    secret they were signed with and their signatures are not. The store
    is never given either; this proves the body column holds the body and
    nothing else reaches the file."""
    key = secrets.token_bytes(32)
    secret = "whsec_" + base64.b64encode(key).decode()
    bodies: dict[str, bytes] = {}
    signatures: list[str] = []
    for n in range(20):
        wid = f"wh_{secrets.token_hex(8)}"
        body = (
            b'{"object":"event","id":"evt_%d","type":"batch.failed",'
            b'"data":{"id":"batch_%s"}}' % (n, secrets.token_hex(8).encode())
        )
        signed = f"{wid}.{int(T0) + n}.".encode() + body
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
        bodies[wid] = body
        claim = store.claim(delivery(wid, body=body), lease=LONG, retention=LONG)
        store.finish(
            wid,
            claim.token,
            [
                ReceiverResult(
                    "app:on_batch",
                    "failed",
                    error_type="ValueError",
                    error_message="boom",
                    traceback="Traceback (most recent call last):\nValueError: boom",
                )
            ],
            status="failed",
            status_code=500,
            source="delivery",
            retention=LONG,
        )
    store.reject("signature_mismatch", "wh_refused", T0)

    def every_byte() -> bytes:
        files = [path, pathlib.Path(f"{path}-wal"), pathlib.Path(f"{path}-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())

    while_open = every_byte()
    with connect(path) as conn:
        stored = {
            wid: (kind, body)
            for wid, kind, body in conn.execute(
                "SELECT webhook_id, typeof(body), body FROM openai_webhook_deliveries"
            )
        }
    assert stored == {wid: ("blob", body) for wid, body in bodies.items()}
    store.close()
    after_checkpoint = every_byte()

    for data in (while_open, after_checkpoint):
        for body in bodies.values():
            assert body in data  # the search does look at the right bytes
        assert secret.encode() not in data
        assert base64.b64encode(key) not in data
        assert key not in data
        for signature in signatures:
            assert signature.encode() not in data
            assert signature[3:].encode() not in data


def test_is_a_delivery_store(store: SQLiteStore) -> None:
    assert isinstance(store, DeliveryStore)


def test_table_of_an_earlier_version_is_named(path: pathlib.Path) -> None:
    with connect(path) as conn:
        conn.execute(
            "CREATE TABLE openai_webhook_deliveries (webhook_id TEXT PRIMARY KEY,"
            " state TEXT NOT NULL, token TEXT NOT NULL, lease_until REAL NOT NULL,"
            " expires_at REAL NOT NULL, receivers TEXT NOT NULL)"
        )
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="earlier version") as info:
        store.claim(delivery("wh_1"), lease=LONG, retention=LONG)
    assert str(path) in str(info.value)
    store.close()
