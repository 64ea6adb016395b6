"""Profile the two hot paths the table measures, to see where time goes.

.. code-block:: console

    $ python -m benchmarks.profiling inprocess --store memory
    $ python -m benchmarks.profiling verify
    $ python -m benchmarks.profiling inprocess --store sqlite --cprofile

``inprocess`` sends fresh signed deliveries through the blueprint by WSGI,
as section 2 does; ``verify`` runs ``verify_with_keys`` + ``parse_event``
on a ``batch.completed`` body, as section 1 does. The inputs are built
before the profiler starts.

pyinstrument (a sampling profiler, the default) barely slows the code, so
its percentages are close to the real split between Flask, Werkzeug and
this library. cProfile (``--cprofile``) counts every call, which is handy
to see *how many* calls a request makes, but its per-call overhead inflates
code made of many small Python functions, so do not read its times as
absolute. Neither replaces the benchmark: measure a change with
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import collections.abc as c
import contextlib
import cProfile
import gc
import pstats
import secrets
import tempfile
import typing as t

from flask_openai_webhooks import MemoryStore
from flask_openai_webhooks import models
from flask_openai_webhooks import SQLiteStore
from flask_openai_webhooks import verify
from flask_openai_webhooks.stores import DeliveryStore

from . import deliveries
from .apps import blueprint_app
from .apps import call_wsgi
from .apps import delete_redis_keys
from .apps import redis_store
from .inprocess import environ_factory


def _inprocess(store: DeliveryStore, count: int) -> c.Callable[[], None]:
    app = blueprint_app(store)
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


def _verify(count: int) -> c.Callable[[], None]:
    keys = verify.decode_secrets(deliveries.SECRET)
    delivery = deliveries.sign(deliveries.make_body(deliveries.KNOWN))
    body, headers = delivery.body, delivery.headers

    def go() -> None:
        for _ in range(count):
            verify.verify_with_keys(body, headers, keys)
            models.parse_event(body)

    return go


def main(argv: c.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profiling",
        description="Profile the blueprint or verify+parse.",
    )
    parser.add_argument("what", choices=("inprocess", "verify"))
    parser.add_argument(
        "--store", choices=("memory", "sqlite", "redis"), default="memory"
    )
    parser.add_argument("-n", "--count", type=int, default=0, help="iterations")
    parser.add_argument(
        "--cprofile", action="store_true", help="cProfile instead of pyinstrument"
    )
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.what == "verify":
            work = _verify(args.count or 200_000)
        else:
            store: DeliveryStore
            if args.store == "memory":
                store = MemoryStore(max_entries=1_000_000)
            elif args.store == "sqlite":
                tmp = stack.enter_context(tempfile.TemporaryDirectory())
                sqlite = SQLiteStore(f"{tmp}/deliveries.db")
                stack.callback(sqlite.close)
                store = sqlite
            else:
                prefix = f"bench-openai-webhooks:{secrets.token_hex(8)}:"
                found = redis_store(prefix)
                if found is None:
                    parser.error("Redis is not reachable")
                stack.callback(found.close)
                stack.callback(delete_redis_keys, prefix)
                store = found
            work = _inprocess(store, args.count or 20_000)
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
        print(profiler.output_text(color=False, time="percent_of_total"))
        if args.html:
            with open(args.html, "w") as out:
                out.write(profiler.output_html())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
