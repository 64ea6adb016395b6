"""Prometheus metrics of the webhook blueprints (extra ``[prometheus]``).

Turned on per blueprint with ``OPENAI_WEBHOOK_METRICS = True`` (the
default registry of ``prometheus_client``) or a
:class:`~prometheus_client.CollectorRegistry`; the app exposes the registry
as it already does (``make_wsgi_app``, ``generate_latest``). This module
imports ``prometheus_client`` and is itself imported only when a blueprint
turns metrics on.

Every label value comes from a closed set, so a sender cannot grow the
number of time series: event types this version does not model are
``unknown``, rejection reasons are the package's error codes, receivers are
the keys of functions connected in code. No label ever holds a
``webhook-id``, an event id or an object id: those belong in logs and
traces.

Two ways to keep the figures, the same names and labels either way:

-   By default, one :class:`WebhookCollector` per registry, a custom
    collector (``prometheus_client``'s documented extension point) that
    updates plain counts under one lock per delivery, receiver run or store
    call. A delivery's dozen figures then cost a few microseconds, where a
    metric object each (a lock, a validation and a call per figure) cost
    several times more than the 5% of a delivery allowed to them.
-   In ``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
    set, as under gunicorn with several workers), where custom collectors
    are not supported, :class:`MetricObjects`: a ``Counter``, ``Histogram``
    or ``Gauge`` per family, whose values the workers share through files.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
import os
import threading
import time
import typing as t
import weakref
from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Sequence

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from .errors import StoreError
from .models import EVENT_TYPES

if t.TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .stores import Claim
    from .stores import Delivery
    from .stores import DeliveryRecord
    from .stores import DeliveryStatus
    from .stores import DeliveryStore
    from .stores import Page
    from .stores import ReceiverResult
    from .stores import Rejections
    from .stores import Source

#: The label value of every event type this version does not model.
UNKNOWN = "unknown"

#: Seconds, for the request, receiver and store histograms: a delivery
#: through the memory store takes a fraction of a millisecond, a slow
#: receiver seconds (OpenAI waits a few).
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    math.inf,
)
#: Seconds from an event's ``created_at`` to its arrival: OpenAI retries
#: for up to 72 hours.
AGE_BUCKETS = (
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    24 * 3600.0,
    48 * 3600.0,
    72 * 3600.0,
    math.inf,
)
#: Seconds from ``webhook-timestamp`` to the local clock, either way: a
#: negative skew means this server's clock is behind the sender's.
SKEW_BUCKETS = (
    -300.0,
    -60.0,
    -10.0,
    -5.0,
    -1.0,
    0.0,
    1.0,
    5.0,
    10.0,
    60.0,
    300.0,
    math.inf,
)

_FAILURE_KINDS = frozenset(("failed", "retry_later", "gave_up"))


@dataclasses.dataclass(frozen=True, eq=False)
class _Family:
    """A metric family. Hashed by identity (``eq=False``): it keys the dicts
    of every figure, so hashing its fields on each update would cost more
    than the update."""

    name: str
    doc: str
    kind: t.Literal["counter", "histogram", "gauge"]
    #: Label names after ``blueprint``.
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


DELIVERIES = _Family(
    "openai_webhook_deliveries",
    "Deliveries answered, by event type and outcome.",
    "counter",
    ("event_type", "outcome"),
)
REJECTIONS = _Family(
    "openai_webhook_rejections",
    "Deliveries refused (4xx), by the error code of the failed check.",
    "counter",
    ("reason",),
)
RECEIVER_FAILURES = _Family(
    "openai_webhook_receiver_failures",
    "Receiver runs that did not succeed, by receiver key and kind"
    " (failed, retry_later, gave_up).",
    "counter",
    ("receiver", "kind"),
)
RECEIVER_DURATION = _Family(
    "openai_webhook_receiver_duration_seconds",
    "Seconds each receiver run took, by receiver key.",
    "histogram",
    ("receiver",),
    DURATION_BUCKETS,
)
REQUEST_DURATION = _Family(
    "openai_webhook_request_duration_seconds",
    "Seconds from reading a delivery to answering it, by outcome.",
    "histogram",
    ("outcome",),
    DURATION_BUCKETS,
)
EVENT_AGE = _Family(
    "openai_webhook_event_age_seconds",
    "Seconds from an event's created_at to its verified arrival, OpenAI's"
    " retries included.",
    "histogram",
    ("event_type",),
    AGE_BUCKETS,
)
TIMESTAMP_SKEW = _Family(
    "openai_webhook_timestamp_skew_seconds",
    "Local clock minus webhook-timestamp, of verified deliveries.",
    "histogram",
    (),
    SKEW_BUCKETS,
)
STORE_ERRORS = _Family(
    "openai_webhook_store_errors",
    "Delivery store calls that raised StoreError, by operation.",
    "counter",
    ("operation",),
)
STORE_DURATION = _Family(
    "openai_webhook_store_duration_seconds",
    "Seconds each delivery store call took, by operation.",
    "histogram",
    ("operation",),
    DURATION_BUCKETS,
)
SECRET_MATCHES = _Family(
    "openai_webhook_secret_matches",
    "Verified deliveries by the configured secret that matched (key_index 0"
    " is the first); once only 0 grows, an old secret can go.",
    "counter",
    ("key_index",),
)
LAST_PROCESSED = _Family(
    "openai_webhook_last_processed_timestamp_seconds",
    "Unix time of the last delivery processed, by event type.",
    "gauge",
    ("event_type",),
)
FAMILIES = (
    DELIVERIES,
    REJECTIONS,
    RECEIVER_FAILURES,
    RECEIVER_DURATION,
    REQUEST_DURATION,
    EVENT_AGE,
    TIMESTAMP_SKEW,
    STORE_ERRORS,
    STORE_DURATION,
    SECRET_MATCHES,
    LAST_PROCESSED,
)


def event_type_label(event_type: str) -> str:
    """``event_type`` if this version models it, else ``unknown``: senders
    choose the type, so it is never a label value as is."""
    return event_type if event_type in EVENT_TYPES else UNKNOWN


def registry_of(value: object) -> CollectorRegistry | None:
    """The registry ``OPENAI_WEBHOOK_METRICS`` names: ``True`` for the
    default one, a registry as is, ``None`` or ``False`` for none.

    :raises RuntimeError: Any other value.
    """
    if value is None or value is False:
        return None
    if value is True:
        return prometheus_client.REGISTRY
    if isinstance(value, CollectorRegistry):
        return value
    raise RuntimeError(
        "OPENAI_WEBHOOK_METRICS must be True, False or a"
        f" prometheus_client.CollectorRegistry, not {type(value).__name__}"
    )


class Metrics(t.Protocol):
    """What the delivery path reports, for one registered blueprint."""

    def delivery(
        self,
        event_type: str,
        outcome: str,
        seconds: float,
        *,
        key_index: int,
        age: float | None,
        skew: float,
        at: float,
    ) -> None:
        """A verified delivery was answered with ``outcome`` after
        ``seconds``; ``key_index`` is the secret that matched, ``age`` the
        seconds since the event was created (``None`` when unknown),
        ``skew`` the local clock minus ``webhook-timestamp``, ``at`` the
        Unix time it was verified."""

    def rejection(self, reason: str, seconds: float) -> None:
        """A delivery was refused. Nothing in it is trusted, its type
        included, so it is counted under ``unknown``."""

    def receivers(self, results: Sequence[ReceiverResult]) -> None:
        """Receivers ran (those of one attempt at a delivery); ``failed``,
        ``retry_later`` and ``gave_up`` are failures of that kind."""

    def store_call(self, operation: str, seconds: float, failed: bool) -> None:
        """A store call ended, ``failed`` if it raised ``StoreError``."""


_SHARED: weakref.WeakKeyDictionary[
    CollectorRegistry, WebhookCollector | MetricObjects
] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def metrics_for(blueprint: str, registry: CollectorRegistry) -> Metrics:
    """The metrics of the blueprint registered as ``blueprint``, kept in
    ``registry`` with those of every other blueprint registered with it (a
    ``blueprint`` label tells them apart), so that a second blueprint does
    not collide as "Duplicated timeseries".

    :raises RuntimeError: Another library already registered one of these
        names on ``registry``.
    """
    multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    with _LOCK:
        shared = _SHARED.get(registry)
        if shared is None:
            try:
                shared = (
                    MetricObjects(registry)
                    if multiprocess
                    else WebhookCollector(registry)
                )
            except ValueError as e:
                raise RuntimeError(
                    f"OPENAI_WEBHOOK_METRICS: cannot register the webhook metrics: {e}"
                ) from None
            _SHARED[registry] = shared
    return shared.bind(blueprint)


# --------------------------------------------------------------------------
# The custom collector
# --------------------------------------------------------------------------

_Key = tuple[str, ...]


#: Figures noted and not yet counted, at most: past this many, the next
#: one counts them all (a few hundred kilobytes).
MAX_PENDING = 2048

# What a noted figure is, first in its tuple.
_DELIVERY = 0
_REJECTION = 1
_RECEIVERS = 2
_STORE = 3


class WebhookCollector(Collector):
    """Every figure of the blueprints registered with one registry, turned
    into metric families when the registry is collected.

    A delivery only notes its figures, one tuple per delivery, receiver run
    or store call, appended to a deque (thread-safe, and no lock). They are
    counted in one loop when the registry is collected, or once
    :data:`MAX_PENDING` are waiting: counting a thousand at once is much
    cheaper than counting each inside its request, where the code and data
    it needs are out of the CPU's caches. A scrape always sees every figure
    noted before it.

    Histograms keep, per label set, one count per bucket (not cumulative)
    and the sum last.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending: collections.deque[tuple[t.Any, ...]] = collections.deque()
        self._lock = threading.Lock()
        self._counts: dict[_Family, dict[_Key, float]] = {
            f: {} for f in FAMILIES if f.kind == "counter"
        }
        self._histograms: dict[_Family, dict[_Key, list[float]]] = {
            f: {} for f in FAMILIES if f.kind == "histogram"
        }
        self._gauges: dict[_Family, dict[_Key, float]] = {
            f: {} for f in FAMILIES if f.kind == "gauge"
        }
        registry.register(self)

    def bind(self, blueprint: str) -> CollectedMetrics:
        return CollectedMetrics(self, blueprint)

    def count_pending(self) -> None:
        """Count every figure noted so far, in one loop: each family's
        dict is looked up once, not once per figure."""
        with self._lock:
            pending = self.pending
            # Figures noted meanwhile by other threads wait for next time.
            todo = len(pending)
            if not todo:
                return
            take = pending.popleft
            counts = self._counts
            histograms = self._histograms
            deliveries = counts[DELIVERIES]
            rejections = counts[REJECTIONS]
            secrets = counts[SECRET_MATCHES]
            failures = counts[RECEIVER_FAILURES]
            store_errors = counts[STORE_ERRORS]
            requests = histograms[REQUEST_DURATION]
            skews = histograms[TIMESTAMP_SKEW]
            ages = histograms[EVENT_AGE]
            receivers = histograms[RECEIVER_DURATION]
            stores = histograms[STORE_DURATION]
            last = self._gauges[LAST_PROCESSED]
            known = EVENT_TYPES

            def observe(
                by_key: dict[_Key, list[float]],
                bounds: tuple[float, ...],
                key: _Key,
                value: float,
            ) -> None:
                values = by_key.get(key)
                if values is None:
                    values = by_key[key] = [0.0] * (len(bounds) + 1)
                # Among the finite bounds; past them, the +Inf bucket.
                values[bisect.bisect_left(bounds, value, 0, len(bounds) - 1)] += 1
                values[-1] += value

            key: _Key
            for _ in range(todo):
                figure = take()
                kind = figure[0]
                if kind == _DELIVERY:
                    _, bp, event_type, outcome, seconds, index, age, skew, at = figure
                    label = event_type if event_type in known else UNKNOWN
                    key = (bp, label, outcome)
                    deliveries[key] = deliveries.get(key, 0.0) + 1.0
                    key = (bp, str(index))
                    secrets[key] = secrets.get(key, 0.0) + 1.0
                    observe(requests, DURATION_BUCKETS, (bp, outcome), seconds)
                    observe(skews, SKEW_BUCKETS, (bp,), skew)
                    if age is not None:
                        observe(ages, AGE_BUCKETS, (bp, label), age)
                    if outcome == "processed":
                        key = (bp, label)
                        last[key] = max(last.get(key, at), at)
                elif kind == _RECEIVERS:
                    _, bp, results = figure
                    for result in results:
                        receiver = result.key
                        outcome = result.outcome
                        seconds = result.duration
                        observe(receivers, DURATION_BUCKETS, (bp, receiver), seconds)
                        if outcome in _FAILURE_KINDS:
                            key = (bp, receiver, outcome)
                            failures[key] = failures.get(key, 0.0) + 1.0
                elif kind == _STORE:
                    _, bp, operation, seconds, failed = figure
                    observe(stores, DURATION_BUCKETS, (bp, operation), seconds)
                    if failed:
                        key = (bp, operation)
                        store_errors[key] = store_errors.get(key, 0.0) + 1.0
                else:
                    _, bp, reason, seconds = figure
                    key = (bp, reason)
                    rejections[key] = rejections.get(key, 0.0) + 1.0
                    key = (bp, UNKNOWN, "rejected")
                    deliveries[key] = deliveries.get(key, 0.0) + 1.0
                    observe(requests, DURATION_BUCKETS, (bp, "rejected"), seconds)

    def describe(self) -> Iterator[Metric]:
        """The families without samples: what lets the registry refuse a
        name that is already taken, at registration."""
        return self._families({}, {}, {})

    def collect(self) -> Iterator[Metric]:
        self.count_pending()
        with self._lock:
            # A consistent copy; families are built outside the lock.
            counts = {f: dict(v) for f, v in self._counts.items()}
            histograms = {
                f: {k: list(v) for k, v in by_key.items()}
                for f, by_key in self._histograms.items()
            }
            gauges = {f: dict(v) for f, v in self._gauges.items()}
        return self._families(counts, histograms, gauges)

    @staticmethod
    def _families(
        counts: dict[_Family, dict[_Key, float]],
        histograms: dict[_Family, dict[_Key, list[float]]],
        gauges: dict[_Family, dict[_Key, float]],
    ) -> Iterator[Metric]:
        for family in FAMILIES:
            labels = ["blueprint", *family.labels]
            if family.kind == "counter":
                counter = CounterMetricFamily(family.name, family.doc, labels=labels)
                for key, value in counts.get(family, {}).items():
                    counter.add_metric(key, value)
                yield counter
            elif family.kind == "gauge":
                gauge = GaugeMetricFamily(family.name, family.doc, labels=labels)
                for key, value in gauges.get(family, {}).items():
                    gauge.add_metric(key, value)
                yield gauge
            else:
                histogram = HistogramMetricFamily(
                    family.name, family.doc, labels=labels
                )
                for key, values in histograms.get(family, {}).items():
                    cumulative = 0.0
                    buckets = []
                    for bound, count in zip(family.buckets, values, strict=False):
                        cumulative += count
                        le = "+Inf" if bound == math.inf else repr(float(bound))
                        buckets.append((le, cumulative))
                    histogram.add_metric(key, buckets, values[-1])
                yield histogram


