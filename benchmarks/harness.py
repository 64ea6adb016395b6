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
    """

    name: str
    prepare: c.Callable[[int], Batch]
    disable_gc: bool = True


@dataclasses.dataclass
class Samples:
    """Per-operation times of one case, one value per round, in seconds."""

    name: str
    per_op: list[float] = dataclasses.field(default_factory=list)

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


def _time_batch(case: Case, ops: int) -> float:
    batch = case.prepare(ops)
    gc.collect()
    enabled = gc.isenabled()
    if case.disable_gc:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        done = batch()
        elapsed = time.perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()
    if done <= 0:
        raise RuntimeError(f"case {case.name!r} did no work")
    return elapsed / 1e9 / done


def calibrate(case: Case, target_seconds: float, *, max_ops: int = 1_000_000) -> int:
    """How many operations make one batch last about ``target_seconds``.

    Also serves as the warm-up: imports, caches and lazily built validators
    are paid for here, not in the first timed round.
    """
    freeze_heap()
    ops = 1
    while True:
        per_op = _time_batch(case, ops)
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
    results = {case.name: Samples(case.name) for case in cases}
    for round_index in range(rounds):
        shift = round_index % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            results[case.name].per_op.append(_time_batch(case, ops[case.name]))
    return results


def paired_ratio(numerator: Samples, denominator: Samples) -> float:
    """Median over rounds of ``numerator / denominator`` in the same round."""
    return statistics.median(
        a / b for a, b in zip(numerator.per_op, denominator.per_op, strict=True)
    )


def paired_difference(minuend: Samples, subtrahend: Samples) -> float:
    """Median over rounds of ``minuend - subtrahend`` in the same round, in
    seconds per operation: what one case adds to the other.
    """
    return statistics.median(
        a - b for a, b in zip(minuend.per_op, subtrahend.per_op, strict=True)
    )


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
    """One line of the table.

    :param section: ``1`` to ``4``, see the package docstring.
    :param what: What was measured.
    :param value: The measurement, already formatted (time, rate, RSS).
    :param ratio: A ratio to another row of the same run, if any.
    :param ratio_label: What the ratio is, e.g. ``ours / floor``.
    :param target: The acceptance target on ``ratio``, if any.
    :param note: Extra facts (p50/p99, store size, skipped reason).
    :param data: Raw numbers for the JSON output.
    """

    section: str
    what: str
    value: str = ""
    ratio: float | None = None
    ratio_label: str = ""
    target: Target | None = None
    note: str = ""
    data: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    @property
    def result(self) -> str:
        if self.target is None:
            return ""
        if self.ratio is None:
            return "n/a"
        return "PASS" if self.target.met(self.ratio) else "MISS"

    def as_json(self) -> dict[str, t.Any]:
        return {
            "section": self.section,
            "what": self.what,
            "value": self.value,
            "ratio": self.ratio,
            "ratio_label": self.ratio_label,
            "target": None
            if self.target is None
            else {"op": self.target.op, "limit": self.target.limit},
            "result": self.result or None,
            "note": self.note,
            "data": self.data,
        }


def format_seconds(seconds: float) -> str:
    """``12.3 µs`` style, three significant digits."""
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def format_table(rows: c.Sequence[Row]) -> str:
    """Render the rows as a reST simple table.

    A simple table reads as plain text in a terminal and can be pasted into
    ``README.rst`` as is. Every row has a section number in the first
    column, which reST requires (an empty first cell means "continuation").
    """
    header = ("#", "measurement", "median", "ratio", "target", "result", "notes")
    body = [
        (
            row.section,
            row.what,
            row.value,
            "" if row.ratio is None else f"{row.ratio:.2f} {row.ratio_label}".rstrip(),
            "" if row.target is None else str(row.target),
            row.result,
            row.note,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(7)]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: c.Sequence[str]) -> str:
        pairs = zip(cells, widths, strict=True)
        return "  ".join(cell.ljust(w) for cell, w in pairs).rstrip()

    out = [rule, line(header), rule]
    previous = None
    for cells in body:
        if previous is not None and cells[0] != previous:
            out.append("")
        out.append(line(cells))
        previous = cells[0]
    out.append(rule)
    return "\n".join(out)
