"""The store contract, run over every backend: memory, an SQLite file,
the Redis server, and fresh PostgreSQL and MariaDB databases on the real
servers (skipped when one is not running, a failure under ``CI=true``).

Then the shared helpers and :func:`store_from_config`, which live in the
same module.
"""

from __future__ import annotations

import ast
import collections.abc as c
import dataclasses
import math
import pathlib
import secrets
import threading
import time
import typing as t

import pytest

from flask_openai_webhooks import verify
from flask_openai_webhooks.errors import StoreError
from flask_openai_webhooks.stores import add_history
from flask_openai_webhooks.stores import bounded
from flask_openai_webhooks.stores import check_durations
from flask_openai_webhooks.stores import Claim
from flask_openai_webhooks.stores import decode_cursor
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores import DeliveryRecord
from flask_openai_webhooks.stores import DeliveryStatus
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.stores import derive_status
from flask_openai_webhooks.stores import DONE_STATUSES
from flask_openai_webhooks.stores import encode_cursor
from flask_openai_webhooks.stores import history_from_json
from flask_openai_webhooks.stores import history_to_json
from flask_openai_webhooks.stores import HistoryEntry
from flask_openai_webhooks.stores import MAX_HISTORY
from flask_openai_webhooks.stores import MAX_MESSAGE
from flask_openai_webhooks.stores import MAX_REJECTIONS
from flask_openai_webhooks.stores import MAX_TRACEBACK
from flask_openai_webhooks.stores import merge_results
from flask_openai_webhooks.stores import new_token
from flask_openai_webhooks.stores import Outcome
from flask_openai_webhooks.stores import ReceiverResult
from flask_openai_webhooks.stores import REPLAY_SKIPS
from flask_openai_webhooks.stores import results_from_json
from flask_openai_webhooks.stores import results_to_json
from flask_openai_webhooks.stores import SETTLED_OUTCOMES
from flask_openai_webhooks.stores import Source
from flask_openai_webhooks.stores import store_from_config
from flask_openai_webhooks.stores import type_matcher
from flask_openai_webhooks.stores.memory import MemoryStore

from .services import fresh_database
from .services import MARIADB_URL
from .services import POSTGRES_URL
from .services import require_redis

KINDS = ["memory", "sqlite", "redis", "postgresql", "mariadb"]
LONG = 3600.0  # a lease or retention that never runs out during a test
LEASE = 30.0


