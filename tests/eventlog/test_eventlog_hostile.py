"""Torn writes versus corruption, and hostile bytes with valid checksums.

Zeroed sectors at the tail are what a power loss leaves (repaired); zeroed
sectors in the middle are damage (CorruptLogError). Crafted records whose
crcs and chain are valid but whose content is absurd - huge lengths, seq
gaps, broken batches, msgpack bombs - must raise CorruptLogError, never
allocate what they claim and never leak a raw exception.
"""

from __future__ import annotations

import os
import shutil
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from eventlog_support import (
    broken_files,
    payload_for,
    record_spans,
    reopen,
    segments,
    small_payload,
    whole_prefix_end,
    zero,
)

from eventlog import CorruptLogError, EventLog, read, verify
from eventlog.format import (
    RECORD_HEADER_SIGNED,
    RECORD_HEADER_SIZE,
    SECTOR_SIZE,
    encode_record,
)


def build(d: Path, count: int = 30, *, segment_bytes: int = 10**9, pad: str = "x") -> None:
    """A log written as production writes it (durability "always"): every
    record carries the proof of the fsyncs before it."""

    def make(seq: int) -> dict[str, Any]:
        p = payload_for(seq)
        return p | {"pad": pad * len(p["pad"])}

    with EventLog.open(d, durability="always", segment_bytes=segment_bytes) as log:
        for _ in range(count):
            seq = log.last_seq + 1
            if seq % 9 == 0:
                log.append_batch([make(seq), make(seq + 1)])
            else:
                log.append(make(seq))


# -- torn writes: zeroed sectors ---------------------------------------------


def test_tail_zeroed_from_every_sector_boundary(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src)
    (seg,) = segments(src)
    size = seg.stat().st_size
    spans = record_spans(seg)
    assert size > 6 * SECTOR_SIZE
    for boundary in range(SECTOR_SIZE, size, SECTOR_SIZE):
        d = tmp_path / f"z{boundary}"
        shutil.copytree(src, d)
        zero(d / seg.name, boundary, size)
        keep_end, keep_seq = whole_prefix_end(spans, boundary)
        # Readers stop quietly before the damage.
        assert [r.seq for r in read(d)] == list(range(1, keep_seq + 1))
        report = verify(d)
        assert report.ok and report.torn_tail == size - keep_end, boundary
        assert reopen(d, durability="none") == ("torn", keep_seq), boundary
        assert (d / seg.name).stat().st_size == keep_end
        (broken,) = broken_files(d)
        assert broken.read_bytes() == seg.read_bytes()[keep_end:boundary] + bytes(size - boundary)
        shutil.rmtree(d)


