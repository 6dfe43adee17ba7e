"""Flip every bit of a small two-segment log: nothing is ever silently accepted.

For each flipped bit the test says precisely what must happen, by region:

- ``verify`` always reports a problem (``ok`` False) naming the segment;
- a writer ``open`` raises CorruptLogError when the bit is in the LAST
  segment (open checks only that one) and leaves every byte alone; a flip
  in an earlier segment is found by ``read`` and ``verify`` instead;
- ``read`` raises CorruptLogError - except for a flip in the body (payload,
  digest, body crc) of the very last record, where a reader cannot tell a
  writer in the middle of an append from damage: it stops quietly before
  that record (and ``open``/``verify`` still call it corruption). None of
  these flips is "torn": a bit flip never zeroes a sector.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eventlog_support import broken_files, record_spans, segments, small_payload

from eventlog import CorruptLogError, EventLog, read, verify
from eventlog.format import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE


def build(d: Path) -> None:
    with EventLog.open(d, durability="none", segment_bytes=150) as log:
        log.append(small_payload(1))
        log.append(small_payload(2))  # segment 1: seqs 1-2
        log.append(small_payload(3))  # segment 2 starts here
        log.segment_bytes = 10**9
        log.append_batch([small_payload(4), small_payload(5)])
        log.append(small_payload(6))


def poke(path: Path, offset: int, value: int) -> None:
    """Overwrite one byte in place (rewriting the file would make ext4 flush it)."""
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(bytes([value]))


def region(offset: int, spans: list[tuple[int, int, int, int]]) -> str:
    if offset < SEGMENT_HEADER_SIZE:
        return "segment header"
    for start, _end, _seq, _left in spans:
        if start <= offset < start + RECORD_HEADER_SIZE:
            return "record header"
    return "record body"


def test_every_bit_flip_is_detected(tmp_path: Path) -> None:
    d = tmp_path / "log"
    build(d)
    segs = segments(d)
    assert [s.name for s in segs] == ["00000000000000000001.log", "00000000000000000003.log"]
    originals = {s: s.read_bytes() for s in segs}
    spans = {s: record_spans(s) for s in segs}
    last_seg = segs[-1]
    last_record_start = spans[last_seg][-1][0]
    checked = 0
    for seg in segs:
        data = originals[seg]
        for offset in range(len(data)):
            where = region(offset, spans[seg])
            for bit in range(8):
                flipped = bytearray(data)
                flipped[offset] ^= 1 << bit
                poke(seg, offset, flipped[offset])
                context = f"{seg.name} offset {offset} bit {bit} ({where})"

                report = verify(d)
                assert not report.ok, context
                assert report.problem is not None
                assert report.problem.segment == str(seg), context

                quiet_tail = (
                    seg == last_seg and where == "record body" and offset >= last_record_start
                )
                if quiet_tail:
                    assert [r.seq for r in read(d)] == [1, 2, 3, 4, 5], context
                else:
                    with pytest.raises(CorruptLogError):
                        list(read(d))

                if seg == last_seg:
                    with pytest.raises(CorruptLogError):
                        EventLog.open(d, durability="none")
                    assert seg.read_bytes() == bytes(flipped), context
                else:
                    with EventLog.open(d, durability="none") as log:
                        assert log.last_seq == 6, context
                assert broken_files(d) == [], context
                checked += 1
            poke(seg, offset, data[offset])
    assert checked == 8 * sum(len(b) for b in originals.values())
    assert verify(d).ok


def test_corrupt_error_says_where(tmp_path: Path) -> None:
    d = tmp_path / "log"
    build(d)
    seg = segments(d)[0]
    data = bytearray(seg.read_bytes())
    second = record_spans(seg)[1][0]
    data[second + RECORD_HEADER_SIZE] ^= 0x40  # payload of seq 2
    seg.write_bytes(data)
    with pytest.raises(CorruptLogError) as info:
        list(read(d))
    err = info.value
    assert (err.segment, err.offset, err.seq) == (str(seg), second, 2)
    assert "body crc" in err.reason
    assert str(seg) in str(err) and f"offset {second}" in str(err) and "seq 2" in str(err)
    problem = verify(d).problem
    assert problem is not None
    assert (problem.segment, problem.offset, problem.seq) == (str(seg), second, 2)
