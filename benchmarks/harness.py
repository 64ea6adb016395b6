"""Timing harness shared by the sections: interleaved rounds, medians,
paired ratios, and the rows of the final table.

Why interleaved rounds: the benchmark machine is shared and noisy, and its
speed drifts over seconds (other jobs, CPU frequency, the page cache). Timing
case A for ten seconds and then case B for ten seconds folds that drift into
the A/B comparison. Instead every round runs one batch of *every* case, the
order rotating from round to round so no case always runs first (right after
a ``gc.collect()`` of the previous one's garbage) or last. A slow moment then
hits all cases of that round, and the per-round ratio cancels most of it.

Why medians: a round in which another process took the CPU is an outlier;
the median ignores it where a mean would not. Ratios are the median of the
*per-round* ratios (paired), which is steadier than the ratio of the two
medians because both members of a pair saw the same machine state.

Why CPU time for work that stays in the process: on a machine with more
runnable jobs than cores, a batch is descheduled for whole time slices,
and wall-clock time counts them as if our code ran. Every batch is timed
on both clocks; a case that never waits for another process (verify and
parse, a delivery with the memory store) is judged on the CPU time of
this process (:func:`time.process_time_ns`), which only counts the
instructions it ran. A case that waits for a server (SQLite's disk, Redis,
PostgreSQL, MariaDB) is judged on wall-clock time, since what the server
does for it is part of its cost; a ratio between a CPU-timed case and a
wall-timed one uses wall-clock time for both.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import gc
import statistics
import time
import typing as t

#: A prepared batch: runs the timed work once and returns how many
#: operations it did. Everything the batch needs (signed requests, WSGI
#: environs) is built by :attr:`Case.prepare` before the clock starts.
Batch: t.TypeAlias = c.Callable[[], int]

#: Which clock judges a case: see the module docstring.
Clock: t.TypeAlias = t.Literal["cpu", "wall"]


@dataclasses.dataclass
class Case:
    """One thing to time.

    :param name: Short key, unique within a comparison.
    :param prepare: Called before every timed batch, untimed, with the number
        of operations wanted. Returns the batch to time. Building inputs here
        (fresh timestamps, fresh ``webhook-id`` values) keeps their cost out
        of the measurement.
    :param disable_gc: Turn the cyclic GC off while the batch runs, as
        :mod:`timeit` does, for micro-benchmarks whose cost should not depend
        on whatever garbage other cases left. Request-level cases keep it on:
        collections triggered by a request's own allocations are part of what
        a request costs.
    :param clock: ``"cpu"`` for work done in this process alone, ``"wall"``
        for work that waits for another process (see the module docstring).
    """

    name: str
    prepare: c.Callable[[int], Batch]
    disable_gc: bool = True
    clock: Clock = "cpu"


@dataclasses.dataclass
class Samples:
    """Per-operation times of one case, one value per round, in seconds, on
    both clocks; :attr:`per_op` is the case's own clock."""

    name: str
    clock: Clock = "cpu"
    cpu: list[float] = dataclasses.field(default_factory=list)
    wall: list[float] = dataclasses.field(default_factory=list)

    @property
    def per_op(self) -> list[float]:
        return self.cpu if self.clock == "cpu" else self.wall

    @property
    def median(self) -> float:
        return statistics.median(self.per_op)


def freeze_heap() -> None:
    """Move every object alive now out of the collector's sight.

    With ``openai``, ``svix`` and the apps imported, a full ``gc.collect()``
    walks hundreds of thousands of objects (~70 ms here); freezing them
    makes the collection before each batch, and any full collection the
    batch itself triggers, cost what the batch's own objects cost.
    """
    gc.collect()
    gc.freeze()


def _time_batch(case: Case, ops: int) -> tuple[float, float]:
    """Run one batch; return its seconds per operation on the CPU clock of
    this process and on the wall clock."""
    batch = case.prepare(ops)
    gc.collect()
    enabled = gc.isenabled()
    if case.disable_gc:
        gc.disable()
    try:
        wall = time.perf_counter_ns()
        cpu = time.process_time_ns()
        done = batch()
        cpu = time.process_time_ns() - cpu
        wall = time.perf_counter_ns() - wall
    finally:
        if enabled:
            gc.enable()
    if done <= 0:
        raise RuntimeError(f"case {case.name!r} did no work")
    return cpu / 1e9 / done, wall / 1e9 / done