class CollectedMetrics:
    """One blueprint's :class:`Metrics` in a :class:`WebhookCollector`:
    notes each figure, for the collector to count."""

    __slots__ = ("_collector", "_blueprint", "_pending")

    def __init__(self, collector: WebhookCollector, blueprint: str) -> None:
        self._collector = collector
        self._blueprint = blueprint
        self._pending = collector.pending

    # Each method notes one figure, and counts them all when too many wait.

    def delivery(
        self,
        event_type: str,
        outcome: str,
        seconds: float,
        *,
        key_index: int,
        age: float | None,
        skew: float,
        at: float,
    ) -> None:
        pending = self._pending
        pending.append(
            (
                _DELIVERY,
                self._blueprint,
                event_type,
                outcome,
                seconds,
                key_index,
                age,
                skew,
                at,
            )
        )
        if len(pending) >= MAX_PENDING:
            self._collector.count_pending()

    def rejection(self, reason: str, seconds: float) -> None:
        pending = self._pending
        pending.append((_REJECTION, self._blueprint, reason, seconds))
        if len(pending) >= MAX_PENDING:
            self._collector.count_pending()

    def receivers(self, results: Sequence[ReceiverResult]) -> None:
        pending = self._pending
        pending.append((_RECEIVERS, self._blueprint, results))
        if len(pending) >= MAX_PENDING:
            self._collector.count_pending()

    def store_call(self, operation: str, seconds: float, failed: bool) -> None:
        pending = self._pending
        pending.append((_STORE, self._blueprint, operation, seconds, failed))
        if len(pending) >= MAX_PENDING:
            self._collector.count_pending()


