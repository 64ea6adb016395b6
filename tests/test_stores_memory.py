"""What only the memory store does: its bound, the order in which it makes
room, and the methods the other stores do not have. The contract itself is
tested over every backend in ``test_stores.py``.
"""

from __future__ import annotations

import secrets
import time

import pytest

from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.stores import DeliveryStatus
from flask_openai_webhooks.stores import MAX_REJECTIONS
from flask_openai_webhooks.stores import ReceiverResult
from flask_openai_webhooks.stores import store_from_config
from flask_openai_webhooks.stores.memory import MemoryStore

LONG = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def delivery(clock: Clock, webhook_id: str | None = None) -> Delivery:
    return Delivery(
        webhook_id=webhook_id or f"wh_{secrets.token_hex(12)}",
        event_type="batch.completed",
        event_id=f"evt_{secrets.token_hex(12)}",
        object_id="batch_1",
        created_at=1719168000,
        body=b'{"type":"batch.completed"}',
        received_at=clock(),
    )


def claim(
    store: MemoryStore, d: Delivery, *, lease: float = LONG, retention: float = LONG
) -> str:
    answer = store.claim(d, lease=lease, retention=retention)
    assert answer.status == "acquired"
    return answer.token


def settle(
    store: MemoryStore,
    d: Delivery,
    status: DeliveryStatus = "processed",
    results: tuple[ReceiverResult, ...] = (),
    *,
    retention: float = LONG,
) -> None:
    token = claim(store, d, lease=min(retention, LONG), retention=retention)
    store.finish(
        d.webhook_id,
        token,
        results,
        status=status,
        status_code=200,
        source="delivery",
        retention=retention,
    )


def kept(store: MemoryStore, *deliveries: Delivery) -> list[bool]:
    return [store.get(d.webhook_id) is not None for d in deliveries]


def test_bounded_under_100k_deliveries(clock: Clock) -> None:
    store = MemoryStore(max_entries=500, clock=clock)
    deliveries = []
    largest = 0
    for n in range(100_000):
        clock.advance(0.01)
        d = delivery(clock, f"wh_{n:06d}")
        settle(store, d, "failed" if n % 3 else "processed")
        store.reject("signature_mismatch", d.webhook_id, clock())
        largest = max(largest, len(store))
        deliveries.append(d)
    assert largest == 500
    assert len(store) == 500
    # The newest are kept; settled ones go first, so every failed one
    # among the newest is still there for its retry.
    failed = [d for n, d in enumerate(deliveries) if n % 3]
    assert all(kept(store, deliveries[-1], *failed[-300:]))
    assert not any(kept(store, *deliveries[:1000]))
    page = store.list_deliveries(limit=1)
    assert page.records[0].webhook_id == "wh_099999"
    rejections = store.rejections(limit=1000)
    assert rejections.counts == {"signature_mismatch": 100_000}
    assert len(rejections.recent) == MAX_REJECTIONS


def test_bounded_when_every_lease_is_live(clock: Clock) -> None:
    # Nothing can be evicted without losing a lease: the bound still holds,
    # and the lease that has run the longest goes.
    store = MemoryStore(max_entries=10, clock=clock)
    deliveries = [delivery(clock) for _ in range(50)]
    for d in deliveries:
        claim(store, d)
    assert len(store) == 10
    assert kept(store, *deliveries[-10:]) == [True] * 10


def test_eviction_order(clock: Clock) -> None:
    store = MemoryStore(max_entries=3, clock=clock)
    expiring = delivery(clock)
    settle(store, expiring, "failed", retention=10)  # not settled, expires
    settled_old, settled_new = delivery(clock), delivery(clock)
    settle(store, settled_old)
    settle(store, settled_new)
    clock.advance(20)

    leased = [delivery(clock) for _ in range(4)]
    claim(store, leased[0])
    # The expired record goes first, although older settled ones exist.
    assert kept(store, expiring, settled_old, settled_new) == [False, True, True]
    claim(store, leased[1])
    assert kept(store, settled_old, settled_new) == [False, True]
    claim(store, leased[2])
    assert kept(store, settled_new) == [False]
    # Only leased records are left: the oldest lease goes.
    claim(store, leased[3])
    assert kept(store, *leased) == [False, True, True, True]


def test_settled_records_go_before_older_unsettled_ones(clock: Clock) -> None:
    store = MemoryStore(max_entries=2, clock=clock)
    failed, processed = delivery(clock), delivery(clock)
    settle(store, failed, "failed")
    settle(store, processed, "unhandled")
    newest = delivery(clock)
    claim(store, newest)
    assert kept(store, failed, processed, newest) == [True, False, True]
    # Then the oldest record that is not leased, a failed one here.
    claim(store, delivery(clock))
    assert kept(store, failed, newest) == [False, True]


