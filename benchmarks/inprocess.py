"""Section 2: one delivery through Flask, in-process, no sockets.

The cases are Flask apps from :mod:`benchmarks.apps` answering
``POST /webhooks/openai``, all timed in the same interleaved rounds:

``bare``
    A plain route that reads the body and answers 204. No target: it shows
    what Flask itself costs.
``floor:memory``
    The minimal floor route (:func:`~benchmarks.apps.floor_app`) with a
    dict-and-lock dedup: the floor of the memory store.
``ours:memory``
    The blueprint with a :class:`~flask_openai_webhooks.MemoryStore`.
``ours:memory+obs``
    The same with metrics and tracing on (:mod:`benchmarks.observability`),
    judged against ``ours:memory``; when the blueprint has the options.
``floor:<backend>`` / ``ours:<backend>``
    For SQLite, Redis, PostgreSQL and MariaDB: the floor route with that
    backend's store floor (:mod:`benchmarks.floors`: the claim and finish
    writes, carrying the log's data), and the blueprint with our store on
    the same server, in a place private to this run
    (:mod:`benchmarks.services`).

A trivial receiver is connected to ``batch_completed`` (for each benchmark app),
and the floor route calls it directly; its call count is checked against
the number of deliveries, which proves none was answered as a duplicate.
Every delivery has a fresh ``webhook-id`` and is signed before its batch
starts, so neither signing nor the dedup fast path is measured.

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

from flask_openai_webhooks.stores import DeliveryStore

from . import deliveries
from . import observability
from .apps import bare_app
from .apps import blueprint_app
from .apps import call_wsgi
from .apps import close_store
from .apps import floor_app
from .apps import make_store
from .apps import receiver
from .floors import make_floor
from .harness import Batch
from .harness import Case
from .harness import Clock
from .harness import format_seconds
from .harness import paired_difference
from .harness import paired_medians
from .harness import paired_ratio
from .harness import Row
from .harness import run_interleaved
from .harness import Samples
from .harness import Target
from .services import BACKENDS
from .services import places

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

MEMORY_VS_FLOOR = Target("in-process, memory store / minimal route", "<=", 1.10)
STORE_VS_FLOOR = Target("in-process, shared store / its store floor", "<=", 1.3)
OBSERVED_VS_OFF = Target("metrics and traces on / off", "<=", 1.05)


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


def wsgi_case(
    name: str,
    app: WSGIApplication,
    expected_status: str,
    body: bytes,
    *,
    before_batch: c.Callable[[], None] | None = None,
    clock: Clock = "cpu",
) -> Case:
    """A case that sends ``ops`` fresh deliveries of ``body`` to ``app``
    and checks every answer's status.

    :param before_batch: Called, untimed, before each batch.
    :param clock: ``"wall"`` when the app waits for a server (see
        :mod:`benchmarks.harness`).
    """
    statuses: list[str] = []
    make_environ = environ_factory(body)

    def start_response(status: str, headers: t.Any, exc_info: t.Any = None) -> t.Any:
        statuses.append(status)

    start: StartResponse = start_response

    def prepare(ops: int) -> Batch:
        environs = [make_environ(deliveries.sign(body)) for _ in range(ops)]
        statuses.clear()
        if before_batch is not None:
            before_batch()

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
    return Case(name, prepare, disable_gc=False, clock=clock)


def run(
    *,
    rounds: int,
    ops: int,
    store_ops: c.Mapping[str, int],
    backends: c.Sequence[str] = tuple(BACKENDS),
    off: c.Mapping[str, str] | None = None,
) -> tuple[list[Row], dict[str, t.Any]]:
    """Time every case, interleaved, and build the rows.

    :param ops: Deliveries per batch of the process-local cases.
    :param store_ops: Deliveries per batch of each shared store's cases,
        by backend (the store and its floor get the same number).
    :param backends: The shared stores to include.
    :param off: Backends turned off by an option, with the option.
    """
    body = deliveries.make_body(deliveries.KNOWN)
    reasons: dict[str, str] = {
        name: f"off ({why})" for name, why in (off or {}).items()
    }
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        found, skipped = stack.enter_context(places(backends, tmp))
        reasons.update(skipped)

        memory_floor = make_floor("memory")
        cases = [
            wsgi_case("bare", bare_app(), "204 NO CONTENT", body),
            wsgi_case("floor:memory", floor_app(memory_floor), "200 OK", body),
            wsgi_case(
                "ours:memory", blueprint_app(make_store("memory")), "200 OK", body
            ),
        ]
        batch_ops = {"bare": ops, "floor:memory": ops, "ours:memory": ops}

        enabled = observability.enable()
        if isinstance(enabled, str):
            reasons["observability"] = enabled
        else:
            # Both on (judged), and each alone (details: which one costs).
            # Each app gets its own registry: a registry takes a name once.
            for variant, drop in (
                ("obs", ()),
                ("metrics", ("tracing",)),
                ("tracing", ("metrics",)),
            ):
                name = f"ours:memory+{variant}"
                chosen = {k: v for k, v in enabled.options().items() if k not in drop}
                cases.append(
                    wsgi_case(
                        name,
                        blueprint_app(make_store("memory"), **chosen),
                        "200 OK",
                        body,
                        before_batch=enabled.clear,
                    )
                )
                batch_ops[name] = ops

        stores: dict[str, DeliveryStore] = {}
        for name, place in found.items():
            floor = make_floor(name, place.target)
            floor.create()
            stack.callback(floor.close)
            store = make_store(name, place.target)
            stack.callback(close_store, store)
            store.ping()  # connects, and creates the tables
            stores[name] = store
            for case_name, app in (
                (f"floor:{name}", floor_app(floor)),
                (f"ours:{name}", blueprint_app(store)),
            ):
                cases.append(wsgi_case(case_name, app, "200 OK", body, clock="wall"))
            batch_ops[f"floor:{name}"] = batch_ops[f"ours:{name}"] = store_ops[name]

        # Warm-up: first requests build URL maps, validators, connections.
        for case in cases:
            case.prepare(min(50, batch_ops[case.name]))()
        spans = 0
        if not isinstance(enabled, str):
            # Count the spans of one delivery, to show tracing is really on.
            enabled.clear()
            next(k for k in cases if k.name == "ours:memory+obs").prepare(1)()
            spans = enabled.spans()
        before = receiver.calls
        samples = run_interleaved(cases, batch_ops, rounds)
        dispatched = receiver.calls - before
        expected = rounds * sum(n for k, n in batch_ops.items() if k != "bare")
        if dispatched != expected:
            raise RuntimeError(
                f"the receiver ran {dispatched} times for {expected} deliveries"
            )

    return _rows(samples, reasons, spans), {
        "rounds": rounds,
        "deliveries_per_batch": batch_ops,
        "body_bytes": len(body),
        "receiver_calls": dispatched,
        "skipped": reasons,
        "samples_cpu_seconds": {k: v.cpu for k, v in samples.items()},
        "samples_wall_seconds": {k: v.wall for k, v in samples.items()},
    }


def _judged(
    key: str,
    what: str,
    samples: dict[str, Samples],
    ours: str,
    floor: str,
    target: Target,
    reason: str,
    label: str = "× floor",
) -> Row:
    if ours not in samples:
        return Row("2", what, target=target, key=key, unmeasured=reason)
    a, b = samples[ours], samples[floor]
    mine, theirs, clock = paired_medians(a, b)
    return Row(
        "2",
        what,
        format_seconds(mine),
        ratio=paired_ratio(a, b),
        ratio_label=label,
        target=target,
        floor=format_seconds(theirs),
        key=key,
        note=f"+{format_seconds(paired_difference(a, b))} per delivery"
        f" ({CLOCKS[clock]})",
        data={"median_seconds": mine, "floor_median_seconds": theirs, "clock": clock},
    )


#: How the notes name the clocks.
CLOCKS = {"cpu": "CPU time", "wall": "wall time"}


def _rows(
    samples: dict[str, Samples], reasons: dict[str, str], spans: int
) -> list[Row]:
    rows = [
        _judged(
            "inprocess-memory",
            "one delivery in-process, memory store",
            samples,
            "ours:memory",
            "floor:memory",
            MEMORY_VS_FLOOR,
            "",
        )
    ]
    for name, title in BACKENDS.items():
        rows.append(
            _judged(
                f"inprocess-{name}",
                f"one delivery in-process, {title} store, log included",
                samples,
                f"ours:{name}",
                f"floor:{name}",
                STORE_VS_FLOOR,
                reasons.get(name, ""),
            )
        )
    observed = _judged(
        "observability",
        "metrics and traces on (in-process, memory store), floor = off",
        samples,
        "ours:memory+obs",
        "ours:memory",
        OBSERVED_VS_OFF,
        reasons.get("observability", ""),
        "× off",
    )
    if observed.ratio is not None:
        observed.note += f"; {spans} span(s) exported per delivery"
    rows.append(observed)

    bare = samples["bare"]
    details = {
        "bare": "bare route (get_data, 204)",
        "floor:memory": "minimal floor route, dict-and-lock dedup",
        "ours:memory": "ours, MemoryStore",
        "ours:memory+obs": "ours, MemoryStore, metrics and traces on",
        "ours:memory+metrics": "ours, MemoryStore, metrics on",
        "ours:memory+tracing": "ours, MemoryStore, traces on",
    }
    for name, title in BACKENDS.items():
        details[f"floor:{name}"] = f"minimal route + {title} claim and finish writes"
        details[f"ours:{name}"] = f"ours, {title} store"
    for name, title in details.items():
        if name not in samples:
            continue
        s = samples[name]
        row = Row(
            "2",
            f"WSGI in-process: {title}",
            format_seconds(s.median),
            note=CLOCKS[s.clock],
            data={"median_seconds": s.median, "clock": s.clock},
        )
        if name != "bare":
            mine, theirs, clock = paired_medians(s, bare)
            row.value = format_seconds(mine)
            row.ratio, row.ratio_label = paired_ratio(s, bare), "× bare"
            row.floor = format_seconds(theirs)
            row.note = (
                f"+{format_seconds(paired_difference(s, bare))} over bare"
                f" ({CLOCKS[clock]})"
            )
        rows.append(row)
    return rows
