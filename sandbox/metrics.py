"""Prometheus metrics of a Store and its log, in the embedder's own registry.

Why it is built this way:

* **No global state.** ``StoreMetrics(registry)`` registers in the registry
  it is given (a fresh ``CollectorRegistry`` when none): an agent that embeds
  the store exposes it next to its own metrics, two stores in one process do
  not collide, and nothing lands in ``prometheus_client.REGISTRY`` unasked.
* **Cheap on the append path.** The log's figures are pulled, never pushed:
  the writer keeps raw timings in an ``eventlog.Timings`` (a clock read and a
  list append where a figure arises) and counts records, bytes, syncs and
  rotations in its ``stats`` anyway; this custom collector drains the
  timings into histograms and turns the counters into metric families when
  scraped. A Python call per commit group into an observer cost ~10% of an
  append; the pull model stays under 3% (docs/METRICS.md has the counts).
* **Nothing per command for state.** Sandboxes by state, segment count and
  snapshot age are read from the store and its directory at scrape time.

Importing this module imports prometheus_client; only code that asks for
metrics does (``Store.open(metrics=...)``, ``--metrics-addr``).
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from eventlog import EventLog, EventLogStats, Timings
from eventlog.errors import EventLogError
from eventlog.segments import list_segments
from sandbox.observe import ObservedStore
from sandbox.reconciler import ReconcileReport
from sandbox.snapshot_files import list_snapshots
from sandbox.status import State

__all__ = [
    "LATENCY_BUCKETS",
    "GROUP_BUCKETS",
    "Histogram",
    "LogView",
    "StoreMetrics",
    "parse_addr",
    "serve_metrics",
]

#: Seconds; etcd's WAL fsync buckets start at 1 ms, a page-cache write is ~10 us.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001,
    0.00005,
    0.0001,
    0.00025,
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
)
#: Appends per commit group: powers of two, so a bucket index is a bit_length.
GROUP_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(11))
_GROUP_TOP = len(GROUP_BUCKETS)
_LATENCY = LATENCY_BUCKETS
_bisect = bisect_left

PREFIX = "sandboxstore_"


class Histogram:
    """Bucket counts and a sum, without a lock: one writer thread at a time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        counts = list(self.counts)
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class StoreMetrics(Collector):
    """The Prometheus face of one Store (a ``sandbox.observe.StoreObserver``).

    Pass it, or just a registry, to ``Store.open(..., metrics=...)``; one
    ``StoreMetrics`` may serve successive opens of the same store (a reopen
    re-attaches it and adds to the same counters).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._store: ObservedStore | None = None
        self._pull_lock = threading.Lock()  # scrapes may come from several threads
        self._seen = (0, 0, 0, 0)  # the attached log's (records, bytes, syncs, rotations)
        self.records = 0
        self.bytes = 0
        self.syncs = 0
        self.rotations = 0
        self.append = Histogram(LATENCY_BUCKETS)
        self.fsync = Histogram(LATENCY_BUCKETS)
        self._group_counts = [0] * (_GROUP_TOP + 1)
        self._group_sum = 0
        self.snapshot = Histogram(LATENCY_BUCKETS)
        self.reconcile = Histogram(LATENCY_BUCKETS)
        self.reconcile_actions = {"created": 0, "adopted": 0, "removed": 0, "closed": 0}
        self.reconcile_errors = 0
        self.replay_seconds: float | None = None
        self.replay_events = 0
        self.opens = 0
        self.registry.register(self)

    @classmethod
    def in_registry(cls, registry: object) -> StoreMetrics:
        """``Store.open(metrics=registry)``: a StoreMetrics registered in ``registry``."""
        if not isinstance(registry, CollectorRegistry):
            raise TypeError(
                f"metrics must be a StoreObserver or a prometheus_client CollectorRegistry, "
                f"not {type(registry).__name__}"
            )
        return cls(registry)

    # -- the observer (sandbox.observe.StoreObserver) -----------------------------

    def attach(self, store: ObservedStore) -> None:
        with self._pull_lock:
            if self._store is not None:
                self._pull(self._store)  # what the previous open's log did last
            self._store = store
            self._seen = (0, 0, 0, 0)

    def _pull(self, store: ObservedStore) -> None:
        """Fold the log's figures since the last pull in (pull lock held)."""
        timings = store.log_timings
        if timings is not None:
            appends, fsyncs, groups = timings.drain()
            for seconds in appends:
                self.append.observe(seconds)
            for seconds in fsyncs:
                self.fsync.observe(seconds)
            for size in groups:
                self._group_sum += size
                i = (size - 1).bit_length()
                self._group_counts[i if i < _GROUP_TOP else _GROUP_TOP] += 1
        stats = store.log_stats()
        if stats is not None:
            now = (stats.records, stats.bytes_written, stats.syncs, stats.rotations)
            records, nbytes, syncs, rotations = (
                a - b for a, b in zip(now, self._seen, strict=True)
            )
            self.records += records
            self.bytes += nbytes
            self.syncs += syncs
            self.rotations += rotations
            self._seen = now

    def on_replay(self, seconds: float, events: int) -> None:
        self.replay_seconds = seconds
        self.replay_events = events
        self.opens += 1

    def on_snapshot(self, seconds: float) -> None:
        self.snapshot.observe(seconds)

    def on_reconcile(self, report: ReconcileReport, seconds: float | None) -> None:
        actions = self.reconcile_actions
        adopted = len(report.adopted)
        actions["created"] += len(report.created) - adopted
        actions["adopted"] += adopted
        actions["removed"] += len(report.removed)
        actions["closed"] += len(report.closed)
        self.reconcile_errors += len(report.errors)
        if seconds is not None:
            self.reconcile.observe(seconds)

    # -- the collector ------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The families with their names, for the registry's duplicate check."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        store = self._store
        if store is not None:
            with self._pull_lock:
                self._pull(store)
        return self._families(store if store is not None and not store.closed else None)

    def _families(self, store: ObservedStore | None) -> Iterator[Metric]:
        p = PREFIX
        yield self.append.family(
            p + "log_append_duration_seconds",
            "Latency of append/append_batch as the caller waits (sampled: 1 call in 16).",
        )
        yield self.fsync.family(
            p + "log_fsync_duration_seconds", "Latency of every fdatasync of a segment."
        )
        group = Histogram(GROUP_BUCKETS)
        group.counts, group.sum = list(self._group_counts), float(self._group_sum)
        yield group.family(
            p + "log_commit_group_size", "Appends (or batches) sharing one write and fsync."
        )
        yield CounterMetricFamily(p + "log_records", "Records appended.", value=self.records)
        yield CounterMetricFamily(
            p + "log_bytes", "Bytes appended to segments, framing included.", value=self.bytes
        )
        yield CounterMetricFamily(
            p + "log_rotations", "Segments started by rotation.", value=self.rotations
        )
        yield CounterMetricFamily(
            p + "log_syncs",
            "fdatasync calls on segments (groups, batch thread, rotation, close).",
            value=self.syncs,
        )
        yield self.snapshot.family(
            p + "snapshot_duration_seconds", "store.snapshot(): encode, write, fsyncs."
        )
        yield self.reconcile.family(
            p + "reconcile_duration_seconds", "One reconcile run against netns_dir."
        )
        actions = CounterMetricFamily(
            p + "reconcile_actions", "Reconcile effects recorded, by kind.", labels=["kind"]
        )
        for kind, n in self.reconcile_actions.items():
            actions.add_metric([kind], n)
        yield actions
        yield CounterMetricFamily(
            p + "reconcile_errors", "Reconcile errors (one per path).", value=self.reconcile_errors
        )
        yield CounterMetricFamily(p + "opens", "Store opens observed.", value=self.opens)
        replay = GaugeMetricFamily(
            p + "replay_duration_seconds", "Loading state at the last open (snapshot + tail)."
        )
        events = GaugeMetricFamily(p + "replay_events", "Records replayed at the last open.")
        if self.replay_seconds is not None:
            replay.add_metric([], self.replay_seconds)
            events.add_metric([], self.replay_events)
        yield replay
        yield events
        yield from _store_families(store)


