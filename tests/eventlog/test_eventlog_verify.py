"""verify(), keyed logs, recorded heads, and fsync failures that poison the writer."""

from __future__ import annotations

import errno
import os
import struct
import time
import zlib
from pathlib import Path

import msgpack
import pytest
from eventlog_support import payload_for, record_spans, segments

from eventlog import (
    CorruptLogError,
    EventLog,
    EventLogError,
    KeyRequiredError,
    LogPoisonedError,
    read,
    verify,
)
from eventlog.format import RECORD_HEADER_SIZE, ZERO_DIGEST, encode_record
from eventlog.verify import NOT_CHECKED_NOTE

KEY = b"court-evidence-key-0123456789abc"


def build(d: Path, count: int = 12, *, key: bytes | None = None) -> bytes:
    with EventLog.open(d, durability="none", segment_bytes=600, key=key) as log:
        for s in range(1, count + 1):
            log.append(payload_for(s))
        return log.head


def test_report_of_a_healthy_log(tmp_path: Path) -> None:
    head = build(tmp_path)
    report = verify(tmp_path)
    assert report.ok and report.problem is None
    assert (report.records, report.first_seq, report.last_seq) == (12, 1, 12)
    assert report.segments == len(segments(tmp_path)) > 1
    assert report.head == head.hex()
    assert report.chain_checked and report.torn_tail == 0 and report.notes == ()


def test_report_of_an_empty_log(tmp_path: Path) -> None:
    EventLog.open(tmp_path, durability="none").close()
    report = verify(tmp_path)
    assert report.ok and report.records == 0 and report.first_seq is None
    assert report.last_seq == 0 and report.head == ZERO_DIGEST.hex()


def rewrite_history(d: Path, seq: int, new_payload: dict[str, object]) -> None:
    """A forger with write access and no key: edit one record, re-chain everything after."""
    prev = ZERO_DIGEST
    for seg in segments(d):
        data = bytearray(seg.read_bytes())
        out = bytearray(data[:64])
        # The header keeps its prev_digest field in step with the new chain.
        out[24:56] = prev
        out[60:64] = struct.pack("<I", zlib.crc32(bytes(out[:60])))
        for start, _end, rseq, left in record_spans(seg):
            length = struct.unpack_from("<I", data, start)[0]
            time_ns = struct.unpack_from("<Q", data, start + 12)[0]
            payload = bytes(data[start + RECORD_HEADER_SIZE : start + RECORD_HEADER_SIZE + length])
            if rseq == seq:
                payload = msgpack.packb(new_payload)
            record, prev = encode_record(prev, rseq, time_ns, left, payload, b"")
            out += record
        seg.write_bytes(bytes(out))


def test_recorded_head_detects_rewritten_history(tmp_path: Path) -> None:
    head = build(tmp_path)
    early_head = next(iter(read(tmp_path, 5, 5))).digest
    before_edit = next(iter(read(tmp_path, 2, 2))).digest
    assert verify(tmp_path, head=head).ok
    assert verify(tmp_path, head=early_head.hex()).ok
    rewrite_history(tmp_path, 3, {"forged": True})
    # Internally consistent again: only the recorded head gives it away.
    assert verify(tmp_path).ok
    assert [r.payload for r in read(tmp_path, 3, 3)] == [{"forged": True}]
    for recorded in (head, early_head):
        report = verify(tmp_path, head=recorded)
        assert not report.ok and report.problem is not None
        assert report.problem.reason.startswith("history rewritten: head ")
        assert recorded.hex() in report.problem.reason
    # A head from before the edit point is still there.
    assert verify(tmp_path, head=before_edit).ok
    with pytest.raises(ValueError):
        verify(tmp_path, head="not hex")


def test_keyed_log(tmp_path: Path) -> None:
    head = build(tmp_path, key=KEY)
    report = verify(tmp_path, key=KEY, head=head)
    assert report.ok and report.chain_checked
    assert [r.payload for r in read(tmp_path, key=KEY)] == [payload_for(s) for s in range(1, 13)]
    # Without the key: crcs are still checked, the chain cannot be.
    report = verify(tmp_path)
    assert report.ok and not report.chain_checked and report.notes == (NOT_CHECKED_NOTE,)
    assert len(list(read(tmp_path))) == 12
    # A wrong key fails the chain at the first record.
    report = verify(tmp_path, key=b"wrong key")
    assert not report.ok and report.problem is not None
    assert "chain digest mismatch" in report.problem.reason and report.problem.seq == 1
    with pytest.raises(CorruptLogError, match="chain digest mismatch"):
        list(read(tmp_path, key=b"wrong key"))
    # Writers must hold the key, and only the right one.
    with pytest.raises(KeyRequiredError):
        EventLog.open(tmp_path, durability="none")
    with pytest.raises(CorruptLogError, match="chain digest mismatch"):
        EventLog.open(tmp_path, durability="none", key=b"wrong key")
    with EventLog.open(tmp_path, durability="none", key=KEY) as log:
        assert log.append({"more": 1}) == 13
    assert verify(tmp_path, key=KEY).ok


def test_forger_without_the_key_is_caught(tmp_path: Path) -> None:
    build(tmp_path, key=KEY)
    # The forger re-chains without the key (as an unkeyed chain) but keeps the keyed flag.
    rewrite_history(tmp_path, 4, {"forged": True})
    report = verify(tmp_path, key=KEY)
    assert not report.ok and report.problem is not None
    assert "chain digest mismatch" in report.problem.reason and report.problem.seq == 1
    # Without the key nobody can tell - which is why auditors keep it.
    assert verify(tmp_path).ok


def test_stripping_the_key_flag_is_caught(tmp_path: Path) -> None:
    build(tmp_path)  # an unkeyed log presented as the keyed one
    report = verify(tmp_path, key=KEY)
    assert not report.ok and report.problem is not None
    assert "not keyed" in report.problem.reason
    with pytest.raises(CorruptLogError, match="not keyed"):
        list(read(tmp_path, key=KEY))
    with pytest.raises(EventLogError, match="not keyed"):
        EventLog.open(tmp_path, durability="none", key=KEY)


def test_fsync_failure_poisons_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog.open(tmp_path, durability="always")
    assert log.append({"ok": 1}) == 1
    calls = []

    def failing_fdatasync(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error (injected)")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    with pytest.raises(LogPoisonedError) as info:
        log.append({"lost": 2})
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO
    monkeypatch.undo()
    # Never retried: every later append fails, though fsync works again.
    for payload in ({"x": 3}, {"y": 4}):
        with pytest.raises(LogPoisonedError) as later:
            log.append(payload)
        assert isinstance(later.value.__cause__, OSError)
    with pytest.raises(LogPoisonedError):
        log.append_batch([{"z": 5}])
    assert len(calls) == 1
    log.close()
    # Reopening re-reads what is really there and goes on.
    with EventLog.open(tmp_path) as again:
        assert again.last_seq in (1, 2)
        again.append({"after": "reopen"})
    assert verify(tmp_path).ok


def test_fsync_failure_in_batch_mode_poisons_later_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog.open(tmp_path, durability="batch", batch_interval=0.005)

    def failing_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error (injected)")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    log.append({"a": 1})
    for _ in range(2000):
        try:
            log.append({"b": 2})
        except LogPoisonedError as exc:
            assert isinstance(exc.__cause__, OSError)
            break
        time.sleep(0.001)
    else:
        pytest.fail("the background sync failure never poisoned the writer")
    monkeypatch.undo()
    log.close()
