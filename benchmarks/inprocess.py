"""Section 2: one delivery through Flask, in-process, no sockets.

The cases are up to six Flask apps from :mod:`benchmarks.apps` answering
``POST /webhooks/openai``:

``bare``
    A plain route that reads the body and answers 204, the baseline.
``sqlite-floor`` / ``redis-floor``
    The bare route plus the two writes any shared store needs per delivery
    (claim, finish), done as cheaply as the backend allows
    (:class:`~benchmarks.apps.SQLiteFloor`,
    :class:`~benchmarks.apps.RedisFloor`). No target: they show how much of
    a store's cost no implementation can remove, so the blueprint's rows
    can also be read against them.
``memory`` / ``sqlite`` / ``redis``
    The blueprint with a
    :class:`~flask_openai_webhooks.MemoryStore`, an
    :class:`~flask_openai_webhooks.SQLiteStore` on a file in a temporary
    directory, and a :class:`~flask_openai_webhooks.RedisStore` on
    ``127.0.0.1:6379`` under a unique prefix whose keys are deleted at the
    end. Each delivery is verified, parsed, claimed, dispatched and
    finished.

A trivial receiver is connected to ``batch_completed`` (for any sender), so
dispatch really calls something; its call count is checked against the
number of deliveries, which proves none was answered as a duplicate. Every
delivery has a fresh ``webhook-id`` and is signed before its batch starts,
so neither signing nor the dedup fast path is measured.

The apps are called the way a WSGI server calls them,
``app(environ, start_response)``, with environs prebuilt by
:class:`werkzeug.test.EnvironBuilder` (each with its own ``wsgi.input``),
and the response iterable is consumed and closed. The test client is not
used: it adds its own request building and response wrapping, which would
dilute the ratio.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import io
import tempfile
import typing as t

from werkzeug.test import EnvironBuilder

from flask_openai_webhooks import MemoryStore
from flask_openai_webhooks import RedisStore
from flask_openai_webhooks import SQLiteStore
from flask_openai_webhooks.stores import DeliveryStore

from . import deliveries
from .apps import bare_app
from .apps import blueprint_app
from .apps import call_wsgi
from .apps import delete_redis_keys
from .apps import new_redis_prefix
from .apps import receiver
from .apps import redis_store
from .apps import REDIS_URL
from .apps import RedisFloor
from .apps import SQLiteFloor
from .harness import Batch
from .harness import Case
from .harness import format_seconds
from .harness import paired_difference
from .harness import paired_ratio
from .harness import Row
from .harness import run_interleaved
from .harness import Target

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

MEMORY_VS_BARE = Target("blueprint (memory) / bare, in-process", "<=", 1.15)
STORE_VS_BARE = Target("blueprint (SQLite, Redis) / bare, in-process", "<=", 1.6)


def environ(delivery: deliveries.Delivery) -> WSGIEnvironment:
    """The WSGI environ of a delivery, as a server would build it."""
    return EnvironBuilder(
        path=deliveries.URL,
        method="POST",
        data=delivery.body,
        headers=list(delivery.headers.items()),
        content_type="application/json",
    ).get_environ()


def environ_factory(
    body: bytes,
) -> c.Callable[[deliveries.Delivery], WSGIEnvironment]:
    """A faster :func:`environ` for many deliveries of the same body: one
    :class:`~werkzeug.test.EnvironBuilder` environ is copied and only the
    ``webhook-*`` headers and ``wsgi.input`` change.
    """
    template = environ(deliveries.sign(body))

    def make(delivery: deliveries.Delivery) -> WSGIEnvironment:
        if delivery.body != body:
            raise ValueError("environ_factory: another body")
        env = template.copy()
        for name, value in delivery.headers.items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        env["wsgi.input"] = io.BytesIO(body)
        return env

    return make


def _case(name: str, app: WSGIApplication, expected_status: str, body: bytes) -> Case:
    statuses: list[str] = []

    def start_response(status: str, headers: t.Any, exc_info: t.Any = None) -> t.Any:
        statuses.append(status)

    start: StartResponse = start_response

    def prepare(ops: int) -> Batch:
        environs = [environ(deliveries.sign(body)) for _ in range(ops)]
        statuses.clear()

        def batch() -> int:
            for env in environs:
                call_wsgi(app, env, start)
            return len(environs)

        def checked() -> int:
            done = batch()
            bad = [s for s in statuses if s != expected_status]
            if bad:
                raise RuntimeError(f"{name}: unexpected responses {sorted(set(bad))}")
            return done

        return checked

    # The status check runs inside the timed batch but is O(ops) list work,
    # ~20 ns per delivery, identical for every case.
    return Case(name, prepare, disable_gc=False)


def run(
    *, rounds: int, ops: int, redis: bool = True
) -> tuple[list[Row], dict[str, t.Any]]:
    """Time the bare route and the blueprint with each store, interleaved."""
    body = deliveries.make_body(deliveries.KNOWN)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        stores: dict[str, DeliveryStore] = {
            "memory": MemoryStore(),
            "sqlite": SQLiteStore(f"{tmp}/deliveries.db"),
        }
        stack.callback(t.cast(SQLiteStore, stores["sqlite"]).close)
        skipped = ""
        if redis:
            prefix = new_redis_prefix()
            rstore = redis_store(prefix)
            if rstore is None:
                skipped = f"Redis not reachable at {REDIS_URL}"
            else:
                stack.callback(rstore.close)
                stack.callback(delete_redis_keys, prefix)
                stores["redis"] = rstore
        else:
            skipped = "--no-redis"

        sqlite_floor = SQLiteFloor(f"{tmp}/floor.db")
        stack.callback(sqlite_floor.close)
        floors: dict[str, c.Callable[[str], None]] = {"sqlite": sqlite_floor}
        if "redis" in stores:
            redis_floor = RedisFloor(t.cast(RedisStore, stores["redis"]).prefix)
            stack.callback(redis_floor.close)
            floors["redis"] = redis_floor

        cases = [_case("bare", bare_app(), "204 NO CONTENT", body)]
        for name, store in stores.items():
            cases.append(_case(name, blueprint_app(store), "200 OK", body))
        blueprint_cases = len(cases) - 1
        for name, floor in floors.items():
            cases.append(
                _case(f"{name}-floor", bare_app(floor), "204 NO CONTENT", body)
            )

        # Warm-up: first requests build URL maps, validators, connections.
        for case in cases:
            case.prepare(50)()
        before = receiver.calls
        samples = run_interleaved(
            cases, dict.fromkeys([k.name for k in cases], ops), rounds
        )
        dispatched = receiver.calls - before
        expected = rounds * ops * blueprint_cases
        if dispatched != expected:
            raise RuntimeError(
                f"the receiver ran {dispatched} times for {expected} deliveries"
            )

    bare = samples["bare"]
    rows = [
        Row(
            "2",
            "WSGI in-process: bare route (get_data, 204)",
            format_seconds(bare.median),
            data={"median_seconds": bare.median, "per_round": bare.per_op},
        )
    ]
    titles = {
        "memory": "WSGI in-process: ours, MemoryStore",
        "sqlite-floor": "WSGI in-process: bare + 2 SQLite writes (store floor)",
        "sqlite": "WSGI in-process: ours, SQLiteStore (temp file)",
        "redis-floor": "WSGI in-process: bare + 2 Redis SETs (store floor)",
        "redis": "WSGI in-process: ours, RedisStore (127.0.0.1)",
    }
    for name, title in titles.items():
        is_floor = name.endswith("-floor")
        target = (
            None if is_floor else MEMORY_VS_BARE if name == "memory" else STORE_VS_BARE
        )
        if name not in samples:
            rows.append(Row("2", title, target=target, note=f"skipped: {skipped}"))
            continue
        s = samples[name]
        note = f"+{format_seconds(paired_difference(s, bare))} per delivery"
        if is_floor:
            note += "; no target, shows what any shared store costs"
        elif f"{name}-floor" in samples:
            beyond = paired_ratio(s, samples[f"{name}-floor"])
            note += f"; {beyond:.2f} × its store floor"
        rows.append(
            Row(
                "2",
                title,
                format_seconds(s.median),
                ratio=paired_ratio(s, bare),
                ratio_label="× bare",
                target=target,
                note=note,
                data={"median_seconds": s.median, "per_round": s.per_op},
            )
        )
    return rows, {
        "rounds": rounds,
        "deliveries_per_batch": ops,
        "body_bytes": len(body),
        "receiver_calls": dispatched,
    }
