"""Writer-open with and without a start position, at 1,000 and 10,000 events (one run).

Why: below one segment (8 MiB, ~9,000 store events) the writer-open check
of the last segment re-reads the whole log, so a snapshot open cost
0.29-0.40x of a full replay (docs/BENCHMARKS.md). ``EventLog.open(start=)``
checks only the records after a snapshot's position. This script prints,
for each size, the median (min..max) of:

- ``log open``: ``EventLog.open`` (durability ``none``, as the open-scale
  bench opens) + ``close`` with no position, with the
  position of the snapshot at 99% of the log, and with the one at its end;
- ``snapshot open``: what ``Store.open`` does before reconciling (log open
  + ``snapshot.load``), with and without the position, and the same with
  no snapshot at all (the full replay), the reference of the ratios.

The variants run back to back in rotating order within each repetition, on
one history built by ``replay.bench.openscale.build_history`` (the store's
workload, one append per event). Nothing is asserted; figures only.

    .venv/bin/python scripts/bench_open_position.py [--reps 9] [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from eventlog import EventLog, Position
from replay.bench.openscale import History, build_history, snapshot_seqs
from sandbox import snapshot


def _log_open(history: History, start: Position | None) -> float:
    gc.collect()
    t0 = time.perf_counter()
    log = EventLog.open(history.state_dir, durability="none", start=start)
    elapsed = time.perf_counter() - t0
    log.close()
    return elapsed


def _snapshot_open(history: History, start: Position | None) -> float:
    """Log open + load (newest snapshot + tail), as Store.open does before reconciling."""
    gc.collect()
    t0 = time.perf_counter()
    log = EventLog.open(history.state_dir, durability="none", start=start)
    try:
        snapshot.load(history.state_dir, to_seq=log.last_seq, netns_dir=history.netns_dir)
    finally:
        log.close()
    return time.perf_counter() - t0


def _aside(history: History, keep: int | None) -> Callable[[], None]:
    """Move every snapshot but ``keep`` (a seq; None: all) aside; returns the undo."""
    hold = tempfile.mkdtemp(dir=history.base)
    moved = []
    for seq, path in history.snapshots.items():
        if seq != keep:
            dest = os.path.join(hold, os.path.basename(path))
            os.rename(path, dest)
            moved.append((dest, path))

    def undo() -> None:
        for dest, path in moved:
            os.rename(dest, path)
        os.rmdir(hold)

    return undo


def measure(events: int, reps: int) -> dict[str, list[float]]:
    at99, last = snapshot_seqs(events)
    history = build_history(None, events, snapshot_at=(at99, last), live=1000)
    try:
        pos = {
            seq: snapshot.read_snapshot_info(path, history.netns_dir).position
            for seq, path in history.snapshots.items()
        }
        variants: dict[str, Callable[[], float]] = {
            "log open, no position": lambda: _log_open(history, None),
            "log open, position at 99%": lambda: _log_open(history, pos[at99]),
            "log open, position at the end": lambda: _log_open(history, pos[last]),
            "full replay (no snapshot)": lambda: _with(history, None, None),
            "snapshot at 99%, no position": lambda: _with(history, at99, None),
            "snapshot at 99%, position": lambda: _with(history, at99, pos[at99]),
            "snapshot at end, no position": lambda: _with(history, last, None),
            "snapshot at end, position": lambda: _with(history, last, pos[last]),
        }
        names = list(variants)
        seconds: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(reps):
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                seconds[name].append(variants[name]())
        return seconds
    finally:
        shutil.rmtree(history.base, ignore_errors=True)


def _with(history: History, keep: int | None, start: Position | None) -> float:
    undo = _aside(history, keep)
    try:
        return _snapshot_open(history, start)
    finally:
        undo()


def report(events: int, seconds: dict[str, list[float]]) -> None:
    def ms(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1e3:7.2f} ms ({min(xs) * 1e3:.2f}..{max(xs) * 1e3:.2f})"

    full = seconds["full replay (no snapshot)"]
    plain = seconds["log open, no position"]
    print(f"\n{events:,} events (one segment), {len(full)} repetitions, medians (min..max):")
    for name, xs in seconds.items():
        if name.startswith("log open"):
            ref, what = plain, "of log open, no position"
        else:
            ref, what = full, "of full replay"
        ratio = statistics.median(a / b for a, b in zip(xs, ref, strict=True))
        print(f"  {name:32} {ms(xs)}   {ratio:6.3f}x {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args()
    for events in (int(s) for s in args.sizes.split(",")):
        report(events, measure(events, args.reps))


if __name__ == "__main__":
    main()
