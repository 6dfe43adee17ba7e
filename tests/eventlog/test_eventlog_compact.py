"""Retention: ``eventlog.compact`` and the ``HISTORY`` record (FORMAT.md, "Compaction")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import eventlog
from eventlog.history import HISTORY_NAME, encode_history, load_history
from eventlog.segments import list_segments

SEGMENT_BYTES = 4096


def _fill(d: Path, n: int, *, key: bytes | None = None, start: int = 0) -> None:
    with eventlog.EventLog.open(d, durability="none", segment_bytes=SEGMENT_BYTES, key=key) as log:
        for i in range(start, start + n):
            log.append({"i": i, "pad": "x" * 100})


def _segments(d: Path) -> list[int]:
    return [s.first_seq for s in list_segments(str(d))]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "log"
    _fill(d, 200)
    assert len(_segments(d)) > 4
    return d


def test_compact_reopen_append_and_read(log_dir: Path) -> None:
    firsts = _segments(log_dir)
    before = firsts[3] + 5
    result = eventlog.compact(log_dir, before_seq=before)
    assert result.first_seq == firsts[3]
    assert result.removed == tuple(f"{s:020d}.log" for s in firsts[:3])
    assert _segments(log_dir) == firsts[3:]
    assert load_history(str(log_dir)) == result.history

    _fill(log_dir, 10, start=200)  # writer-open accepts a compacted log
    local = eventlog.local_history(log_dir)
    assert local is not None and local.first_seq == firsts[3]
    seqs = [r.seq for r in eventlog.read(log_dir, from_seq=local.first_seq)]
    assert seqs == list(range(firsts[3], 211))

    with pytest.raises(eventlog.HistoryNotLocalError) as info:
        list(eventlog.read(log_dir))
    assert info.value.first_local_seq == firsts[3]
    assert f"history before seq {firsts[3]} is not local" in str(info.value)
    with pytest.raises(eventlog.HistoryNotLocalError):
        eventlog.follow(log_dir, from_seq=1)

    report = eventlog.verify(log_dir)
    assert report.ok, report.problem
    assert report.first_seq == firsts[3] and report.last_seq == 210
    assert f"history before seq {firsts[3]} is not local (compacted; removed)" in report.notes
    # A head from before the compaction point: the HISTORY digest itself is found.
    assert eventlog.verify(log_dir, head=local.prev_digest).ok


def test_never_the_last_segment(log_dir: Path) -> None:
    firsts = _segments(log_dir)
    result = eventlog.compact(log_dir, before_seq=10**9)
    assert _segments(log_dir) == firsts[-1:]
    assert result.first_seq == firsts[-1]
    assert eventlog.verify(log_dir).ok
    again = eventlog.compact(log_dir, before_seq=10**9)  # nothing more to do
    assert again.removed == ()


def test_missing_head_without_history_is_still_an_error(log_dir: Path) -> None:
    os.unlink(list_segments(str(log_dir))[0].path)
    report = eventlog.verify(log_dir)
    assert not report.ok and report.problem is not None
    assert "history head removed" in report.problem.reason
    with pytest.raises(eventlog.CorruptLogError, match="history head removed"):
        list(eventlog.read(log_dir, from_seq=150))
    with pytest.raises(eventlog.CorruptLogError, match="history head removed"):
        eventlog.EventLog.open(log_dir)


def test_forged_history_digest_is_caught(log_dir: Path) -> None:
    eventlog.compact(log_dir, before_seq=_segments(log_dir)[2])
    history = load_history(str(log_dir))
    assert history is not None
    forged = history.__class__(history.first_seq, bytes(32))
    (log_dir / HISTORY_NAME).write_bytes(encode_history(forged))
    report = eventlog.verify(log_dir)
    assert not report.ok and report.problem is not None
    assert "HISTORY record's digest" in report.problem.reason


def test_deleting_more_segments_under_a_history_is_caught(log_dir: Path) -> None:
    eventlog.compact(log_dir, before_seq=_segments(log_dir)[2])
    os.unlink(list_segments(str(log_dir))[0].path)  # the kept first one
    report = eventlog.verify(log_dir)
    assert not report.ok and report.problem is not None
    assert "history head removed" in report.problem.reason


def test_edited_history_fails_its_crc(log_dir: Path) -> None:
    eventlog.compact(log_dir, before_seq=_segments(log_dir)[2])
    path = log_dir / HISTORY_NAME
    path.write_bytes(path.read_bytes().replace(b"first_seq ", b"first_seq 1"))
    report = eventlog.verify(log_dir)
    assert not report.ok and report.problem is not None and "crc" in report.problem.reason


def test_keyed_log_history_carries_a_mac(tmp_path: Path) -> None:
    d = tmp_path / "keyed"
    _fill(d, 200, key=b"k1")
    with pytest.raises(eventlog.KeyRequiredError):
        eventlog.compact(d, before_seq=100)
    eventlog.compact(d, before_seq=100, key=b"k1")
    assert eventlog.verify(d, key=b"k1").ok
    bad = eventlog.verify(d, key=b"k2")
    assert not bad.ok and bad.problem is not None and "MAC" in bad.problem.reason


def test_archive_keeps_bytes_identical(log_dir: Path, tmp_path: Path) -> None:
    originals = {s.name: Path(s.path).read_bytes() for s in list_segments(str(log_dir))}
    archive = tmp_path / "archive"
    result = eventlog.compact(log_dir, before_seq=_segments(log_dir)[4], archive_dir=archive)
    assert len(result.removed) == 4
    for name in result.removed:
        assert (archive / name).read_bytes() == originals[name]
    assert result.bytes_removed == sum(len(originals[n]) for n in result.removed)
    report = eventlog.verify(log_dir)
    assert any(f"archived in {archive}" in n for n in report.notes)
    # The archive is a readable log of its own: history from seq 1.
    archived = list(eventlog.read(archive))
    assert archived[0].seq == 1 and archived[-1].seq == result.first_seq - 1


def test_shipped_record_gates_compaction(log_dir: Path) -> None:
    records = list(eventlog.read(log_dir))
    firsts = _segments(log_dir)
    shipped = firsts[2]  # inside the third segment
    eventlog.write_shipped(log_dir, shipped, records[shipped - 1].digest)
    with pytest.raises(eventlog.CompactionRefusedError, match="never shipped"):
        eventlog.compact(log_dir, before_seq=firsts[4])
    assert _segments(log_dir) == firsts
    ok = eventlog.compact(log_dir, before_seq=firsts[2])  # all of it shipped
    assert ok.first_seq == firsts[2]
    assert "shipped to the fleet up to seq" in eventlog.verify(log_dir).notes[0]
    forced = eventlog.compact(log_dir, before_seq=firsts[4], force=True)
    assert forced.first_seq == firsts[4]


def test_shipped_record_of_another_history_refuses(log_dir: Path) -> None:
    firsts = _segments(log_dir)
    eventlog.write_shipped(log_dir, firsts[3], bytes(32))
    with pytest.raises(eventlog.CompactionRefusedError, match="another history"):
        eventlog.compact(log_dir, before_seq=firsts[3])


def test_compact_needs_the_writer_lock(log_dir: Path) -> None:
    with (
        eventlog.EventLog.open(log_dir, durability="none"),
        pytest.raises(eventlog.LogLockedError),
    ):
        eventlog.compact(log_dir, before_seq=100)


_CHILD = """
import sys, eventlog
eventlog.compact(sys.argv[1], before_seq=int(sys.argv[2]), archive_dir=sys.argv[3] or None)
"""


@pytest.mark.parametrize("point", ["compact.after_history", "compact.after_first_remove"])
@pytest.mark.parametrize("archive", [False, True])
def test_sigkill_mid_compact_reopens(
    log_dir: Path, tmp_path: Path, point: str, archive: bool
) -> None:
    firsts = _segments(log_dir)
    before = firsts[4]
    target = str(tmp_path / "archive") if archive else ""
    env = dict(os.environ, SANDBOX_CRASHPOINT=f"{point}:kill")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(log_dir), str(before), target],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr
    assert f"crashpoint {point} hit" in proc.stderr
    # Old segments may still be there; they are not part of the history.
    report = eventlog.verify(log_dir)
    assert report.ok, report.problem
    assert report.first_seq == before and report.last_seq == 200
    assert any("interrupted compaction" in n for n in report.notes)
    _fill(log_dir, 5, start=200)
    assert [r.seq for r in eventlog.read(log_dir, from_seq=before)][-1] == 205
    # The next compaction finishes the job.
    eventlog.compact(log_dir, before_seq=before, archive_dir=target or None)
    assert _segments(log_dir)[0] == before
    assert not any("interrupted" in n for n in eventlog.verify(log_dir).notes)
    if archive:
        assert sorted(os.listdir(target)) == [f"{s:020d}.log" for s in firsts[:4]]
