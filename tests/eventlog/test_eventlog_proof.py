"""Torn versus corrupt by proof (format v2): the six measured cases, one test each.

Each case was a real failure of the format 1 rule (which guessed from zero
patterns): an acknowledged record cut after a media error (1), a legal crash
state refused (2, 5), a bit flip called torn (3), a healthy log reported
corrupt by a reader racing rotation (4), and verify and the writer
disagreeing about a stray segment (6).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
from eventlog_support import REPO, broken_files, record_spans, reopen, segments, zero

from eventlog import CorruptLogError, EventLog, read, verify
from eventlog.format import (
    RECORD_HEADER_SIZE,
    RECORD_OVERHEAD,
    SECTOR_SIZE,
    decode_record_header,
    encode_segment_header,
)

PAGE = 4096


def test_case1_zeroed_sector_under_proven_records_is_corrupt_not_cut(tmp_path: Path) -> None:
    """A media error in the middle of an `always` log: the records after it
    prove the damaged one durable, so nothing is cut and the file is untouched."""
    d = tmp_path / "log"
    with EventLog.open(d, durability="always") as log:
        for i in range(60):
            log.append({"i": i, "pad": "p" * 80})
    (seg,) = segments(d)
    size = seg.stat().st_size
    middle = (size // 2 // SECTOR_SIZE) * SECTOR_SIZE
    zero(seg, middle, middle + SECTOR_SIZE)
    before = seg.read_bytes()
    with pytest.raises(CorruptLogError, match="proven durable"):
        EventLog.open(d, durability="always")
    assert seg.read_bytes() == before and broken_files(d) == []
    report = verify(d)
    assert not report.ok and report.problem is not None
    assert "proven durable" in report.problem.reason
    with pytest.raises(CorruptLogError):
        list(read(d))


def _payload_of(size: int, **extra: int) -> dict[str, object]:
    """A payload whose msgpack encoding is exactly ``size`` bytes."""
    for pad in range(size, -1, -1):
        p: dict[str, object] = {"f": "q" * pad, **extra}
        if len(msgpack.packb(p)) == size:
            return p
    raise AssertionError(f"no payload of {size} bytes")


def _grow_to(log: EventLog, seg: Path, residue: int, modulus: int) -> None:
    """Append records until the segment's size is ``residue`` modulo ``modulus``."""
    need = (residue - seg.stat().st_size) % modulus
    while need < RECORD_OVERHEAD + 8:
        need += modulus
    while need > RECORD_OVERHEAD + 3000:
        log.append(_payload_of(2000))
        need -= RECORD_OVERHEAD + 2000
    log.append(_payload_of(need - RECORD_OVERHEAD))
    assert seg.stat().st_size % modulus == residue % modulus


@pytest.mark.parametrize("unit", [SECTOR_SIZE, PAGE])
@pytest.mark.parametrize("before_boundary", [1, 2, 3, 5, 7])
def test_case2_lost_earlier_sector_of_an_unsynced_append_reopens(
    tmp_path: Path, unit: int, before_boundary: int
) -> None:
    """The new size and a later sector of an unsynced append persisted, the
    first few bytes (in the old, partial sector) did not: torn, no error."""
    d = tmp_path / "log"
    with EventLog.open(d, durability="always") as log:
        log.append({"first": 1})
        seg = segments(d)[0]
        _grow_to(log, seg, unit - before_boundary, unit)
        acked = log.last_seq
        start = seg.stat().st_size
        assert (start + before_boundary) % unit == 0
        log.append({"unsynced": "u" * 700})  # its fsync "never returned"
    zero(seg, start, start + before_boundary)
    assert reopen(d) == ("torn", acked)
    assert seg.stat().st_size == start
    report = verify(d)
    assert report.ok and report.last_seq == acked
    with EventLog.open(d) as log:
        assert log.append({"after": 1}) == acked + 1


def _last_record_ending_at(tmp_path: Path, want_last_byte_zero: bool) -> Path:
    """A log whose last record ends 1 byte past a sector boundary, its last
    byte (the body crc's top byte) zero or not as asked."""
    for attempt in range(4000):
        d = tmp_path / f"try{attempt}"
        with EventLog.open(d, durability="always") as log:
            seg = segments(d)[0]
            log.append({"a": attempt})
            _grow_to(log, seg, SECTOR_SIZE - 200, SECTOR_SIZE)
            log.append(_payload_of(200 + 1 - RECORD_OVERHEAD, n=attempt))
        data = seg.read_bytes()
        if len(data) % SECTOR_SIZE == 1 and (data[-1] == 0) == want_last_byte_zero:
            return d
        shutil.rmtree(d)
    raise AssertionError("no such log found")


