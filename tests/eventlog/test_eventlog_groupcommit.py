"""Group commit with durability "always": many appenders, one write and fdatasync per group."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from support import run_threads, start_threads

from eventlog import EventLog, LogClosedError, LogPoisonedError, read


def _hammer(log: EventLog, threads: int, per: int) -> tuple[list[int], list[BaseException]]:
    seqs: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(per):
            try:
                seqs.append(log.append({"t": t, "i": i}))
            except BaseException as exc:  # collected for the test
                errors.append(exc)

    run_threads(threads, worker)
    return seqs, errors


def test_concurrent_appends_get_gapless_seqs_and_share_syncs(tmp_path: Path) -> None:
    with EventLog.open(tmp_path, durability="always") as log:
        seqs, errors = _hammer(log, 16, 60)
        assert not errors
        assert sorted(seqs) == list(range(1, 16 * 60 + 1))
        stats = log.stats
        assert stats.records == 16 * 60 and stats.syncs <= stats.records
        assert log.synced_offset == (log.synced_offset[0], os.path.getsize(log.synced_offset[0]))
    records = list(read(tmp_path))
    assert [r.seq for r in records] == list(range(1, 16 * 60 + 1))
    # Each thread's records are in its own order.
    for t in range(16):
        assert [r.payload["i"] for r in records if r.payload["t"] == t] == list(range(60))


def test_fsync_failure_fails_every_waiter_and_poisons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog.open(tmp_path, durability="always")
    real = os.fdatasync
    first = threading.Event()

    def failing_fdatasync(fd: int) -> None:
        first.wait(0.05)  # let a group queue up behind the failing one
        raise OSError(errno.EIO, "Input/output error (injected)")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    seqs, errors = _hammer(log, 8, 5)
    monkeypatch.setattr(os, "fdatasync", real)
    assert not seqs  # nothing was acknowledged
    assert len(errors) == 8 * 5 and all(isinstance(e, LogPoisonedError) for e in errors)
    with pytest.raises(LogPoisonedError):
        log.append({"after": 1})
    log.close()


def test_close_racing_with_appenders(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path, durability="always")
    done = threading.Event()
    acked: list[int] = []
    unexpected: list[BaseException] = []

    def worker() -> None:
        while not done.is_set():
            try:
                acked.append(log.append({"x": 1}))
            except LogClosedError:  # the only way an append may fail here
                return
            except BaseException as exc:  # anything else fails the test below
                unexpected.append(exc)
                return

    pool = start_threads(8, lambda _: worker())
    while len(acked) < 50:
        threading.Event().wait(0.001)
    log.close()
    done.set()
    for th in pool:
        th.join()
    assert unexpected == []
    # Every acknowledged append is in the log.
    assert {r.seq for r in read(tmp_path)} >= set(acked)
