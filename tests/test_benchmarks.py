"""The benchmark runs and prints every figure of the speed budget with its
floor, and the floors do the work they stand for. No timing is asserted:
the numbers belong to README.rst, not to pass/fail."""

from __future__ import annotations

import contextlib
import json
import pathlib
import subprocess
import sys
import tempfile
import typing as t

import pytest

from benchmarks import deliveries
from benchmarks.apps import call_wsgi
from benchmarks.apps import floor_app
from benchmarks.apps import receiver
from benchmarks.floors import make_floor
from benchmarks.harness import BUDGET_ORDER
from benchmarks.inprocess import environ
from benchmarks.services import places
from flask_openai_webhooks import BatchCompletedWebhookEvent
from flask_openai_webhooks import parse_event
from tests.services import require_port
from tests.services import require_redis

ROOT = pathlib.Path(__file__).parent.parent
BACKENDS = ("sqlite", "redis", "postgresql", "mariadb")


def require(backend: str) -> None:
    """Skip locally, fail under CI=true, when ``backend``'s server is down."""
    if backend == "redis":
        require_redis()
    elif backend == "postgresql":
        require_port("PostgreSQL", 5432)
    elif backend == "mariadb":
        require_port("MariaDB", 3306)


def run_benchmarks(tmp_path: pathlib.Path, *args: str) -> tuple[str, dict[str, t.Any]]:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document: dict[str, t.Any] = json.loads(out.read_text())
    return result.stdout, document


def test_quick_run_prints_every_figure_with_its_floor(tmp_path: pathlib.Path) -> None:
    for backend in BACKENDS:
        require(backend)
    table, document = run_benchmarks(
        tmp_path, "--sections", "1,2,4", "--memory-deliveries", "2000"
    )
    budget = {row["key"]: row for row in document["budget"]}
    # Every figure of the budget is printed, in the budget's order.
    assert [row["key"] for row in document["budget"]] == list(BUDGET_ORDER)
    for row in document["budget"]:
        assert row["what"] in table
        assert row["target"] is not None
    # The sections that ran measured every figure against its floor.
    measured = [
        "verify-blueprint",
        "verify-public",
        "verify-sdk",
        "inprocess-memory",
        *(f"inprocess-{backend}" for backend in BACKENDS),
        "observability",
        "memory-bounded",
    ]
    for key in measured:
        row = budget[key]
        assert row["ratio"] is not None and row["ratio"] > 0, row
        assert row["floor"], row
        assert row["result"] in ("PASS", "MISS"), row
    # Sections 3 and 5 did not run, and say so rather than passing.
    for key in (*(f"e2e-{b}" for b in ("memory", *BACKENDS)), "celery-handoff"):
        assert budget[key]["result"] == "n/a"
        assert budget[key]["unmeasured"] == "off (--sections)"
    header = next(line for line in table.splitlines() if line.startswith("#  "))
    assert header.split() == [
        "#",
        "figure",
        "ours",
        "floor",
        "ratio",
        "target",
        "result",
        "notes",
    ]
    assert "targets:" in table


def test_quick_run_end_to_end(tmp_path: pathlib.Path) -> None:
    table, document = run_benchmarks(
        tmp_path,
        "--sections",
        "3",
        "--no-redis",
        "--no-postgresql",
        "--no-mariadb",
        "--e2e-duration",
        "1",
    )
    budget = {row["key"]: row for row in document["budget"]}
    for key in ("e2e-memory", "e2e-sqlite"):
        assert budget[key]["ratio"] is not None, budget[key]
        assert "p99" in budget[key]["note"]
    assert budget["e2e-redis"]["unmeasured"] == "off (--no-redis)"
    # Every request was a distinct delivery, recorded as processed.
    stored = document["raw"]["e2e"]["records_processed"]["sqlite"]
    assert stored["ours:sqlite"] > 0 and stored["floor:sqlite"] > 0


@pytest.mark.parametrize("backend", ("memory", *BACKENDS))
def test_floor_records_once_and_answers_duplicates(backend: str) -> None:
    require(backend)
    body = deliveries.make_body(deliveries.KNOWN)
    event = parse_event(body)
    assert isinstance(event, BatchCompletedWebhookEvent)
    with contextlib.ExitStack() as stack:
        target = ""
        if backend != "memory":
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            found, skipped = stack.enter_context(places([backend], tmp))
            assert backend in found, skipped
            target = found[backend].target
        floor = make_floor(backend, target)
        floor.create()
        try:
            # The claim write tells a new webhook-id from one seen before.
            assert floor.claim("wh_a", event, body, 1.0)
            assert not floor.claim("wh_a", event, body, 2.0)
            floor.finish("wh_a", "processed", 200)

            # Through the floor route: the receiver runs once per id, the
            # retry is answered like the blueprint answers it.
            app = floor_app(floor)
            statuses: list[str] = []
            bodies: list[bytes] = []

            def start_response(status: str, headers: t.Any, exc: t.Any = None) -> t.Any:
                statuses.append(status)

            delivery = deliveries.sign(body)
            before = receiver.calls
            for _ in range(2):
                response = app(environ(delivery), start_response)
                bodies.append(b"".join(response))
                getattr(response, "close", lambda: None)()
            assert receiver.calls == before + 1
            assert statuses == ["200 OK", "200 OK"]
            assert [json.loads(b)["status"] for b in bodies] == [
                "processed",
                "duplicate",
            ]
            # A forged delivery is refused before any write.
            forged = deliveries.Delivery(
                body, {**delivery.headers, "webhook-signature": "v1,AAAA"}
            )
            call_wsgi(app, environ(forged), start_response)
            assert statuses[-1] == "400 BAD REQUEST"
            assert floor.records() == 2
        finally:
            floor.close()
