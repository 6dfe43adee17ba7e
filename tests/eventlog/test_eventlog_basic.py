"""The writer and readers on healthy logs: the public API does what it says."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from eventlog_support import broken_files, payload_for, segments
from support import start_threads

import eventlog
from eventlog import (
    EventLog,
    EventLogError,
    LogClosedError,
    Record,
    RecordTooLargeError,
    read,
    verify,
)
from eventlog.format import SEGMENT_HEADER_SIZE, ZERO_DIGEST


def test_append_read_roundtrip(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with EventLog.open(d) as log:
        assert log.last_seq == 0
        assert log.head == ZERO_DIGEST
        assert [log.append(payload_for(s)) for s in (1, 2, 3)] == [1, 2, 3]
        assert log.append_batch([payload_for(4), payload_for(5)]) == [4, 5]
        assert log.append_batch([]) == []
        assert log.last_seq == 5
        head = log.head
    records = list(read(d))
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.payload for r in records] == [payload_for(s) for s in range(1, 6)]
    assert records[-1].digest == head
    assert all(isinstance(r, Record) and r.time_ns > 0 for r in records)
    assert records[0].segment == "00000000000000000001.log"
    assert records[0].offset == SEGMENT_HEADER_SIZE
    with pytest.raises(AttributeError):
        records[0].seq = 9  # type: ignore[misc]


def test_open_creates_missing_directories_and_reopen_continues(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b" / "log"
    with EventLog.open(str(d), durability="none") as log:
        log.append({"x": 1})
    assert sorted(p.name for p in d.iterdir()) == ["00000000000000000001.log", "LOCK"]
    with EventLog.open(d, durability="none") as log:
        assert log.last_seq == 1
        assert log.append({"x": 2}) == 2
        assert log.recovery == ""
    assert [r.payload for r in read(d)] == [{"x": 1}, {"x": 2}]


def test_read_ranges(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with EventLog.open(d, durability="none", segment_bytes=300) as log:
        for s in range(1, 31):
            log.append(payload_for(s))
    assert len(segments(d)) > 3
    assert [r.seq for r in read(d, 7, 12)] == list(range(7, 13))
    assert [r.seq for r in read(d, 25)] == list(range(25, 31))
    assert list(read(d, 31)) == []
    assert list(read(d, 5, 4)) == []
    assert [r.seq for r in read(d, to_seq=3)] == [1, 2, 3]
    with pytest.raises(ValueError):
        read(d, 0)


def test_rotation_only_between_batches(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with EventLog.open(d, durability="none", segment_bytes=400) as log:
        log.append(payload_for(1))
        # Far bigger than segment_bytes: still one segment.
        log.append_batch([payload_for(s) for s in range(2, 12)])
        log.append(payload_for(12))
        assert log.stats.rotations == 1
    names = [p.name for p in segments(d)]
    assert names == ["00000000000000000001.log", "00000000000000000012.log"]
    assert [r.seq for r in read(d)] == list(range(1, 13))


def test_missing_directory_or_log_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="does not exist"):
        read(tmp_path / "nope")
    with pytest.raises(EventLogError, match="does not exist"):
        verify(tmp_path / "nope")
    with pytest.raises(EventLogError, match="does not exist"):
        eventlog.follow(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EventLogError, match="no event log"):
        read(tmp_path / "empty")
    with pytest.raises(EventLogError, match="no event log"):
        eventlog.follow(tmp_path / "empty")


def test_record_too_large_writes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with EventLog.open(d, durability="none", max_record_bytes=100) as log:
        log.append({"a": "x" * 50})
        with pytest.raises(RecordTooLargeError):
            log.append({"a": "x" * 200})
        with pytest.raises(RecordTooLargeError):
            log.append_batch([{"a": 1}, {"a": "x" * 200}])
        assert log.last_seq == 1
        assert log.append({"b": 1}) == 2
    assert [r.seq for r in read(d, max_record_bytes=100)] == [1, 2]


def test_unreadable_payloads_are_refused_before_writing(tmp_path: Path) -> None:
    with EventLog.open(tmp_path, durability="none") as log:
        with pytest.raises(TypeError):
            log.append([1, 2])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            log.append({"a": {1, 2}})  # msgpack cannot pack a set
        with pytest.raises(ValueError, match="read back"):
            log.append({"a": {1: "int key"}})  # strict_map_key would refuse it
        assert log.last_seq == 0
        assert log.append({"ok": b"bytes", "n": None, "f": 1.5, "l": [1, "2"]}) == 1
    (record,) = read(tmp_path)
    assert record.payload == {"ok": b"bytes", "n": None, "f": 1.5, "l": [1, "2"]}


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path, durability="none")
    log.close()
    log.close()
    assert log.closed
    with pytest.raises(LogClosedError):
        log.append({"a": 1})


@pytest.mark.parametrize("durability", ["always", "batch", "none"])
def test_durability_modes_and_synced_offset(tmp_path: Path, durability: str) -> None:
    d = tmp_path / "log"
    log = EventLog.open(d, durability=durability, batch_interval=0.01)  # type: ignore[arg-type]
    path, synced = log.synced_offset
    assert path.endswith("00000000000000000001.log")
    assert synced == (SEGMENT_HEADER_SIZE if durability != "none" else 0)
    log.append({"a": 1})
    size = os.path.getsize(path)
    if durability == "always":
        assert log.synced_offset == (path, size)
    log.close()
    if durability == "batch":
        assert log.synced_offset == (path, size)
        assert log.stats.syncs >= 1
    if durability == "none":
        assert log.stats.syncs == 0
    assert [r.payload for r in read(d)] == [{"a": 1}]


def test_batch_mode_background_sync(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path, durability="batch", batch_interval=0.01)
    try:
        log.append({"a": 1})
        done = threading.Event()
        for _ in range(500):
            if log.stats.syncs >= 1:
                done.set()
                break
            done.wait(0.01)
        assert done.is_set(), "the batch thread never synced"
        assert log.synced_offset[1] == os.path.getsize(log.synced_offset[0])
    finally:
        log.close()


def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    """16 threads appending with durability always need fewer syncs than records."""
    per, threads = 40, 16
    results: list[list[int]] = [[] for _ in range(threads)]
    with EventLog.open(tmp_path, durability="always") as log:
        barrier = threading.Barrier(threads)

        def worker(t: int) -> None:
            barrier.wait()
            for i in range(per):
                results[t].append(log.append({"t": t, "i": i}))

        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        stats = log.stats
    assert stats.records == stats.appends == per * threads
    assert stats.syncs < stats.records, stats
    assert sorted(s for r in results for s in r) == list(range(1, per * threads + 1))
    by_seq = {r.seq: r.payload for r in read(tmp_path)}
    for t, seqs in enumerate(results):
        assert [by_seq[s] for s in seqs] == [{"t": t, "i": i} for i in range(per)]


def test_concurrent_batches_stay_contiguous(tmp_path: Path) -> None:
    with EventLog.open(tmp_path, durability="always") as log:

        def worker(t: int) -> None:
            for i in range(20):
                seqs = log.append_batch([{"t": t, "i": i, "j": j} for j in range(3)])
                assert seqs == list(range(seqs[0], seqs[0] + 3))

        pool = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    records = list(read(tmp_path))
    assert [r.seq for r in records] == list(range(1, 481))
    for k in range(0, 480, 3):
        trio = [r.payload for r in records[k : k + 3]]
        assert [p["j"] for p in trio] == [0, 1, 2]
        assert len({(p["t"], p["i"]) for p in trio}) == 1
    assert verify(tmp_path).ok


def test_close_waits_for_inflight_appends(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path, durability="always")
    errors: list[BaseException] = []
    acked: list[int] = []

    def worker() -> None:
        try:
            while True:
                acked.append(log.append({"x": 1}))
        except LogClosedError:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = start_threads(4, lambda _: worker())
    while len(acked) < 50:
        threading.Event().wait(0.001)
    log.close()
    for th in pool:
        th.join()
    assert not errors
    assert len(list(read(tmp_path))) >= len(acked)
    assert broken_files(tmp_path) == []
    with EventLog.open(tmp_path) as again:
        assert again.last_seq >= max(acked)


def test_open_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        EventLog.open(tmp_path, durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EventLog.open(tmp_path, segment_bytes=0)
    with pytest.raises(ValueError):
        EventLog.open(tmp_path, key=b"")
    with pytest.raises(ValueError):
        EventLog.open(tmp_path, key=b"k" * 65)