class LogView:
    """An ``ObservedStore`` over a bare ``EventLog``, for programs that embed only the log.

    ``StoreMetrics(reg).attach(LogView(log, timings))`` with the ``Timings``
    the log was opened with; the store-level families stay empty.
    """

    def __init__(self, log: EventLog, timings: Timings | None) -> None:
        self._log = log
        self.log_timings = timings

    @property
    def state_dir(self) -> str:
        return self._log.directory

    @property
    def closed(self) -> bool:
        return self._log.closed

    def log_stats(self) -> EventLogStats:
        return self._log.stats

    def count_by_state(self) -> dict[State, int]:
        return {}


def _store_families(store: ObservedStore | None) -> Iterator[Metric]:
    """What is read from the store and its directory when scraped (nothing if closed)."""
    p = PREFIX
    by_state = GaugeMetricFamily(p + "sandboxes", "Sandboxes by state.", labels=["state"])
    segments = GaugeMetricFamily(p + "log_segments", "Segment files of the log now.")
    age = GaugeMetricFamily(
        p + "snapshot_age_seconds", "Seconds since the newest snapshot file was written."
    )
    if store is not None:
        for state, n in store.count_by_state().items():
            by_state.add_metric([state.value], n)
        directory = store.state_dir
        try:
            segments.add_metric([], len(list_segments(directory)))
            snaps = list_snapshots(directory)
            if snaps:
                mtime = os.stat(snaps[0][1], follow_symlinks=False).st_mtime
                age.add_metric([], max(0.0, time.time() - mtime))
        except (OSError, EventLogError):
            pass  # a directory being rotated or pruned: these two are left out this time
    else:
        for state in State:
            by_state.add_metric([state.value], 0)
    yield by_state
    yield segments
    yield age


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError naming the input."""
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-addr {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port)


def serve_metrics(addr: str, registry: CollectorRegistry) -> tuple[str, int, WSGIServer]:
    """Serve ``registry`` on ``http://HOST:PORT/metrics`` from a daemon thread.

    Returns (host, port actually bound - useful with port 0, the server) so
    the caller can print it and shut it down.
    """
    host, port = parse_addr(addr)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = server.server_address
    return host, int(bound[1]), server
