"""What a Store tells an observer: its log's commits, replay, snapshots, reconciles.

Why a protocol here and the Prometheus code elsewhere: ``Store`` must not load
a monitoring library that its embedder did not ask for, and must cost nothing
when nobody observes. ``Store.open(..., metrics=...)`` takes any
``StoreObserver`` (``sandbox.metrics.StoreMetrics`` is the Prometheus one),
or a Prometheus registry, for which the store builds a ``StoreMetrics``
itself - importing ``sandbox.metrics`` only then.

The log's figures are pulled, not pushed: the store opens its log with an
``eventlog.Timings`` (fsync and sampled append latencies, group sizes) when
it has an observer, and the observer reads those and the log's counters
(``log_stats``) from the ``ObservedStore`` it was attached to, at scrape
time - as it reads sandboxes by state and the segment and snapshot files -
so appends pay only a clock read and a list append (eventlog/observe.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from eventlog import EventLogStats, Timings
from sandbox.reconciler import ReconcileReport
from sandbox.status import State

__all__ = ["ObservedStore", "StoreObserver"]


class ObservedStore(Protocol):
    """What an observer may read from its store when it is asked for values."""

    @property
    def state_dir(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def log_timings(self) -> Timings | None: ...
    def log_stats(self) -> EventLogStats | None: ...
    def count_by_state(self) -> dict[State, int]: ...


@runtime_checkable
class StoreObserver(Protocol):
    """The store-level events (the log's figures are pulled: see the module docstring)."""

    def attach(self, store: ObservedStore) -> None:
        """The store this observer now reports on (called by each ``Store.open``)."""

    def on_replay(self, seconds: float, events: int) -> None:
        """``Store.open`` loaded its state: snapshot plus ``events`` replayed records."""

    def on_snapshot(self, seconds: float) -> None:
        """``store.snapshot()`` wrote a snapshot (encoding, write and fsyncs)."""

    def on_reconcile(self, report: ReconcileReport, seconds: float | None) -> None:
        """A reconcile run ended with ``report``; ``seconds`` None when it raised
        before its end (the report then holds that failure as an error)."""
