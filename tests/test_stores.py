"""Tests for the delivery stores, run against real backends: memory, an
SQLite file in a temporary directory, and the Redis server at
127.0.0.1:6379 (skipped if it is not running, a failure when ``CI=true``).
"""

from __future__ import annotations

import ast
import collections
import json
import math
import multiprocessing
import os
import pathlib
import queue as queue_module
import secrets
import sqlite3
import sys
import threading
import time
import traceback
import typing as t
import warnings
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import redis

from flask_openai_webhooks.errors import StoreError
from flask_openai_webhooks.stores import Claim
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores import MemoryStore
from flask_openai_webhooks.stores import RedisStore
from flask_openai_webhooks.stores import SQLiteStore
from flask_openai_webhooks.stores import store_from_config

REDIS_URL = "redis://127.0.0.1:6379/0"
LONG = 600.0  # a lease or retention that never expires during a test


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[t.Any]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        sqlite_store = SQLiteStore(tmp_path / "deliveries.db")
        yield sqlite_store
        sqlite_store.close()
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        redis_store = RedisStore(url, prefix=prefix)
        yield redis_store
        redis_store.close()


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", "sqlite"])
def clocked(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> Iterator[tuple[t.Any, FakeClock]]:
    """A store whose clock the test controls, for exact boundaries."""
    clock = FakeClock()
    if request.param == "memory":
        yield MemoryStore(clock=clock), clock
    else:
        sqlite_store = SQLiteStore(tmp_path / "deliveries.db", clock=clock)
        yield sqlite_store, clock
        sqlite_store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def timed(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> Iterator[tuple[t.Any, Callable[[float], None]]]:
    """A store and a function that lets time pass for it.

    Memory and SQLite take a clock, which is advanced at once. Redis uses
    its server's clock, so the test really sleeps: its durations are chosen
    so that a stall of up to about 1.5 s on a loaded machine cannot make an
    "in_flight" or "done" check fail, and a sleep is only ever a lower bound
    for the time that passed.
    """
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        redis_store = RedisStore(url, prefix=prefix)
        yield redis_store, time.sleep
        redis_store.close()
        return
    clock = FakeClock()
    if request.param == "memory":
        yield MemoryStore(clock=clock), clock.advance
    else:
        sqlite_store = SQLiteStore(tmp_path / "deliveries.db", clock=clock)
        yield sqlite_store, clock.advance
        sqlite_store.close()


def _id() -> str:
    return f"wh_{secrets.token_hex(8)}"


# --------------------------------------------------------------------------
# Behaviour shared by every backend
# --------------------------------------------------------------------------


def test_implements_protocol(store: DeliveryStore) -> None:
    assert isinstance(store, DeliveryStore)
    store.ping()
    assert isinstance(store.describe(), str)


def test_acquire_in_flight_done(store: DeliveryStore) -> None:
    wid = _id()
    first = store.claim(wid, lease=LONG, retention=LONG)
    assert first.status == "acquired"
    assert len(first.token) == 32
    assert first.done_receivers == frozenset()

    assert store.claim(wid, lease=LONG, retention=LONG) == Claim("in_flight")

    store.finish(wid, first.token, ["a", "b"], done=True, retention=LONG)
    assert store.claim(wid, lease=LONG, retention=LONG) == Claim("done")
    assert store.claim(wid, lease=LONG, retention=LONG) == Claim("done")


def test_ids_are_independent(store: DeliveryStore) -> None:
    one, two = _id(), _id()
    assert store.claim(one, lease=LONG, retention=LONG).status == "acquired"
    assert store.claim(two, lease=LONG, retention=LONG).status == "acquired"


def test_tokens_are_fresh(store: DeliveryStore) -> None:
    tokens = {store.claim(_id(), lease=LONG, retention=LONG).token for _ in range(20)}
    assert len(tokens) == 20


def test_expired_lease_is_acquired_again(
    timed: tuple[DeliveryStore, Callable[[float], None]],
) -> None:
    # A worker killed with -9 never calls finish: its lease must expire.
    store, wait = timed
    wid = _id()
    crashed = store.claim(wid, lease=2.0, retention=LONG)
    store.record(wid, crashed.token, ["a"])
    assert store.claim(wid, lease=2.0, retention=LONG).status == "in_flight"
    wait(2.5)
    retry = store.claim(wid, lease=LONG, retention=LONG)
    assert retry.status == "acquired"
    assert retry.token != crashed.token
    assert retry.done_receivers == {"a"}
    assert store.claim(wid, lease=LONG, retention=LONG).status == "in_flight"


def test_stale_finish_does_not_change_state(
    timed: tuple[DeliveryStore, Callable[[float], None]],
) -> None:
    store, wait = timed
    wid = _id()
    # Nothing is checked before the lease expires, so a stall cannot hurt:
    # the wait is a lower bound.
    slow = store.claim(wid, lease=0.5, retention=LONG)
    wait(1.0)
    new_owner = store.claim(wid, lease=LONG, retention=LONG)
    assert new_owner.status == "acquired"

    # The slow worker finishes after losing its lease: its receivers are
    # kept, but neither done nor released may touch the new owner's lease.
    store.finish(wid, slow.token, ["slow"], done=True, retention=LONG)
    assert store.claim(wid, lease=LONG, retention=LONG).status == "in_flight"
    store.finish(wid, slow.token, ["slow2"], done=False, retention=LONG)
    assert store.claim(wid, lease=LONG, retention=LONG).status == "in_flight"

    store.finish(wid, new_owner.token, ["new"], done=False, retention=LONG)
    again = store.claim(wid, lease=LONG, retention=LONG)
    assert again.status == "acquired"
    assert again.done_receivers == {"slow", "slow2", "new"}


def test_wrong_or_empty_token_does_not_change_state(store: DeliveryStore) -> None:
    wid = _id()
    owner = store.claim(wid, lease=LONG, retention=LONG)
    for token in ["", "0" * 32, owner.token.upper()]:
        store.finish(wid, token, [], done=True, retention=LONG)
        store.finish(wid, token, [], done=False, retention=LONG)
        assert store.claim(wid, lease=LONG, retention=LONG).status == "in_flight"
    store.finish(wid, owner.token, [], done=True, retention=LONG)
    assert store.claim(wid, lease=LONG, retention=LONG).status == "done"


def test_finish_twice_is_harmless(store: DeliveryStore) -> None:
    # A client library may resend a command whose reply was lost.
    wid = _id()
    owner = store.claim(wid, lease=LONG, retention=LONG)
    store.finish(wid, owner.token, ["a"], done=True, retention=LONG)
    store.finish(wid, owner.token, ["a"], done=False, retention=LONG)
    assert store.claim(wid, lease=LONG, retention=LONG).status == "done"


def test_record_keeps_lease_and_release_returns_receivers(
    store: DeliveryStore,
) -> None:
    wid = _id()
    first = store.claim(wid, lease=LONG, retention=LONG)
    store.record(wid, first.token, ["a"])
    store.record(wid, first.token, ["a", "b"])
    store.record(wid, first.token, [])
    # record keeps the lease.
    assert store.claim(wid, lease=LONG, retention=LONG).status == "in_flight"

    # "c" failed: release so OpenAI's retry is acquired at once.
    store.finish(wid, first.token, ["d"], done=False, retention=LONG)
    second = store.claim(wid, lease=LONG, retention=LONG)
    assert second.status == "acquired"
    assert second.done_receivers == {"a", "b", "d"}

    store.finish(wid, second.token, ["c"], done=True, retention=LONG)
    assert store.claim(wid, lease=LONG, retention=LONG).status == "done"


def test_record_accepts_any_iterable(store: DeliveryStore) -> None:
    wid = _id()
    first = store.claim(wid, lease=LONG, retention=LONG)
    store.record(wid, first.token, (name for name in ["x", "y"]))
    store.finish(wid, first.token, {"z"}, done=False, retention=LONG)
    claim = store.claim(wid, lease=LONG, retention=LONG)
    assert claim.done_receivers == {"x", "y", "z"}


def test_receiver_names_round_trip(store: DeliveryStore) -> None:
    names = {"app.receivers:on_batch", "r:x", "ünïcode ✓", "with space", '"q"'}
    wid = _id()
    first = store.claim(wid, lease=LONG, retention=LONG)
    store.finish(wid, first.token, names, done=False, retention=LONG)
    assert store.claim(wid, lease=LONG, retention=LONG).done_receivers == names


def test_record_unknown_id_does_nothing(store: DeliveryStore) -> None:
    wid = _id()
    store.record(wid, "0" * 32, ["a"])
    claim = store.claim(wid, lease=LONG, retention=LONG)
    assert claim.status == "acquired"
    assert claim.done_receivers == frozenset()


def test_finish_unknown_id_creates_record(store: DeliveryStore) -> None:
    # The record vanished (evicted, expired): nobody else can hold the
    # lease, so the outcome is recorded rather than lost.
    done_id, released_id = _id(), _id()
    store.finish(done_id, "0" * 32, ["a"], done=True, retention=LONG)
    assert store.claim(done_id, lease=LONG, retention=LONG).status == "done"
    store.finish(released_id, "0" * 32, ["a"], done=False, retention=LONG)
    claim = store.claim(released_id, lease=LONG, retention=LONG)
    assert claim.status == "acquired"
    assert claim.done_receivers == {"a"}


def test_retention_expiry_makes_id_claimable(
    timed: tuple[DeliveryStore, Callable[[float], None]],
) -> None:
    store, wait = timed
    wid = _id()
    first = store.claim(wid, lease=2.0, retention=2.0)
    store.finish(wid, first.token, ["a"], done=True, retention=2.0)
    assert store.claim(wid, lease=2.0, retention=2.0).status == "done"
    wait(2.5)
    again = store.claim(wid, lease=LONG, retention=LONG)
    assert again.status == "acquired"
    assert again.done_receivers == frozenset()


def test_record_is_kept_while_leased(
    timed: tuple[DeliveryStore, Callable[[float], None]],
) -> None:
    # A retention shorter than the lease must not let a duplicate in.
    store, wait = timed
    wid = _id()
    store.claim(wid, lease=2.5, retention=0.1)
    wait(0.5)
    assert store.claim(wid, lease=2.5, retention=0.1).status == "in_flight"


def test_invalid_durations(store: DeliveryStore) -> None:
    for lease, retention in [(0, 1), (-1, 1), (math.nan, 1), (1, 0), (1, math.inf)]:
        with pytest.raises(ValueError):
            store.claim(_id(), lease=lease, retention=retention)
    with pytest.raises(ValueError):
        store.finish(_id(), "t", [], done=True, retention=0)


def test_threads_acquire_each_id_once(store: DeliveryStore) -> None:
    ids = [_id() for _ in range(50)]
    barrier = threading.Barrier(8)
    acquired: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            for wid in ids:
                if store.claim(wid, lease=LONG, retention=LONG).status == "acquired":
                    with lock:
                        acquired.append(wid)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(acquired) == sorted(ids)


# --------------------------------------------------------------------------
# Exact time boundaries (memory and SQLite accept a clock)
# --------------------------------------------------------------------------


def test_lease_boundary(clocked: tuple[DeliveryStore, FakeClock]) -> None:
    store, clock = clocked
    first = store.claim("wh_1", lease=30, retention=LONG)
    clock.advance(29.999)
    assert store.claim("wh_1", lease=30, retention=LONG).status == "in_flight"
    clock.advance(0.001)
    second = store.claim("wh_1", lease=30, retention=LONG)
    assert second.status == "acquired"
    assert second.token != first.token


def test_retention_boundary(clocked: tuple[DeliveryStore, FakeClock]) -> None:
    store, clock = clocked
    first = store.claim("wh_1", lease=30, retention=LONG)
    clock.advance(10)
    # Retention counts from finish, not from the claim.
    store.finish("wh_1", first.token, ["a"], done=True, retention=100)
    clock.advance(99.999)
    assert store.claim("wh_1", lease=30, retention=LONG).status == "done"
    clock.advance(0.001)
    assert store.claim("wh_1", lease=30, retention=LONG).status == "acquired"


def test_released_is_claimable_immediately(
    clocked: tuple[DeliveryStore, FakeClock],
) -> None:
    store, _ = clocked
    first = store.claim("wh_1", lease=LONG, retention=LONG)
    store.finish("wh_1", first.token, [], done=False, retention=LONG)
    assert store.claim("wh_1", lease=LONG, retention=LONG).status == "acquired"


def test_owner_may_finish_after_its_lease_expired(
    clocked: tuple[DeliveryStore, FakeClock],
) -> None:
    # Slow, but nobody took over: the token still matches.
    store, clock = clocked
    first = store.claim("wh_1", lease=30, retention=LONG)
    clock.advance(60)
    store.finish("wh_1", first.token, ["a"], done=True, retention=LONG)
    assert store.claim("wh_1", lease=30, retention=LONG).status == "done"


# --------------------------------------------------------------------------
# MemoryStore
# --------------------------------------------------------------------------


def test_memory_is_bounded() -> None:
    store = MemoryStore(max_entries=1000)
    for i in range(100_000):
        claim = store.claim(f"wh_{i}", lease=LONG, retention=LONG)
        assert claim.status == "acquired"
        if i % 3 == 0:
            store.finish(f"wh_{i}", claim.token, ["a"], done=True, retention=LONG)
        if i % 997 == 0:
            assert len(store) <= 1000
    assert len(store) == 1000
    # The newest deliveries are the ones remembered.
    assert store.claim("wh_99999", lease=LONG, retention=LONG).status == "done"
    assert store.claim("wh_99998", lease=LONG, retention=LONG).status == "in_flight"


def test_memory_default_bound() -> None:
    store = MemoryStore()
    assert store.max_entries == 10_000
    for i in range(10_050):
        store.claim(str(i), lease=LONG, retention=LONG)
    assert len(store) == 10_000


def test_memory_evicts_expired_first() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=3, clock=clock)
    store.claim("old", lease=1, retention=5)
    clock.advance(1)
    store.claim("b", lease=LONG, retention=LONG)
    store.claim("c", lease=LONG, retention=LONG)
    clock.advance(10)
    store.claim("d", lease=LONG, retention=LONG)
    assert len(store) == 3
    for wid in ["b", "c", "d"]:
        assert store.claim(wid, lease=LONG, retention=LONG).status == "in_flight"


def test_memory_evicts_oldest_done_before_in_flight() -> None:
    store = MemoryStore(max_entries=3, clock=FakeClock())
    store.claim("a", lease=LONG, retention=LONG)
    b = store.claim("b", lease=LONG, retention=LONG)
    store.claim("c", lease=LONG, retention=LONG)
    store.finish("b", b.token, [], done=True, retention=LONG)
    store.claim("d", lease=LONG, retention=LONG)
    for wid in ["a", "c", "d"]:
        assert store.claim(wid, lease=LONG, retention=LONG).status == "in_flight"
    assert len(store) == 3


def test_memory_evicts_oldest_when_nothing_is_done() -> None:
    store = MemoryStore(max_entries=2, clock=FakeClock())
    store.claim("a", lease=LONG, retention=LONG)
    store.claim("b", lease=LONG, retention=LONG)
    store.claim("c", lease=LONG, retention=LONG)
    assert store.claim("b", lease=LONG, retention=LONG).status == "in_flight"
    assert store.claim("c", lease=LONG, retention=LONG).status == "in_flight"
    assert len(store) == 2


def test_memory_drops_expired_records_before_it_is_full() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=100, clock=clock)
    store.claim("old", lease=1, retention=5)
    clock.advance(10)
    store.claim("new", lease=LONG, retention=LONG)
    assert len(store) == 1


