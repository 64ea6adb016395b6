"""Section 3: end to end, through gunicorn and real sockets.

The servers are gunicorn with 2 workers of the ``gthread`` class (2
threads each by default, HTTP keep-alive on), serving
:func:`benchmarks.apps.create_app`. They run in groups, one group at a
time, each group's servers interleaved round by round:

-   ``memory``: the ``bare`` route, the minimal floor route with a
    dict-and-lock dedup, and ours with a
    :class:`~flask_openai_webhooks.MemoryStore` per worker (the default
    configuration, though not deduplicated across two workers: a retry
    reaching the other worker runs again). The target is against ``bare``;
    the note gives the ratio to the floor route too.
-   one group per shared store (SQLite, Redis, PostgreSQL, MariaDB): its
    store-floor app (the floor route with that backend's claim and finish
    writes, :mod:`benchmarks.floors`) and ours with that store, both on
    the same server in a place private to this run
    (:mod:`benchmarks.services`). p99 latency is reported for both.

``gthread`` rather than ``sync``: the sync worker closes the connection
after every response, so each request would also pay a TCP handshake and
an ``accept``, the same fixed cost for both apps, which would flatter the
ratio. ``--e2e-worker-class sync`` measures that setup instead.

The load generator is ``wrk`` when it is installed: one thread (so one Lua
state walks one pool, see below), a few keep-alive connections. Otherwise a
Python generator with one thread and one ``http.client`` keep-alive
connection per connection slot, which is slower and competes for the same
cores, so its numbers are lower and noted as such.

Every request is a distinct delivery. Signing per request inside ``wrk``
would need HMAC in Lua, so a pool of requests, each with its own
``webhook-id`` and a signature made with the current time, is written to a
file right before each run and replayed in order; a run lasts seconds, far
inside the 300 s tolerance. The pool is sized from a warm-up run's rate
with a 2x margin; if a run still goes past its end, ids repeat and the
apps take their cheaper duplicate path, which the table then notes.
After each shared-store group, the number of deliveries recorded as
processed is checked against the number of requests answered.

Runs are interleaved like the in-process cases: several short rounds, each
running every server of the group once in rotating order, and the median
of the rounds is reported; ratios are medians of per-round ratios.
``duration x rounds`` is the time spent on each server.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

from . import deliveries
from .apps import close_store
from .apps import make_store
from .floors import make_floor
from .harness import Row
from .harness import Target
from .services import BACKENDS
from .services import count_redis_keys
from .services import Place
from .services import places
from .services import sql_count

MEMORY_VS_BARE = Target("end-to-end throughput, memory store / bare", ">=", 0.9)
STORE_VS_FLOOR = Target("end-to-end throughput, shared store / its floor", ">=", 0.85)

#: The repository root, which gunicorn must import ``benchmarks`` from.
ROOT = Path(__file__).resolve().parent.parent

#: Requests are replayed from a file: raw HTTP requests separated by NUL,
#: read once per run by wrk's single thread, one request per call.
WRK_SCRIPT = r"""
local requests = {}
local count = 0
local index = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  local position = 1
  while true do
    local stop = string.find(data, "\0", position, true)
    if not stop then break end
    count = count + 1
    requests[count] = string.sub(data, position, stop - 1)
    position = stop + 1
  end
end

function request()
  index = index + 1
  if index > count then
    index = 1  -- the pool ran out: ids repeat (reported by the table)
  end
  return requests[index]
end

