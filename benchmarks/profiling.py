"""Profile the hot paths the budget measures, to see where time goes.

.. code-block:: console

    $ python -m benchmarks.profiling inprocess --store memory
    $ python -m benchmarks.profiling inprocess --store memory --app floor
    $ python -m benchmarks.profiling inprocess --store postgresql --show-all
    $ python -m benchmarks.profiling inprocess --store memory --observability
    $ python -m benchmarks.profiling verify --api public
    $ python -m benchmarks.profiling inprocess --store sqlite --cprofile

``inprocess`` sends fresh signed deliveries through the blueprint (or, with
``--app floor``, through the minimal floor route with that store's floor)
by WSGI, as section 2 does, against a store in a place private to this run;
``verify`` runs the blueprint path (``Verifier.verify`` + ``parse_event``)
or the public functional API (``verify_signature`` + ``parse_event``) on a
``batch.completed`` body, as section 1 does. The inputs are built before
the profiler starts.

pyinstrument (a sampling profiler, the default) barely slows the code, so
its percentages are close to the real split between Flask, Werkzeug and
this library; ``--show-all`` shows library frames too. cProfile
(``--cprofile``) counts every call, which is handy to see *how many* calls
a request makes, but its per-call overhead inflates code made of many
small Python functions, so do not read its times as absolute. For counts
that do not depend on the machine's load, run the same command under
``valgrind --tool=callgrind`` with a small ``-n`` and compare instruction
counts. None of these replaces the benchmark: measure a change with
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import collections.abc as c
import contextlib
import cProfile
import gc
import pstats
import tempfile
import typing as t

from flask import Flask

from flask_openai_webhooks import models
from flask_openai_webhooks import verify

from . import deliveries
from . import observability
from .apps import blueprint_app
from .apps import call_wsgi
from .apps import close_store
from .apps import floor_app
from .apps import make_store
from .floors import make_floor
from .inprocess import environ_factory
from .services import BACKENDS
from .services import places


def _inprocess(app: Flask, count: int) -> c.Callable[[], None]:
    body = deliveries.make_body(deliveries.KNOWN)
    environ = environ_factory(body)

    def start_response(status: str, headers: t.Any, exc_info: t.Any = None) -> t.Any:
        if status != "200 OK":
            raise RuntimeError(status)

    def send(n: int) -> c.Callable[[], None]:
        environs = [environ(deliveries.sign(body)) for _ in range(n)]

        def go() -> None:
            for env in environs:
                call_wsgi(app, env, start_response)

        return go

    send(200)()  # warm-up
    return send(count)


def _verify(count: int, api: str) -> c.Callable[[], None]:
    delivery = deliveries.sign(deliveries.make_body(deliveries.KNOWN))
    body, headers = delivery.body, delivery.headers
    parse_event = models.parse_event
    if api == "public":
        verify_signature = verify.verify_signature
        secret = deliveries.SECRET

        def public() -> None:
            for _ in range(count):
                verify_signature(body, headers, secret=secret)
                parse_event(body)

        return public
    check = verify.Verifier(verify.decode_secrets(deliveries.SECRET)).verify
    values = (
        headers["webhook-id"],
        headers["webhook-timestamp"],
        headers["webhook-signature"],
    )

    def blueprint() -> None:
        for _ in range(count):
            check(body, *values)
            parse_event(body)

    return blueprint


def _app(stack: contextlib.ExitStack, args: argparse.Namespace, parser: t.Any) -> Flask:
    backend = args.store
    target = ""
    if backend != "memory":
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        found, skipped = stack.enter_context(places([backend], tmp))
        if backend not in found:
            parser.error(skipped[backend])
        target = found[backend].target
    if args.app == "floor":
        floor = make_floor(backend, target)
        floor.create()
        stack.callback(floor.close)
        return floor_app(floor)
    store = make_store(backend, target)
    stack.callback(close_store, store)
    options: dict[str, t.Any] = {}
    if args.observability:
        enabled = observability.enable()
        if isinstance(enabled, str):
            parser.error(enabled)
        else:
            options = enabled.options()
    return blueprint_app(store, **options)


def main(argv: c.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profiling",
        description="Profile the blueprint, the floor route or verify+parse.",
    )
    parser.add_argument("what", choices=("inprocess", "verify"))
    parser.add_argument("--store", choices=("memory", *BACKENDS), default="memory")
    parser.add_argument(
        "--app",
        choices=("ours", "floor"),
        default="ours",
        help="the blueprint, or the minimal floor route with the store's floor",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="turn metrics and tracing on (the blueprint only)",
    )
    parser.add_argument(
        "--api",
        choices=("blueprint", "public"),
        default="blueprint",
        help="verify: the blueprint path or the public functional API",
    )
    parser.add_argument("-n", "--count", type=int, default=0, help="iterations")
    parser.add_argument(
        "--cprofile", action="store_true", help="cProfile instead of pyinstrument"
    )
    parser.add_argument(
        "--show-all", action="store_true", help="pyinstrument: show library frames"
    )
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.what == "verify":
            work = _verify(args.count or 200_000, args.api)
        else:
            work = _inprocess(_app(stack, args, parser), args.count or 20_000)
        gc.collect()
        gc.freeze()
        if args.cprofile:
            profile = cProfile.Profile()
            profile.runcall(work)
            stats = pstats.Stats(profile)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
            return 0
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        work()
        profiler.stop()
        print(
            profiler.output_text(
                color=False, time="percent_of_total", show_all=args.show_all
            )
        )
        if args.html:
            with open(args.html, "w") as out:
                out.write(profiler.output_html())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
