"""Opening a store whose every event is a live sandbox: snapshot at 99% versus full replay.

Why this benchmark exists: ``replay.bench.openscale`` keeps about 1,000
sandboxes alive while the log grows, so there a snapshot is small next to
the log it replaces. The other extreme is a log of adds only (a node, or a
fleet view, holding N live sandboxes): the snapshot then holds as many
sandboxes as the log holds events, and loading one sandbox from it must
cost clearly less than replaying its event, or the snapshot does not help.
Target (the issue): with a snapshot at 99%, ``Store.open`` <= 0.25x of a
full replay of the same log.

The history is N ``SandboxAdded`` events of the store benchmarks' node
workload (realistic CRI configs), written one ``append`` per event, with a
snapshot at 99% written as ``Store.snapshot`` writes it (body format 4: the
sandboxes by column, each config its own msgpack bytes, checked in bulk on load; see
sandbox/snapshot.py). Both variants are
real ``Store.open`` calls (lock, tail check, snapshot load and validation,
replay, reconcile against an empty netns dir), in alternating order.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from eventlog import EventLog
from sandbox import events as ev
from sandbox import snapshot
from sandbox.metadata import Metadata
from sandbox.projection import Projection
from sandbox.status import State, Status

from .openscale import History, _history_dirs, _only_snapshots, _time_open, snapshot_seqs
from .rows import Row, aggregate
from .store import _metadata

__all__ = ["bench_open_live", "build_live_history", "live_adds", "row_name"]


def live_adds(count: int) -> Iterator[dict[str, Any]]:
    """``count`` SandboxAdded payloads, each a distinct sandbox with a full CRI config."""
    env = ev.Envelope("bench")
    base = 1_700_000_000_000_000_000
    configs: dict[int, Metadata] = {}
    for i in range(count):
        template = configs.get(i % 1024)
        if template is None:
            template = configs[i % 1024] = _metadata(i % 1024)
        md = Metadata(f"{i:064x}", f"sb-{i}", template.config)
        yield ev.sandbox_added(env(), md, Status(State.READY, pid=1000 + i, created_at=base))


def build_live_history(parent: str | None, count: int) -> History:
    """A state dir of ``count`` adds with a snapshot at 99% (set-up, not measured)."""
    at99 = snapshot_seqs(count)[0]
    base = tempfile.mkdtemp(prefix=f"bench-live-{count}-", dir=parent)
    try:
        netns_dir, state_dir = _history_dirs(base)
        projection = Projection(netns_dir)
        snapshots: dict[int, str] = {}
        with snapshot.gc_paused(), EventLog.open(state_dir, durability="none") as log:
            for event in live_adds(count):
                seq = log.append(event)
                projection.apply(seq, event)
                if seq == at99:
                    data = snapshot.encode(projection, log.head)
                    snapshots[seq] = snapshot.write_snapshot(state_dir, seq, data)
        return History(base, state_dir, netns_dir, count, snapshots)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def row_name(count: int) -> str:
    return f"open {count:,} live sandboxes, snapshot at 99%"


def bench_open_live(
    parent: str | None,
    sizes: Sequence[int],
    reps: int,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Per size: ``Store.open`` from the 99% snapshot vs a full replay, ``reps`` times."""
    say = progress if progress is not None else (lambda _msg: None)
    out: list[Row] = []
    for n in sizes:
        say(f"open live: building {n:,} live sandboxes")
        history = build_live_history(parent, n)
        aside = tempfile.mkdtemp(prefix="aside-", dir=history.base)
        try:
            samples: list[list[Row]] = []
            for rep in range(reps):
                say(f"open live: {n:,} sandboxes, repetition {rep + 1}/{reps}")
                timed: dict[str, tuple[float, int]] = {}
                order = ("snap99", "full") if rep % 2 == 0 else ("full", "snap99")
                for variant in order:
                    keep = list(history.snapshots.values()) if variant == "snap99" else []
                    with _only_snapshots(history.state_dir, aside, keep):
                        timed[variant] = _time_open(history.state_dir, history.netns_dir)
                (snap_s, replayed), (full_s, _n) = timed["snap99"], timed["full"]
                samples.append(
                    [
                        Row.measured(
                            row_name(n),
                            snap_s * 1000,
                            "open with full replay",
                            full_s * 1000,
                            "<= 0.25",
                            unit="ms",
                            note=f"every event a live sandbox; {replayed:,} replayed after it",
                        )
                    ]
                )
            out += aggregate(samples, "open")
        finally:
            history.remove()
    return out
