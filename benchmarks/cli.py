"""The command line: ``python -m benchmarks [options]`` (``make bench``).

Runs the sections in order, then prints the machine, the settings and two
tables: the speed budget (every figure with its floor, ratio, target and
PASS or MISS) and the details behind it. Every ratio is between cases
measured in the same run, interleaved; see :mod:`benchmarks.harness` for
why. ``--check`` exits with status 1 when a figure misses its target or
could not be measured (a server down, a feature missing), unless an option
turned it off.
"""

from __future__ import annotations

import argparse
import collections.abc as c
import dataclasses
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import typing as t

from . import e2e
from . import inprocess
from . import memory
from . import verify_parse
from .harness import budget_rows
from .harness import format_budget
from .harness import format_table
from .harness import Row
from .harness import Target
from .services import BACKENDS
from .services import MARIADB_SERVER
from .services import POSTGRES_SERVER
from .services import REDIS_URL

#: The target of the Celery row, measured by :mod:`benchmarks.celery_handoff`.
CELERY_VS_FLOOR = Target(
    "Celery hand-off in the request / minimal route + the same apply_async",
    "<=",
    1.3,
)

#: The sections, by number.
SECTIONS = {
    "1": "verify + parse",
    "2": "in-process WSGI",
    "3": "end to end (gunicorn)",
    "4": "memory",
    "5": "Celery hand-off",
}


@dataclasses.dataclass
class Plan:
    """How much of each section to run."""

    verify_rounds: int
    verify_batch_seconds: float
    inprocess_rounds: int
    inprocess_ops: int
    #: Deliveries per batch for each shared store (and its floor): fewer
    #: for the SQL servers, whose commits wait for the disk.
    store_ops: dict[str, int]
    memory_deliveries: int
    memory_checkpoints: tuple[int, ...]
    #: The memory store's ``max_entries``; ``None`` for its default.
    memory_max_entries: int | None
    e2e: e2e.Settings


NORMAL = Plan(
    verify_rounds=15,
    verify_batch_seconds=0.02,
    inprocess_rounds=15,
    inprocess_ops=300,
    store_ops={"sqlite": 300, "redis": 300, "postgresql": 60, "mariadb": 60},
    memory_deliveries=100_000,
    memory_checkpoints=(10_000, 50_000),
    memory_max_entries=None,
    # Five short rounds rather than three long ones: a round in which
    # another job took the CPU is then one of five, and the median drops it.
    e2e=e2e.Settings(duration=3.0, rounds=5),
)

QUICK = Plan(
    verify_rounds=3,
    verify_batch_seconds=0.004,
    inprocess_rounds=3,
    inprocess_ops=100,
    store_ops={"sqlite": 100, "redis": 100, "postgresql": 20, "mariadb": 20},
    memory_deliveries=5_000,
    memory_checkpoints=(1_000, 2_500),
    memory_max_entries=1_000,
    e2e=e2e.Settings(duration=2.0, rounds=1),
)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _tool_version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "unknown"


def _redis_server_version() -> str:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
        try:
            info = client.info("server")
        finally:
            client.close()
        return str(info.get("redis_version", "unknown"))
    except Exception:
        return "not reachable"


def _sql_server_version(url: str) -> str:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as conn:
                text = str(conn.execute(sa.text("SELECT version()")).scalar_one())
        finally:
            engine.dispose()
    except Exception:
        return "not reachable"
    # "PostgreSQL 15.2 (Debian ...) on x86_64..." / "10.11.6-MariaDB-0+deb12u1"
    words = text.split()
    return words[1] if words[0] == "PostgreSQL" else text.split("-")[0]


