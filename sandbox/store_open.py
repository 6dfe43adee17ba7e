"""Opening a Store: the bodies of ``Store.open`` and ``Store.from_log``.

``open_store`` takes the writer lock (``EventLog.open``), chooses the netns
dir (the one the log recorded, sandbox/netnsdir.py), loads the state (newest
valid snapshot + tail, sandbox/snapshot.py), builds the Store, records the
netns dir in a new log, attaches a metrics observer if one was asked for,
and runs the reconcile that repairs any crash between intent and effect.
Reconcile errors never abort the open (cri #1014, containerd #6095).

The Store's constructor and its commands stay in sandbox/store.py; this
module only sequences them, so it never holds a store lock itself (the
netns-dir record goes through ``record_netns_dir``, which takes ``_cmd``
and then waits on the store's group commit, as every command does).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import eventlog
from eventlog import Durability, EventLog, Timings, crashpoints
from sandbox import events as ev
from sandbox import netnsdir, rules, snapshot
from sandbox.errors import StoreError
from sandbox.logport import LogPort
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.observe import StoreObserver
from sandbox.projection import Projection
from sandbox.reconciler import ReconcileReport
from sandbox.snapshot_hint import newest_position

if TYPE_CHECKING:
    from sandbox.store import Store

__all__ = ["from_log", "open_store", "record_netns_dir"]

log = logging.getLogger("sandbox.store")

StrPath = str | os.PathLike[str]


def open_store(
    cls: type[Store],
    state_dir: StrPath,
    *,
    netns_dir: StrPath | None,
    durability: Durability,
    actor: str | None,
    key: bytes | None,
    segment_bytes: int | None,
    metrics: object | None,
) -> Store:
    """``Store.open``: lock, replay, build ``cls``, record the netns dir, reconcile."""
    sdir = os.path.abspath(os.fspath(state_dir))
    requested = os.path.abspath(os.fspath(netns_dir)) if netns_dir is not None else None
    envelope = ev.Envelope(actor)
    observer = _observer(metrics)
    # The log keeps raw timings only when someone reports on them.
    timings = Timings() if observer is not None else None
    # The newest snapshot's position lets the writer-open check start there.
    start = newest_position(sdir)
    if segment_bytes is None:
        log_ = EventLog.open(sdir, durability=durability, key=key, timings=timings, start=start)
    else:
        log_ = EventLog.open(
            sdir,
            durability=durability,
            key=key,
            segment_bytes=segment_bytes,
            timings=timings,
            start=start,
        )
    try:
        began = time.perf_counter()
        choice, result = _load(sdir, log_.last_seq, requested, key)
        ndir = result.projection.netns_dir
        replay_seconds = time.perf_counter() - began
        if result.projection.last_seq != log_.last_seq:
            raise StoreError(
                f"{sdir}: replay stopped at seq {result.projection.last_seq}, the log's "
                f"last seq is {log_.last_seq}"
            )
        store = cls(
            log_,
            result.projection,
            state_dir=sdir,
            netns_dir=ndir,
            envelope=envelope,
            key=key,
            load_result=result,
        )
        if choice.record:
            record_netns_dir(store)
    except BaseException:
        log_.close()
        raise
    if observer is not None:
        store._metrics = observer
        store.log_timings = timings
        observer.attach(store)
        observer.on_replay(replay_seconds, result.replayed)
    _reconcile_on_open(store, sdir, ndir, observer)
    return store


def _reconcile_on_open(store: Store, sdir: str, ndir: str, observer: StoreObserver | None) -> None:
    """The reconcile ``open`` runs; a failure is logged and kept, never raised
    (cri #1014, containerd #6095) - but a simulated crash stays a crash."""
    try:
        store.reconcile()
    except crashpoints.CrashPointHit:
        store.close()
        raise
    except Exception as exc:  # never abort recovery (cri #1014, containerd #6095)
        log.error("reconcile on open of %s failed: %s", sdir, exc)
        store.last_reconcile_report = ReconcileReport(
            errors=((ndir, f"reconcile failed: {type(exc).__name__}: {exc}"),)
        )
        if observer is not None:
            observer.on_reconcile(store.last_reconcile_report, None)


def record_netns_dir(store: Store) -> None:
    """Log the store's netns dir (``open`` of a log that has none yet).

    Takes ``_cmd`` (the store's lock order) and commits through the store's one
    write path (reserve under ``_cmd``, wait for the group commit after).
    """
    with store._cmd:
        rules.check_netns_dir(store._pipe.view(), store.netns_dir)
        ticket = store._pipe.reserve([ev.NetNSDirRecorded("", store._env.stamp(), store.netns_dir)])
    store._pipe.wait(ticket)


def from_log(
    cls: type[Store],
    log_: LogPort,
    history: Iterable[tuple[int, dict[str, Any]]],
    *,
    netns_dir: StrPath | None,
    actor: str | None,
    state_dir: str,
) -> Store:
    """``Store.from_log``: fold ``history`` into a projection, check it reaches
    ``log_.last_seq``, build ``cls`` over ``log_`` (no snapshot, no reconcile)."""
    projection = Projection(os.path.abspath(os.fspath(netns_dir or DEFAULT_NETNS_DIR)))
    for seq, payload in history:
        projection.apply(seq, payload)
    if projection.last_seq != log_.last_seq:
        raise StoreError(
            f"{state_dir}: history ends at seq {projection.last_seq}, the log's last seq "
            f"is {log_.last_seq}"
        )
    return cls(
        log_,
        projection,
        state_dir=state_dir,
        netns_dir=projection.netns_dir,
        envelope=ev.Envelope(actor),
        key=None,
    )


def _load(
    sdir: str, last_seq: int, requested: str | None, key: bytes | None
) -> tuple[netnsdir.NetNSDirChoice, snapshot.LoadResult]:
    """The netns dir and the state (newest valid snapshot + tail) for ``open``.

    The recorded dir comes out of the load itself: replay folds the log's
    first record (NetNSDirRecorded) and every snapshot of a store with a
    recorded dir carries it - also a compacted log's, whose first record is
    gone - so the log is not read a second time to find it. Only a log from
    before the record existed (none recorded, history from seq 1) is scanned
    for the paths it assigned. The dir is set on the projection afterwards:
    only NetNS handles use it, and none is built before the first read.
    """
    guess = os.path.abspath(requested if requested is not None else DEFAULT_NETNS_DIR)
    result = snapshot.load(sdir, to_seq=last_seq, netns_dir=guess, key=key)
    recorded = result.projection.recorded_netns_dir
    if recorded is None and eventlog.local_history(sdir) is None:
        choice = netnsdir.choose(sdir, last_seq, requested, key=key)
    else:
        choice = netnsdir.choose_recorded(sdir, recorded, requested)
    result.projection.netns_dir = os.path.abspath(choice.netns_dir)
    return choice, result


def _observer(metrics: object | None) -> StoreObserver | None:
    """``open``'s ``metrics``: an observer as given, or a registry to build one in.

    ``sandbox.metrics`` (and with it prometheus_client) is imported only here,
    when a registry was given: an embedder that asks for no metrics loads none.
    """
    if metrics is None:
        return None
    if isinstance(metrics, StoreObserver):
        return metrics
    from sandbox.metrics import StoreMetrics

    return StoreMetrics.in_registry(metrics)
