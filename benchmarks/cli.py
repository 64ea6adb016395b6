"""The command line: ``python -m benchmarks [options]`` (``make bench``).

Runs the sections in order, then prints the machine, the settings and one
table. Every comparison in the table is a ratio between cases measured in
the same run, interleaved; see :mod:`benchmarks.harness` for why.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
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
from .apps import REDIS_URL
from .harness import format_table
from .harness import Row


@dataclasses.dataclass
class Plan:
    """How much of each section to run."""

    verify_rounds: int
    verify_batch_seconds: float
    inprocess_rounds: int
    inprocess_ops: int
    memory_deliveries: int
    memory_checkpoints: tuple[int, ...]
    e2e: e2e.Settings


NORMAL = Plan(
    verify_rounds=15,
    verify_batch_seconds=0.02,
    inprocess_rounds=15,
    inprocess_ops=300,
    memory_deliveries=100_000,
    memory_checkpoints=(10_000, 50_000),
    e2e=e2e.Settings(duration=5.0, rounds=3),
)

QUICK = Plan(
    verify_rounds=3,
    verify_batch_seconds=0.004,
    inprocess_rounds=3,
    inprocess_ops=100,
    memory_deliveries=20_000,
    memory_checkpoints=(2_000, 10_000),
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
                "gunicorn",
            )
        },
        "sqlite": sqlite3.sqlite_version,
        "redis_server": _redis_server_version(),
        "wrk": _tool_version(["wrk", "--version"]).split(" [")[0].removeprefix("wrk "),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Benchmark Flask-OpenAI-Webhooks against its floor, the other"
            " libraries and a bare Flask route, and print one table of ratios."
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
        help="exit with status 1 if a target is missed",
    )
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--e2e",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run section 3, gunicorn end to end (default: on if gunicorn is"
        " installed)",
    )
    parser.add_argument(
        "--redis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the Redis store (skipped anyway if Redis is unreachable)",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run section 4, RSS over many deliveries",
    )
    parser.add_argument("--rounds", type=int, help="rounds of sections 1 and 2")
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
        redis=args.redis,
        loadgen=args.loadgen,
        duration=args.e2e_duration or plan.e2e.duration,
        rounds=args.e2e_rounds or plan.e2e.rounds,
        connections=args.e2e_connections or plan.e2e.connections,
        worker_class=args.e2e_worker_class or plan.e2e.worker_class,
        threads=args.e2e_threads or plan.e2e.threads,
    )
    deliveries = args.memory_deliveries or plan.memory_deliveries
    return dataclasses.replace(
        plan,
        verify_rounds=args.rounds or plan.verify_rounds,
        inprocess_rounds=args.rounds or plan.inprocess_rounds,
        memory_deliveries=deliveries,
        memory_checkpoints=tuple(c for c in plan.memory_checkpoints if c < deliveries),
        e2e=settings,
    )


def _header(
    command: str, info: dict[str, t.Any], plan: Plan, run_e2e: bool, seconds: float
) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    load = " ".join(f"{x:.2f}" for x in info["load_average"])
    lines = [
        "Flask-OpenAI-Webhooks benchmarks",
        f"command:  {command}",
        f"machine:  {info['cpu']}, {info['cores']} cores ({info['usable_cores']}"
        f" usable), {info['os']}, load average at the end {load}",
        f"python:   {info['python']}; {versions}",
        f"servers:  SQLite {info['sqlite']}, Redis {info['redis_server']},"
        f" wrk {info['wrk']}",
        f"method:   interleaved rounds, medians; ratios are medians of per-round"
        f" ratios. Sections 1-2: {plan.verify_rounds}/{plan.inprocess_rounds}"
        f" rounds, {plan.inprocess_ops} fresh deliveries per case and round in"
        " section 2.",
        "section 1: verify + parse of one signed delivery (headers in a dict);"
        " floor = hmac.digest + base64 + compare_digest + TypeAdapter(the"
        " model).validate_json",
        "section 2: app(environ, start_response), one receiver on"
        " batch_completed, fresh webhook-id per delivery",
    ]
    if run_e2e:
        lines.append(f"section 3: {e2e.describe(plan.e2e)}; every request unique")
    lines.append(
        f"section 4: subprocess, {plan.memory_deliveries:,} deliveries through"
        " the blueprint with a default MemoryStore"
    )
    lines.append(f"took:     {seconds:.0f} s")
    return "\n".join(lines)


def main(argv: t.Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = _plan(args)
    run_e2e = args.e2e
    if run_e2e is None:
        # gunicorn runs as ``sys.executable -m gunicorn``: importable is enough.
        run_e2e = importlib.util.find_spec("gunicorn") is not None
    command = shlex.join(
        ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]
    )
    started = time.monotonic()
    rows: list[Row] = []
    raw: dict[str, t.Any] = {}

    def step(name: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {name} ...", file=sys.stderr)

    step("1. verify + parse")
    section, raw["verify_parse"] = verify_parse.run(
        rounds=plan.verify_rounds, batch_seconds=plan.verify_batch_seconds
    )
    rows += section
    step("2. in-process WSGI")
    section, raw["inprocess"] = inprocess.run(
        rounds=plan.inprocess_rounds, ops=plan.inprocess_ops, redis=args.redis
    )
    rows += section
    if run_e2e:
        step("3. end to end (gunicorn)")
        section, raw["e2e"] = e2e.run(plan.e2e)
        rows += section
    else:
        rows.append(
            Row(
                "3",
                "end to end",
                target=e2e.THROUGHPUT_VS_BARE,
                note="skipped (--no-e2e or gunicorn missing)",
            )
        )
    if args.memory:
        step("4. memory")
        section, raw["memory"] = memory.run(
            plan.memory_deliveries, plan.memory_checkpoints
        )
        rows += section

    info = machine()
    seconds = time.monotonic() - started
    print(_header(command, info, plan, run_e2e, seconds))
    print()
    print(format_table(rows))
    judged = [row for row in rows if row.result in ("PASS", "MISS")]
    missed = [row for row in judged if row.result == "MISS"]
    print()
    print(f"targets: {len(judged) - len(missed)} of {len(judged)} met")

    if args.json:
        document = {
            "command": command,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "seconds": seconds,
            "machine": info,
            "plan": dataclasses.asdict(plan),
            "rows": [row.as_json() for row in rows],
            "targets_met": len(judged) - len(missed),
            "targets_judged": len(judged),
            "raw": raw,
        }
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
    return 1 if args.check and missed else 0