def calibrate(case: Case, target_seconds: float, *, max_ops: int = 1_000_000) -> int:
    """How many operations make one batch last about ``target_seconds``.

    Also serves as the warm-up: imports, caches and lazily built validators
    are paid for here, not in the first timed round.
    """
    freeze_heap()
    ops = 1
    while True:
        cpu, wall = _time_batch(case, ops)
        per_op = cpu if case.clock == "cpu" else wall
        if per_op * ops >= target_seconds / 10 or ops >= max_ops:
            break
        ops *= 4
    return max(1, min(max_ops, round(target_seconds / per_op)))


def run_interleaved(
    cases: c.Sequence[Case], ops: c.Mapping[str, int], rounds: int
) -> dict[str, Samples]:
    """Run ``rounds`` rounds; each round times one batch of every case.

    :param ops: Operations per batch, by case name, e.g. from
        :func:`calibrate`, so slow and fast cases get batches of similar
        duration.
    :returns: Samples by case name, one per-operation time per round.
    """
    freeze_heap()
    results = {case.name: Samples(case.name, case.clock) for case in cases}
    for round_index in range(rounds):
        shift = round_index % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            cpu, wall = _time_batch(case, ops[case.name])
            results[case.name].cpu.append(cpu)
            results[case.name].wall.append(wall)
    return results


def _pair(a: Samples, b: Samples) -> tuple[list[float], list[float]]:
    """The two cases' samples on a common clock: their own if they share
    it, else the wall clock."""
    if a.clock == b.clock:
        return a.per_op, b.per_op
    return a.wall, b.wall


def paired_medians(a: Samples, b: Samples) -> tuple[float, float, Clock]:
    """The medians of two cases on their common clock, and that clock."""
    left, right = _pair(a, b)
    clock: Clock = a.clock if a.clock == b.clock else "wall"
    return statistics.median(left), statistics.median(right), clock


def paired_ratio(numerator: Samples, denominator: Samples) -> float:
    """Median over rounds of ``numerator / denominator`` in the same round."""
    top, bottom = _pair(numerator, denominator)
    return statistics.median(a / b for a, b in zip(top, bottom, strict=True))


