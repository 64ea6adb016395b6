"""A receiver runs once per delivery under real gunicorn servers.

Each test starts ``gunicorn 'tests.gunicorn_app:create_app()'`` (2 worker
processes x 4 threads) and fires signed deliveries at it over HTTP, all at
once. The receiver of ``tests/gunicorn_app.py`` inserts one row per run into
an SQLite file; those rows are the side effects counted here. The delivery
log, read back from the shared store, must tell the same story as the
answers: every arrival counted, one success recorded.

The app module is never imported by these tests: it connects a receiver to
``batch_completed``, which must not leak into the other tests' apps.
"""

from __future__ import annotations

import collections
import collections.abc as c
import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import os
import pathlib
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import typing as t

import pytest

from flask_openai_webhooks.stores import DeliveryRecord
from flask_openai_webhooks.stores import DeliveryStore
from flask_openai_webhooks.testing import encode_body
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import new_webhook_id
from flask_openai_webhooks.testing import signed_headers

from .conftest import SECRET
from .services import fresh_database

ROOT = pathlib.Path(__file__).resolve().parent.parent
APP = "tests.gunicorn_app:create_app()"
PATH = "/webhooks/openai"
HOST = "127.0.0.1"
#: The same schema as ``tests/gunicorn_app.py``, which is not imported here.
SIDE_EFFECTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS side_effects"
    " (webhook_id TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL)"
)
#: Every answer a delivery may get while duplicates race.
RACE_OUTCOMES = {(200, "processed"), (200, "duplicate"), (409, "in_flight")}
#: The key the log records the receiver of ``tests/gunicorn_app.py`` under.
RECEIVER_KEY = "batch.completed:tests.gunicorn_app.record_side_effect"
STARTUP_TIMEOUT = 30.0
WORKERS = 2
#: The lease of the crash test. A restart takes up to about 1 s here, all
#: of it inside the lease, which must still hold after it: 3 s leaves room
#: for a loaded machine.
CRASH_LEASE = 6.0
#: Races of a one-server test, at most, until both workers took part.
ROUNDS = 5

StoreKind = t.Literal["sqlite", "redis", "postgresql", "mariadb"]
#: The stores several processes or machines can share.
SHARED_STORES: list[StoreKind] = ["sqlite", "redis", "postgresql", "mariadb"]


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _live_members(pgid: int) -> list[int]:
    """The processes of a process group that are not zombies. Zombies have
    run their last instruction; only their parent's ``wait`` is missing.
    Empty where ``/proc`` does not exist."""
    members = []
    for entry in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


