"""Prometheus metrics of ``sandboxctl follow``: how far the live projection is behind.

Built like the shipper's (``replay.fleet.metrics``) and the store's
(``sandbox.metrics``): nothing is pushed on the follow loop's path but one
counter increment per record (an ``on_event`` callback); everything else is
read when scraped:

* the log's head seq, by reading the log from the last head seen (lock-free,
  as every reader: a scan of the last segment per scrape);
* the seq follow has applied (``Follower.seq``), so the lag in records;
* the lag in seconds: while records wait, how long the oldest of them has
  waited (now minus its writer's timestamp); 0 when follow is caught up;
* sandboxes by state, counted from the live view under ``Follower.lock``.

Importing this module imports prometheus_client; only ``sandboxctl follow
--metrics-addr`` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import eventlog
from eventlog.errors import EventLogError
from eventlog.format import Record
from replay.follow import Follower
from replay.view import StoreView, has_log
from sandbox.status import State

__all__ = ["FollowMetrics"]

PREFIX = "sandboxctl_follow_"


class FollowMetrics(Collector):
    """Registers in ``registry`` and counts ``follower``'s records; the rest is read
    when scraped."""

    def __init__(
        self, registry: CollectorRegistry, follower: Follower, *, key: bytes | None = None
    ) -> None:
        self.follower = follower
        self.state_dir = follower.view.state_dir
        self.key = key
        self.records = 0
        self._head = follower.seq  # records up to the loaded view's seq exist
        self._head_lock = threading.Lock()  # two scrapes at once read the log once
        follower.on_event(self._on_event)
        registry.register(self)

    def _on_event(self, _record: Record, _view: StoreView) -> None:
        self.records += 1

    def log_head(self) -> int | None:
        """The log's last whole record's seq now (None if it cannot be read)."""
        with self._head_lock:
            try:
                if not has_log(self.state_dir):
                    return self._head  # no segment yet: an empty log
                for rec in eventlog.read(self.state_dir, from_seq=self._head + 1, key=self.key):
                    self._head = rec.seq
            except (OSError, EventLogError):
                return None
            return self._head

    def _waited_seconds(self, applied: int) -> float | None:
        """Seconds since the oldest record follow has not applied was written."""
        try:
            for rec in eventlog.read(
                self.state_dir, from_seq=applied + 1, to_seq=applied + 1, key=self.key
            ):
                return max(0.0, time.time() - rec.time_ns / 1e9)
        except (OSError, EventLogError):
            pass
        return None

    def count_by_state(self) -> dict[State, int]:
        with self.follower.lock:
            return self.follower.view.count_by_state()

    def describe(self) -> Iterator[Metric]:
        """The families with their names, for the registry's duplicate check."""
        return self._families(None, None, None, {})

    def collect(self) -> Iterator[Metric]:
        applied = self.follower.seq  # before the head: the lag is never negative
        head = self.log_head()
        seconds: float | None = None
        if head is not None:
            seconds = 0.0 if head <= applied else self._waited_seconds(applied)
        return self._families(applied, head, seconds, self.count_by_state())

    def _families(
        self,
        applied: int | None,
        head: int | None,
        seconds: float | None,
        by_state: dict[State, int],
    ) -> Iterator[Metric]:
        p = PREFIX

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(p + name, doc)
            if value is not None:
                family.add_metric([], value)
            return family

        yield CounterMetricFamily(
            p + "records", "Records follow has applied to its projection.", value=self.records
        )
        yield gauge("applied_seq", "Seq of the last record follow has applied.", applied)
        yield gauge("log_head_seq", "Seq of the log's last record.", head)
        behind = None if head is None or applied is None else max(0, head - applied)
        yield gauge("lag_records", "Records in the log follow has not applied yet.", behind)
        yield gauge(
            "lag_seconds",
            "While records wait: seconds since the oldest of them was written; 0 when caught up.",
            seconds,
        )
        family = GaugeMetricFamily(
            p + "sandboxes", "Sandboxes by state in the live projection.", labels=["state"]
        )
        for state, n in by_state.items():
            family.add_metric([state.value], n)
        yield family
