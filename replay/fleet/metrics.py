"""Prometheus metrics of ``sandboxctl ship``: how far the stream is behind the log.

Why scrape-time values: the shipper's hot loop must not pay for monitoring,
so it only keeps its ``ShipStats`` counters (it always did) and the time of
the last acknowledged record; this collector reads them when scraped. The
log's head is found then too, by reading the log from the last head seen
(lock-free, as every reader): a scrape costs a scan of the last segment,
never the shipper anything.

Lag is reported two ways: ``records`` behind the log's head, and
``seconds`` - how old (by the writer's clock) the newest acknowledged
record is while records are waiting; 0 when the stream holds everything.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import eventlog
from eventlog.errors import EventLogError
from replay.fleet.config import ShipConfig, ShipStats

__all__ = ["ShipMetrics"]

PREFIX = "sandboxctl_ship_"


class ShipMetrics(Collector):
    """Registers in ``registry``; reads ``stats`` (filled in by the shipper) when scraped."""

    def __init__(self, registry: CollectorRegistry, cfg: ShipConfig, stats: ShipStats) -> None:
        self.cfg = cfg
        self.stats = stats
        self._head = 0
        self._head_lock = threading.Lock()  # two scrapes at once read the log once
        registry.register(self)

    def log_head(self) -> int | None:
        """The log's last whole record's seq now (None if it cannot be read)."""
        with self._head_lock:
            try:
                for rec in eventlog.read(
                    os.fspath(self.cfg.state_dir), from_seq=self._head + 1, key=self.cfg.key
                ):
                    self._head = rec.seq
            except (OSError, EventLogError):
                return None
            return self._head

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self.log_head())

    def _families(self, head: int | None) -> Iterator[Metric]:
        p, s = PREFIX, self.stats
        labels = ["node"]
        node = [self.cfg.node]

        def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
            family = CounterMetricFamily(p + name, doc, labels=labels)
            family.add_metric(node, value)
            return family

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(p + name, doc, labels=labels)
            if value is not None:
                family.add_metric(node, value)
            return family

        yield counter("acked_records", "Records the stream acknowledged.", s.acked)
        yield counter("duplicates", "Acks that were duplicates (re-sends).", s.duplicates)
        yield counter("published", "Publishes sent.", s.published)
        yield counter("sessions", "Connections made.", s.sessions)
        yield counter("failures", "Connections or publishes that failed.", s.failures)
        yield gauge("last_acked_seq", "Seq of the newest acknowledged record.", s.last_acked_seq)
        yield gauge("log_head_seq", "Seq of the log's last record.", head)
        behind = None if head is None else max(0, head - s.last_acked_seq)
        yield gauge("lag_records", "Records in the log the stream does not hold yet.", behind)
        seconds: float | None = None
        if behind == 0:
            seconds = 0.0
        elif behind is not None and s.last_acked_time_ns:
            seconds = max(0.0, time.time() - s.last_acked_time_ns / 1e9)
        yield gauge(
            "lag_seconds",
            "While records wait: seconds since the newest acknowledged record was written.",
            seconds,
        )