def machine() -> dict[str, t.Any]:
    """What the numbers were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average": os.getloadavg(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {
            name: _version(name)
            for name in (
                "flask",
                "werkzeug",
                "pydantic",
                "pydantic-core",
                "blinker",
                "openai",
                "standardwebhooks",
                "svix",
                "redis",
                "sqlalchemy",
                "psycopg",
                "pymysql",
                "prometheus-client",
                "opentelemetry-sdk",
                "celery",
                "gunicorn",
            )
        },
        "sqlite": sqlite3.sqlite_version,
        "redis_server": _redis_server_version(),
        "postgresql": _sql_server_version(POSTGRES_SERVER),
        "mariadb": _sql_server_version(MARIADB_SERVER),
        "wrk": _tool_version(["wrk", "--version"]).split(" [")[0].removeprefix("wrk "),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Benchmark Flask-OpenAI-Webhooks against floors measured side by"
            " side, and print the speed budget: every figure with its floor,"
            " ratio, target and result."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke run with few rounds (numbers are rough)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if a target is missed or not measured",
    )
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--sections",
        default="1,2,3,4,5",
        help="the sections to run, comma-separated: "
        + ", ".join(f"{k} {v}" for k, v in SECTIONS.items())
        + " (default: all)",
    )
    parser.add_argument(
        "--e2e",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run section 3, gunicorn end to end (default: on if gunicorn is"
        " installed)",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run section 4, RSS over many deliveries",
    )
    for backend, title in BACKENDS.items():
        if backend != "sqlite":
            parser.add_argument(
                f"--{backend}",
                action=argparse.BooleanOptionalAction,
                default=True,
                help=f"include the {title} store (on loopback)",
            )
    parser.add_argument("--rounds", type=int, help="rounds of sections 1 and 2")
    parser.add_argument(
        "--ops", type=int, help="deliveries per case and round in section 2"
    )
    parser.add_argument(
        "--e2e-duration", type=float, help="seconds per load-generator run"
    )
    parser.add_argument("--e2e-rounds", type=int, help="runs per server")
    parser.add_argument(
        "--e2e-connections", type=int, help="concurrent keep-alive connections"
    )
    parser.add_argument(
        "--e2e-worker-class",
        choices=("gthread", "sync"),
        help="gunicorn worker class (default gthread)",
    )
    parser.add_argument(
        "--e2e-threads", type=int, help="threads per gthread worker (default 2)"
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator of section 3 (auto: wrk if installed)",
    )
    parser.add_argument("--memory-deliveries", type=int, help="deliveries of section 4")
    return parser


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else NORMAL
    settings = dataclasses.replace(
        plan.e2e,
        loadgen=args.loadgen,
        duration=args.e2e_duration or plan.e2e.duration,
        rounds=args.e2e_rounds or plan.e2e.rounds,
        connections=args.e2e_connections or plan.e2e.connections,
        worker_class=args.e2e_worker_class or plan.e2e.worker_class,
        threads=args.e2e_threads or plan.e2e.threads,
    )
    deliveries = args.memory_deliveries or plan.memory_deliveries
    store_ops = plan.store_ops
    if args.ops:
        # The SQL servers keep their share of the process-local ops.
        store_ops = {
            k: max(1, v * args.ops // plan.inprocess_ops) for k, v in store_ops.items()
        }
    return dataclasses.replace(
        plan,
        verify_rounds=args.rounds or plan.verify_rounds,
        inprocess_rounds=args.rounds or plan.inprocess_rounds,
        inprocess_ops=args.ops or plan.inprocess_ops,
        store_ops=store_ops,
        memory_deliveries=deliveries,
        memory_checkpoints=tuple(c for c in plan.memory_checkpoints if c < deliveries),
        e2e=settings,
    )


def _header(
    command: str,
    info: dict[str, t.Any],
    plan: Plan,
    sections: c.Collection[str],
    seconds: float,
) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    load = " ".join(f"{x:.2f}" for x in info["load_average"])
    memory_size = (
        "a default MemoryStore"
        if plan.memory_max_entries is None
        else f"MemoryStore(max_entries={plan.memory_max_entries:,})"
    )
    lines = [
        "Flask-OpenAI-Webhooks speed budget",
        f"command:  {command}",
        f"machine:  {info['cpu']}, {info['cores']} cores ({info['usable_cores']}"
        f" usable), {info['os']}, load average at the end {load}",
        f"python:   {info['python']}; {versions}",
        f"servers:  SQLite {info['sqlite']}, Redis {info['redis_server']},"
        f" PostgreSQL {info['postgresql']}, MariaDB {info['mariadb']},"
        f" wrk {info['wrk']}",
        "method:   interleaved rounds, medians; ratios are medians of per-round"
        f" ratios. Sections 1-2: {plan.verify_rounds}/{plan.inprocess_rounds}"
        f" rounds; section 2: {plan.inprocess_ops} fresh deliveries per case and"
        " round ("
        + ", ".join(f"{BACKENDS[k]} {v}" for k, v in plan.store_ops.items())
        + ").",
        "floors:   verify + parse: hmac.digest + base64 + compare_digest +"
        " TypeAdapter(the one model).validate_json. Memory store: a minimal"
        " Flask route (read the body, check timestamp and HMAC, validate the"
        " one model, dict-and-lock dedup, call the receiver, same JSON answer)."
        " Shared stores: that route + INSERT/SET-NX claim carrying the ids and"
        " body + UPDATE/APPEND finish carrying the outcome, autocommit, raw"
        " driver. Metrics and traces: the same blueprint with them off.",
    ]
    if "1" in sections:
        lines.append(
            "section 1: verify + parse of one signed delivery (headers in a dict)"
        )
    if "2" in sections:
        lines.append(
            "section 2: app(environ, start_response), one receiver on"
            " batch_completed, fresh webhook-id per delivery"
        )
    if "3" in sections:
        lines.append(f"section 3: {e2e.describe(plan.e2e)}; every request unique")
    if "4" in sections:
        lines.append(
            f"section 4: subprocess, {plan.memory_deliveries:,} deliveries through"
            f" the blueprint with {memory_size}"
        )
    if "5" in sections:
        lines.append(
            "section 5: Celery hand-off, measured by benchmarks/celery_handoff.py"
        )
    lines.append(f"took:     {seconds:.0f} s")
    return "\n".join(lines)


def _celery(plan: Plan) -> tuple[list[Row], dict[str, t.Any]]:
    """Section 5, measured by :mod:`benchmarks.celery_handoff` when it
    exists.

    The hook: that module's ``run(*, rounds, ops)`` returns ``(rows, raw)``
    like the other sections, its judged row with :data:`CELERY_VS_FLOOR`
    as its target.
    """
    name = f"{__package__}.celery_handoff"
    if importlib.util.find_spec(name) is None:
        return [
            Row(
                "5",
                "Celery hand-off in the request, floor = minimal route + the same"
                " apply_async",
                target=CELERY_VS_FLOOR,
                key="celery-handoff",
                unmeasured="benchmarks/celery_handoff.py is not there yet",
            )
        ], {}
    celery_handoff = importlib.import_module(name)
    rows: list[Row]
    raw: dict[str, t.Any]
    rows, raw = celery_handoff.run(rounds=plan.inprocess_rounds, ops=plan.inprocess_ops)
    for row in rows:
        if row.target is not None and not row.key:
            row.key = "celery-handoff"
    return rows, raw


def _figures() -> dict[str, tuple[str, str, Target]]:
    """Every budget figure by key: its section, title and target, for the
    rows of sections that did not run."""
    figures = {
        "verify-blueprint": (
            "1",
            "verify + parse, blueprint path",
            verify_parse.BLUEPRINT_VS_FLOOR,
        ),
        "verify-public": (
            "1",
            "verify + parse, public functional API",
            verify_parse.PUBLIC_VS_FLOOR,
        ),
        "verify-sdk": (
            "1",
            "SDK webhooks.unwrap, floor = ours",
            verify_parse.SDK_VS_OURS,
        ),
        "inprocess-memory": (
            "2",
            "one delivery in-process, memory store",
            inprocess.MEMORY_VS_FLOOR,
        ),
    }
    for backend, title in BACKENDS.items():
        figures[f"inprocess-{backend}"] = (
            "2",
            f"one delivery in-process, {title} store, log included",
            inprocess.STORE_VS_FLOOR,
        )
    figures["e2e-memory"] = ("3", "end to end, memory store", e2e.MEMORY_VS_BARE)
    for backend, title in BACKENDS.items():
        figures[f"e2e-{backend}"] = (
            "3",
            f"end to end, {title} store",
            e2e.STORE_VS_FLOOR,
        )
    figures["celery-handoff"] = ("5", "Celery hand-off in the request", CELERY_VS_FLOOR)
    figures["observability"] = ("2", "metrics and traces on", inprocess.OBSERVED_VS_OFF)
    figures["memory-bounded"] = (
        "4",
        "memory store after many deliveries",
        memory.BOUNDED,
    )
    return figures


def _not_run(section: str, why: str) -> list[Row]:
    """The budget rows of a section that did not run, saying why."""
    return [
        Row(number, title, target=target, key=key, unmeasured=why)
        for key, (number, title, target) in _figures().items()
        if number == section
    ]


def main(argv: t.Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = _plan(args)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        _parser().error(f"no section {', '.join(sorted(unknown))}")
    # Why each section that will not run does not: "off (...)" when an
    # option turned it off, else the reason it cannot be measured.
    skipped = {
        number: "off (--sections)" for number in SECTIONS if number not in sections
    }
    if "3" in sections and args.e2e is False:
        skipped["3"] = "off (--no-e2e)"
    elif "3" in sections and importlib.util.find_spec("gunicorn") is None:
        # gunicorn runs as ``sys.executable -m gunicorn``: importable is enough.
        skipped["3"] = (
            "off (gunicorn not installed)"
            if args.e2e is None
            else "gunicorn is not installed"
        )
    if "4" in sections and not args.memory:
        skipped["4"] = "off (--no-memory)"
    sections -= set(skipped)
    off = {
        backend: f"--no-{backend}"
        for backend in BACKENDS
        if backend != "sqlite" and not getattr(args, backend)
    }
    backends = [b for b in BACKENDS if b not in off]
    command = shlex.join(
        ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]
    )
    started = time.monotonic()
    rows: list[Row] = []
    raw: dict[str, t.Any] = {}

    def step(name: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {name} ...", file=sys.stderr)

    if "1" in sections:
        step("1. verify + parse")
        section, raw["verify_parse"] = verify_parse.run(
            rounds=plan.verify_rounds, batch_seconds=plan.verify_batch_seconds
        )
        rows += section
    if "2" in sections:
        step("2. in-process WSGI")
        section, raw["inprocess"] = inprocess.run(
            rounds=plan.inprocess_rounds,
            ops=plan.inprocess_ops,
            store_ops=plan.store_ops,
            backends=backends,
            off=off,
        )
        rows += section
    if "3" in sections:
        step("3. end to end (gunicorn)")
        section, raw["e2e"] = e2e.run(plan.e2e, backends=backends, off=off)
        rows += section
    if "4" in sections:
        step("4. memory")
        section, raw["memory"] = memory.run(
            plan.memory_deliveries, plan.memory_checkpoints, plan.memory_max_entries
        )
        rows += section
    if "5" in sections:
        step("5. Celery hand-off")
        section, raw["celery"] = _celery(plan)
        rows += section
    for number, why in sorted(skipped.items()):
        rows += _not_run(number, why)

    info = machine()
    seconds = time.monotonic() - started
    budget = budget_rows(rows)
    details = [row for row in rows if row.target is None]
    print(_header(command, info, plan, sections, seconds))
    print()
    print(format_budget(budget))
    print()
    print(format_table(details))
    measured = [row for row in budget if row.result in ("PASS", "MISS")]
    missed = [row for row in measured if row.result == "MISS"]
    unmeasured = [
        row
        for row in budget
        if row.result == "n/a" and not row.unmeasured.startswith("off")
    ]
    print()
    print(
        f"targets: {len(measured) - len(missed)} of {len(measured)} met;"
        f" {len(unmeasured)} could not be measured;"
        f" {len(budget) - len(measured) - len(unmeasured)} turned off"
    )

    if args.json:
        document = {
            "command": command,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "seconds": seconds,
            "machine": info,
            "plan": dataclasses.asdict(plan),
            "budget": [row.as_json() for row in budget],
            "details": [row.as_json() for row in details],
            "targets_met": len(measured) - len(missed),
            "targets_judged": len(measured),
            "targets_unmeasured": len(unmeasured),
            "raw": raw,
        }
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
    return 1 if args.check and (missed or unmeasured) else 0