def test_memory_claims_do_not_share_receiver_sets() -> None:
    store = MemoryStore()
    first = store.claim("wh_1", lease=LONG, retention=LONG)
    store.finish("wh_1", first.token, ["a"], done=False, retention=LONG)
    second = store.claim("wh_1", lease=LONG, retention=LONG)
    store.finish("wh_1", second.token, ["b"], done=False, retention=LONG)
    # A claim's receivers are a snapshot, not the store's live set.
    assert second.done_receivers == {"a"}
    assert first.done_receivers == frozenset()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_tokens_differ_after_fork() -> None:
    # A forked child inherits the token counter; its tokens must still
    # differ from the parent's.
    store = MemoryStore()
    store.claim("before", lease=LONG, retention=LONG)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        code = 1
        try:
            os.close(read)
            token = store.claim("after", lease=LONG, retention=LONG).token
            os.write(write, token.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    try:
        child_token = os.read(read, 100).decode()
    finally:
        os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent_token = store.claim("after", lease=LONG, retention=LONG).token
    assert len(child_token) == len(parent_token) == 32
    assert child_token != parent_token


def test_memory_clear_and_validation() -> None:
    store = MemoryStore(max_entries=5)
    store.claim("a", lease=LONG, retention=LONG)
    store.clear()
    assert len(store) == 0
    assert store.claim("a", lease=LONG, retention=LONG).status == "acquired"
    assert "process-local" in store.describe()
    with pytest.raises(ValueError):
        MemoryStore(max_entries=0)


# --------------------------------------------------------------------------
# SQLiteStore
# --------------------------------------------------------------------------


def _rows(path: pathlib.Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM openai_webhook_deliveries"
        ).fetchone()
        return int(count)
    finally:
        conn.close()


def test_sqlite_shared_between_instances(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "shared.db"
    one, two = SQLiteStore(path), SQLiteStore(str(path))
    try:
        first = one.claim("wh_1", lease=LONG, retention=LONG)
        assert two.claim("wh_1", lease=LONG, retention=LONG).status == "in_flight"
        one.finish("wh_1", first.token, ["a"], done=True, retention=LONG)
        assert two.claim("wh_1", lease=LONG, retention=LONG).status == "done"
    finally:
        one.close()
        two.close()


def test_sqlite_schema_and_wal(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "d.db"
    store = SQLiteStore(path)
    assert not path.exists()  # nothing is opened before the first call
    store.ping()
    first = store.claim("wh_1", lease=LONG, retention=LONG)
    store.record("wh_1", first.token, ["b", "a"])
    store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        row = conn.execute(
            "SELECT webhook_id, state, token, receivers FROM openai_webhook_deliveries"
        ).fetchone()
    finally:
        conn.close()
    assert row == ("wh_1", "leased", first.token, json.dumps(["a", "b"]))
    assert store.describe() == f"sqlite:///{path}"
    # Usable again after close.
    assert store.claim("wh_1", lease=LONG, retention=LONG).status == "in_flight"
    store.close()


def test_sqlite_prunes_expired_rows_in_bounded_batches(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "d.db"
    clock = FakeClock()
    store = SQLiteStore(path, clock=clock)
    store.prune_every = 1
    store.prune_batch = 10
    for i in range(50):
        store.claim(f"old_{i}", lease=1, retention=5)
    assert _rows(path) == 50
    clock.advance(10)
    store.claim("new", lease=LONG, retention=LONG)
    assert _rows(path) == 50 - 10 + 1
    for i in range(5):
        store.claim(f"new_{i}", lease=LONG, retention=LONG)
    assert _rows(path) == 6
    store.close()


def test_sqlite_default_prune_is_occasional(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "d.db"
    clock = FakeClock()
    store = SQLiteStore(path, clock=clock)
    for i in range(store.prune_every):
        store.claim(f"old_{i}", lease=1, retention=5)
    clock.advance(10)
    store.claim("trigger", lease=LONG, retention=LONG)
    assert _rows(path) == 1
    store.close()


def test_sqlite_lock_timeout_is_store_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "d.db"
    SQLiteStore(path).ping()
    blocker = sqlite3.connect(path, isolation_level=None)
    store = SQLiteStore(path, timeout=0.1)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            store.claim("wh_1", lease=LONG, retention=LONG)
        blocker.execute("ROLLBACK")
        # The failed transaction left nothing behind.
        assert store.claim("wh_1", lease=LONG, retention=LONG).status == "acquired"
    finally:
        blocker.close()
        store.close()


def test_sqlite_missing_directory_is_store_error(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(tmp_path / "missing" / "d.db")
    with pytest.raises(StoreError) as info:
        store.claim("wh_1", lease=LONG, retention=LONG)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    calls: list[Callable[[], object]] = [
        store.ping,
        lambda: store.record("wh_1", "t", ["a"]),
        lambda: store.finish("wh_1", "t", ["a"], done=True, retention=LONG),
    ]
    for call in calls:
        with pytest.raises(StoreError):
            call()


def test_sqlite_directory_path_is_store_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path).ping()


def test_sqlite_not_a_database_is_store_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    store = SQLiteStore(path)
    with pytest.raises(StoreError):
        store.claim("wh_1", lease=LONG, retention=LONG)
    with pytest.raises(StoreError):
        store.ping()


def test_sqlite_unwritable_log_is_store_error(tmp_path: pathlib.Path) -> None:
    """A database whose write-ahead log cannot be created (here a directory
    stands where the log goes; permissions would not stop root) fails with
    StoreError, not sqlite3's own error."""
    path = tmp_path / "d.db"
    store = SQLiteStore(path)
    store.ping()
    store.close()
    for suffix in ("-wal", "-shm"):
        pathlib.Path(f"{path}{suffix}").unlink(missing_ok=True)
    pathlib.Path(f"{path}-wal").mkdir()
    with pytest.raises(StoreError):
        SQLiteStore(path).claim("wh_1", lease=LONG, retention=LONG)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("receivers", "not json"),
        ("receivers", '{"a": 1}'),
        ("receivers", "[1, 2]"),
        ("state", "bogus"),
        ("lease_until", None),
    ],
)
def test_sqlite_corrupt_record_is_store_error(
    tmp_path: pathlib.Path, column: str, value: object
) -> None:
    path = tmp_path / "d.db"
    store = SQLiteStore(path)
    store.ping()
    conn = sqlite3.connect(path)
    try:
        # Rebuild without NOT NULL so a NULL can be stored, as an older or
        # hand-edited table could hold.
        conn.executescript(
            "DROP TABLE openai_webhook_deliveries;"
            " CREATE TABLE openai_webhook_deliveries (webhook_id TEXT PRIMARY"
            " KEY, state TEXT, token TEXT, lease_until REAL, expires_at REAL,"
            " receivers TEXT);"
        )
        conn.execute(
            "INSERT INTO openai_webhook_deliveries VALUES (?, ?, ?, ?, ?, ?)",
            ("wh_1", "released", "", 0.0, time.time() + LONG, "[]"),
        )
        conn.execute(f"UPDATE openai_webhook_deliveries SET {column} = ?", (value,))
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StoreError, match="corrupt"):
        store.claim("wh_1", lease=LONG, retention=LONG)
    with pytest.raises(StoreError, match="corrupt"):
        store.finish("wh_1", "t", ["a"], done=True, retention=LONG)
    store.close()


def test_sqlite_rejects_in_memory_database() -> None:
    for path in ["", ":memory:"]:
        with pytest.raises(ValueError, match="MemoryStore"):
            SQLiteStore(path)


class StatementLog:
    """The SQL statements an SQLiteStore runs on this thread's connection,
    as SQLite itself reports them (``set_trace_callback``).
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.statements: list[str] = []
        # The store's own connection for this thread, opened by a first call.
        store._connect().set_trace_callback(self.statements.append)

    def take(self) -> list[str]:
        """The statements run since the last call."""
        taken = [" ".join(statement.split()) for statement in self.statements]
        self.statements.clear()
        return taken

    @staticmethod
    def transactions(statements: list[str]) -> int:
        return sum(s.upper().startswith("BEGIN IMMEDIATE") for s in statements)


def _row(path: pathlib.Path, webhook_id: str) -> tuple[t.Any, ...]:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT state, token, lease_until, expires_at, receivers"
            " FROM openai_webhook_deliveries WHERE webhook_id = ?",
            (webhook_id,),
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


def test_sqlite_fast_paths(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "d.db"
    clock = FakeClock()
    store = SQLiteStore(path, clock=clock)
    store.prune_every = 1_000_000
    store.claim("warm-up", lease=LONG, retention=LONG)  # the pruning claim
    log = StatementLog(store)

    # The common case: a new id, finished by its owner, no transaction:
    # one statement each.
    first = store.claim("wh_1", lease=30, retention=100)
    assert first == Claim("acquired", first.token)
    [claimed] = log.take()
    assert claimed.startswith("INSERT ")
    assert _row(path, "wh_1") == (
        "leased",
        first.token,
        clock.now + 30,
        clock.now + 100,
        "[]",
    )
    clock.advance(1)
    store.finish("wh_1", first.token, ["b", "a"], done=True, retention=200)
    [finished] = log.take()
    assert finished.startswith("UPDATE ")
    assert _row(path, "wh_1") == ("done", "", 0.0, clock.now + 200, '["a", "b"]')

    # Anything else takes one BEGIN IMMEDIATE transaction.
    assert store.claim("wh_1", lease=30, retention=100) == Claim("done")
    statements = log.take()
    assert StatementLog.transactions(statements) == 1
    assert statements[-1] == "COMMIT"
    store.finish("wh_1", first.token, ["c"], done=False, retention=LONG)
    statements = log.take()
    assert StatementLog.transactions(statements) == 1
    assert statements[-1] == "COMMIT"
    assert _row(path, "wh_1")[:2] == ("done", "")

    # A wrong token changes nothing but the receivers, and the owner's
    # finish then merges them.
    second = store.claim("wh_2", lease=30, retention=100)
    store.finish("wh_2", "0" * 32, ["x"], done=True, retention=LONG)
    assert _row(path, "wh_2")[:2] == ("leased", second.token)
    assert _row(path, "wh_2")[4] == '["x"]'
    store.finish("wh_2", second.token, ["y"], done=True, retention=LONG)
    assert _row(path, "wh_2")[:2] == ("done", "")
    assert _row(path, "wh_2")[4] == '["x", "y"]'

    # After a takeover the old owner's finish does not take the fast path.
    slow = store.claim("wh_3", lease=30, retention=100)
    clock.advance(31)
    owner = store.claim("wh_3", lease=30, retention=100)
    assert owner.status == "acquired"
    assert owner.token != slow.token
    store.finish("wh_3", slow.token, [], done=True, retention=LONG)
    assert _row(path, "wh_3")[:2] == ("leased", owner.token)
    assert store.claim("wh_3", lease=30, retention=100) == Claim("in_flight")

    # An empty token never matches, even a record with an empty token.
    store.finish("wh_4", "", ["a"], done=False, retention=LONG)
    store.finish("wh_4", "", ["b"], done=True, retention=LONG)
    assert _row(path, "wh_4")[0] == "released"
    store.close()


def test_sqlite_fast_paths_time_the_lock_wait(tmp_path: pathlib.Path) -> None:
    # The single statements read the clock before waiting for the write
    # lock; a lease and a retention must still count from when it was
    # taken.
    path = tmp_path / "d.db"
    store = SQLiteStore(path)
    store.prune_every = 1_000_000
    store.ping()
    store.claim("warm-up", lease=LONG, retention=LONG)
    blocker = sqlite3.connect(path, isolation_level=None)
    results: dict[str, t.Any] = {}

    def claim_and_finish() -> None:
        try:
            results["claim"] = store.claim("wh_1", lease=30, retention=10)
            results["claimed_at"] = time.time()
        except BaseException as exc:  # reported in the main thread
            results["error"] = exc

    def finish() -> None:
        try:
            claim = results["claim"]
            store.finish("wh_1", claim.token, ["a"], done=True, retention=LONG)
        except BaseException as exc:  # reported in the main thread
            results["error"] = exc

    try:
        for work in (claim_and_finish, finish):
            blocker.execute("BEGIN IMMEDIATE")
            thread = threading.Thread(target=work)
            thread.start()
            time.sleep(0.3)
            released = time.time()
            blocker.execute("ROLLBACK")
            thread.join(timeout=30)
            assert "error" not in results, results.get("error")
            if work is claim_and_finish:
                claim = results["claim"]
                assert claim.status == "acquired"
                state, token, lease_until, expires_at, _ = _row(path, "wh_1")
                assert (state, token) == ("leased", claim.token)
                assert released + 30 <= lease_until <= results["claimed_at"] + 30
                assert expires_at == lease_until  # never shorter than the lease
            else:
                state, token, _, expires_at, receivers = _row(path, "wh_1")
                assert (state, token, receivers) == ("done", "", '["a"]')
                assert expires_at >= released + LONG
    finally:
        blocker.close()
        store.close()


def _run_in_processes(target: t.Callable[..., None], *args: object) -> list[t.Any]:
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
            except queue_module.Empty:
                pytest.fail("a worker process did not report")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process in processes)
    return outcomes


def _claim_new_ids(path: str, ids: list[str], barrier: t.Any, results: t.Any) -> None:
    """Claim the same new ids as every other process, at the same time, on
    the single-statement path. Runs in a child.
    """
    try:
        store = SQLiteStore(path)
        store.prune_every = 1_000_000
        store.ping()
        barrier.wait(timeout=60)
        acquired = []
        for wid in ids:
            claim = store.claim(wid, lease=LONG, retention=LONG)
            if claim.status == "acquired":
                acquired.append((wid, claim.token))
            else:
                assert claim == Claim("in_flight"), claim
        results.put(("ok", acquired))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_sqlite_new_id_is_acquired_once_across_processes(
    tmp_path: pathlib.Path,
) -> None:
    path = str(tmp_path / "shared.db")
    ids = [f"wh_{i}" for i in range(200)]
    outcomes = _run_in_processes(_claim_new_ids, path, ids)
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors[0]
    acquired = [item for _, items in outcomes for item in items]
    assert sorted(wid for wid, _ in acquired) == sorted(ids)
    tokens = [token for _, token in acquired]
    assert len(set(tokens)) == len(tokens)
    conn = sqlite3.connect(path)
    try:
        rows = dict(
            conn.execute("SELECT webhook_id, token FROM openai_webhook_deliveries")
        )
    finally:
        conn.close()
    assert rows == dict(acquired)


def test_sqlite_table_without_rowid_and_older_table(tmp_path: pathlib.Path) -> None:
    new_path = tmp_path / "new.db"
    SQLiteStore(new_path).ping()
    conn = sqlite3.connect(new_path)
    try:
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'openai_webhook_deliveries'"
        ).fetchone()
    finally:
        conn.close()
    assert "WITHOUT ROWID" in sql

    # A table created with a rowid keeps working, pruning included.
    old_path = tmp_path / "old.db"
    conn = sqlite3.connect(old_path)
    try:
        conn.execute(
            "CREATE TABLE openai_webhook_deliveries (webhook_id TEXT PRIMARY KEY,"
            " state TEXT NOT NULL, token TEXT NOT NULL, lease_until REAL NOT NULL,"
            " expires_at REAL NOT NULL, receivers TEXT NOT NULL)"
        )
        conn.commit()
    finally:
        conn.close()
    clock = FakeClock()
    store = SQLiteStore(old_path, clock=clock)
    store.prune_every = 2
    first = store.claim("old", lease=1, retention=5)  # prunes
    store.finish("old", first.token, ["a"], done=True, retention=5)
    assert store.claim("old", lease=1, retention=5) == Claim("done")  # no prune
    clock.advance(10)
    assert store.claim("new", lease=1, retention=5).status == "acquired"  # prunes
    assert _rows(old_path) == 1
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_sqlite_reopens_connection_after_fork(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(tmp_path / "d.db")
    store.claim("parent", lease=LONG, retention=LONG)
    parent_conn = store._local.conn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        code = 1
        try:
            child = store.claim("child", lease=LONG, retention=LONG)
            parent = store.claim("parent", lease=LONG, retention=LONG)
            fresh = store._local.conn is not parent_conn
            ok = child.status == "acquired" and parent.status == "in_flight"
            code = 0 if ok and fresh else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection still works after the child used the file.
    assert store._local.conn is parent_conn
    assert store.claim("child", lease=LONG, retention=LONG).status == "in_flight"
    store.close()


# --------------------------------------------------------------------------
# RedisStore
# --------------------------------------------------------------------------


def test_redis_key_layout_and_expiry(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    first = store.claim("wh_1", lease=30, retention=60)
    client = store.client
    assert client.exists(redis_prefix + "wh_1") == 1
    assert 0 < client.pttl(redis_prefix + "wh_1") <= 60_000
    store.finish("wh_1", first.token, ["a"], done=True, retention=5)
    assert 0 < client.pttl(redis_prefix + "wh_1") <= 5_000
    assert client.hget(redis_prefix + "wh_1", "state") == b"done"
    # The TTL is never shorter than the lease.
    store.claim("wh_2", lease=30, retention=1)
    assert client.pttl(redis_prefix + "wh_2") > 29_000
    store.close()


def test_redis_shared_client_with_decoded_responses(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore(client, prefix=redis_prefix)
    first = store.claim("wh_1", lease=LONG, retention=LONG)
    store.finish("wh_1", first.token, ["é"], done=False, retention=LONG)
    assert store.claim("wh_1", lease=LONG, retention=LONG).done_receivers == {"é"}
    store.close()  # does not close a client it did not create
    assert client.ping()
    client.close()


def test_redis_script_cache_flush_is_survived(
    redis_url: str, redis_prefix: str
) -> None:
    # e.g. a failover to a replica that never saw SCRIPT LOAD.
    store = RedisStore(redis_url, prefix=redis_prefix)
    store.claim("wh_1", lease=LONG, retention=LONG)
    store.client.script_flush()
    assert store.claim("wh_1", lease=LONG, retention=LONG).status == "in_flight"
    store.close()


def test_redis_wrong_type_is_store_error(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    store.client.set(redis_prefix + "wh_1", "not a hash")
    with pytest.raises(StoreError):
        store.claim("wh_1", lease=LONG, retention=LONG)
    with pytest.raises(StoreError):
        store.record("wh_1", "t", ["a"])
    with pytest.raises(StoreError):
        store.finish("wh_1", "t", ["a"], done=True, retention=LONG)
    store.close()


def test_redis_corrupt_state_is_store_error(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    store.client.hset(redis_prefix + "wh_1", "state", "bogus")
    with pytest.raises(StoreError, match="corrupt"):
        store.claim("wh_1", lease=LONG, retention=LONG)
    store.close()


def test_redis_unreachable_is_store_error_quickly() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.5)
    calls: list[Callable[[], object]] = [
        store.ping,
        lambda: store.claim("wh_1", lease=LONG, retention=LONG),
        lambda: store.record("wh_1", "t", ["a"]),
        lambda: store.finish("wh_1", "t", ["a"], done=True, retention=LONG),
    ]
    for call in calls:
        with pytest.raises(StoreError) as info:
            call()
        assert isinstance(info.value.__cause__, (redis.RedisError, OSError))
    store.close()


def test_redis_describe_hides_password() -> None:
    cases = {
        "redis://127.0.0.1:6379/0": "redis://127.0.0.1:6379/0",
        "redis://:hunter2@cache:6380/3": "redis://cache:6380/3",
        "rediss://app:hunter2@cache.example.com:6380": (
            "rediss://app@cache.example.com:6380/0"
        ),
        "unix:///run/redis.sock?db=2&password=hunter2": "unix:///run/redis.sock?db=2",
    }
    for url, expected in cases.items():
        store = RedisStore(url)
        assert store.describe() == expected
        assert "hunter2" not in store.describe()
        store.close()


# --------------------------------------------------------------------------
# Several processes
# --------------------------------------------------------------------------

N_PROCESSES = 8
N_IDS = 150


def _contend(
    target: tuple[str, str, str],
    barrier: t.Any,
    results: t.Any,
) -> None:
    """Claim the same ids as every other process, in the same order, so
    they collide; finish half of the acquired ones. Runs in a child.
    """
    try:
        kind, location, prefix = target
        store: DeliveryStore
        if kind == "sqlite":
            store = SQLiteStore(location)
        else:
            store = RedisStore(location, prefix=prefix)
        barrier.wait(timeout=60)
        acquired = []
        statuses: collections.Counter[str] = collections.Counter()
        for _ in range(2):
            for i in range(N_IDS):
                wid = f"wh_{i}"
                claim = store.claim(wid, lease=LONG, retention=LONG)
                statuses[claim.status] += 1
                if claim.status == "acquired":
                    acquired.append(wid)
                    if i % 2 == 0:
                        store.finish(wid, claim.token, ["r"], done=True, retention=LONG)
        results.put(("ok", acquired, dict(statuses)))
    except BaseException:
        results.put(("error", traceback.format_exc(), {}))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_acquire_each_id_exactly_once(
    kind: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        # The file does not exist yet: creating it concurrently is tested too.
        target = ("sqlite", str(tmp_path / "shared.db"), "")
    else:
        url = request.getfixturevalue("redis_url")
        target = ("redis", url, request.getfixturevalue("redis_prefix"))
    outcomes = _run_in_processes(_contend, target)
    errors = [detail for status, detail, _ in outcomes if status == "error"]
    assert not errors, errors[0]

    acquired = collections.Counter(wid for _, ids, _ in outcomes for wid in ids)
    assert set(acquired) == {f"wh_{i}" for i in range(N_IDS)}
    assert set(acquired.values()) == {1}, acquired.most_common(3)
    statuses: collections.Counter[str] = collections.Counter()
    for _, _, counts in outcomes:
        statuses.update(counts)
    assert statuses["acquired"] == N_IDS
    assert sum(statuses.values()) == N_PROCESSES * N_IDS * 2
    assert statuses["done"] > 0
    assert statuses["in_flight"] > 0


# --------------------------------------------------------------------------
# store_from_config
# --------------------------------------------------------------------------


def test_config_memory() -> None:
    assert isinstance(store_from_config("memory"), MemoryStore)


def test_config_sqlite_relative(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = store_from_config("sqlite:///deliveries.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == "deliveries.db"
    store.ping()
    assert (tmp_path / "deliveries.db").exists()
    assert store.describe() == f"sqlite:///{tmp_path / 'deliveries.db'}"
    store.close()


def test_config_sqlite_absolute(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "abs.db"
    assert path.is_absolute()
    store = store_from_config(f"sqlite:///{path}")  # four slashes in total
    assert isinstance(store, SQLiteStore)
    assert store.path == str(path)
    assert store.describe() == f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://u:secret@managed.example.com:6380/1", None),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock?db=0"),
    ],
)
def test_config_redis(url: str, described: str | None) -> None:
    store = store_from_config(url)
    assert isinstance(store, RedisStore)
    assert "secret" not in store.describe()
    if described is not None:
        assert store.describe() == described
    else:
        assert store.describe() == "rediss://u@managed.example.com:6380/1"
    store.close()


def test_config_passes_store_objects_through(tmp_path: pathlib.Path) -> None:
    memory = MemoryStore()
    assert store_from_config(memory) is memory
    sqlite_store = SQLiteStore(tmp_path / "d.db")
    assert store_from_config(sqlite_store) is sqlite_store
    redis_store = RedisStore(REDIS_URL)  # connects on first use only
    assert store_from_config(redis_store) is redis_store

    # A store class rather than an instance is a mistake worth naming.
    for cls in (MemoryStore, SQLiteStore, RedisStore):
        with pytest.raises(ValueError, match="instance"):
            store_from_config(cls)
    sqlite_store.close()
    redis_store.close()


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        "Memory",
        " memory",
        b"memory",
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:deliveries.db",
        "postgresql://user:secret@db/app",
        "http://user:secret@example.com",
        "deliveries.db",
        object(),
        {"store": "memory"},
    ],
)
def test_config_rejects(value: object) -> None:
    with pytest.raises(ValueError) as info:
        store_from_config(value)
    message = str(info.value)
    assert "memory" in message
    assert "sqlite:///" in message
    assert "rediss://" in message
    assert "DeliveryStore" in message
    assert "secret" not in message


def test_config_redis_without_redis_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    with pytest.raises(RuntimeError, match=r"Flask-OpenAI-Webhooks\[redis\]"):
        store_from_config("redis://127.0.0.1:6379/0")
    with pytest.raises(RuntimeError, match=r"Flask-OpenAI-Webhooks\[redis\]"):
        RedisStore("redis://127.0.0.1:6379/0")
    assert isinstance(store_from_config("memory"), MemoryStore)


def test_stores_module_imports_neither_flask_nor_redis_eagerly() -> None:
    import flask_openai_webhooks.stores as stores

    tree = ast.parse(pathlib.Path(stores.__file__).read_text(encoding="utf-8"))
    for node in tree.body:  # module level only
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in {"flask", "redis"}, name
    source = pathlib.Path(stores.__file__).read_text(encoding="utf-8")
    assert "import flask" not in source
    assert "from flask" not in source


def test_claim_defaults() -> None:
    assert Claim("done") == Claim("done", "", frozenset())
    with pytest.raises(AttributeError):
        Claim("done").status = "acquired"  # type: ignore[misc]


def test_sqlite_connections_of_finished_threads_are_released(
    tmp_path: pathlib.Path,
) -> None:
    """The dev server starts a thread per request: their connections must
    not pile up (open file descriptors grew by one per thread before)."""
    import gc

    store = SQLiteStore(tmp_path / "d.db")
    store.ping()

    def one_request(n: int) -> None:
        store.claim(f"wh_{n}", lease=LONG, retention=LONG)

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
    store.close()


def test_malformed_store_url_is_not_echoed() -> None:
    with pytest.raises(ValueError) as info:
        store_from_config("redis:/user:s3cr3tpw@host:6379/0")
    assert "s3cr3tpw" not in str(info.value)