class Clock:
    """A wall clock the test moves by hand. It starts at the real time, so
    a backend whose server also expires keys sees consistent times."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Store(DeliveryStore, t.Protocol):
    """What every backend of this package has beyond the protocol."""

    def close(self) -> None: ...


@dataclasses.dataclass
class Backend:
    kind: str
    store: Store
    clock: Clock
    #: Everything the backend holds, as bytes: what a disk or a server
    #: dump would show.
    stored: c.Callable[[], bytes]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=KINDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, clock: Clock
) -> c.Iterator[Backend]:
    kind: str = request.param
    if kind == "memory":
        memory = MemoryStore(clock=clock)
        yield Backend(kind, memory, clock, lambda: _object_text(memory))
        memory.close()
    elif kind == "sqlite":
        from flask_openai_webhooks.stores.sqlite import SQLiteStore

        sqlite = SQLiteStore(tmp_path / "log.db", clock=clock)
        yield Backend(kind, sqlite, clock, lambda: _sqlite_files(tmp_path))
        sqlite.close()
    elif kind == "redis":
        yield from _redis_backend(clock)
    else:
        with fresh_database(kind) as url:
            from flask_openai_webhooks.stores.sql import SQLStore

            sql = SQLStore(url, clock=clock)
            try:
                yield Backend(kind, sql, clock, lambda: _sql_rows(url))
            finally:
                sql.close()


@pytest.fixture
def store(backend: Backend) -> DeliveryStore:
    return backend.store


def _redis_backend(clock: Clock) -> c.Iterator[Backend]:
    import redis

    from flask_openai_webhooks.stores.redis import RedisStore

    url = require_redis()
    prefix = f"test-owh:{secrets.token_hex(6)}:"
    store = RedisStore(url, prefix=prefix, clock=clock)
    client = redis.Redis.from_url(url)
    try:
        yield Backend("redis", store, clock, lambda: _redis_values(client, prefix))
    finally:
        store.close()
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def _object_text(root: object) -> bytes:
    """Every string and bytes object reachable from ``root`` through
    containers and dataclasses: all that a process-local store holds."""
    out: list[bytes] = [repr(root).encode()]
    seen: set[int] = set()
    todo: list[object] = [vars(root)]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            out.append(obj.encode("utf-8", "replace"))
        elif isinstance(obj, (bytes, bytearray)):
            out.append(bytes(obj))
        elif isinstance(obj, c.Mapping):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, c.Sequence)):
            todo.extend(obj)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            todo.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
    return b"\n".join(out)


def _sqlite_files(directory: pathlib.Path) -> bytes:
    # The database and its WAL: what a copy of the disk would show.
    return b"".join(p.read_bytes() for p in sorted(directory.glob("log.db*")))


def _redis_values(client: t.Any, prefix: str) -> bytes:
    # Read values by type rather than DUMP, which may compress them.
    out: list[bytes] = []
    for key in client.scan_iter(match=prefix + "*"):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                out += [field, value]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
        elif kind == b"stream":
            for entry_id, fields in client.xrange(key):
                out.append(entry_id)
                for field, value in fields.items():
                    out += [field, value]
        else:
            out.append(client.dump(key) or b"")
    return b"\n".join(out)


def _sql_rows(url: str) -> bytes:
    import sqlalchemy as sa

    from flask_openai_webhooks.stores.sql import metadata

    out: list[bytes] = []
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    for value in row:
                        if isinstance(value, (bytes, bytearray, memoryview)):
                            out.append(bytes(value))
                        else:
                            out.append(str(value).encode("utf-8", "replace"))
    finally:
        engine.dispose()
    return b"\n".join(out)


# --------------------------------------------------------------------------
# Helpers for the tests
# --------------------------------------------------------------------------


def new_id() -> str:
    # Lower-case hex only: MariaDB's default collation ignores case, and
    # the tests compare the order of ids with Python's.
    return f"wh_{secrets.token_hex(12)}"


def delivery(
    clock: Clock,
    webhook_id: str | None = None,
    *,
    event_type: str = "batch.completed",
    event_id: str | None = None,
    object_id: str | None = "batch_abc123",
    body: bytes | None = None,
    source: Source = "delivery",
) -> Delivery:
    webhook_id = webhook_id or new_id()
    event_id = event_id or f"evt_{secrets.token_hex(12)}"
    if body is None:
        body = (
            b'{"id":"%s","object":"event","type":"%s","created_at":1719168000,'
            b'"data":{"id":"batch_abc123"}}' % (event_id.encode(), event_type.encode())
        )
    return Delivery(
        webhook_id=webhook_id,
        event_type=event_type,
        event_id=event_id,
        object_id=object_id,
        created_at=1719168000,
        body=body,
        received_at=clock(),
        source=source,
    )


def result(
    key: str, outcome: Outcome = "ok", *, attempts: int = 1, **fields: t.Any
) -> ReceiverResult:
    return ReceiverResult(
        key=key, outcome=outcome, attempts=attempts, duration=0.25, at=1.5, **fields
    )


def acquire(store: DeliveryStore, d: Delivery, lease: float = LEASE) -> Claim:
    claim = store.claim(d, lease=lease, retention=LONG)
    assert claim.status == "acquired"
    return claim


def settle(
    store: DeliveryStore,
    d: Delivery,
    status: DeliveryStatus = "processed",
    results: c.Sequence[ReceiverResult] = (),
    *,
    status_code: int | None = 200,
) -> None:
    """Claim and finish a delivery, as the blueprint does."""
    claim = acquire(store, d)
    store.finish(
        d.webhook_id,
        claim.token,
        results,
        status=status,
        status_code=status_code,
        source=d.source,
        retention=LONG,
    )


def get(store: DeliveryStore, webhook_id: str) -> DeliveryRecord:
    record = store.get(webhook_id)
    assert record is not None
    return record


def outcomes(record: DeliveryRecord) -> dict[str, str]:
    return {r.key: r.outcome for r in record.receivers}


# --------------------------------------------------------------------------
# claim
# --------------------------------------------------------------------------


def test_implements_the_protocol(store: DeliveryStore) -> None:
    assert isinstance(store, DeliveryStore)
    store.ping()
    description = store.describe()
    assert isinstance(description, str)
    assert description


def test_new_delivery_is_acquired_and_logged(
    store: DeliveryStore, clock: Clock
) -> None:
    # Multi-byte text, escapes, spaces and a CRLF: the bytes come back
    # exactly as they arrived, not as re-encoded JSON.
    body = (
        b'{ "id" : "evt_1", "type":"batch.completed",\r\n  "data":'
        b' {"id": "batch_1",'
        b' "note": "caf\xc3\xa9 \\u00e9 \\u0000 \xf0\x9f\x98\x80"} }  '
    )
    d = delivery(clock, event_id="evt_1", object_id="batch_1", body=body)
    claim = store.claim(d, lease=LEASE, retention=LONG)
    assert claim.status == "acquired"
    assert len(claim.token) == 32
    assert claim.record is None
    assert claim.keys_with(SETTLED_OUTCOMES) == frozenset()

    record = get(store, d.webhook_id)
    assert record.body == body
    assert isinstance(record.body, bytes)
    assert record.webhook_id == d.webhook_id
    assert record.event_type == "batch.completed"
    assert record.event_id == "evt_1"
    assert record.object_id == "batch_1"
    assert record.created_at == 1719168000
    assert record.source == "delivery"
    assert record.first_received_at == pytest.approx(d.received_at, abs=1e-3)
    assert record.last_received_at == pytest.approx(d.received_at, abs=1e-3)
    assert record.attempts == 1
    assert record.status == "processing"
    assert record.status_code is None
    assert record.receivers == ()
    assert record.history == ()


def test_optional_fields_may_be_missing(store: DeliveryStore, clock: Clock) -> None:
    d = dataclasses.replace(
        delivery(clock, object_id=None), created_at=None, source="reconcile"
    )
    acquire(store, d)
    record = get(store, d.webhook_id)
    assert record.object_id is None
    assert record.created_at is None
    assert record.source == "reconcile"


def test_tokens_are_fresh(store: DeliveryStore, clock: Clock) -> None:
    tokens = {acquire(store, delivery(clock)).token for _ in range(20)}
    assert len(tokens) == 20


@pytest.mark.parametrize("status", sorted(DONE_STATUSES))
def test_duplicate_of_a_settled_delivery_is_done(
    store: DeliveryStore, clock: Clock, status: DeliveryStatus
) -> None:
    d = delivery(clock)
    settle(store, d, status, [result("a")])
    clock.advance(5)
    retry = dataclasses.replace(d, received_at=clock())

    assert store.claim(retry, lease=LEASE, retention=LONG) == Claim("done")
    record = get(store, d.webhook_id)
    assert record.status == status
    assert record.attempts == 2
    assert record.last_received_at == pytest.approx(retry.received_at, abs=1e-3)
    assert record.first_received_at == pytest.approx(d.received_at, abs=1e-3)
    assert [(h.result, h.status_code, h.source) for h in record.history] == [
        (status, 200, "delivery"),
        ("duplicate", 200, "delivery"),
    ]

    assert store.claim(retry, lease=LEASE, retention=LONG).status == "done"
    record = get(store, d.webhook_id)
    assert record.attempts == 3
    assert [h.result for h in record.history][-2:] == ["duplicate", "duplicate"]
    assert outcomes(record) == {"a": "ok"}


def test_in_flight_while_the_lease_is_held(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    acquire(store, d)
    clock.advance(LEASE - 1)
    assert store.claim(d, lease=LEASE, retention=LONG) == Claim("in_flight")
    record = get(store, d.webhook_id)
    assert record.status == "processing"
    assert record.attempts == 2
    assert [(h.result, h.status_code) for h in record.history] == [("in_flight", 409)]


def test_expired_lease_is_acquired_again(store: DeliveryStore, clock: Clock) -> None:
    # A worker killed with -9 never calls finish: its lease runs out.
    d = delivery(clock)
    crashed = acquire(store, d)
    store.record(d.webhook_id, crashed.token, [result("a"), result("b", "failed")])
    clock.advance(LEASE + 1)

    retry = store.claim(d, lease=LEASE, retention=LONG)
    assert retry.status == "acquired"
    assert retry.token != crashed.token
    assert retry.record is not None
    assert retry.record.status == "processing"
    assert retry.record.attempts == 1
    assert retry.keys_with(SETTLED_OUTCOMES) == {"a"}
    assert get(store, d.webhook_id).attempts == 2
    assert store.claim(d, lease=LEASE, retention=LONG).status == "in_flight"


def test_failed_delivery_is_claimed_again_with_earlier_results(
    store: DeliveryStore, clock: Clock
) -> None:
    d = delivery(clock)
    earlier = [
        result("ok"),
        result("broken", "failed", error_type="KeyError", error_message="'x'"),
        result("hopeless", "gave_up"),
        result("queued", "queued"),
        result("later", "retry_later"),
    ]
    settle(store, d, "failed", earlier, status_code=500)

    retry = store.claim(d, lease=LEASE, retention=LONG)
    assert retry.status == "acquired"
    assert retry.record is not None
    assert retry.record.status == "failed"
    assert retry.record.status_code == 500
    assert retry.keys_with(SETTLED_OUTCOMES) == {"ok", "hopeless", "queued"}
    assert retry.keys_with(REPLAY_SKIPS) == {"ok", "queued"}
    broken = retry.record.receiver("broken")
    assert broken == earlier[1]
    assert get(store, d.webhook_id).status == "processing"


def test_receiver_results_round_trip(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    full = ReceiverResult(
        key="app.receivers:on_batch",
        outcome="failed",
        attempts=3,
        duration=1.25,
        at=1719168000.5,
        error_type="ValueError",
        error_message="bad value: caf\u00e9",
        traceback='Traceback (most recent call last):\n  File "x.py"\nValueError',
    )
    settle(store, d, "failed", [full, result("other")])
    record = get(store, d.webhook_id)
    assert record.receivers == (full, result("other"))
    assert record.receiver("app.receivers:on_batch") == full
    assert record.receiver("missing") is None


# --------------------------------------------------------------------------
# record and finish
# --------------------------------------------------------------------------


def test_record_merges_by_key_and_keeps_the_lease(
    store: DeliveryStore, clock: Clock
) -> None:
    d = delivery(clock)
    claim = acquire(store, d)
    store.record(d.webhook_id, claim.token, [result("a", "failed"), result("b")])
    store.record(d.webhook_id, claim.token, [result("a", attempts=2), result("c")])

    record = get(store, d.webhook_id)
    assert [r.key for r in record.receivers] == ["a", "b", "c"]
    assert record.receiver("a") == result("a", attempts=2)
    assert record.status == "processing"
    assert store.claim(d, lease=LEASE, retention=LONG).status == "in_flight"


def test_record_merges_whoever_holds_the_lease(
    store: DeliveryStore, clock: Clock
) -> None:
    d = delivery(clock)
    slow = acquire(store, d)
    clock.advance(LEASE + 1)
    fast = acquire(store, d)
    # The slow worker's receiver did run: its success must not be lost.
    store.record(d.webhook_id, slow.token, [result("a")])
    assert outcomes(get(store, d.webhook_id)) == {"a": "ok"}
    assert store.claim(d, lease=LEASE, retention=LONG).status == "in_flight"
    assert fast.token != slow.token


def test_finish_settles_and_releases(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    claim = acquire(store, d)
    clock.advance(2)
    store.finish(
        d.webhook_id,
        claim.token,
        [result("a")],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    record = get(store, d.webhook_id)
    assert record.status == "processed"
    assert record.status_code == 200
    assert outcomes(record) == {"a": "ok"}
    assert len(record.history) == 1
    entry = record.history[0]
    assert (entry.source, entry.result, entry.status_code) == (
        "delivery",
        "processed",
        200,
    )
    assert entry.at == pytest.approx(clock(), abs=1e-3)


def test_failed_finish_releases_the_lease(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    settle(store, d, "failed", [result("a", "failed")], status_code=500)
    # No lease left: the next retry runs at once.
    assert store.claim(d, lease=LEASE, retention=LONG).status == "acquired"


def test_stale_finish_merges_results_only(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    slow = acquire(store, d)
    clock.advance(LEASE + 1)
    fast = acquire(store, d)

    store.finish(
        d.webhook_id,
        slow.token,
        [result("a")],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    record = get(store, d.webhook_id)
    assert record.status == "processing"
    assert record.status_code is None
    assert outcomes(record) == {"a": "ok"}
    assert record.history == ()
    assert store.claim(d, lease=LEASE, retention=LONG).status == "in_flight"

    store.finish(
        d.webhook_id,
        fast.token,
        [result("b", "failed")],
        status="failed",
        status_code=500,
        source="delivery",
        retention=LONG,
    )
    record = get(store, d.webhook_id)
    assert record.status == "failed"
    assert record.status_code == 500
    assert outcomes(record) == {"a": "ok", "b": "failed"}
    assert [h.result for h in record.history] == ["in_flight", "failed"]


@pytest.mark.parametrize("token", ["", "0" * 32])
def test_finish_with_a_foreign_token_leaves_the_lease(
    store: DeliveryStore, clock: Clock, token: str
) -> None:
    d = delivery(clock)
    acquire(store, d)
    store.finish(
        d.webhook_id,
        token,
        [],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    assert get(store, d.webhook_id).status == "processing"
    assert store.claim(d, lease=LEASE, retention=LONG).status == "in_flight"


def test_finish_twice_is_harmless(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    claim = acquire(store, d)
    for status in ("processed", "failed"):
        store.finish(
            d.webhook_id,
            claim.token,
            [result("a")],
            status=status,
            status_code=200,
            source="delivery",
            retention=LONG,
        )
    record = get(store, d.webhook_id)
    assert record.status == "processed"
    assert len(record.history) == 1


def test_finish_recreates_a_pruned_record(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    claim = acquire(store, d)
    clock.advance(LEASE + 10)
    assert store.prune(5) == 1
    assert store.get(d.webhook_id) is None

    store.finish(
        d.webhook_id,
        claim.token,
        [result("a"), result("b", "gave_up")],
        status="gave_up",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    record = get(store, d.webhook_id)
    assert record.status == "gave_up"
    assert outcomes(record) == {"a": "ok", "b": "gave_up"}
    # Recreated as settled: a retry is a duplicate, not a second run.
    assert store.claim(d, lease=LEASE, retention=LONG).status == "done"


def test_finish_of_an_unknown_delivery_creates_it(store: DeliveryStore) -> None:
    webhook_id = new_id()
    store.finish(
        webhook_id,
        new_token(),
        [result("a")],
        status="processed",
        status_code=200,
        source="replay",
        retention=LONG,
    )
    record = get(store, webhook_id)
    assert record.status == "processed"
    assert outcomes(record) == {"a": "ok"}


def test_replay_claims_a_settled_delivery(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    settle(store, d, "gave_up", [result("a"), result("b", "gave_up")])
    clock.advance(60)
    replay = dataclasses.replace(d, source="replay", received_at=clock())

    claim = store.claim(replay, lease=LEASE, retention=LONG)
    assert claim.status == "acquired"
    assert claim.record is not None
    assert claim.record.status == "gave_up"
    assert claim.keys_with(REPLAY_SKIPS) == {"a"}
    record = get(store, d.webhook_id)
    assert record.status == "processing"
    assert record.attempts == 2
    assert record.source == "delivery"  # how it first arrived
    # A replay of a delivery being processed waits like any other.
    assert store.claim(replay, lease=LEASE, retention=LONG).status == "in_flight"

    store.finish(
        d.webhook_id,
        claim.token,
        [result("b")],
        status="processed",
        status_code=None,
        source="replay",
        retention=LONG,
    )
    record = get(store, d.webhook_id)
    assert record.status == "processed"
    assert outcomes(record) == {"a": "ok", "b": "ok"}
    # The replay answered no request: the record keeps the code last
    # answered to OpenAI, and the replay's own timeline entry has none.
    assert record.status_code == 200
    last = record.history[-1]
    assert (last.source, last.result, last.status_code) == (
        "replay",
        "processed",
        None,
    )


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


def queue_tasks(store: DeliveryStore, d: Delivery, *keys: str) -> None:
    """Claim a delivery and hand ``keys`` to the task queue, as the
    blueprint does for queued receivers."""
    queued = [result(key, "queued") for key in keys]
    settle(store, d, derive_status(queued), queued)


def test_tasks_settle_the_delivery(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    queue_tasks(store, d, "t1", "t2")
    wid = d.webhook_id
    assert get(store, wid).status == "processing"

    one = store.claim_task(wid, "t1", lease=LEASE)
    assert one.status == "acquired"
    assert len(one.token) == 32
    assert one.record is not None
    assert outcomes(one.record) == {"t1": "queued", "t2": "queued"}
    assert store.claim_task(wid, "t1", lease=LEASE) == Claim("in_flight")
    store.finish_task(wid, one.token, result("t1"), retention=LONG)
    assert get(store, wid).status == "processing"  # t2 is still queued

    two = store.claim_task(wid, "t2", lease=LEASE)
    assert two.status == "acquired"
    assert two.token != one.token
    store.finish_task(wid, two.token, result("t2", "failed"), retention=LONG)
    assert get(store, wid).status == "failed"

    # Released: the task queue's retry takes it at once.
    again = store.claim_task(wid, "t2", lease=LEASE)
    assert again.status == "acquired"
    store.finish_task(wid, again.token, result("t2", attempts=2), retention=LONG)
    record = get(store, wid)
    assert record.status == "processed"
    assert record.receiver("t2") == result("t2", attempts=2)

    assert store.claim_task(wid, "t1", lease=LEASE) == Claim("done")
    assert store.claim_task(wid, "t2", lease=LEASE) == Claim("done")


def test_a_task_settled_under_a_retrys_lease_is_not_undone(
    store: DeliveryStore, clock: Clock
) -> None:
    """A retry from OpenAI holds the delivery's lease, sees the task still
    queued and runs nothing, while a worker settles the task: the retry's
    finish with "processing" (its stale view) leaves the status the task
    earned, here and in the timeline."""
    d = delivery(clock)
    queue_tasks(store, d, "t")
    retry = store.claim(d, lease=LEASE, retention=LONG)
    assert retry.status == "acquired"  # "processing" is claimable
    task = store.claim_task(d.webhook_id, "t", lease=LEASE)
    store.finish_task(d.webhook_id, task.token, result("t"), retention=LONG)
    store.finish(
        d.webhook_id,
        retry.token,
        (),
        status="processing",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    record = get(store, d.webhook_id)
    assert record.status == "processed"
    assert record.history[-1].result == "processed"


def test_task_that_gives_up(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    queue_tasks(store, d, "t")
    claim = store.claim_task(d.webhook_id, "t", lease=LEASE)
    store.finish_task(d.webhook_id, claim.token, result("t", "gave_up"), retention=LONG)
    assert get(store, d.webhook_id).status == "gave_up"
    # A retry from OpenAI is then a duplicate.
    assert store.claim(d, lease=LEASE, retention=LONG).status == "done"


def test_expired_task_lease_is_acquired_again(
    store: DeliveryStore, clock: Clock
) -> None:
    d = delivery(clock)
    queue_tasks(store, d, "t")
    crashed = store.claim_task(d.webhook_id, "t", lease=LEASE)
    clock.advance(LEASE + 1)
    retry = store.claim_task(d.webhook_id, "t", lease=LEASE)
    assert retry.status == "acquired"
    assert retry.token != crashed.token

    # The worker thought dead finishes after all: its result is kept, and
    # the new owner still holds its lease.
    store.finish_task(d.webhook_id, crashed.token, result("t"), retention=LONG)
    record = get(store, d.webhook_id)
    assert outcomes(record) == {"t": "ok"}
    assert record.status == "processed"
    assert store.claim_task(d.webhook_id, "t", lease=LEASE) == Claim("done")


def test_tasks_of_one_delivery_finishing_together(
    store: DeliveryStore, clock: Clock
) -> None:
    d = delivery(clock)
    keys = [f"t{i}" for i in range(8)]
    queue_tasks(store, d, *keys)
    claims = {key: store.claim_task(d.webhook_id, key, lease=LEASE) for key in keys}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(keys))

    def finish(key: str) -> None:
        try:
            barrier.wait(timeout=30)
            store.finish_task(
                d.webhook_id, claims[key].token, result(key), retention=LONG
            )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    record = get(store, d.webhook_id)
    assert outcomes(record) == dict.fromkeys(keys, "ok")
    assert record.status == "processed"


def test_claim_task_of_an_unknown_delivery(store: DeliveryStore) -> None:
    with pytest.raises(LookupError):
        store.claim_task(new_id(), "t", lease=LEASE)


# --------------------------------------------------------------------------
# get and list_deliveries
# --------------------------------------------------------------------------


def test_get_unknown_is_none(store: DeliveryStore) -> None:
    assert store.get(new_id()) is None


@pytest.fixture
def logged(store: DeliveryStore, clock: Clock) -> dict[str, Delivery]:
    """Five deliveries one second apart, oldest first."""
    specs: list[tuple[str, str, DeliveryStatus]] = [
        ("first", "batch.completed", "processed"),
        ("second", "batch.failed", "failed"),
        ("third", "response.completed", "processed"),
        ("fourth", "batch.completed", "gave_up"),
        ("fifth", "batch.cancelled", "processing"),
    ]
    out = {}
    for name, event_type, status in specs:
        clock.advance(1)
        d = delivery(
            clock,
            event_type=event_type,
            event_id=f"evt_{name}_{secrets.token_hex(4)}",
            object_id=f"obj_{name}_{secrets.token_hex(4)}",
        )
        if status == "processing":
            acquire(store, d)
        else:
            settle(store, d, status)
        out[name] = d
    return out


def names(
    page_records: c.Iterable[DeliveryRecord], logged: dict[str, Delivery]
) -> list[str]:
    by_id = {d.webhook_id: name for name, d in logged.items()}
    return [by_id[r.webhook_id] for r in page_records]


def test_list_newest_first(store: DeliveryStore, logged: dict[str, Delivery]) -> None:
    page = store.list_deliveries()
    assert names(page.records, logged) == [
        "fifth",
        "fourth",
        "third",
        "second",
        "first",
    ]
    assert page.cursor is None
    assert page.records[0] == get(store, logged["fifth"].webhook_id)


def test_list_filters(store: DeliveryStore, logged: dict[str, Delivery]) -> None:
    def listed(**filters: t.Any) -> list[str]:
        return names(store.list_deliveries(**filters).records, logged)

    assert listed(status=["processed"]) == ["third", "first"]
    assert listed(status=["failed", "processing"]) == ["fifth", "second"]
    assert listed(status=[]) == []
    assert listed(type_pattern="batch.*") == ["fifth", "fourth", "second", "first"]
    assert listed(type_pattern="batch.completed") == ["fourth", "first"]
    assert listed(type_pattern="*.completed") == ["fourth", "third", "first"]
    assert listed(type_pattern="batch") == []

    second = logged["second"].received_at
    fourth = logged["fourth"].received_at
    # since is inclusive, until exclusive.
    assert listed(since=second) == ["fifth", "fourth", "third", "second"]
    assert listed(until=fourth) == ["third", "second", "first"]
    assert listed(since=second, until=fourth) == ["third", "second"]

    third = logged["third"]
    assert listed(search=third.webhook_id) == ["third"]
    assert listed(search=third.event_id) == ["third"]
    assert listed(search=third.object_id) == ["third"]
    assert listed(search=third.webhook_id[:-1]) == []  # exact match only

    assert listed(status=["processed"], type_pattern="batch.*") == ["first"]
    assert listed(status=["processed"], search=third.event_id) == ["third"]
    assert listed(status=["failed"], search=third.event_id) == []


def test_list_pages_are_stable_while_deliveries_arrive(
    store: DeliveryStore, clock: Clock, logged: dict[str, Delivery]
) -> None:
    first = store.list_deliveries(limit=2)
    assert names(first.records, logged) == ["fifth", "fourth"]
    assert first.cursor is not None

    for _ in range(3):  # newer than everything listed so far
        clock.advance(1)
        settle(store, delivery(clock, event_type="response.created"))

    second = store.list_deliveries(limit=2, before=first.cursor)
    assert names(second.records, logged) == ["third", "second"]
    assert second.cursor is not None
    last = store.list_deliveries(limit=2, before=second.cursor)
    assert names(last.records, logged) == ["first"]
    assert last.cursor is None

    # An exact multiple of the page size ends without an empty page.
    exact = store.list_deliveries(limit=3, before=first.cursor)
    assert names(exact.records, logged) == ["third", "second", "first"]
    assert exact.cursor is None

    # Filters apply across pages.
    batch = store.list_deliveries(type_pattern="batch.*", limit=2)
    more = store.list_deliveries(type_pattern="batch.*", limit=2, before=batch.cursor)
    assert names(batch.records + more.records, logged) == [
        "fifth",
        "fourth",
        "second",
        "first",
    ]


def test_list_orders_ties_by_webhook_id(store: DeliveryStore, clock: Clock) -> None:
    # Deliveries that arrive in the same instant still page without gaps
    # or repeats: the webhook_id breaks the tie.
    ids = sorted(new_id() for _ in range(5))
    for webhook_id in ids:
        acquire(store, delivery(clock, webhook_id))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = store.list_deliveries(limit=2, before=cursor)
        seen += [r.webhook_id for r in page.records]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == ids[::-1]


@pytest.mark.parametrize(
    "cursor", ["", "nope", "[]", "[1]", '["x","wh_1"]', "[1,2]", '[true,"wh"]', "{}"]
)
def test_list_rejects_a_bad_cursor(store: DeliveryStore, cursor: str) -> None:
    with pytest.raises(ValueError):
        store.list_deliveries(before=cursor)


# --------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------


def test_prune_forgets_old_deliveries_but_not_leased_ones(
    store: DeliveryStore, clock: Clock
) -> None:
    old = [delivery(clock) for _ in range(3)]
    for d in old:
        settle(store, d, "processed")
    leased = delivery(clock)
    acquire(store, leased, lease=LONG)
    clock.advance(100)
    recent = delivery(clock)
    settle(store, recent)
    clock.advance(10)

    assert store.prune(50) == 3
    for d in old:
        assert store.get(d.webhook_id) is None
    assert store.get(leased.webhook_id) is not None
    assert store.get(recent.webhook_id) is not None
    assert store.prune(50) == 0
    # Last *received*: a retry keeps a delivery.
    clock.advance(100)
    retry = dataclasses.replace(recent, received_at=clock())
    assert store.claim(retry, lease=LEASE, retention=LONG).status == "done"
    assert store.prune(50) == 0
    assert store.get(recent.webhook_id) is not None


# --------------------------------------------------------------------------
# Rejections
# --------------------------------------------------------------------------


def test_rejections_are_counted_newest_first(
    store: DeliveryStore, clock: Clock
) -> None:
    assert store.rejections().counts == {}
    assert store.rejections().recent == ()
    store.reject("signature_mismatch", "wh_1", clock())
    store.reject("body_too_large", None, clock() + 1)
    store.reject("signature_mismatch", "wh_3", clock() + 2)

    rejections = store.rejections()
    assert dict(rejections.counts) == {"signature_mismatch": 2, "body_too_large": 1}
    recent = [(r.reason, r.webhook_id) for r in rejections.recent]
    assert recent == [
        ("signature_mismatch", "wh_3"),
        ("body_too_large", None),
        ("signature_mismatch", "wh_1"),
    ]
    assert rejections.recent[0].at == pytest.approx(clock() + 2, abs=1e-3)
    assert [r.webhook_id for r in store.rejections(limit=1).recent] == ["wh_3"]


def test_rejections_are_bounded(store: DeliveryStore, clock: Clock) -> None:
    for n in range(MAX_REJECTIONS + 20):
        store.reject("timestamp_too_old", f"wh_{n}", clock() + n)
    store.reject("invalid_payload", "x" * 1000, clock() + 1000)
    rejections = store.rejections(limit=MAX_REJECTIONS + 100)
    assert dict(rejections.counts) == {
        "timestamp_too_old": MAX_REJECTIONS + 20,
        "invalid_payload": 1,
    }
    assert len(rejections.recent) == MAX_REJECTIONS
    newest = rejections.recent[0].webhook_id
    assert newest is not None
    assert newest == "x" * len(newest)
    assert len(newest) <= 200
    assert rejections.recent[1].webhook_id == f"wh_{MAX_REJECTIONS + 19}"


# --------------------------------------------------------------------------
# Bounds, validation, concurrency, secrets
# --------------------------------------------------------------------------


def test_history_is_bounded(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    settle(store, d, "processed")
    for _ in range(MAX_HISTORY + 10):
        assert store.claim(d, lease=LEASE, retention=LONG).status == "done"
    record = get(store, d.webhook_id)
    assert record.attempts == MAX_HISTORY + 11
    assert len(record.history) == MAX_HISTORY
    assert {h.result for h in record.history} == {"duplicate"}


def test_tracebacks_and_messages_are_bounded(
    store: DeliveryStore, clock: Clock
) -> None:
    d = delivery(clock)
    claim = acquire(store, d)
    traceback = (
        "Traceback (most recent call last):\n" + "x" * 50_000 + "\nKeyError: 'id'"
    )
    huge = result(
        "a",
        "failed",
        error_type="KeyError",
        error_message="m" * 10_000,
        traceback=traceback,
    )
    store.finish(
        d.webhook_id,
        claim.token,
        [huge],
        status="failed",
        status_code=500,
        source="delivery",
        retention=LONG,
    )
    stored = get(store, d.webhook_id).receiver("a")
    assert stored is not None
    assert stored.traceback is not None
    assert len(stored.traceback) <= MAX_TRACEBACK
    assert stored.traceback.endswith("\nKeyError: 'id'")  # where the error is
    assert stored.error_message is not None
    assert len(stored.error_message) <= MAX_MESSAGE


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_durations_are_validated(
    store: DeliveryStore, clock: Clock, bad: float
) -> None:
    d = delivery(clock)
    with pytest.raises(ValueError):
        store.claim(d, lease=bad, retention=LONG)
    with pytest.raises(ValueError):
        store.claim(d, lease=LEASE, retention=bad)
    assert store.get(d.webhook_id) is None  # nothing half-done
    settle(store, d, "failed", [result("t", "queued")])
    with pytest.raises(ValueError):
        store.finish(
            d.webhook_id,
            "",
            [],
            status="processed",
            status_code=200,
            source="delivery",
            retention=bad,
        )
    with pytest.raises(ValueError):
        store.claim_task(d.webhook_id, "t", lease=bad)
    with pytest.raises(ValueError):
        store.finish_task(d.webhook_id, "", result("t"), retention=bad)
    assert get(store, d.webhook_id).status == "failed"


def test_threads_claiming_one_delivery(store: DeliveryStore, clock: Clock) -> None:
    d = delivery(clock)
    n = 12
    barrier = threading.Barrier(n)
    claims: list[Claim] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim() -> None:
        try:
            barrier.wait(timeout=30)
            answer = store.claim(d, lease=LONG, retention=LONG)
            with lock:
                claims.append(answer)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    statuses = sorted(claim.status for claim in claims)
    assert statuses == ["acquired"] + ["in_flight"] * (n - 1)
    record = get(store, d.webhook_id)
    assert record.attempts == n
    assert [h.result for h in record.history] == ["in_flight"] * (n - 1)


def test_threads_claiming_many_deliveries(store: DeliveryStore, clock: Clock) -> None:
    ids = [new_id() for _ in range(30)]
    barrier = threading.Barrier(6)
    acquired: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            for webhook_id in ids:
                d = delivery(clock, webhook_id)
                answer = store.claim(d, lease=LONG, retention=LONG)
                if answer.status == "acquired":
                    with lock:
                        acquired.append(webhook_id)
                    store.finish(
                        webhook_id,
                        answer.token,
                        [result("a")],
                        status="processed",
                        status_code=200,
                        source="delivery",
                        retention=LONG,
                    )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(acquired) == sorted(ids)
    assert all(get(store, wid).attempts == 6 for wid in ids)


def test_ping_on_a_healthy_store(store: DeliveryStore) -> None:
    try:
        store.ping()
    except StoreError as exc:  # pragma: no cover - the failure message
        pytest.fail(f"ping failed on a healthy store: {exc}")


def test_close_twice(backend: Backend) -> None:
    backend.store.ping()
    backend.store.close()
    backend.store.close()  # and the fixture closes it a third time


def test_store_holds_no_secret_or_signature(backend: Backend, clock: Clock) -> None:
    """What a disk, a server dump or the process holds has the bodies and
    never the signing secret or a ``webhook-signature``."""
    store = backend.store
    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGhlLXN0b3JlLXRlc3QhIQ=="
    key_text = "secret-key-for-the-store-test!!"
    marker = f"evt_marker_{secrets.token_hex(8)}"
    body = b'{"id":"%s","type":"batch.completed","data":{"id":"batch_1"}}' % (
        marker.encode()
    )
    d = delivery(clock, event_id=marker, body=body)
    signature = verify.sign(
        body, secret=secret, webhook_id=d.webhook_id, timestamp=int(clock())
    )
    digests = [part.split(",", 1)[1] for part in signature.split()]

    claim = acquire(store, d)
    store.record(d.webhook_id, claim.token, [result("a")])
    store.finish(
        d.webhook_id,
        claim.token,
        [result("b", "failed", error_type="KeyError", error_message="'x'")],
        status="failed",
        status_code=500,
        source="delivery",
        retention=LONG,
    )
    store.claim(d, lease=LEASE, retention=LONG)
    store.reject("signature_mismatch", d.webhook_id, clock())

    stored = backend.stored()
    assert marker.encode() in stored  # the dump does see the log
    for needle in [secret, secret.removeprefix("whsec_"), key_text, *digests]:
        assert needle.encode() not in stored, needle
    assert "whsec_" not in store.describe()


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def test_new_token() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)


@pytest.mark.parametrize(
    ("outcomes_", "handled", "expected"),
    [
        ([], True, "processed"),
        ([], False, "unhandled"),
        (["ok"], False, "processed"),
        (["ok", "ok"], True, "processed"),
        (["ok", "queued"], True, "processing"),
        (["queued", "gave_up"], True, "processing"),
        (["ok", "gave_up"], True, "gave_up"),
        (["ok", "failed", "queued"], True, "failed"),
        (["retry_later", "gave_up"], True, "failed"),
    ],
)
def test_derive_status(
    outcomes_: list[Outcome], handled: bool, expected: DeliveryStatus
) -> None:
    results = [result(f"r{i}", o) for i, o in enumerate(outcomes_)]
    assert derive_status(results, handled=handled) == expected


def test_merge_results_keeps_first_seen_order() -> None:
    old = [result("a", "failed"), result("b")]
    new = [result("c"), result("a", attempts=2)]
    merged = merge_results(old, new)
    assert [r.key for r in merged] == ["a", "b", "c"]
    assert merged[0] == result("a", attempts=2)


def test_results_and_history_json_round_trip() -> None:
    results = (result("a"), result("b", "failed", traceback="tb", error_type="E"))
    assert results_from_json(results_to_json(results)) == results
    assert results_from_json(results_to_json(results).encode()) == results
    assert results_from_json(None) == ()
    assert results_from_json("") == ()
    history = (HistoryEntry(1.0, "delivery", "processed", 200),)
    assert history_from_json(history_to_json(history)) == history
    # Fields added by a later version are ignored, not an error.
    assert results_from_json('[{"key":"a","outcome":"ok","new_field":1}]') == (
        ReceiverResult("a", "ok"),
    )
    for corrupt in ["{", '[{"outcome":"ok"}]', "null", "1"]:
        with pytest.raises(StoreError):
            results_from_json(corrupt)
        with pytest.raises(StoreError):
            history_from_json(corrupt)


@pytest.mark.parametrize("loads", [results_from_json, history_from_json])
def test_json_list_of_non_objects_is_a_store_error(
    loads: c.Callable[[str], object],
) -> None:
    with pytest.raises(StoreError):
        loads('[1, "x"]')


def test_add_history_keeps_the_newest() -> None:
    history: tuple[HistoryEntry, ...] = ()
    for n in range(MAX_HISTORY + 5):
        history = add_history(history, HistoryEntry(float(n), "delivery", "duplicate"))
    assert len(history) == MAX_HISTORY
    assert history[0].at == 5.0
    assert history[-1].at == MAX_HISTORY + 4


def test_type_matcher() -> None:
    assert type_matcher(None)("anything")
    assert type_matcher("")("anything")
    batch = type_matcher("batch.*")
    assert batch("batch.completed")
    assert not batch("response.completed")
    assert not batch("batch")
    assert type_matcher("response.completed")("response.completed")
    assert not type_matcher("response.completed")("response.completed.x")


def test_cursor_round_trip() -> None:
    at = 1719168000.123456789
    assert decode_cursor(encode_cursor(at, "wh_1")) == (at, "wh_1")
    assert decode_cursor(encode_cursor(5, "wh_2")) == (5.0, "wh_2")
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor("garbage")


def test_check_durations() -> None:
    check_durations(1, 1)
    check_durations(None, 0.001)
    bad: list[tuple[float, float]] = [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1)]
    for lease, retention in bad:
        with pytest.raises(ValueError, match="lease"):
            check_durations(lease, retention)
    for retention in [0, -1, math.nan, math.inf]:
        with pytest.raises(ValueError, match="retention"):
            check_durations(None, retention)


def test_bounded_keeps_the_end() -> None:
    assert bounded(None, 10) is None
    assert bounded("short", 10) == "short"
    cut = bounded("a" * 100 + "END", 20)
    assert cut is not None
    assert len(cut) == 20
    assert cut.endswith("END")


def test_records_are_frozen() -> None:
    claim = Claim("done")
    assert claim.token == ""
    assert claim.record is None
    assert claim.keys_with(SETTLED_OUTCOMES) == frozenset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.status = "acquired"  # type: ignore[misc]


def test_record_to_json_leaves_the_body_out_unless_asked() -> None:
    record = DeliveryRecord(
        webhook_id="wh_1",
        event_type="batch.completed",
        event_id="evt_1",
        object_id="batch_1",
        created_at=1,
        body=b'{"id":"evt_1"}',
        first_received_at=2.0,
        last_received_at=3.0,
        attempts=2,
        status="processed",
        status_code=200,
        source="delivery",
        receivers=(result("a"),),
        history=(HistoryEntry(2.5, "delivery", "processed", 200),),
    )
    data = record.to_json()
    assert "body" not in data
    assert data["type"] == "batch.completed"
    assert data["received_at"] == 2.0
    assert data["receivers"][0]["key"] == "a"
    assert record.to_json(body=True)["body"] == '{"id":"evt_1"}'


# --------------------------------------------------------------------------
# store_from_config
# --------------------------------------------------------------------------


def test_config_memory() -> None:
    assert isinstance(store_from_config("memory"), MemoryStore)


def test_config_sqlite_relative_to_root(tmp_path: pathlib.Path) -> None:
    from flask_openai_webhooks.stores.sqlite import SQLiteStore

    store = store_from_config("sqlite:///log.db", root=str(tmp_path))
    assert isinstance(store, SQLiteStore)
    try:
        store.ping()
        assert (tmp_path / "log.db").exists()
    finally:
        store.close()


def test_config_sqlite_absolute(tmp_path: pathlib.Path) -> None:
    from flask_openai_webhooks.stores.sqlite import SQLiteStore

    path = tmp_path / "abs.db"
    store = store_from_config(f"sqlite:///{path}", root="/nonexistent")
    assert isinstance(store, SQLiteStore)
    try:
        store.ping()
        assert path.exists()
    finally:
        store.close()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://u:s3cr3t@example.com:6380/1"]
)
def test_config_redis(url: str) -> None:
    from flask_openai_webhooks.stores.redis import RedisStore

    store = store_from_config(url)  # connects on first use only
    assert isinstance(store, RedisStore)
    try:
        assert "s3cr3t" not in store.describe()
    finally:
        store.close()


@pytest.mark.parametrize("url", [POSTGRES_URL, MARIADB_URL])
def test_config_sql(url: str) -> None:
    from flask_openai_webhooks.stores.sql import SQLStore

    with_password = url.replace("@", ":s3cr3t@", 1)
    store = store_from_config(with_password)  # connects on first use only
    assert isinstance(store, SQLStore)
    try:
        assert "s3cr3t" not in store.describe()
    finally:
        store.close()


def test_config_passes_store_objects_through() -> None:
    memory = MemoryStore()
    assert store_from_config(memory) is memory
    with pytest.raises(ValueError, match="instance"):
        store_from_config(MemoryStore)


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
        "sqlite:log.db",
        "http://user:s3cr3t@example.com",
        "redis:/user:s3cr3t@host:6379/0",
        "log.db",
        object(),
        {"store": "memory"},
    ],
)
def test_config_rejects(value: object) -> None:
    with pytest.raises(ValueError) as info:
        store_from_config(value)
    message = str(info.value)
    assert "'memory'" in message
    assert "DeliveryStore" in message
    assert "s3cr3t" not in message


def test_stores_package_imports_no_flask_and_no_driver() -> None:
    import flask_openai_webhooks.stores as stores

    source = pathlib.Path(stores.__file__).read_text(encoding="utf-8")
    for node in ast.parse(source).body:  # module level only
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            assert top not in {"flask", "redis", "sqlalchemy", "sqlite3"}, module


def test_to_dict_has_every_field() -> None:
    """The hand-written to_dict must follow the dataclasses' fields."""
    full = ReceiverResult(
        "k",
        "failed",
        attempts=2,
        duration=0.5,
        at=1.0,
        error_type="E",
        error_message="m",
        traceback="t",
    )
    assert full.to_dict() == dataclasses.asdict(full)
    assert ReceiverResult.from_dict(full.to_dict()) == full
    entry = HistoryEntry(1.0, "replay", "processed", None)
    assert entry.to_dict() == dataclasses.asdict(entry)
    assert HistoryEntry.from_dict(entry.to_dict()) == entry