# --------------------------------------------------------------------------
# Metric objects, for multiprocess mode
# --------------------------------------------------------------------------


class MetricObjects:
    """A ``prometheus_client`` metric object per family, registered with one
    registry: what multiprocess mode supports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.objects: dict[_Family, t.Any] = {}
        for family in FAMILIES:
            labels = ("blueprint", *family.labels)
            if family.kind == "counter":
                made: t.Any = Counter(
                    family.name, family.doc, labels, registry=registry
                )
            elif family.kind == "histogram":
                made = Histogram(
                    family.name,
                    family.doc,
                    labels,
                    registry=registry,
                    buckets=family.buckets,
                )
            else:
                # The latest of the workers' values.
                made = Gauge(
                    family.name,
                    family.doc,
                    labels,
                    registry=registry,
                    multiprocess_mode="max",
                )
            self.objects[family] = made

    def bind(self, blueprint: str) -> ObjectMetrics:
        return ObjectMetrics(self, blueprint)


class ObjectMetrics:
    """One blueprint's :class:`Metrics` in :class:`MetricObjects`; each
    labelled child is kept once looked up."""

    __slots__ = ("_objects", "_blueprint", "_children")

    def __init__(self, objects: MetricObjects, blueprint: str) -> None:
        self._objects = objects.objects
        self._blueprint = blueprint
        self._children: dict[tuple[t.Any, ...], t.Any] = {}

    def _child(self, family: _Family, *labels: str) -> t.Any:
        key = (family, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._objects[family].labels(self._blueprint, *labels)
            self._children[key] = child
        return child

    def delivery(
        self,
        event_type: str,
        outcome: str,
        seconds: float,
        *,
        key_index: int,
        age: float | None,
        skew: float,
        at: float,
    ) -> None:
        label = event_type_label(event_type)
        self._child(DELIVERIES, label, outcome).inc()
        self._child(REQUEST_DURATION, outcome).observe(seconds)
        self._child(TIMESTAMP_SKEW).observe(skew)
        self._child(SECRET_MATCHES, str(key_index)).inc()
        if age is not None:
            self._child(EVENT_AGE, label).observe(age)
        if outcome == "processed":
            self._child(LAST_PROCESSED, label).set(at)

    def rejection(self, reason: str, seconds: float) -> None:
        self._child(REJECTIONS, reason).inc()
        self._child(DELIVERIES, UNKNOWN, "rejected").inc()
        self._child(REQUEST_DURATION, "rejected").observe(seconds)

    def receivers(self, results: Sequence[ReceiverResult]) -> None:
        for result in results:
            self._child(RECEIVER_DURATION, result.key).observe(result.duration)
            if result.outcome in _FAILURE_KINDS:
                self._child(RECEIVER_FAILURES, result.key, result.outcome).inc()

    def store_call(self, operation: str, seconds: float, failed: bool) -> None:
        self._child(STORE_DURATION, operation).observe(seconds)
        if failed:
            self._child(STORE_ERRORS, operation).inc()


# --------------------------------------------------------------------------
# The timed store
# --------------------------------------------------------------------------


class InstrumentedStore:
    """A :class:`~flask_openai_webhooks.stores.DeliveryStore` that times
    each call to the store it wraps and counts its ``StoreError``\\ s.

    The delivery path calls it when metrics are on; ``state.store`` stays
    the configured store, so checks of its type and backend-specific
    methods are unaffected. The calls of every delivery are spelled out
    rather than forwarded generically, which would cost more than the
    call they time.
    """

    def __init__(self, store: DeliveryStore, metrics: Metrics) -> None:
        #: The configured store.
        self.wrapped = store
        self._report = metrics.store_call

    def claim(self, delivery: Delivery, *, lease: float, retention: float) -> Claim:
        started = time.perf_counter()
        try:
            claim = self.wrapped.claim(delivery, lease=lease, retention=retention)
        except StoreError:
            self._report("claim", time.perf_counter() - started, True)
            raise
        self._report("claim", time.perf_counter() - started, False)
        return claim

    def record(
        self, webhook_id: str, token: str, results: Sequence[ReceiverResult]
    ) -> None:
        started = time.perf_counter()
        try:
            self.wrapped.record(webhook_id, token, results)
        except StoreError:
            self._report("record", time.perf_counter() - started, True)
            raise
        self._report("record", time.perf_counter() - started, False)

    def finish(
        self,
        webhook_id: str,
        token: str,
        results: Sequence[ReceiverResult],
        *,
        status: DeliveryStatus,
        status_code: int | None,
        source: Source,
        retention: float,
    ) -> None:
        started = time.perf_counter()
        try:
            self.wrapped.finish(
                webhook_id,
                token,
                results,
                status=status,
                status_code=status_code,
                source=source,
                retention=retention,
            )
        except StoreError:
            self._report("finish", time.perf_counter() - started, True)
            raise
        self._report("finish", time.perf_counter() - started, False)

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        started = time.perf_counter()
        try:
            record = self.wrapped.get(webhook_id)
        except StoreError:
            self._report("get", time.perf_counter() - started, True)
            raise
        self._report("get", time.perf_counter() - started, False)
        return record

    def reject(self, reason: str, webhook_id: str | None, at: float) -> None:
        started = time.perf_counter()
        try:
            self.wrapped.reject(reason, webhook_id, at)
        except StoreError:
            self._report("reject", time.perf_counter() - started, True)
            raise
        self._report("reject", time.perf_counter() - started, False)

    def _timed(
        self, operation: str, fn: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any
    ) -> t.Any:
        started = time.perf_counter()
        try:
            found = fn(*args, **kwargs)
        except StoreError:
            self._report(operation, time.perf_counter() - started, True)
            raise
        self._report(operation, time.perf_counter() - started, False)
        return found

    def claim_task(self, webhook_id: str, key: str, *, lease: float) -> Claim:
        return t.cast(
            "Claim",
            self._timed(
                "claim_task", self.wrapped.claim_task, webhook_id, key, lease=lease
            ),
        )

    def finish_task(
        self,
        webhook_id: str,
        token: str,
        result: ReceiverResult,
        *,
        retention: float,
    ) -> None:
        self._timed(
            "finish_task",
            self.wrapped.finish_task,
            webhook_id,
            token,
            result,
            retention=retention,
        )

    def list_deliveries(
        self,
        *,
        status: Collection[str] | None = None,
        type_pattern: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> Page:
        return t.cast(
            "Page",
            self._timed(
                "list_deliveries",
                self.wrapped.list_deliveries,
                status=status,
                type_pattern=type_pattern,
                since=since,
                until=until,
                search=search,
                limit=limit,
                before=before,
            ),
        )

    def prune(self, older_than: float) -> int:
        return t.cast(int, self._timed("prune", self.wrapped.prune, older_than))

    def rejections(self, limit: int = 50) -> Rejections:
        return t.cast(
            "Rejections", self._timed("rejections", self.wrapped.rejections, limit)
        )

    def ping(self) -> None:
        self._timed("ping", self.wrapped.ping)

    def describe(self) -> str:
        return self.wrapped.describe()

    def __repr__(self) -> str:
        return f"InstrumentedStore({self.wrapped!r})"
