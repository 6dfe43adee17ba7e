"""``EventLog.compact``: compaction by the open writer, under the lock it holds.

The same body as ``eventlog.compact`` (which takes the lock itself and so
fails with LogLockedError while a writer is open): the same ``HISTORY``
record, the same refusals. What is new is that appends and rotations go on
meanwhile: nothing appended may be lost, the writer's segment must stay, and
the log must verify afterwards.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import eventlog
from eventlog.format import segment_name
from eventlog.history import load_history
from eventlog.segments import list_segments

SEGMENT_BYTES = 2048


def _firsts(d: Path) -> list[int]:
    return [s.first_seq for s in list_segments(str(d))]


def _append_padded(log: eventlog.EventLog, numbers: range) -> None:
    # Padded so that a few dozen records fill a SEGMENT_BYTES segment: many rotations.
    for i in numbers:
        log.append({"i": i, "pad": "x" * 60})


def _filled_log(d: Path, records: int) -> eventlog.EventLog:
    """A writer on ``d`` holding ``records`` padded records over several segments."""
    log = eventlog.EventLog.open(d, segment_bytes=SEGMENT_BYTES)
    _append_padded(log, range(records))
    return log


def test_open_writer_compacts_and_goes_on_appending(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with _filled_log(d, 120) as log:
        firsts = _firsts(d)
        assert len(firsts) > 4
        with pytest.raises(eventlog.LogLockedError):
            eventlog.compact(d, before_seq=firsts[3])  # the lock-taking way cannot
        result = log.compact(before_seq=firsts[3] + 1)
        assert result.first_seq == firsts[3]
        assert result.removed == tuple(f"{s:020d}.log" for s in firsts[:3])
        assert _firsts(d) == firsts[3:]
        assert load_history(str(d)) == result.history
        _append_padded(log, range(120, 140))
        last = log.last_seq
    report = eventlog.verify(d)
    assert report.ok, report.problem
    assert (report.first_seq, report.last_seq) == (firsts[3], last)
    assert f"history before seq {firsts[3]} is not local (compacted; removed)" in report.notes
    with eventlog.EventLog.open(d) as log:  # writer-open accepts it
        assert log.last_seq == last


def test_before_seq_is_capped_at_the_writers_last_seq(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with _filled_log(d, 60) as log:
        firsts = _firsts(d)
        result = log.compact(before_seq=10**9)
        assert _firsts(d) == firsts[-1:]  # never the last segment
        assert result.first_seq == firsts[-1]
        assert log.compact(before_seq=10**9).removed == ()
        log.append({"i": "after"})
    assert eventlog.verify(d).ok


def test_a_segment_being_created_is_never_the_kept_one(tmp_path: Path) -> None:
    """What a compaction racing a rotation can see: the next segment's file exists
    (``create_new`` done), its header not yet written. It starts after ``last_seq``,
    so it is neither kept nor read; the writer's segment before it stays."""
    d = tmp_path / "log"
    with _filled_log(d, 60) as log:
        firsts = _firsts(d)
        being_created = d / segment_name(log.last_seq + 1)
        being_created.touch()
        result = log.compact(before_seq=10**9)
        assert result.first_seq == firsts[-1]
        assert _firsts(d) == [firsts[-1], log.last_seq + 1]
        being_created.unlink()  # the rotation "never happened": the writer goes on
        _append_padded(log, range(60, 90))
    assert eventlog.verify(d).ok


def test_a_closed_writer_does_not_compact(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = _filled_log(d, 60)
    log.close()
    with pytest.raises(eventlog.LogClosedError):
        log.compact(before_seq=30)


def test_the_shipped_rule_holds_for_the_open_writer(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with _filled_log(d, 120) as log:
        firsts = _firsts(d)
        shipped = next(r for r in eventlog.read(d) if r.seq == firsts[1])
        eventlog.write_shipped(d, shipped.seq, shipped.digest)
        with pytest.raises(eventlog.CompactionRefusedError, match="never shipped"):
            log.compact(before_seq=firsts[4])
        assert _firsts(d) == firsts
        assert log.compact(before_seq=firsts[4], force=True).first_seq == firsts[4]


def test_appenders_and_rotations_racing_compactions_lose_nothing(tmp_path: Path) -> None:
    """Four appending threads rotate segments while the main thread compacts again and
    again; every acknowledged seq must read back, in order, chained, after the last
    compaction point."""
    d = tmp_path / "log"
    stop = threading.Event()
    started = threading.Barrier(5)
    acked: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    with eventlog.EventLog.open(d, segment_bytes=SEGMENT_BYTES) as log:

        def appender(n: int) -> None:
            try:
                started.wait()
                i = 0
                while not stop.is_set() or i < 50:
                    acked[n].append(log.append({"t": n, "i": i, "pad": "y" * 40}))
                    i += 1
            except BaseException as exc:  # reported below, not swallowed
                errors.append(exc)

        threads = [threading.Thread(target=appender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        started.wait()
        removed = 0
        try:
            for _ in range(15):
                # Wait for two segments' worth of new records (progress, not time).
                target = log.last_seq + 50
                while log.last_seq < target and not errors:
                    time.sleep(0.001)
                result = log.compact(before_seq=log.last_seq - 5)
                removed += len(result.removed)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors
        assert removed > 0
        last = log.last_seq
        first_local = log.compact(before_seq=last).first_seq
    seqs = sorted(s for mine in acked for s in mine)
    assert seqs == list(range(1, last + 1))  # gapless, none lost or doubled
    report = eventlog.verify(d)
    assert report.ok, report.problem
    assert (report.first_seq, report.last_seq) == (first_local, last)
    read_back = [r.seq for r in eventlog.read(d, from_seq=first_local)]
    assert read_back == list(range(first_local, last + 1))
