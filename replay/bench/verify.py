"""verify (checksums + chain) against a bare msgpack.Unpacker over the same payloads.

Why: ``verify`` is what an auditor runs over a node's whole history, so its
speed decides whether auditing a 1M-event log is a coffee break or a
lunch. The floor no Python implementation can beat is decoding the
payloads: a bare streaming ``msgpack.Unpacker`` over a file holding exactly
the payload bytes the log holds (re-packed from the log, which gives the
writer's bytes: packing is deterministic). The ratio says how much the
framing, both crcs and the blake2b chain cost on top of that. The issue
sets no target for it: the rows show the ratio and say "n/a".

Two figures against the same reference:

- ``eventlog.verify``: framing, crcs, the chain, gapless seqs, every
  payload decoded (what the issue calls "checksums + chain");
- ``replay.verify.verify`` (``sandboxctl verify``): the above, then every
  event folded through the state machine and every snapshot compared with
  the replay at its seq - the full audit.

The log is a node-shaped history (``replay.bench.openscale``); in
``sandboxctl bench`` it is the same 1M-event log the open-scale benchmark
built, so it is written once per run. Each repetition measures the
reference and the figures back to back, alternating which goes first.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import msgpack

import eventlog
from replay.verify import verify as audit_verify

from .openscale import History, build_history
from .rows import Row, aggregate

__all__ = ["bench_verify", "bench_verify_history", "payload_file", "unpacker_rate"]


def payload_file(state_dir: str, path: str) -> int:
    """Write the payload bytes of every record of the log to ``path``; the record count."""
    packb = msgpack.Packer(use_bin_type=True).pack
    n = 0
    with open(path, "wb") as f:
        for rec in eventlog.read(state_dir):
            f.write(packb(rec.payload))
            n += 1
    return n


def unpacker_rate(path: str, count: int) -> float:
    """records/s of a bare streaming Unpacker over ``path`` (as the log's readers unpack)."""
    gc.collect()
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for _ in msgpack.Unpacker(f, raw=False, strict_map_key=True, read_size=1 << 20):
            n += 1
    elapsed = time.perf_counter() - t0
    if n != count:
        raise RuntimeError(f"the Unpacker read {n} payloads, the log has {count}")
    return n / elapsed


def _eventlog_verify_rate(state_dir: str, count: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    report = eventlog.verify(state_dir)
    elapsed = time.perf_counter() - t0
    if not report.ok or report.records != count:
        raise RuntimeError(f"eventlog.verify: ok={report.ok}, {report.records} of {count} records")
    return count / elapsed


def _audit_rate(state_dir: str, netns_dir: str, count: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    result = audit_verify(state_dir, netns_dir=netns_dir, progress=False)
    elapsed = time.perf_counter() - t0
    if not result.ok:
        raise RuntimeError(f"replay.verify found problems: {result.problems[:3]}")
    return count / elapsed


def bench_verify_history(
    history: History,
    reps: int = 3,
    *,
    audit: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """verify (and optionally the full audit) vs the bare Unpacker over ``history``."""
    say = progress if progress is not None else (lambda _msg: None)
    path = os.path.join(history.base, "payloads.msgpack")
    count = payload_file(history.state_dir, path)
    samples: list[list[Row]] = []
    try:
        for rep in range(reps):
            say(f"verify: {count:,} records, repetition {rep + 1}/{reps}")
            if rep % 2 == 0:
                raw = unpacker_rate(path, count)
                rate = _eventlog_verify_rate(history.state_dir, count)
            else:
                rate = _eventlog_verify_rate(history.state_dir, count)
                raw = unpacker_rate(path, count)
            unpacker = "raw msgpack.Unpacker, same payloads"
            rows = [
                Row.measured(
                    f"verify {count:,} records (checksums + chain)",
                    rate,
                    unpacker,
                    raw,
                    None,
                    unit="records/s",
                    note="eventlog.verify; no target in the issue",
                )
            ]
            if audit:
                full = _audit_rate(history.state_dir, history.netns_dir, count)
                rows.append(
                    Row.measured(
                        f"sandboxctl verify {count:,} records (full audit)",
                        full,
                        unpacker,
                        raw,
                        None,
                        unit="records/s",
                        note="replay.verify: + state machine, snapshots",
                    )
                )
            samples.append(rows)
    finally:
        os.unlink(path)
    return aggregate(samples, "verify")


def bench_verify(
    parent: str | None = None,
    count: int = 1_000_000,
    reps: int = 3,
    *,
    audit: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Build a ``count``-event history (no snapshot) and measure verify over it."""
    history = build_history(parent, count)
    try:
        return bench_verify_history(history, reps, audit=audit, progress=progress)
    finally:
        history.remove()