def paired_difference(minuend: Samples, subtrahend: Samples) -> float:
    """Median over rounds of ``minuend - subtrahend`` in the same round, in
    seconds per operation: what one case adds to the other.
    """
    left, right = _pair(minuend, subtrahend)
    return statistics.median(a - b for a, b in zip(left, right, strict=True))


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """An acceptance target on a ratio: ``value <= limit`` or ``>= limit``."""

    label: str
    op: t.Literal["<=", ">="]
    limit: float

    def met(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {self.limit:g}"


@dataclasses.dataclass
class Row:
    """One line of a table.

    A row with a :attr:`target` is a figure of the speed budget: it goes
    to the first table, in the order of :attr:`key`; the others are
    details, in the second.

    :param section: The section that measured it (see the package
        docstring).
    :param what: What was measured.
    :param value: The measurement, already formatted (time, rate, RSS).
    :param ratio: ``value`` over (or, for throughput, under) the floor
        measured side by side in the same run.
    :param ratio_label: What the ratio is, e.g. ``× floor``.
    :param target: The acceptance target on ``ratio``, if any.
    :param note: Extra facts (p50/p99, store size, skipped reason).
    :param data: Raw numbers for the JSON output.
    :param floor: The floor's measurement, formatted like ``value``.
    :param key: Where a budget figure goes in the first table (see
        :data:`BUDGET_ORDER`).
    :param failure: Why the target is missed although ``ratio`` meets it
        (a check beyond the ratio failed); makes the result ``MISS``.
    :param unmeasured: Why a budget figure has no ratio: ``"off"`` when an
        option turned it off, otherwise the reason it could not be
        measured (a server is down, a feature is missing).
    """

    section: str
    what: str
    value: str = ""
    ratio: float | None = None
    ratio_label: str = ""
    target: Target | None = None
    note: str = ""
    data: dict[str, t.Any] = dataclasses.field(default_factory=dict)
    floor: str = ""
    key: str = ""
    failure: str = ""
    unmeasured: str = ""

    @property
    def result(self) -> str:
        if self.target is None:
            return ""
        if self.ratio is None:
            return "n/a"
        if self.failure:
            return "MISS"
        return "PASS" if self.target.met(self.ratio) else "MISS"

    def as_json(self) -> dict[str, t.Any]:
        return {
            "section": self.section,
            "key": self.key,
            "what": self.what,
            "value": self.value,
            "floor": self.floor,
            "ratio": self.ratio,
            "ratio_label": self.ratio_label,
            "target": None
            if self.target is None
            else {"op": self.target.op, "limit": self.target.limit},
            "result": self.result or None,
            "note": self.note,
            "failure": self.failure or None,
            "unmeasured": self.unmeasured or None,
            "data": self.data,
        }


#: The figures of the speed budget (issue 13), in the order of its table.
BUDGET_ORDER = (
    "verify-blueprint",
    "verify-public",
    "verify-sdk",
    "inprocess-memory",
    "inprocess-sqlite",
    "inprocess-redis",
    "inprocess-postgresql",
    "inprocess-mariadb",
    "e2e-memory",
    "e2e-sqlite",
    "e2e-redis",
    "e2e-postgresql",
    "e2e-mariadb",
    "celery-handoff",
    "observability",
    "memory-bounded",
)


def format_seconds(seconds: float) -> str:
    """``12.3 µs`` style, three significant digits."""
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _render(
    header: c.Sequence[str], body: c.Sequence[c.Sequence[str]], *, grouped: bool
) -> str:
    """A reST simple table: it reads as plain text in a terminal and can be
    pasted into ``README.rst`` as is. reST requires the first cell of a
    row to be non-empty (an empty one means "continuation"). ``grouped``
    puts a blank line wherever the first column changes."""
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: c.Sequence[str]) -> str:
        pairs = zip(cells, widths, strict=True)
        return "  ".join(cell.ljust(w) for cell, w in pairs).rstrip()

    out = [rule, line(header), rule]
    previous = None
    for cells in body:
        if grouped and previous is not None and cells[0] != previous:
            out.append("")
        out.append(line(cells))
        previous = cells[0]
    out.append(rule)
    return "\n".join(out)


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return ""
    text = f"{row.ratio:.2f}"
    if row.target is not None and float(text) == row.target.limit:
        # Rounded onto the limit, "1.30 ≤ 1.3 MISS" would read as a bug.
        text = f"{row.ratio:.3f}"
    return f"{text} {row.ratio_label}".rstrip()


def budget_rows(rows: c.Iterable[Row]) -> list[Row]:
    """The rows with a target, in :data:`BUDGET_ORDER` (unknown keys last,
    in the order given)."""
    order = {key: index for index, key in enumerate(BUDGET_ORDER)}
    judged = [row for row in rows if row.target is not None]
    return sorted(judged, key=lambda row: order.get(row.key, len(order)))


def format_budget(rows: c.Sequence[Row]) -> str:
    """The speed budget: one line per figure, with its floor."""
    header = ("#", "figure", "ours", "floor", "ratio", "target", "result", "notes")
    body = [
        (
            str(index),
            row.what,
            row.value,
            row.floor,
            _ratio(row),
            "" if row.target is None else str(row.target),
            row.result,
            row.unmeasured or row.failure or row.note,
        )
        for index, row in enumerate(rows, 1)
    ]
    return _render(header, body, grouped=False)


def format_table(rows: c.Sequence[Row]) -> str:
    """Any rows, one line each, grouped by section."""
    header = ("#", "measurement", "median", "compared with", "ratio", "notes")
    body = [
        (row.section, row.what, row.value, row.floor, _ratio(row), row.note)
        for row in rows
    ]
    return _render(header, body, grouped=True)