def test_zeroed_sector_inside_a_big_last_record_is_torn(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with EventLog.open(d, durability="none") as log:
        log.append({"a": 1})
        log.append({"big": "y" * 3000})
    (seg,) = segments(d)
    start, end, _seq, _left = record_spans(seg)[-1]
    # A whole sector inside the record, with intact bytes on both sides.
    sector = (start // SECTOR_SIZE + 2) * SECTOR_SIZE
    assert start < sector and sector + SECTOR_SIZE < end - 100
    zero(seg, sector, sector + SECTOR_SIZE)
    assert [r.seq for r in read(d)] == [1]
    assert verify(d).torn_tail == end - start
    assert reopen(d, durability="none") == ("torn", 1)
    assert seg.stat().st_size == start


def test_zeroed_sector_with_data_after_it_is_corrupt(tmp_path: Path) -> None:
    d = tmp_path / "log"
    build(d)
    (seg,) = segments(d)
    zero(seg, 2 * SECTOR_SIZE, 3 * SECTOR_SIZE)
    with pytest.raises(CorruptLogError, match="crc"):
        list(read(d))
    assert not verify(d).ok
    assert reopen(d, durability="none") == ("corrupt", 0)
    assert broken_files(d) == []


def test_zeroed_sector_in_an_earlier_segment_is_corrupt(tmp_path: Path) -> None:
    d = tmp_path / "log"
    build(d, 40, segment_bytes=4 * SECTOR_SIZE)
    first = segments(d)[0]
    size = first.stat().st_size
    # Even the end of a non-last segment is never "torn".
    zero(first, (size // SECTOR_SIZE) * SECTOR_SIZE, size)
    with pytest.raises(CorruptLogError):
        list(read(d))
    report = verify(d)
    assert not report.ok and report.problem is not None
    assert report.problem.segment == str(first)


def test_zero_filled_extension_is_cut(tmp_path: Path) -> None:
    d = tmp_path / "log"
    build(d, 5)
    (seg,) = segments(d)
    size = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(bytes(4096))
    assert [r.seq for r in read(d)] == [1, 2, 3, 4, 5]
    report = verify(d)
    assert report.ok and report.torn_tail == 4096 and "zero-filled" in report.torn_reason
    assert reopen(d, durability="none") == ("torn", 5)
    assert seg.stat().st_size == size
    assert broken_files(d)[0].read_bytes() == bytes(4096)


# -- absurd lengths ----------------------------------------------------------


def patch_header(path: Path, offset: int, *, length: int, fix_crc: bool) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        header = bytearray(f.read(RECORD_HEADER_SIZE))
        struct.pack_into("<I", header, 0, length)
        if fix_crc:
            signed = RECORD_HEADER_SIGNED
            struct.pack_into("<I", header, signed, zlib.crc32(bytes(header[:signed])))
        f.seek(offset)
        f.write(header)


@pytest.mark.parametrize("length", [2**31, 2**32 - 1, 4 * 1024 * 1024 + 1])
@pytest.mark.parametrize("fix_crc", [False, True])
@pytest.mark.parametrize("which", ["middle", "last"])
def test_absurd_length_is_corrupt_and_never_allocated(
    tmp_path: Path, length: int, fix_crc: bool, which: str
) -> None:
    d = tmp_path / "log"
    build(d, 6)
    (seg,) = segments(d)
    spans = record_spans(seg)
    start = spans[2][0] if which == "middle" else spans[-1][0]
    patch_header(seg, start, length=length, fix_crc=fix_crc)
    reason = "oversized length" if fix_crc else "header crc"
    tracemalloc.start()
    try:
        with pytest.raises(CorruptLogError, match=reason) as info:
            list(read(d))
        with pytest.raises(CorruptLogError, match=reason):
            EventLog.open(d, durability="none")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak
    assert info.value.offset == start
    report = verify(d)
    assert not report.ok and report.problem is not None and reason in report.problem.reason


def test_valid_header_claiming_past_eof_in_the_last_record_is_torn(tmp_path: Path) -> None:
    """Rule 3: a good header crc and too few bytes is a short write, wherever it came from."""
    d = tmp_path / "log"
    build(d, 6)
    (seg,) = segments(d)
    start = record_spans(seg)[-1][0]
    patch_header(seg, start, length=100_000, fix_crc=True)
    assert [r.seq for r in read(d)] == [1, 2, 3, 4, 5]
    assert reopen(d, durability="none") == ("torn", 5)


# -- crafted records with valid crcs and chain ---------------------------------


def append_raw(d: Path, payload: bytes, *, seq: int | None = None, left: int = 0) -> int:
    """Append a record with valid crcs and chain (the attacker knows the format)."""
    records = list(read(d))
    prev = records[-1].digest
    seg = segments(d)[-1]
    record, _digest = encode_record(
        prev, seq if seq is not None else records[-1].seq + 1, 1, left, payload, b""
    )
    offset = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(record)
    return offset


HOSTILE = {
    "map claiming 2**31 entries": b"\xdf\x80\x00\x00\x00",
    "array claiming 2**32-1 items": b"\xdd\xff\xff\xff\xff",
    "str claiming 2**32-1 bytes": b"\xdb\xff\xff\xff\xff",
    "bin claiming 2**31 bytes": b"\xc6\x80\x00\x00\x00",
    "not a map": msgpack.packb([1, 2, 3]),
    "an integer": msgpack.packb(7),
    "invalid utf-8 key": b"\x81\xa2\xff\xfe\x01",
    "int key": b"\x81\x01\x02",
    "extra data": b"\x80\x80",
    "truncated": b"\x82\xa1a\x01",
    "reserved byte": b"\xc1",
    "deep nesting": b"\x91" * 5000 + b"\x80",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("where", ["middle", "last"])
def test_hostile_payload_with_valid_crc(tmp_path: Path, name: str, where: str) -> None:
    d = tmp_path / "log"
    build(d, 3)
    offset = append_raw(d, HOSTILE[name])
    if where == "middle":
        with EventLog.open(d, durability="none") as log:
            # Framing, crcs and chain are intact: open does not decode payloads.
            assert log.last_seq == 4
            log.append(small_payload(5))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptLogError, match="payload") as info:
            list(read(d))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak
    assert (info.value.offset, info.value.seq) == (offset, 4)
    report = verify(d)
    assert not report.ok and report.problem is not None and report.problem.seq == 4
    assert [r.seq for r in read(d, to_seq=3)] == [1, 2, 3]


@pytest.mark.parametrize("delta,word", [(1, "gap"), (-1, "repeat"), (-3, "repeat")])
@pytest.mark.parametrize("where", ["middle", "last"])
def test_seq_gap_or_repeat(tmp_path: Path, delta: int, word: str, where: str) -> None:
    d = tmp_path / "log"
    build(d, 3)
    append_raw(d, msgpack.packb({"x": 1}), seq=4 + delta)
    if where == "middle":
        seg = segments(d)[-1]
        with seg.open("ab") as f:
            f.write(b"more bytes that follow")
    with pytest.raises(CorruptLogError, match=f"seq {word}"):
        list(read(d))
    with pytest.raises(CorruptLogError, match=f"seq {word}"):
        EventLog.open(d, durability="none")
    assert not verify(d).ok


def test_interrupted_batch_is_corrupt(tmp_path: Path) -> None:
    d = tmp_path / "log"
    build(d, 3)
    append_raw(d, msgpack.packb({"b": 0}), left=2)
    # An incomplete batch at the tail is invisible to readers, and torn to verify.
    assert [r.seq for r in read(d)] == [1, 2, 3]
    report = verify(d)
    assert report.ok and "incomplete batch" in report.torn_reason
    # Now seq 5, chained to the hidden seq 4, with batch_left 0 instead of 1.
    seg = segments(d)[-1]
    data = seg.read_bytes()
    spans = record_spans(seg)
    digest4 = data[spans[-1][1] - 36 : spans[-1][1] - 4]
    record, _ = encode_record(digest4, 5, 1, 0, msgpack.packb({"b": 1}), b"")
    with seg.open("ab") as f:
        f.write(record)
    with pytest.raises(CorruptLogError, match="batch interrupted"):
        list(read(d))
    with pytest.raises(CorruptLogError, match="batch interrupted"):
        EventLog.open(d, durability="none")


def test_edited_payload_breaks_the_chain(tmp_path: Path) -> None:
    """Recomputing the crcs after an edit is not enough: the chain digest differs."""
    d = tmp_path / "log"
    build(d, 4)
    (seg,) = segments(d)
    data = bytearray(seg.read_bytes())
    start, end, seq, _left = record_spans(seg)[1]
    records = list(read(d))
    forged, _ = encode_record(
        records[0].digest, seq, records[1].time_ns, 0, msgpack.packb({"forged": True}), b""
    )
    # Keep the stored digest (what a naive forger would do), fix both crcs.
    payload_len = len(msgpack.packb({"forged": True}))
    stored_digest = bytes(data[end - 36 : end - 4])
    body = forged[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + payload_len] + stored_digest
    forged = forged[:RECORD_HEADER_SIZE] + body + struct.pack("<I", zlib.crc32(body))
    data[start:end] = forged
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="chain digest mismatch"):
        list(read(d))
    problem = verify(d).problem
    assert problem is not None and "chain digest mismatch" in problem.reason


# -- damage to the set of segments ---------------------------------------------


def test_segment_level_damage(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, 40, segment_bytes=2 * SECTOR_SIZE)
    segs = segments(src)
    assert len(segs) >= 4

    def fresh(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(src, d)
        return d

    cases: dict[str, tuple[Path, str]] = {}
    d = fresh("missing-middle")
    os.remove(d / segs[1].name)
    cases["missing-middle"] = (d, "missing segment")
    d = fresh("missing-first")
    os.remove(d / segs[0].name)
    cases["missing-first"] = (d, "history head removed")
    d = fresh("renamed")
    # Still in order, but the name no longer matches the header.
    os.rename(d / segs[1].name, d / f"{int(segs[1].name[:20]) + 1:020d}.log")
    cases["renamed"] = (d, "file name says")
    d = fresh("magic")
    with (d / segs[1].name).open("r+b") as f:
        f.write(b"NOTALOG!")
    cases["magic"] = (d, "wrong magic")
    d = fresh("swapped")
    other = tmp_path / "other"
    # Same sizes, other content: the segments line up one for one.
    build(other, 40, segment_bytes=2 * SECTOR_SIZE, pad="y")
    assert [p.name for p in segments(other)] == [p.name for p in segs]
    shutil.copy(other / segs[1].name, d / segs[1].name)
    cases["swapped"] = (d, "digest discontinuity")
    for name, (d, reason) in cases.items():
        with pytest.raises(CorruptLogError, match=reason):
            list(read(d))
        report = verify(d)
        assert not report.ok and report.problem is not None, name
        assert reason in report.problem.reason, (name, report.problem)