function done(summary, latency, requests)
  io.write(string.format(
    "BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d," ..
    "\"socket_errors\":%d,\"p50_us\":%d,\"p99_us\":%d,\"mean_us\":%.1f}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclasses.dataclass
class Settings:
    """How section 3 runs; see the command-line options."""

    duration: float = 5.0
    rounds: int = 3
    connections: int = 4
    worker_class: str = "gthread"
    threads: int = 2
    loadgen: str = "auto"


@dataclasses.dataclass
class RunResult:
    """One load-generator run against one server."""

    requests: int
    seconds: float
    p50: float
    p99: float
    non2xx: int
    repeated: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclasses.dataclass
class Server:
    """A running gunicorn: its name, port and process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _raw_request(delivery: deliveries.Delivery, port: int) -> bytes:
    lines = [
        f"POST {deliveries.URL} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(delivery.body)}",
        *(f"{name}: {value}" for name, value in delivery.headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + delivery.body


def _pool(body: bytes, size: int) -> list[deliveries.Delivery]:
    """``size`` deliveries of ``body``, each with its own id, signed now."""
    stamp = int(time.time())
    return [deliveries.sign(body, timestamp=stamp) for _ in range(size)]


@contextlib.contextmanager
def _gunicorn(
    name: str, env: dict[str, str], settings: Settings, tmp: Path
) -> t.Iterator[Server]:
    port = _free_port()
    log = tmp / f"gunicorn-{name.replace(' ', '-').replace(',', '')}.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "2",
        "--worker-class",
        settings.worker_class,
        "--threads",
        str(settings.threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
        "benchmarks.apps:create_app()",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env, "OPENAI_WEBHOOK_SECRET": deliveries.SECRET},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, process, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server, timeout: float = 30.0) -> None:
    """Post signed deliveries until one is answered with 2xx."""
    body = deliveries.make_body(deliveries.KNOWN)
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn for {server.name} exited:\n{server.log.read_text()[-2000:]}"
            )
        delivery = deliveries.sign(body)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("POST", deliveries.URL, delivery.body, delivery.headers)
            status = conn.getresponse().status
            conn.close()
            if 200 <= status < 300:
                return
            raise RuntimeError(f"{server.name} answered {status} to a valid delivery")
        except (OSError, http.client.HTTPException):
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not start in {timeout} s")
        time.sleep(0.1)


def _run_wrk(
    server: Server, pool: list[deliveries.Delivery], settings: Settings, tmp: Path
) -> RunResult:
    wrk = shutil.which("wrk")
    assert wrk is not None
    script = tmp / "pool.lua"
    script.write_text(WRK_SCRIPT)
    data = tmp / "pool.bin"
    with open(data, "wb") as out:
        for delivery in pool:
            out.write(_raw_request(delivery, server.port))
            out.write(b"\0")
    command = [
        wrk,
        "--threads",
        "1",
        "--connections",
        str(settings.connections),
        "--duration",  # wrk takes whole seconds
        f"{max(1, round(settings.duration))}s",
        "--timeout",
        "10s",
        "--script",
        str(script),
        f"http://127.0.0.1:{server.port}{deliveries.URL}",
        "--",
        str(data),
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=600
    ).stdout
    line = next((x for x in output.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    if result["socket_errors"]:
        raise RuntimeError(f"wrk against {server.name}: socket errors\n{output}")
    requests = int(result["requests"])
    return RunResult(
        requests=requests,
        seconds=result["duration_us"] / 1e6,
        p50=result["p50_us"] / 1e6,
        p99=result["p99_us"] / 1e6,
        non2xx=int(result["non2xx"]),
        repeated=max(0, requests - len(pool)),
    )


def _run_python(
    server: Server, pool: list[deliveries.Delivery], settings: Settings
) -> RunResult:
    """The fallback load generator: one thread per connection, each walking
    its own slice of the pool over one keep-alive connection until the
    duration is up or its slice is used (ids are never repeated).
    """
    slices = [pool[i :: settings.connections] for i in range(settings.connections)]
    latencies: list[list[float]] = [[] for _ in slices]
    non2xx = [0] * len(slices)
    start_barrier = threading.Barrier(len(slices) + 1)
    deadline = 0.0

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        mine = latencies[index]
        start_barrier.wait()
        for delivery in slices[index]:
            if time.perf_counter() >= deadline:
                break
            begin = time.perf_counter()
            conn.request("POST", deliveries.URL, delivery.body, delivery.headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - begin)
            if not 200 <= response.status < 300:
                non2xx[index] += 1
        conn.close()

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True)
        for i in range(len(slices))
    ]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline = start + settings.duration
    start_barrier.wait()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    everything = sorted(x for chunk in latencies for x in chunk)
    if not everything:
        raise RuntimeError(f"no request to {server.name} completed")
    return RunResult(
        requests=len(everything),
        seconds=seconds,
        p50=everything[len(everything) // 2],
        p99=everything[min(len(everything) - 1, int(len(everything) * 0.99))],
        non2xx=sum(non2xx),
        repeated=0,
    )


def _loadgen(settings: Settings) -> str:
    if settings.loadgen == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if settings.loadgen == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("--loadgen wrk: wrk is not installed (apt-get install wrk)")
    return settings.loadgen


def _run_group(
    specs: dict[str, dict[str, str]],
    settings: Settings,
    loadgen: str,
    tmp: Path,
) -> tuple[dict[str, list[RunResult]], int]:
    """Start the servers of one group, warm them up, run the interleaved
    rounds, stop them; return the runs by server name and the pool size."""
    body = deliveries.make_body(deliveries.KNOWN)
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(_gunicorn(name, env, settings, tmp))
            for name, env in specs.items()
        ]

        def once(server: Server, pool_size: int, seconds: float) -> RunResult:
            pool = _pool(body, pool_size)
            short = dataclasses.replace(settings, duration=seconds)
            if loadgen == "wrk":
                return _run_wrk(server, pool, short, tmp)
            return _run_python(server, pool, short)

        # Warm-up: loads every worker's app and connections, and measures
        # the rate that sizes the pools.
        fastest = max(once(s, 20_000, 1.0).rate for s in servers)
        pool_size = int(fastest * settings.duration * 2) + 1_000
        results: dict[str, list[RunResult]] = {s.name: [] for s in servers}
        for round_index in range(settings.rounds):
            shift = round_index % len(servers)
            for server in [*servers[shift:], *servers[:shift]]:
                result = once(server, pool_size, settings.duration)
                if result.non2xx:
                    raise RuntimeError(
                        f"{server.name}: {result.non2xx} non-2xx answers; its"
                        f" log ends with:\n{server.log.read_text()[-2000:]}"
                    )
                results[server.name].append(result)
    return results, pool_size


def _processed_by_store(place: Place) -> int:
    """Deliveries our store holds as processed."""
    if place.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(f"{place.target}/deliveries.db", timeout=30)
        try:
            (count,) = conn.execute(
                "SELECT count(*) FROM openai_webhook_deliveries"
                " WHERE status = 'processed'"
            ).fetchone()
        finally:
            conn.close()
        return int(count)
    if place.backend == "redis":
        # One hash per delivery under "<prefix>store:d:".
        return count_redis_keys(place.target + "store:d:*")
    return sql_count(
        place.target,
        "SELECT count(*) FROM openai_webhook_deliveries WHERE status = 'processed'",
    )


def run(
    settings: Settings,
    *,
    backends: c.Sequence[str] = tuple(BACKENDS),
    off: c.Mapping[str, str] | None = None,
) -> tuple[list[Row], dict[str, t.Any]]:
    """Run the memory group, then one group per reachable shared store.

    :param backends: The shared stores to include.
    :param off: Backends turned off by an option, with the option.
    """
    loadgen = _loadgen(settings)
    reasons: dict[str, str] = {
        name: f"off ({why})" for name, why in (off or {}).items()
    }
    results: dict[str, list[RunResult]] = {}
    pools: dict[str, int] = {}
    stored: dict[str, dict[str, int]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        found, skipped = stack.enter_context(places(backends, str(tmp)))
        reasons.update(skipped)

        group, pools["memory"] = _run_group(
            {
                "bare": {"BENCH_APP": "bare"},
                "floor:memory": {"BENCH_APP": "floor", "BENCH_BACKEND": "memory"},
                "ours:memory": {"BENCH_APP": "ours", "BENCH_BACKEND": "memory"},
            },
            settings,
            loadgen,
            tmp,
        )
        results.update(group)

        for name, place in found.items():
            # Tables first, from here: two workers creating them at once
            # would only measure the race.
            floor = make_floor(name, place.target)
            stack.callback(floor.close)
            floor.create()
            store = make_store(name, place.target)
            try:
                store.ping()
            finally:
                close_store(store)
            env = {"BENCH_BACKEND": name, "BENCH_TARGET": place.target}
            group, pools[name] = _run_group(
                {
                    f"floor:{name}": {"BENCH_APP": "floor", **env},
                    f"ours:{name}": {"BENCH_APP": "ours", **env},
                },
                settings,
                loadgen,
                tmp,
            )
            results.update(group)
            # Every delivery processed is one record, so fewer records than
            # requests answered would mean some were duplicates.
            counts = {
                f"floor:{name}": floor.records(),
                f"ours:{name}": _processed_by_store(place),
            }
            for server, count in counts.items():
                answered = sum(r.requests - r.repeated for r in group[server])
                if count < answered:
                    raise RuntimeError(
                        f"{server}: {answered} requests answered but only"
                        f" {count} deliveries recorded as processed"
                    )
            stored[name] = counts

    return _rows(results, reasons, loadgen), {
        "loadgen": loadgen,
        "settings": dataclasses.asdict(settings),
        "pool_size": pools,
        "records_processed": stored,
        "skipped": reasons,
        "runs": {k: [dataclasses.asdict(r) for r in v] for k, v in results.items()},
    }


def describe(settings: Settings) -> str:
    """The server and load-generator setup, for the header of the table."""
    workers = f"gunicorn -w 2 -k {settings.worker_class}"
    if settings.worker_class == "gthread":
        workers += f" --threads {settings.threads}"
    if _loadgen(settings) == "wrk":
        client = f"wrk -t 1 -c {settings.connections}"
    else:
        client = (
            f"Python http.client, {settings.connections} threads"
            " (wrk not installed: apt-get install wrk)"
        )
    return (
        f"{workers}; {client}; {settings.rounds} rounds x {settings.duration:g} s"
        " per server"
    )


def _median(runs: list[RunResult], attribute: str) -> float:
    return float(statistics.median(getattr(r, attribute) for r in runs))


def _latency(runs: list[RunResult]) -> str:
    return (
        f"p50 {_median(runs, 'p50') * 1e3:.2f} ms,"
        f" p99 {_median(runs, 'p99') * 1e3:.2f} ms"
    )


def _paired(ours: list[RunResult], floor: list[RunResult]) -> float:
    return statistics.median(a.rate / b.rate for a, b in zip(ours, floor, strict=True))


def _judged(
    key: str,
    what: str,
    results: dict[str, list[RunResult]],
    ours: str,
    floor: str,
    target: Target,
    reason: str,
) -> Row:
    if ours not in results:
        return Row("3", what, target=target, key=key, unmeasured=reason)
    mine, theirs = results[ours], results[floor]
    note = f"ours {_latency(mine)}; floor {_latency(theirs)}"
    repeated = sum(r.repeated for r in mine + theirs)
    if repeated:
        note += f"; {repeated} requests reused an id (pool too small)"
    return Row(
        "3",
        what,
        f"{_median(mine, 'rate'):,.0f} req/s",
        ratio=_paired(mine, theirs),
        ratio_label="× floor",
        target=target,
        floor=f"{_median(theirs, 'rate'):,.0f} req/s",
        key=key,
        note=note,
        data={
            "rate_median": _median(mine, "rate"),
            "floor_rate_median": _median(theirs, "rate"),
            "p50_median_seconds": _median(mine, "p50"),
            "p99_median_seconds": _median(mine, "p99"),
            "floor_p99_median_seconds": _median(theirs, "p99"),
            "repeated_ids": repeated,
        },
    )


def _rows(
    results: dict[str, list[RunResult]], reasons: dict[str, str], loadgen: str
) -> list[Row]:
    memory = _judged(
        "e2e-memory",
        f"end to end, gunicorn + {loadgen}, memory store, floor = bare route",
        results,
        "ours:memory",
        "bare",
        MEMORY_VS_BARE,
        "",
    )
    if memory.ratio is not None:
        memory.note = (
            f"{_paired(results['ours:memory'], results['floor:memory']):.2f}"
            f" × the minimal floor route; {memory.note}; one memory store per worker"
        )
    rows = [memory]
    for name, title in BACKENDS.items():
        rows.append(
            _judged(
                f"e2e-{name}",
                f"end to end, gunicorn + {loadgen}, {title} store, floor = its"
                " store floor",
                results,
                f"ours:{name}",
                f"floor:{name}",
                STORE_VS_FLOOR,
                reasons.get(name, ""),
            )
        )
    for name, runs in results.items():
        rows.append(
            Row(
                "3",
                f"gunicorn + {loadgen}: {name}",
                f"{_median(runs, 'rate'):,.0f} req/s",
                note=_latency(runs),
                data={"rate_median": _median(runs, "rate")},
            )
        )
    return rows
