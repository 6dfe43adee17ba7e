"""Opening a store: newest snapshot + tail versus a full replay, as the log grows.

Why this benchmark exists: snapshots are the only thing that keeps a node's
restart time independent of how long it has been running. The claim to
check is that ``Store.open`` with a snapshot costs about the same at 10k,
100k and 1M events, while a full replay grows linearly - and the target
from the issue: with a snapshot taken at 99% of the log (so 1% is replayed
after it), open costs <= 0.05x the full replay.

The history is a node's, not a synthetic loop: ``replay.bench.store``'s
workload (sandboxes with full CRI configs added READY, their status
updated, deleted) with at most ``live`` sandboxes alive (default 1,000: a
busy node; kubelet's default max-pods is 110), so the projection a
snapshot holds stays the size of a node while the log grows without
bound. It is written one ``append`` per event, as the Store writes,
with ``durability="none"`` (building it is not what is measured).

For each size three variants of the same directory are opened (snapshot
files are moved aside and back between them, the log is never touched):

- ``full``: no snapshot, every event replayed;
- ``snap99``: a snapshot at 99% of the log, the last 1% replayed;
- ``head``: a snapshot at the last event, nothing replayed.

The variants are opened in rotating order within each repetition so none
of them always runs first on a cold (or warm) page cache. Every open is a
real ``Store.open`` (writer lock, tail check of the last segment, snapshot
load, replay, reconcile against an empty netns dir) then ``close()``,
which is not timed.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import attrs

from eventlog import EventLog
from eventlog.segments import list_segments
from sandbox import events as ev
from sandbox import snapshot
from sandbox.projection import Projection
from sandbox.snapshot import list_snapshots
from sandbox.store import Store

from .rows import Row, aggregate
from .store import workload

__all__ = [
    "FULL_SIZES",
    "QUICK_SIZES",
    "VARIANTS",
    "History",
    "OpenPoint",
    "OpenScale",
    "bench_open_scale",
    "build_history",
    "measure_open",
    "snapshot_seqs",
]

FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000, 50_000)
VARIANTS = ("full", "snap99", "head")


# -- the history ---------------------------------------------------------------------------


@attrs.frozen
class History:
    """A built history on disk: the state dir (log + snapshots) and an empty netns dir.

    ``snapshots`` maps a seq to its snapshot file. ``remove()`` deletes it all.
    """

    base: str
    state_dir: str
    netns_dir: str
    events: int
    snapshots: dict[int, str]

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def _history_dirs(base: str) -> tuple[str, str]:
    """(netns dir, state dir) of a bench history under ``base``; the netns dir made."""
    netns_dir = os.path.join(base, "netns")
    os.mkdir(netns_dir)
    return netns_dir, os.path.join(base, "state")


def build_history(
    parent: str | None,
    count: int,
    *,
    snapshot_at: Sequence[int] = (),
    live: int = 1000,
    seed: int = 7,
) -> History:
    """Write ``count`` events of ``replay.bench.store.workload`` to a new state dir.

    The same node-shaped workload the store benchmarks replay, but written
    one ``append`` per event as the Store writes them (not in batches),
    with at most ``live`` sandboxes alive. Seq 1 is the ``NetNSDirRecorded``
    a Store's first open writes (so opening it appends nothing); the
    workload fills seqs 2..count.

    The events are applied to a ``Projection`` as they are appended, and a
    snapshot is written after each seq in ``snapshot_at`` exactly as
    ``Store.snapshot`` writes one (``encode`` + ``write_snapshot``) - without
    the full replay that reopening a store to call it would cost. Set-up,
    not measured.
    """
    stops = sorted({s for s in snapshot_at if 0 < s <= count})
    base = tempfile.mkdtemp(prefix=f"bench-history-{count}-", dir=parent)
    try:
        netns_dir, state_dir = _history_dirs(base)
        projection = Projection(netns_dir)
        apply = projection.apply
        snapshots: dict[int, str] = {}
        with EventLog.open(state_dir, durability="none") as log:
            append = log.append
            with snapshot.gc_paused():  # millions of long-lived dicts
                next_stop = stops.pop(0) if stops else 0
                recorded = ev.NetNSDirRecorded("", ev.Envelope("bench").stamp(), netns_dir)
                events = itertools.chain(
                    [recorded.to_payload()], workload(count - 1, live=live, seed=seed)
                )
                for event in itertools.islice(events, count):
                    seq = append(event)
                    apply(seq, event)
                    if seq == next_stop:
                        data = snapshot.encode(projection, log.head)
                        snapshots[seq] = snapshot.write_snapshot(state_dir, seq, data)
                        next_stop = stops.pop(0) if stops else 0
        return History(base, state_dir, netns_dir, count, snapshots)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


# -- measuring -------------------------------------------------------------------------------


@attrs.frozen
class OpenPoint:
    """Open times (seconds, one per repetition) of the three variants at one size.

    ``segments`` and ``last_segment`` (records in the last segment) are kept
    because opening a writer checks the whole last segment: they explain a
    snapshot open that is not flat.
    """

    events: int
    seconds: dict[str, list[float]]
    replayed: dict[str, int]
    segments: int = 0
    last_segment: int = 0

    def median(self, variant: str) -> float:
        return statistics.median(self.seconds[variant])


@attrs.frozen
class OpenScale:
    """What ``bench_open_scale`` measured: the rows, and the points for the plot."""

    rows: list[Row]
    points: list[OpenPoint]


@contextlib.contextmanager
def _only_snapshots(state_dir: str, aside: str, keep: Sequence[str]) -> Iterator[None]:
    """Move every snapshot of ``state_dir`` not in ``keep`` to ``aside``, and back after."""
    moved: list[tuple[str, str]] = []
    try:
        for _seq, path in list_snapshots(state_dir):
            if path not in keep:
                dest = os.path.join(aside, os.path.basename(path))
                os.rename(path, dest)
                moved.append((dest, path))
        yield
    finally:
        for dest, path in moved:
            os.rename(dest, path)


def _time_open(state_dir: str, netns_dir: str) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    store = Store.open(state_dir, netns_dir=netns_dir, durability="none")
    elapsed = time.perf_counter() - t0
    replayed = store.load_result.replayed if store.load_result is not None else -1
    store.close()
    del store
    return elapsed, replayed


def snapshot_seqs(events: int) -> tuple[int, int]:
    """Where the history gets its snapshots: at 99% of the log and at its last event."""
    return max(1, events * 99 // 100), events


def measure_open(
    history: History, reps: int, *, progress: Callable[[str], None] | None = None
) -> OpenPoint:
    """Open ``history`` ``reps`` times per variant (full, snap99, head), rotating order."""
    say = progress if progress is not None else (lambda _msg: None)
    at99, last = snapshot_seqs(history.events)
    by_variant: dict[str, Sequence[str]] = {
        "full": (),
        "snap99": [history.snapshots[at99]],
        "head": [history.snapshots[last]],
    }
    aside = tempfile.mkdtemp(prefix="aside-", dir=history.base)
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    replayed: dict[str, int] = {}
    for rep in range(reps):
        say(f"open scale: {history.events:,} events, repetition {rep + 1}/{reps}")
        shift = rep % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            with _only_snapshots(history.state_dir, aside, by_variant[variant]):
                s, n = _time_open(history.state_dir, history.netns_dir)
            seconds[variant].append(s)
            replayed[variant] = n
    os.rmdir(aside)
    segments = list_segments(history.state_dir)
    last_first = segments[-1].first_seq if segments else 1
    return OpenPoint(
        history.events,
        seconds,
        replayed,
        segments=len(segments),
        last_segment=history.events - last_first + 1,
    )


def _rows(points: Sequence[OpenPoint]) -> list[Row]:
    out: list[Row] = []
    for p in points:
        layout = f"{p.segments} segment(s), {p.last_segment:,} events in the last"
        samples: list[list[Row]] = []
        for i, full in enumerate(p.seconds["full"]):
            s99 = p.seconds["snap99"][i]
            head = p.seconds["head"][i]
            samples.append(
                [
                    Row.measured(
                        f"open {p.events:,} events, snapshot at 99%",
                        s99 * 1000,
                        "open with full replay",
                        full * 1000,
                        "<= 0.05",
                        unit="ms",
                        note=f"{p.replayed['snap99']:,} events replayed after it; {layout}",
                    ),
                    Row.measured(
                        f"open {p.events:,} events, snapshot at last event",
                        head * 1000,
                        "open with full replay",
                        full * 1000,
                        None,
                        unit="ms",
                        note=layout,
                    ),
                ]
            )
        out += aggregate(samples, "open")
    if len(points) >= 2:
        small, big = points[0], points[-1]
        growth = big.events / small.events
        for variant, what, expect in (
            ("head", "snapshot at last event", f"flat = 1, linear = {growth:g}"),
            ("snap99", "snapshot at 99%", "its 1% tail grows linearly"),
            ("full", "full replay", f"linear = {growth:g}"),
        ):
            b, s = big.median(variant), small.median(variant)
            row = Row.measured(
                f"open growth {small.events:,} -> {big.events:,} events, {what}",
                b * 1000,
                f"same at {small.events:,} events",
                s * 1000,
                None,
                unit="ms",
                group="open",
                note=expect,
            )
            out.append(attrs.evolve(row, reps=len(big.seconds[variant])))
    return out


def bench_open_scale(
    parent: str | None = None,
    sizes: Sequence[int] = FULL_SIZES,
    reps: int = 5,
    *,
    reps_big: int = 3,
    big: int = 500_000,
    live: int = 1000,
    progress: Callable[[str], None] | None = None,
    with_history: Callable[[History], None] | None = None,
) -> OpenScale:
    """Open time with and without snapshots at each size; rows + plot points.

    Sizes of ``big`` events or more get ``reps_big`` repetitions (a 1M full
    replay takes seconds); the others ``reps``. ``with_history`` is called
    with each built history before it is deleted, so that another benchmark
    (verify) can use the same 1M-event log instead of building its own.
    """
    say = progress if progress is not None else (lambda _msg: None)
    points: list[OpenPoint] = []
    for n in sizes:
        say(f"open scale: building a {n:,}-event history")
        history = build_history(parent, n, snapshot_at=snapshot_seqs(n), live=live)
        try:
            points.append(measure_open(history, reps_big if n >= big else reps, progress=say))
            if with_history is not None:
                with_history(history)
        finally:
            history.remove()
    return OpenScale(_rows(points), points)