@dataclasses.dataclass
class Server:
    """One gunicorn master and its workers, in a process group of their own
    whose id is the master's pid."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: pathlib.Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def answered_by(self, method: str) -> collections.Counter[str]:
        """How many requests of a method each worker answered so far, by
        worker pid, from the access log."""
        counts: collections.Counter[str] = collections.Counter()
        for line in self.log().splitlines():
            fields = line.split()
            if len(fields) == 4 and fields[0] == "ACCESS" and fields[2] == method:
                counts[fields[1]] += 1
        return counts

    def wait_ready(self, workers: int) -> bool:
        """Wait until this many workers have answered HTTP: the port answers
        as soon as one worker is up, and a race that only one worker sees
        proves nothing about processes. False if gunicorn exited."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
            except OSError:
                time.sleep(0.05)
                continue
            finally:
                conn.close()
            if len(self.answered_by("GET")) >= workers:
                return True
            time.sleep(0.01)
        self.stop(signal.SIGKILL)
        pytest.fail(f"gunicorn was not ready in {STARTUP_TIMEOUT} s:\n{self.log()}")

    def stop(self, sig: int) -> None:
        """Send ``sig`` to the master and every worker at once, and wait for
        them; SIGKILL whatever is left after 10 s."""
        pgid = self.proc.pid
        # While the master is not reaped its pid, hence the group id, cannot
        # be reused, so the signal cannot reach a stranger.
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (left := _live_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not left, f"gunicorn processes {left} survived {sig!r}"


class Servers:
    """Starts gunicorn servers and stops every one of them at teardown."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Server] = []

    def start(self, env: c.Mapping[str, str], *, ready: int = WORKERS) -> Server:
        """Start a server on a free port with these extra environment
        variables and wait until ``ready`` of its workers answer."""
        full_env = {
            k: v
            for k, v in os.environ.items()
            if k != "GUNICORN_CMD_ARGS" and not k.startswith("OPENAI_WEBHOOK_")
        }
        full_env.update(env)
        # A port found free can be taken before gunicorn binds it: retry.
        for _ in range(3):
            port = _free_port()
            log_path = self.tmp_path / f"gunicorn-{len(self.started)}-{port}.log"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "--bind",
                        f"{HOST}:{port}",
                        "--workers",
                        str(WORKERS),
                        "--threads",
                        "4",
                        "--graceful-timeout",
                        "5",
                        "--no-control-socket",
                        "--access-logfile",
                        "-",
                        "--access-logformat",
                        "ACCESS %(p)s %(m)s %(s)s",
                        APP,
                    ],
                    cwd=ROOT,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            server = Server(proc, port, log_path)
            self.started.append(server)
            if server.wait_ready(ready):
                return server
            server.stop(signal.SIGKILL)
            if "Address already in use" not in server.log():
                break
        pytest.fail(f"gunicorn did not start:\n{server.log()}")

    def stop_all(self) -> None:
        errors = []
        for server in self.started:
            try:
                server.stop(signal.SIGTERM)
            except (AssertionError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{server.log_path.name}: {exc}")
            # Shown by pytest only when the test fails.
            print(f"--- {server.log_path.name} ---\n{server.log()}")
        assert not errors, "could not stop gunicorn: " + "; ".join(errors)


@pytest.fixture
def resources() -> c.Iterator[contextlib.ExitStack]:
    """Released after the servers are stopped (``servers`` depends on it),
    so a test database is never dropped under a running worker."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def servers(
    tmp_path: pathlib.Path, resources: contextlib.ExitStack
) -> c.Iterator[Servers]:
    pool = Servers(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def side_effects_db(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "side_effects.db"
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(SIDE_EFFECTS_SCHEMA)
    finally:
        conn.close()
    return path


def side_effects(path: pathlib.Path) -> collections.Counter[str]:
    """How many times the receiver's side effect ran, by ``webhook-id``."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows = conn.execute("SELECT webhook_id FROM side_effects").fetchall()
    finally:
        conn.close()
    return collections.Counter(row[0] for row in rows)


def store_env(
    kind: StoreKind, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> dict[str, str]:
    """The environment selecting a store shared by every server of a test.
    Redis, PostgreSQL and MariaDB go through the fixtures and helpers of
    ``conftest`` and ``services``: skipped locally when the service is
    down, a failure under ``CI=true``; the keys or the database are
    deleted afterwards."""
    if kind == "sqlite":
        return {"OPENAI_WEBHOOK_STORE": f"sqlite:///{tmp_path / 'store.db'}"}
    if kind == "redis":
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")
        return {"OPENAI_WEBHOOK_STORE": url, "REDIS_PREFIX": prefix}
    stack: contextlib.ExitStack = request.getfixturevalue("resources")
    url = stack.enter_context(fresh_database(kind))
    # Create the tables before the workers start, as a deployment's
    # migration would, so the test is about deliveries only.
    with open_store(kind, {"OPENAI_WEBHOOK_STORE": url}) as store:
        store.ping()
    return {"OPENAI_WEBHOOK_STORE": url}


@contextlib.contextmanager
def open_store(kind: StoreKind, env: c.Mapping[str, str]) -> c.Iterator[DeliveryStore]:
    """The store the servers of a test share, opened from this process to
    read the delivery log; closed afterwards."""
    url = env["OPENAI_WEBHOOK_STORE"]
    store: t.Any
    if kind == "sqlite":
        from flask_openai_webhooks.stores.sqlite import SQLiteStore

        store = SQLiteStore(url[len("sqlite:///") :])
    elif kind == "redis":
        from flask_openai_webhooks.stores.redis import RedisStore

        store = RedisStore(url, prefix=env["REDIS_PREFIX"])
    else:
        from flask_openai_webhooks.stores.sql import SQLStore

        store = SQLStore(url)
    try:
        yield store
    finally:
        store.close()


def logged(
    kind: StoreKind, env: c.Mapping[str, str], webhook_id: str
) -> DeliveryRecord:
    with open_store(kind, env) as store:
        record = store.get(webhook_id)
    assert record is not None, webhook_id
    return record


def assert_logged_as_answered(
    record: DeliveryRecord, answers: c.Sequence[Answer]
) -> None:
    """The log counted every arrival, and its timeline holds one entry per
    answer, whichever process gave it; the receiver succeeded once."""
    assert record.status == "processed"
    assert record.attempts == len(answers)
    assert collections.Counter(
        (entry.status_code, entry.result) for entry in record.history
    ) == collections.Counter(answer.outcome for answer in answers)
    assert [(r.key, r.outcome, r.attempts) for r in record.receivers] == [
        (RECEIVER_KEY, "ok", 1)
    ]


def app_env(
    store: c.Mapping[str, str], side_effects_db: pathlib.Path, **extra: str
) -> dict[str, str]:
    return {
        "OPENAI_WEBHOOK_SECRET": SECRET,
        "SIDE_EFFECTS_DB": str(side_effects_db),
        **store,
        **extra,
    }


# --------------------------------------------------------------------------
# Deliveries
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One signed delivery; sending the same object again is a retry."""

    webhook_id: str
    body: bytes
    headers: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    payload: dict[str, t.Any]

    @property
    def outcome(self) -> tuple[int, str]:
        return self.status, str(self.payload.get("status") or self.payload.get("error"))


def delivery(webhook_id: str | None = None) -> Delivery:
    webhook_id = webhook_id or new_webhook_id()
    body = encode_body(make_event("batch.completed"))
    return Delivery(
        webhook_id, body, signed_headers(body, SECRET, webhook_id=webhook_id)
    )


def _request(conn: http.client.HTTPConnection, item: Delivery) -> Answer:
    try:
        conn.request(
            "POST",
            PATH,
            body=item.body,
            headers={**item.headers, "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        payload = json.loads(data)
    except ValueError:
        # Not an answer of the blueprint (every one is JSON): say what came.
        raise AssertionError(
            f"{response.status} {response.reason}, not JSON: {data[:500]!r}"
        ) from None
    return Answer(response.status, payload)


def post(port: int, item: Delivery) -> Answer:
    return _request(http.client.HTTPConnection(HOST, port, timeout=30), item)


def fire(sends: c.Sequence[tuple[int, Delivery]]) -> list[Answer]:
    """Send every ``(port, delivery)`` from its own thread, all released at
    once by a barrier once every connection is open."""
    barrier = threading.Barrier(len(sends))

    def send(port: int, item: Delivery) -> Answer:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.connect()
            barrier.wait(timeout=30)
        except BaseException:
            barrier.abort()
            conn.close()
            raise
        return _request(conn, item)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(sends)) as pool:
        futures = [pool.submit(send, port, item) for port, item in sends]
        return [future.result() for future in futures]


def assert_processed_once(answers: c.Sequence[Answer]) -> None:
    outcomes = collections.Counter(answer.outcome for answer in answers)
    assert set(outcomes) <= RACE_OUTCOMES, outcomes
    assert outcomes[(200, "processed")] == 1, outcomes


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_sqlite_concurrent_duplicates_run_once(
    tmp_path: pathlib.Path,
    request: pytest.FixtureRequest,
    servers: Servers,
    side_effects_db: pathlib.Path,
) -> None:
    """24 copies of one delivery at once, 2 workers x 4 threads sharing an
    SQLite store: one runs the receiver, the others see it in flight or
    done.

    Which worker accepts a connection is up to the kernel, and on a busy
    machine one worker may take all 24; such a round says nothing about
    processes, so another delivery is raced, up to :data:`ROUNDS` times,
    until both workers answered copies of the same delivery."""
    env = app_env(
        store_env("sqlite", tmp_path, request), side_effects_db, RECEIVER_DELAY="0.5"
    )
    server = servers.start(env)
    expected: dict[str, int] = {}
    workers_in_round: list[int] = []
    for _ in range(ROUNDS):
        item = delivery()
        before = server.answered_by("POST")

        answers = fire([(server.port, item)] * 24)

        workers_in_round.append(len(server.answered_by("POST") - before))
        assert_processed_once(answers)
        # The receiver takes 0.5 s: copies must have overlapped with it.
        assert any(answer.outcome == (409, "in_flight") for answer in answers)
        expected[item.webhook_id] = 1
        assert side_effects(side_effects_db) == expected

        last = post(server.port, item)
        assert last.outcome == (200, "duplicate")
        assert side_effects(side_effects_db) == expected
        record = logged("sqlite", env, item.webhook_id)
        assert_logged_as_answered(record, [*answers, last])

        if workers_in_round[-1] == WORKERS:
            break
    # Copies of one delivery raced in both worker processes.
    assert workers_in_round[-1] == WORKERS, workers_in_round


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", SHARED_STORES)
def test_two_servers_run_once(
    kind: StoreKind,
    tmp_path: pathlib.Path,
    request: pytest.FixtureRequest,
    servers: Servers,
    side_effects_db: pathlib.Path,
) -> None:
    """24 copies of one delivery at once, alternately at two gunicorn
    servers sharing a store, as two machines would."""
    env = app_env(
        store_env(kind, tmp_path, request), side_effects_db, RECEIVER_DELAY="0.5"
    )
    first, second = servers.start(env), servers.start(env)
    item = delivery()

    answers = fire([((first, second)[i % 2].port, item) for i in range(24)])

    assert_processed_once(answers)
    assert any(answer.outcome == (409, "in_flight") for answer in answers)
    assert side_effects(side_effects_db) == {item.webhook_id: 1}

    for server in (first, second):
        answer = post(server.port, item)
        assert answer.outcome == (200, "duplicate")
        answers.append(answer)
    assert side_effects(side_effects_db) == {item.webhook_id: 1}
    assert_logged_as_answered(logged(kind, env, item.webhook_id), answers)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", SHARED_STORES)
def test_distinct_events_each_run_once(
    kind: StoreKind,
    tmp_path: pathlib.Path,
    request: pytest.FixtureRequest,
    servers: Servers,
    side_effects_db: pathlib.Path,
) -> None:
    """20 different deliveries, each sent 3 times, all at once and shuffled
    across two servers: every one runs exactly once, none is lost."""
    env = app_env(
        store_env(kind, tmp_path, request), side_effects_db, RECEIVER_DELAY="0.2"
    )
    ports = [servers.start(env).port, servers.start(env).port]
    items = [delivery() for _ in range(20)]
    sends = [(ports[i % 2], item) for item in items for i in range(3)]
    random.Random(1234).shuffle(sends)

    answers = fire(sends)

    by_id: dict[str, list[Answer]] = collections.defaultdict(list)
    for (_, item), answer in zip(sends, answers, strict=True):
        by_id[item.webhook_id].append(answer)
    for item in items:
        assert_processed_once(by_id[item.webhook_id])
    assert side_effects(side_effects_db) == {item.webhook_id: 1 for item in items}
    with open_store(kind, env) as store:
        for item in items:
            record = store.get(item.webhook_id)
            assert record is not None
            assert_logged_as_answered(record, by_id[item.webhook_id])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", SHARED_STORES)
def test_crashed_worker_lease_expires(
    kind: StoreKind,
    tmp_path: pathlib.Path,
    request: pytest.FixtureRequest,
    servers: Servers,
    side_effects_db: pathlib.Path,
) -> None:
    """The whole server is killed with SIGKILL while a receiver runs. After
    a restart the delivery stays in flight until the dead worker's lease
    expires, then runs exactly once."""
    store = store_env(kind, tmp_path, request)
    pause_file = tmp_path / "pause"
    started_file = tmp_path / "started"
    pause_file.touch()
    crashing = servers.start(
        app_env(
            store,
            side_effects_db,
            OPENAI_WEBHOOK_LEASE=str(CRASH_LEASE),
            PAUSE_FILE=str(pause_file),
            STARTED_FILE=str(started_file),
        )
    )
    item = delivery()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(post, crashing.port, item)
        deadline = time.monotonic() + 20
        while not started_file.exists():
            assert not pending.done(), f"answered before the crash: {pending.result()}"
            assert time.monotonic() < deadline, "the receiver never started"
            time.sleep(0.01)
        # The claim was taken before the receiver started, so its lease
        # ends before this plus the lease.
        started_at = time.monotonic()
        assert started_file.read_text().split()[0] == item.webhook_id

        crashing.stop(signal.SIGKILL)

        error = pending.exception(timeout=10)
    assert isinstance(error, (OSError, http.client.HTTPException)), error
    assert side_effects(side_effects_db) == {}
    # The arrival was logged before the receiver ran; nothing settled it.
    record = logged(kind, store, item.webhook_id)
    assert (record.status, record.attempts, record.receivers) == ("processing", 1, ())

    pause_file.unlink()
    # One worker is enough here, and waiting for the second one would eat
    # into the lease.
    restarted = servers.start(
        app_env(store, side_effects_db, OPENAI_WEBHOOK_LEASE=str(CRASH_LEASE)),
        ready=1,
    )

    lease_left = started_at + CRASH_LEASE - time.monotonic()
    answer = post(restarted.port, item)
    if lease_left > 1.0:
        # The dead worker's claim still holds: nothing may run yet.
        assert answer.outcome == (409, "in_flight"), (answer, lease_left)
    # else: a loaded machine restarted slower than the lease, which may
    # legitimately have expired already; exactly-once is still checked.
    if answer.outcome == (409, "in_flight"):
        assert side_effects(side_effects_db) == {}
        time.sleep(max(0.0, started_at + CRASH_LEASE + 0.5 - time.monotonic()))
        answer = post(restarted.port, item)
    assert answer.outcome == (200, "processed")
    assert side_effects(side_effects_db) == {item.webhook_id: 1}
    assert post(restarted.port, item).outcome == (200, "duplicate")
    assert side_effects(side_effects_db) == {item.webhook_id: 1}
    record = logged(kind, store, item.webhook_id)
    assert record.status == "processed"
    # The run killed with the server never recorded a result.
    assert [(r.key, r.outcome, r.attempts) for r in record.receivers] == [
        (RECEIVER_KEY, "ok", 1)
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nab", b"3\r\nabcXX0\r\n\r\n"],
    ids=["bad-size", "truncated", "missing-terminator"],
)
def test_broken_chunked_body_gets_400_not_500(
    tmp_path: pathlib.Path,
    request: pytest.FixtureRequest,
    servers: Servers,
    side_effects_db: pathlib.Path,
    chunks: bytes,
) -> None:
    """gunicorn raises an OSError from wsgi.input for broken chunked
    encoding; that is junk input and must be a 400, never a 500."""
    import socket

    env = app_env(store_env("sqlite", tmp_path, request), side_effects_db)
    server = servers.start(env, ready=1)
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /webhooks/openai HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\n\r\n" + chunks
        )
        if chunks.endswith(b"ab"):
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), reply[:300]
    assert side_effects(side_effects_db) == {}