def test_case3_bit_flip_is_not_torn_when_the_last_partial_sector_is_zero(
    tmp_path: Path,
) -> None:
    """The last byte is a genuine 0x00 in a 1-byte final sector: a bit flip
    elsewhere in the last record must not pass as a lost final sector."""
    d = _last_record_ending_at(tmp_path, want_last_byte_zero=True)
    (seg,) = segments(d)
    start, _end, _seq, _left = record_spans(seg)[-1]
    assert verify(d).ok and reopen(d) == ("clean", 1 + len(record_spans(seg)) - 1)
    data = bytearray(seg.read_bytes())
    data[start + RECORD_HEADER_SIZE + 5] ^= 0x08  # a payload bit
    seg.write_bytes(bytes(data))
    report = verify(d)
    assert not report.ok, report
    assert reopen(d) == ("corrupt", 0)
    assert broken_files(d) == []


def test_case3_a_lost_final_sector_is_still_torn(tmp_path: Path) -> None:
    """The crash the rule exists for: the last 1-byte sector was lost (it held
    a non-zero crc byte). The record is predicted and matches outside it."""
    d = _last_record_ending_at(tmp_path, want_last_byte_zero=False)
    (seg,) = segments(d)
    spans = record_spans(seg)
    start, end, seq, _left = spans[-1]
    zero(seg, end - 1, end)
    assert reopen(d) == ("torn", seq - 1)
    assert seg.stat().st_size == start


@pytest.mark.slow
def test_case4_readers_never_report_corruption_during_rotation(tmp_path: Path) -> None:
    """A writer rotating after every record; hundreds of reads and verifies meanwhile."""
    d = tmp_path / "log"
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; from eventlog import EventLog\n"
            "with EventLog.open(sys.argv[1], durability='none', segment_bytes=60) as log:\n"
            "    while not os.path.exists(sys.argv[2]) and log.last_seq < 9000:\n"
            "        log.append({'i': log.last_seq})\n"
            "        if log.last_seq > 3000: time.sleep(0.002)\n",
            str(d),
            str(stop),
        ],
        cwd=REPO,
    )
    alarms: list[str] = []
    calls = 0
    seen = 0
    # A listing is one getdents call up to a few hundred names: only in a
    # directory of thousands of segments can readdir miss one being made.
    while writer.poll() is None and len(segments(d) if d.exists() else []) < 3000:
        time.sleep(0.01)
    try:
        while writer.poll() is None and calls < 600:
            if not d.exists() or not segments(d):
                continue
            try:
                if calls % 200 == 0:
                    report = verify(d)
                    if not report.ok:
                        alarms.append(str(report.problem))
                else:
                    # Mostly the newest segments: where rotation happens.
                    start = max(1, seen - 10)
                    seqs = [r.seq for r in read(d, from_seq=start)]
                    if seqs and seqs != list(range(start, start + len(seqs))):
                        alarms.append(f"read gave {seqs[:5]}...")
                    seen = max(seen, seqs[-1] if seqs else 0)
            except CorruptLogError as exc:
                alarms.append(str(exc))
            calls += 1
    finally:
        stop.touch()
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert calls >= 200 and alarms == [], (calls, alarms[:3])
    final = verify(d)
    assert final.ok and final.segments > 3000


