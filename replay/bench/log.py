"""Benchmarks of the event log against the raw limits of this machine.

Run: ``sandboxctl bench --only log`` (``python -m replay.bench.commands --only log``).

Every figure is printed beside a reference measured in the same run, on the
same disk and the same ~180-byte msgpack payloads (shaped like a sandbox
StatusUpdated event), and the ratio is compared with a target:

===========================  ==========================================  ======
figure                       reference                                   target
===========================  ==========================================  ======
append, always, 1 thread     bare ``os.write`` + ``os.fdatasync`` loop   >= 0.8
append, always, 16 threads   append, always, 1 thread                    >= 8
append, none                 bare ``os.write`` loop (no sync)            (info)
read (crc + chain + decode)  bare ``msgpack.Unpacker`` over the payloads >= 0.5
===========================  ==========================================  ======

Absolute numbers depend on the disk and its cache (a VM's write-back cache
makes fsync cheap); only the ratios are meant to be compared across runs.
Each ``bench_*`` function returns ``replay.bench.rows.Row`` objects (one
repetition's figures), which the runner aggregates over repetitions.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

from eventlog import EventLog, read

from .measure import best_of_rounds, count_unpacked, scratch, write_fdatasync_loop
from .rows import Row

_row = functools.partial(Row.measured, unit="records/s")

__all__ = [
    "bench_always_one_thread",
    "bench_always_threads",
    "bench_none_and_read",
    "sample_payload",
]


def sample_payload(i: int) -> dict[str, Any]:
    """A payload shaped like a sandbox StatusUpdated event (~180 bytes packed)."""
    now = 1_700_000_000_000_000_000 + i * 1_000_003
    return {
        "type": "StatusUpdated",
        "v": 2,
        "id": f"{i:064x}",
        "env": {"time": now, "host": "node-07", "pid": 4242, "uid": 0, "actor": None},
        "status": {"state": "READY", "pid": 10_000 + i % 50_000, "created_at": now},
    }


def _payload_size() -> int:
    return len(msgpack.packb(sample_payload(12345), use_bin_type=True))


def _rate(count: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def raw_fdatasync_loop(directory: str, count: int) -> float:
    """records/s of a bare os.write + os.fdatasync loop of the same record size."""
    record = b"x" * (_payload_size() + 64)  # payload + the log's per-record overhead
    path = os.path.join(directory, "raw.bin")
    return write_fdatasync_loop(path, record, count, lambda loop: _rate(count, loop))


def raw_write_loop(directory: str, count: int) -> float:
    """records/s of a bare os.write loop (no sync) of packed payloads + overhead."""
    fd = os.open(os.path.join(directory, "raw-nosync.bin"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    packb = msgpack.packb
    pad = b"x" * 64
    try:

        def loop() -> None:
            for i in range(count):
                os.write(fd, packb(sample_payload(i), use_bin_type=True) + pad)

        return _rate(count, loop)
    finally:
        os.close(fd)


def raw_unpacker(directory: str, count: int) -> float:
    """records/s of a bare streaming msgpack.Unpacker over a file of the payloads."""
    path = os.path.join(directory, f"payloads-{count}.msgpack")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            for i in range(count):
                f.write(msgpack.packb(sample_payload(i), use_bin_type=True))

    def loop() -> None:
        n = count_unpacked(path)
        assert n == count

    return _rate(count, loop)


def bench_always_one_thread(
    parent: str | None = None, count: int = 2000, rounds: int = 3
) -> list[Row]:
    """append with durability "always" from one thread vs a bare write+fdatasync loop."""
    with scratch(parent, "eventlog-bench-") as d:
        payloads = [sample_payload(i) for i in range(count)]
        log = EventLog.open(os.path.join(d, "log"), durability="always")
        try:

            def appends() -> float:
                def loop() -> None:
                    for p in payloads:
                        log.append(p)

                return _rate(count, loop)

            raw, value = best_of_rounds(rounds, lambda: raw_fdatasync_loop(d, count), appends)
        finally:
            log.close()
    return [_row("append always, 1 thread", value, "raw os.write+fdatasync loop", raw, 0.8)]


def bench_always_threads(
    parent: str | None = None,
    count: int = 16000,
    threads: int = 16,
    single: float | None = None,
    rounds: int = 2,
) -> list[Row]:
    """append "always" from many threads (group commit) vs one thread."""
    with scratch(parent, "eventlog-bench-") as d:
        if single is None:
            single = bench_always_one_thread(d, max(500, count // threads))[0].value
        per = count // threads
        log = EventLog.open(os.path.join(d, "log"), durability="always")
        try:

            def run() -> float:
                barrier = threading.Barrier(threads + 1)

                def worker(t: int) -> None:
                    payloads = [sample_payload(t * per + i) for i in range(per)]
                    barrier.wait()
                    for p in payloads:
                        log.append(p)

                pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
                for th in pool:
                    th.start()
                barrier.wait()
                start = time.perf_counter()
                for th in pool:
                    th.join()
                return per * threads / (time.perf_counter() - start)

            (value,) = best_of_rounds(rounds, run)
            stats = log.stats
        finally:
            log.close()
    per_sync = stats.records / max(1, stats.syncs)
    name = f"append always, {threads} threads"
    extra = {"records_per_sync": per_sync}
    return [_row(name, value, "append always, 1 thread", single, 8.0, extra=extra)]


def bench_none_and_read(
    parent: str | None = None, count: int = 1_000_000, rounds: int = 3
) -> list[Row]:
    """append "none" (vs a bare write loop), then read it all back (vs a bare Unpacker)."""
    with scratch(parent, "eventlog-bench-") as d:
        logdir = os.path.join(d, "log")
        with EventLog.open(logdir, durability="none") as log:
            append = log.append
            payloads = (sample_payload(i) for i in range(count))
            none_rate = _rate(count, lambda: [append(p) for p in payloads])
        raw_write = raw_write_loop(d, min(count, 200_000))

        def reader() -> float:
            def loop() -> None:
                n = 0
                for _ in read(logdir):
                    n += 1
                assert n == count

            return _rate(count, loop)

        raw_read, read_rate = best_of_rounds(rounds, lambda: raw_unpacker(d, count), reader)
    return [
        _row(
            "append none, 1 thread",
            none_rate,
            "raw os.write loop (packb, no sync)",
            raw_write,
            None,
        ),
        _row(f"read {count:,} records", read_rate, "raw msgpack.Unpacker", raw_read, 0.5),
    ]
