"""Section 4: memory stays bounded under a long stream of deliveries.

Runs in a subprocess (``python -m benchmarks.memory``), so the resident set
starts from a clean interpreter rather than from whatever the other sections
allocated, and prints one JSON line with the results.

The app is the blueprint with a
:class:`~flask_openai_webhooks.MemoryStore` (by default at most 10,000
records; ``--quick`` uses a smaller one so that it fills up), called
in-process through WSGI exactly as in section 2. Deliveries are signed in
chunks of 1,000 right before they are sent, their environs copied from one
built by Werkzeug, so the inputs never pile up and what grows, if anything,
is the app. RSS is read from ``VmRSS`` in ``/proc/self/status`` after a
``gc.collect()`` at each checkpoint.

"Bounded" is judged: the store never holds more than ``max_entries``
records, and RSS at the end is within :data:`BOUNDED` (5%) of RSS at the
first checkpoint where the store was full, after many times as many
deliveries again. The slack is for the allocator, which keeps some freed
memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import typing as t

from flask_openai_webhooks import MemoryStore

from . import deliveries
from .apps import blueprint_app
from .apps import call_wsgi
from .apps import receiver
from .harness import Row
from .harness import Target

CHUNK = 1_000

#: RSS at the end over RSS when the store was first full.
BOUNDED = Target("memory store: RSS at the end / RSS when full", "<=", 1.05)


def rss_bytes() -> int:
    """The resident set size of this process, from ``/proc/self/status``."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(
    total: int, checkpoints: t.Sequence[int], max_entries: int | None = None
) -> dict[str, t.Any]:
    """Send ``total`` deliveries; record RSS and store size at checkpoints."""
    from .inprocess import environ_factory

    store = MemoryStore() if max_entries is None else MemoryStore(max_entries)
    app = blueprint_app(store)
    body = deliveries.make_body(deliveries.KNOWN)
    environ = environ_factory(body)
    statuses: list[str] = []

    def start_response(status: str, headers: t.Any, exc_info: t.Any = None) -> t.Any:
        statuses.append(status)

    points: list[dict[str, int]] = []
    sent = 0
    wanted = sorted(set(checkpoints) | {0, total})
    while True:
        if sent in wanted:
            gc.collect()
            points.append(
                {"deliveries": sent, "rss_bytes": rss_bytes(), "store_len": len(store)}
            )
        if sent >= total:
            break
        step = min(CHUNK, total - sent, *(w - sent for w in wanted if w > sent))
        environs = [environ(deliveries.sign(body)) for _ in range(step)]
        for env in environs:
            call_wsgi(app, env, start_response)
        del environs
        sent += step
        if any(s != "200 OK" for s in statuses):
            raise RuntimeError(f"unexpected responses: {sorted(set(statuses))}")
        statuses.clear()
    if receiver.calls != total:
        raise RuntimeError(f"the receiver ran {receiver.calls} times for {total}")
    return {"max_entries": store.max_entries, "points": points}


def run(
    total: int, checkpoints: t.Sequence[int], max_entries: int | None = None
) -> tuple[list[Row], dict[str, t.Any]]:
    """Run :func:`measure` in a fresh interpreter and build the rows."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--deliveries",
        str(total),
        "--checkpoints",
        ",".join(map(str, checkpoints)),
    ]
    if max_entries is not None:
        command += ["--max-entries", str(max_entries)]
    from .e2e import ROOT

    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    data: dict[str, t.Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return [_judged(data, total), *_details(data)], data


def _judged(data: dict[str, t.Any], total: int) -> Row:
    points = data["points"]
    limit = data["max_entries"]
    what = f"memory store after {total:,} deliveries"
    full = next((p for p in points if p["store_len"] >= limit), None)
    last = points[-1]
    if full is None or full is last:
        return Row(
            "4",
            what,
            target=BOUNDED,
            key="memory-bounded",
            unmeasured=f"the store (max_entries {limit:,}) was not full before"
            " the last checkpoint: send more deliveries",
        )
    row = Row(
        "4",
        what,
        f"{last['rss_bytes'] / 2**20:.1f} MiB",
        ratio=last["rss_bytes"] / full["rss_bytes"],
        ratio_label="× when full",
        target=BOUNDED,
        floor=f"{full['rss_bytes'] / 2**20:.1f} MiB",
        key="memory-bounded",
        note=f"full at {full['deliveries']:,} deliveries; store len"
        f" {last['store_len']:,} (max_entries {limit:,})",
    )
    biggest = max(p["store_len"] for p in points)
    if biggest > limit:
        row.failure = f"the store held {biggest:,} records, over max_entries {limit:,}"
    return row


def _details(data: dict[str, t.Any]) -> list[Row]:
    points = data["points"]
    first = points[0]["rss_bytes"]
    rows = []
    for point in points:
        growth = point["rss_bytes"] - first
        rows.append(
            Row(
                "4",
                f"RSS after {point['deliveries']:,} deliveries (ours, MemoryStore)",
                f"{point['rss_bytes'] / 2**20:.1f} MiB",
                note=f"+{growth / 2**20:.1f} MiB; store len {point['store_len']:,}"
                f" (max_entries {data['max_entries']:,})",
                data=point,
            )
        )
    return rows


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--checkpoints", default="10000,50000")
    parser.add_argument("--max-entries", type=int, default=None)
    args = parser.parse_args(argv)
    checkpoints = [int(x) for x in args.checkpoints.split(",") if x]
    print(json.dumps(measure(args.deliveries, checkpoints, args.max_entries)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
