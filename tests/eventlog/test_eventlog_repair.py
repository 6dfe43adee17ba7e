"""Repair by a person (eventlog.repair): diagnose the first damage, cut the log there.

Every test damages a real log written by the real writer, then checks the
three things a repair promises: the log verifies and a writer appends
after the cut; every cut byte is on disk, byte for byte, in the
``.broken`` files; and the cut is exactly where the damage says (the end
of the last whole batch before it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eventlog_support import payload_for, segments

from eventlog import (
    CorruptLogError,
    EventLog,
    EventLogError,
    KeyRequiredError,
    LogLockedError,
    read,
    verify,
)
from eventlog.format import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, decode_segment_header
from eventlog.repair import Damage, RepairResult, UnrepairableError, cut, diagnose


def write_log(d: Path, n: int, *, segment_bytes: int = 8 << 20, key: bytes | None = None) -> None:
    with EventLog.open(d, durability="always", segment_bytes=segment_bytes, key=key) as log:
        for seq in range(1, n + 1):
            assert log.append(payload_for(seq)) == seq


def offsets(d: Path, key: bytes | None = None) -> dict[int, tuple[str, int]]:
    """seq -> (segment name, record start) of every record of a healthy log."""
    return {r.seq: (r.segment, r.offset) for r in read(d, key=key)}


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x20
    path.write_bytes(bytes(data))


def snapshot_files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.name != "LOCK"}


def assert_every_cut_byte_kept(before: dict[str, bytes], d: Path, result: RepairResult) -> None:
    """Each segment as it was == what is left of it + its .broken copy, byte for byte."""
    now = snapshot_files(d)
    assert set(result.broken_files) <= set(now), "the .broken files exist"
    assert not set(result.broken_files) & set(before), "no earlier file was overwritten"
    for name, old in before.items():
        copies = [b for b in result.broken_files if b.split(".log.broken")[0] + ".log" == name]
        if not copies:
            assert now[name] == old, f"{name} was not touched"
            continue
        (copy,) = copies
        if result.header_rewritten and name == result.segment:
            assert now[copy] == old, "the whole first segment is kept"
            continue
        kept = now.get(name, b"")
        assert kept + now[copy] == old, f"{name}: kept part + {copy} == the original"
    assert sum(len(now[b]) for b in result.broken_files) == result.bytes_set_aside


def assert_repaired(d: Path, kept_seq: int, key: bytes | None = None) -> None:
    report = verify(d, key=key)
    assert report.ok and report.chain_checked, report
    assert report.last_seq == kept_seq
    assert diagnose(d, key=key) is None
    with EventLog.open(d, durability="always", key=key) as log:
        assert log.last_seq == kept_seq
        assert log.append({"after": "repair"}) == kept_seq + 1
    assert verify(d, key=key).ok
    assert [r.seq for r in read(d, key=key)] == list(range(1, kept_seq + 2))


def test_a_bit_flip_in_a_proven_record_is_cut_with_every_byte_kept(tmp_path: Path) -> None:
    d = tmp_path / "log"
    write_log(d, 20)
    where = offsets(d)
    seg_name, start = where[10]
    seg = d / seg_name
    flip(seg, start + RECORD_HEADER_SIZE + 3)  # record 10's payload
    with pytest.raises(CorruptLogError):
        EventLog.open(d, durability="always")  # proven durable by record 11: not torn
    (d / f"{seg_name}.broken").write_bytes(b"an earlier repair's evidence")
    before = snapshot_files(d)

    damage = diagnose(d)
    assert damage is not None
    assert (os.path.basename(damage.segment), damage.offset, damage.seq) == (seg_name, start, 10)
    assert "crc" in damage.reason
    assert damage.cut_point is not None
    assert (damage.cut_point.seq, damage.cut_point.segment) == (9, seg_name)
    assert damage.cut_point.offset == start, "record 9 ends where record 10 starts"
    size = seg.stat().st_size
    assert [(p.name, p.offset, p.size) for p in damage.set_aside] == [
        (seg_name, start, size - start)
    ]
    assert f"> {start // 16 * 16:08x}" in damage.dump, "the damaged line is marked"
    assert snapshot_files(d) == before, "diagnose changes nothing"

    result = cut(d, damage)
    assert result.kept_seq == 9 and result.size == start
    assert result.broken_files == (f"{seg_name}.broken.1",), "evidence is never overwritten"
    assert_every_cut_byte_kept(before, d, result)
    assert_repaired(d, 9)


def test_damage_in_an_earlier_segment_sets_the_later_segments_aside(tmp_path: Path) -> None:
    d = tmp_path / "log"
    write_log(d, 60, segment_bytes=4000)
    segs = segments(d)
    assert len(segs) >= 4
    where = offsets(d)
    second = segs[1].name
    in_second = sorted(seq for seq, (name, _) in where.items() if name == second)
    victim = in_second[len(in_second) // 2]
    _, start = where[victim]
    flip(segs[1], start + 1)  # a header byte: header crc fails
    # The writer checks only the last segment: it opens this log.
    with EventLog.open(d, durability="always"):
        pass
    before = snapshot_files(d)

    damage = diagnose(d)
    assert damage is not None and damage.seq == victim
    assert damage.cut_point is not None
    assert (damage.cut_point.seq, damage.cut_point.segment) == (victim - 1, second)
    assert [p.name for p in damage.set_aside] == [s.name for s in segs[1:]]
    assert all(p.offset == 0 for p in damage.set_aside[1:]), "later segments go whole"

    result = cut(d, damage)
    assert result.broken_files == tuple(f"{s.name}.broken" for s in segs[1:])
    assert [p.name for p in segments(d)] == [s.name for s in segs[:2]]
    assert_every_cut_byte_kept(before, d, result)
    assert_repaired(d, victim - 1)


def test_damage_in_the_very_first_record_leaves_an_empty_log(tmp_path: Path) -> None:
    d = tmp_path / "log"
    write_log(d, 5)
    (seg,) = segments(d)
    flip(seg, SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + 2)
    before = snapshot_files(d)
    damage = diagnose(d)
    assert damage is not None and damage.seq == 1
    assert damage.cut_point is not None
    assert (damage.cut_point.seq, damage.cut_point.offset) == (0, SEGMENT_HEADER_SIZE)
    result = cut(d, damage)
    assert seg.read_bytes() == before[seg.name][:SEGMENT_HEADER_SIZE], "the header stays"
    assert not result.header_rewritten
    assert_every_cut_byte_kept(before, d, result)
    assert_repaired(d, 0)


def test_a_bad_first_header_is_set_aside_whole_and_written_anew(tmp_path: Path) -> None:
    key = b"k" * 16
    d = tmp_path / "log"
    write_log(d, 5, key=key)
    (seg,) = segments(d)
    flip(seg, 20)  # first_seq: the header crc fails
    before = snapshot_files(d)
    damage = diagnose(d, key=key)
    assert damage is not None and damage.offset == 60 and "header crc" in damage.reason
    assert damage.cut_point is not None and damage.cut_point.offset == 0
    assert damage.keyed, "the keying of a header made anew comes from the key given"
    result = cut(d, damage, key=key)
    assert result.header_rewritten and result.broken_files == (f"{seg.name}.broken",)
    header = decode_segment_header(seg.read_bytes(), str(seg))
    assert (header.first_seq, header.keyed) == (1, True)
    assert_every_cut_byte_kept(before, d, result)
    assert_repaired(d, 0, key=key)


def test_a_clean_log_and_a_torn_tail_are_not_damage(tmp_path: Path) -> None:
    d = tmp_path / "log"
    write_log(d, 10)
    assert diagnose(d) is None
    (seg,) = segments(d)
    with seg.open("ab") as f:
        f.write(bytes(100))  # a zero-filled tail: what a crash leaves, not damage
    assert diagnose(d) is None
    with pytest.raises(EventLogError):
        diagnose(tmp_path / "absent")


def test_a_keyed_log_is_diagnosed_only_with_its_key(tmp_path: Path) -> None:
    key = b"secret"
    d = tmp_path / "log"
    write_log(d, 6, key=key)
    _, start = offsets(d, key)[4]
    flip(segments(d)[0], start + RECORD_HEADER_SIZE + 1)
    with pytest.raises(KeyRequiredError):
        diagnose(d)
    with pytest.raises(EventLogError, match="not keyed"):
        diagnose(write_and_return(tmp_path / "plain"), key=key)
    damage = diagnose(d, key=key)
    assert damage is not None and damage.seq == 4
    with pytest.raises(KeyRequiredError):
        cut(d, damage)  # the cut re-diagnoses under the lock, with the key it is given
    assert diagnose(d, key=key) == damage, "a refused cut changed nothing"
    cut(d, damage, key=key)
    assert_repaired(d, 3, key=key)


def write_and_return(d: Path) -> Path:
    write_log(d, 2)
    return d


def test_a_missing_first_segment_cannot_be_cut(tmp_path: Path) -> None:
    d = tmp_path / "log"
    write_log(d, 40, segment_bytes=3000)
    first = segments(d)[0]
    first.rename(d / "elsewhere")
    before = snapshot_files(d)
    damage = diagnose(d)
    assert damage is not None and damage.cut_point is None
    assert "history head removed" in damage.reason and "backup" in damage.unrepairable
    with pytest.raises(UnrepairableError, match="a cut cannot fix this") as info:
        cut(d, damage)
    assert isinstance(info.value, CorruptLogError)
    assert snapshot_files(d) == before


def test_a_cut_refuses_a_locked_or_changed_log(tmp_path: Path) -> None:
    d = tmp_path / "log"
    write_log(d, 60, segment_bytes=4000)
    _, start = offsets(d)[3]
    flip(segments(d)[0], start + RECORD_HEADER_SIZE + 1)
    damage: Damage | None = diagnose(d)
    assert damage is not None
    before = snapshot_files(d)
    with EventLog.open(d, durability="always") as log:  # opens: the damage is not in the tail
        with pytest.raises(LogLockedError):
            cut(d, damage)
        assert snapshot_files(d) == before
        log.append({"late": True})
    after = snapshot_files(d)
    with pytest.raises(EventLogError, match="not as it was diagnosed"):
        cut(d, damage)
    assert snapshot_files(d) == after
    fresh = diagnose(d)
    assert fresh is not None
    cut(d, fresh)
    assert_repaired(d, 2)
