"""Readers and followers while another process appends: always a gapless prefix."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from eventlog_support import payload_for, segments, spawn

from eventlog import EventLog, EventLogError, Record, follow, read, verify


def wait_for_log(d: Path) -> None:
    for _ in range(3000):
        if segments(d):
            return
        time.sleep(0.005)
    raise AssertionError("the writer never created its log")


def check_prefix(records: list[Record]) -> None:
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    for r in records:
        assert r.payload == payload_for(r.seq), r.seq


@pytest.mark.parametrize("durability", ["none", "always"])
def test_reads_during_appends_are_gapless_prefixes(tmp_path: Path, durability: str) -> None:
    total = 1500 if durability == "none" else 400
    proc = spawn("append", str(tmp_path), str(total), "2048", durability)
    try:
        wait_for_log(tmp_path)
        reads = 0
        seen: set[int] = set()
        while proc.poll() is None:
            try:
                records = list(read(tmp_path))
            except EventLogError as exc:  # pragma: no cover - a failure to report
                raise AssertionError(f"read failed during appends: {exc}") from exc
            check_prefix(records)
            seen.add(len(records))
            reads += 1
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    final = list(read(tmp_path))
    check_prefix(final)
    assert len(final) == total
    assert len(segments(tmp_path)) > 5
    # The reads really overlapped the appends.
    assert reads > 5 and len(seen) > 3, (reads, sorted(seen))
    assert verify(tmp_path).ok


def test_follower_sees_every_record_across_rotations(tmp_path: Path) -> None:
    total = 700
    # Create the log first so that follow() has something to open.
    EventLog.open(tmp_path, durability="none").close()
    stop = threading.Event()
    got: list[Record] = []
    follower = follow(tmp_path, stop=stop, poll_interval=0.2)
    proc = spawn("append", str(tmp_path), str(total), "1024", "always")
    try:
        for record in follower:
            got.append(record)
            if record.seq == total:
                stop.set()
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        follower.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check_prefix(got)
    assert len(got) == total
    assert len(segments(tmp_path)) > 10


def test_follow_from_the_middle_and_stop_while_idle(tmp_path: Path) -> None:
    with EventLog.open(tmp_path, durability="none", segment_bytes=500) as log:
        for s in range(1, 21):
            log.append(payload_for(s))
    stop = threading.Event()
    # An hour between polls: only ``stop`` can end the wait below.
    with follow(tmp_path, 15, stop=stop, poll_interval=3600) as follower:
        seqs = [next(follower).seq for _ in range(6)]
        assert seqs == [15, 16, 17, 18, 19, 20]
        rest: list[Record] = []
        idle = threading.Thread(target=lambda: rest.extend(follower))
        idle.start()
        time.sleep(0.3)  # let it go idle (no assertion depends on this)
        stop.set()
        idle.join(timeout=60)
        assert not idle.is_alive(), "stop did not end an idle follower"
        assert rest == []


def test_follow_in_process_wakes_on_append(tmp_path: Path) -> None:
    """With a long poll interval, only the inotify wake-up can deliver quickly."""
    log = EventLog.open(tmp_path, durability="none", segment_bytes=400)
    got: list[int] = []
    follower = follow(tmp_path, poll_interval=60)
    try:

        def consume() -> None:
            for record in follower:
                got.append(record.seq)
                if record.seq == 30:
                    return

        reader = threading.Thread(target=consume)
        reader.start()
        for s in range(1, 31):
            log.append(payload_for(s))
            if s % 10 == 0:
                time.sleep(0.05)
        reader.join(timeout=30)
        assert not reader.is_alive(), got
        assert got == list(range(1, 31))
    finally:
        follower.close()
        log.close()


def test_follower_close_stops_its_observer(tmp_path: Path) -> None:
    EventLog.open(tmp_path, durability="none").close()
    before = set(threading.enumerate())
    follower = follow(tmp_path, poll_interval=0.1)
    started = set(threading.enumerate()) - before
    assert started, "follow() should start a watchdog observer thread"
    follower.close()
    for thread in started:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert list(follower) == []