def test_case5_zeroed_sector_inside_an_unsynced_group_commit_reopens(tmp_path: Path) -> None:
    """Eight threads share writes (group commit). In the last group, a lost
    sector with intact records of the same write after it: torn, because
    nothing proves that group durable."""
    d = tmp_path / "log"
    with EventLog.open(d, durability="always") as log:

        def work(t: int) -> None:
            for i in range(40):
                log.append({"t": t, "i": i, "pad": "g" * 150})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    (seg,) = segments(d)
    data = seg.read_bytes()
    spans = record_spans(seg)
    proofs = [decode_record_header(data, s).durable_seq for s, _e, _q, _l in spans]
    # Groups: consecutive records carrying the same proof (written together).
    groups: list[list[int]] = []
    for i, p in enumerate(proofs):
        if groups and proofs[groups[-1][0]] == p:
            groups[-1].append(i)
        else:
            groups.append([i])
    assert max(len(g) for g in groups) >= 3, "no group commit happened"

    def sector_in(group: list[int]) -> int | None:
        """A sector wholly inside the group with a whole record of it after."""
        s = (spans[group[0]][0] // SECTOR_SIZE + 1) * SECTOR_SIZE
        return s if s + SECTOR_SIZE <= spans[group[-1]][0] else None

    # The latest group that allows it becomes the unsynced tail: the log is
    # cut after it, as if the crash came before its fsync returned.
    group = next(g for g in reversed(groups) if len(g) >= 3 and sector_in(g) is not None)
    sector = sector_in(group)
    assert sector is not None
    tail_end = spans[group[-1]][1]
    d2 = tmp_path / "crashed"
    d2.mkdir()
    (d2 / seg.name).write_bytes(data[:tail_end])
    zero(d2 / seg.name, sector, sector + SECTOR_SIZE)
    damaged_seq = next(q for s, e, q, _l in spans if e > sector)
    outcome, last_seq = reopen(d2)
    assert outcome == "torn" and last_seq == damaged_seq - 1
    assert last_seq >= spans[group[0]][2] - 1  # everything before the group is kept
    assert verify(d2).ok


def test_case6_stray_segment_with_a_huge_seq_fails_verify_and_open(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with EventLog.open(d) as log:
        for i in range(10):
            log.append({"i": i})
    (d / "99999999999999999999.log").write_bytes(b"\x00")
    report = verify(d)
    assert not report.ok
    with pytest.raises(CorruptLogError):
        EventLog.open(d)


def _layouts(tmp_path: Path) -> dict[str, Path]:
    """Directory layouts that a crash, a person or an attacker can leave."""
    base = tmp_path / "base"
    with EventLog.open(base, segment_bytes=600) as log:
        for i in range(30):
            log.append({"i": i, "pad": "s" * 60})
    segs = segments(base)
    assert len(segs) >= 4
    out: dict[str, Path] = {}

    def fresh(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(base, d)
        out[name] = d
        return d

    fresh("healthy")
    nxt = int(segs[-1].name[:20]) + len(record_spans(segs[-1]))
    (fresh("stray-huge") / "99999999999999999999.log").write_bytes(b"\x01")
    (fresh("stray-empty-next") / f"{nxt:020d}.log").write_bytes(b"")
    (fresh("stray-empty-gap") / f"{nxt + 1:020d}.log").write_bytes(b"")
    header = encode_segment_header(nxt, b"\x07" * 32, keyed=False)
    (fresh("header-only-wrong-prev") / f"{nxt:020d}.log").write_bytes(header)
    d = fresh("duplicated")
    shutil.copy(segs[1], d / f"{nxt:020d}.log")
    d = fresh("gapped")
    (d / segs[1].name).unlink()
    d = fresh("empty-middle")
    (d / segs[1].name).write_bytes(b"")
    d = fresh("header-only-middle")
    (d / segs[1].name).write_bytes(segs[1].read_bytes()[:64])
    d = fresh("last-zeroed-tail")
    size = segs[-1].stat().st_size
    zero(d / segs[-1].name, max(64, size // SECTOR_SIZE * SECTOR_SIZE), size)
    d = fresh("no-first")
    (d / segs[0].name).unlink()
    return out


def test_verify_and_writer_open_agree_on_every_layout(tmp_path: Path) -> None:
    """A log verify calls clean opens; a log the writer refuses fails verify."""
    expected_clean = {"healthy", "stray-empty-next", "last-zeroed-tail"}
    for name, d in _layouts(tmp_path).items():
        report = verify(d)
        probe = tmp_path / f"open-{name}"
        shutil.copytree(d, probe)
        try:
            EventLog.open(probe).close()
            opened = True
        except CorruptLogError:
            opened = False
        if report.ok:
            assert opened, (name, "verify ok but the writer refused")
        if not opened:
            assert not report.ok, (name, "writer refused but verify ok")
        assert report.ok == (name in expected_clean), (name, report.problem)


def test_v1_log_continues_in_v2_segments(tmp_path: Path) -> None:
    """A format 1 log stays readable; a v2 writer appends in a new v2 segment."""
    from eventlog.format import ZERO_DIGEST, encode_record

    d = tmp_path / "log"
    d.mkdir()
    blob = encode_segment_header(1, ZERO_DIGEST, keyed=False, version=1)
    prev = ZERO_DIGEST
    for seq in (1, 2, 3):
        rec, prev = encode_record(
            prev, seq, 10 + seq, 0, b"\x81\xa1s" + bytes([seq]), b"", 0, version=1
        )
        blob += rec
    (d / "00000000000000000001.log").write_bytes(blob)
    assert [r.seq for r in read(d)] == [1, 2, 3] and verify(d).ok
    with EventLog.open(d) as log:
        assert log.append({"s": 4}) == 4
    names = [p.name for p in segments(d)]
    assert names == ["00000000000000000001.log", "00000000000000000004.log"]
    assert struct.unpack_from("<H", (d / names[1]).read_bytes(), 8)[0] == 2
    assert [r.payload["s"] for r in read(d)] == [1, 2, 3, 4]
    assert verify(d).ok

    # A header-only v1 tail is replaced by a v2 header for the same seq.
    e = tmp_path / "empty"
    e.mkdir()
    (e / "00000000000000000001.log").write_bytes(
        encode_segment_header(1, ZERO_DIGEST, keyed=False, version=1)
    )
    with EventLog.open(e) as log:
        log.append({"s": 1})
    (only,) = segments(e)
    assert struct.unpack_from("<H", only.read_bytes(), 8)[0] == 2
    assert verify(e).ok and [r.seq for r in read(e)] == [1]