def test_live_leases_are_skipped(clock: Clock) -> None:
    store = MemoryStore(max_entries=2, clock=clock)
    leased, failed = delivery(clock), delivery(clock)
    claim(store, leased)
    settle(store, failed, "failed")
    claim(store, delivery(clock))
    assert kept(store, leased, failed) == [True, False]


def test_live_task_leases_are_skipped(clock: Clock) -> None:
    store = MemoryStore(max_entries=2, clock=clock)
    with_task, settled = delivery(clock), delivery(clock)
    settle(store, with_task, "gave_up", (ReceiverResult("t", "gave_up"),))
    assert store.claim_task(with_task.webhook_id, "t", lease=LONG).status == "acquired"
    settle(store, settled)
    # with_task is the oldest settled record, but a worker runs its task.
    claim(store, delivery(clock))
    assert kept(store, with_task, settled) == [True, False]


def test_expired_records_stay_visible_until_room_is_needed(clock: Clock) -> None:
    # Retention is a minimum: past it, the record is still in the log.
    store = MemoryStore(max_entries=2, clock=clock)
    old = delivery(clock)
    settle(store, old, retention=10)
    clock.advance(3600)
    assert kept(store, old) == [True]
    assert store.claim(old, lease=LONG, retention=LONG).status == "done"


def test_records_are_snapshots(clock: Clock) -> None:
    store = MemoryStore(clock=clock)
    d = delivery(clock)
    token = claim(store, d)
    before = store.get(d.webhook_id)
    store.finish(
        d.webhook_id,
        token,
        [ReceiverResult("a", "ok")],
        status="processed",
        status_code=200,
        source="delivery",
        retention=LONG,
    )
    assert before is not None
    assert before.status == "processing"
    assert before.receivers == ()
    assert before.history == ()
    after = store.get(d.webhook_id)
    assert after is not None
    assert after.status == "processed"


def test_record_recreates_a_missing_record(clock: Clock) -> None:
    # A worker whose record was pruned keeps what its receivers did, even
    # if it dies before finish.
    store = MemoryStore(clock=clock)
    store.record("wh_gone", "token", [ReceiverResult("a", "ok")])
    record = store.get("wh_gone")
    assert record is not None
    assert record.status == "processing"
    assert record.keys_with({"ok"}) == {"a"}
    assert store.claim(delivery(clock, "wh_gone"), lease=1, retention=1).status == (
        "acquired"
    )
    store.record("wh_other", "token", [])
    assert store.get("wh_other") is None


def test_len_and_clear(clock: Clock) -> None:
    store = MemoryStore(clock=clock)
    assert len(store) == 0
    for _ in range(3):
        settle(store, delivery(clock))
    store.reject("signature_mismatch", None, clock())
    assert len(store) == 3
    store.clear()
    assert len(store) == 0
    assert store.list_deliveries().records == ()
    assert store.rejections().counts == {}
    assert store.rejections().recent == ()
    # Still usable after clear.
    claim(store, delivery(clock))
    assert len(store) == 1


def test_describe() -> None:
    description = MemoryStore(max_entries=123).describe()
    assert "memory" in description
    assert "process-local" in description
    assert "123" in description
    assert "10000" in MemoryStore().describe()


def test_max_entries_is_validated() -> None:
    assert MemoryStore().max_entries == 10_000
    assert len(MemoryStore(max_entries=1)) == 0
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_entries"):
            MemoryStore(max_entries=bad)


def test_list_arguments(clock: Clock) -> None:
    store = MemoryStore(clock=clock)
    d = delivery(clock)
    settle(store, d, "failed")
    # A lone status is one status, not a set of characters.
    assert [r.webhook_id for r in store.list_deliveries(status="failed").records] == [
        d.webhook_id
    ]
    for limit in (0, -1):
        with pytest.raises(ValueError, match="limit"):
            store.list_deliveries(limit=limit)


def test_config_memory_is_a_new_store_each_time() -> None:
    one, two = store_from_config("memory"), store_from_config("memory")
    assert isinstance(one, MemoryStore)
    assert one is not two


def test_uses_wall_clock_time_by_default() -> None:
    store = MemoryStore()
    d = delivery(Clock())
    claim(store, d, lease=LONG)
    # Leased now: pruning spares it, whatever its age.
    assert store.prune(0) == 0
    assert store.claim(d, lease=LONG, retention=LONG).status == "in_flight"
