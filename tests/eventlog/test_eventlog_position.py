"""``read(..., start=Position)``: resume at a known position, checked before use.

A good position makes the reader start there (``SegmentWalk.position_use``
says "used"); any wrong one - offset off by a byte, stale digest, a segment
that was rewritten, a seq past a cut tail - falls back to a scan from the
segment header that yields exactly what a plain read yields, or raises
``PositionMismatchError`` when the log's digest at the position's seq is not
the position's. A position never makes the reader accept damaged records.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from eventlog_support import append_noting_position, payload_for, segments

from eventlog import (
    CorruptLogError,
    EventLog,
    Position,
    PositionMismatchError,
    end_position,
    read,
)
from eventlog.format import SEGMENT_HEADER_SIZE
from eventlog.reader import SegmentWalk


def build(d: Path, n: int = 30, *, segment_bytes: int = 1500) -> dict[int, Position]:
    """A log of ``n`` records over several segments; the end position after each seq."""
    positions: dict[int, Position] = {}
    with EventLog.open(d, durability="none", segment_bytes=segment_bytes) as log:
        for seq in range(1, n + 1):
            append_noting_position(log, d, positions, seq, batch=seq % 7 == 0)
    return positions


def walk(d: Path, pos: Position, from_seq: int | None = None, **kw: object) -> SegmentWalk:
    return SegmentWalk(
        str(d),
        key=None,
        lenient=True,
        from_seq=pos.seq + 1 if from_seq is None else from_seq,
        position=pos,
        **kw,  # type: ignore[arg-type]
    )


def seqs(w: SegmentWalk) -> list[int]:
    return [r.seq for r in w.records()]


def test_every_end_position_is_used_and_reads_the_same(tmp_path: Path) -> None:
    d = tmp_path / "log"
    positions = build(d)
    assert len(segments(d)) >= 3
    last = max(positions)
    full = {r.seq: r for r in read(d)}
    for seq, pos in positions.items():
        w = walk(d, pos)
        got = list(w.records())
        assert w.position_use == "used", (seq, w.position_use)
        assert got == [full[s] for s in range(seq + 1, last + 1)], seq
        # A bounded range, and the public API.
        assert [r.seq for r in read(d, to_seq=min(seq + 3, last), start=pos)] == list(
            range(seq + 1, min(seq + 3, last) + 1)
        )


def test_position_at_a_segment_boundary_both_ways(tmp_path: Path) -> None:
    """End of a segment (before rotation) and offset 64 of the next one are both good."""
    d = tmp_path / "log"
    positions = build(d)
    second = segments(d)[1]
    first_seq = int(second.name[:20])
    at_end = positions[first_seq - 1]
    assert at_end.segment == segments(d)[0].name
    at_head = Position(second.name, SEGMENT_HEADER_SIZE, first_seq - 1, at_end.digest)
    for pos in (at_end, at_head):
        w = walk(d, pos)
        assert seqs(w)[0] == first_seq
        assert w.position_use == "used"


@pytest.mark.parametrize(
    "damage",
    [
        "offset+1",
        "offset-1",
        "offset-past-eof",
        "offset-2**62",
        "offset-2**64-1",
        "other-segment",
        "no-segment",
        "seq+1",
    ],
)
def test_a_wrong_position_falls_back_to_a_scan(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "log"
    positions = build(d)
    pos = positions[12]
    wrong = {
        "offset+1": pos._replace(offset=pos.offset + 1),
        "offset-1": pos._replace(offset=pos.offset - 1),
        "offset-past-eof": pos._replace(offset=10**9),
        # Hostile snapshot bytes: a u64 offset no seek can take.
        "offset-2**62": pos._replace(offset=2**62),
        "offset-2**64-1": pos._replace(offset=2**64 - 1),
        "other-segment": pos._replace(segment=segments(d)[-1].name),
        "no-segment": pos._replace(segment="00000000000000000999.log"),
        "seq+1": pos._replace(seq=13),
    }[damage]
    w = walk(d, wrong, from_seq=14)
    if damage == "seq+1":
        # Its digest is seq 12's: the scan finds the log's digest at 13 differs.
        with pytest.raises(PositionMismatchError):
            seqs(w)
    else:
        assert seqs(w) == [r.seq for r in read(d, from_seq=14)]
    assert w.position_use.startswith("fallback"), w.position_use


def test_a_stale_digest_raises_mismatch_before_yielding(tmp_path: Path) -> None:
    d = tmp_path / "log"
    positions = build(d)
    pos = positions[12]._replace(digest=positions[11].digest)
    w = walk(d, pos)
    it = w.records()
    with pytest.raises(PositionMismatchError, match="another history"):
        next(it)
    assert w.position_use.startswith("fallback")
    # An empty range still checks the position.
    with pytest.raises(PositionMismatchError):
        list(read(d, to_seq=12, start=pos))
    assert list(read(d, to_seq=12, start=positions[12])) == []


def test_a_rewritten_segment_is_never_trusted(tmp_path: Path) -> None:
    """Same names, another history: the old position is refused."""
    d, other = tmp_path / "log", tmp_path / "other"
    positions = build(d)
    with EventLog.open(other, durability="none", segment_bytes=1500) as log:
        for seq in range(1, 31):
            log.append({"other": seq, "pad": "y" * ((seq * 31) % 200)})
    shutil.rmtree(d)
    shutil.copytree(other, d)
    for pos in (positions[5], positions[12], positions[20]):
        if pos.seq > 30:
            continue
        w = walk(d, pos)
        with pytest.raises(PositionMismatchError):
            seqs(w)


def test_a_position_past_a_torn_tail_that_recovery_cut(tmp_path: Path) -> None:
    """The snapshot saw records that a crash lost; new, different ones took their seqs."""
    d = tmp_path / "log"
    positions = build(d, 20, segment_bytes=10**9)
    (seg,) = segments(d)
    pos = positions[20]
    # Lose the last two records' bytes (as a power loss would) and zero-fill them.
    size = os.path.getsize(seg)
    cut = positions[18].offset
    with seg.open("r+b") as f:
        f.seek(cut)
        f.write(bytes(size - cut))
    with EventLog.open(d, durability="none") as log:
        assert log.last_seq == 18 and log.recovery
        # The log ends before the position's seq: mismatch, not a silent stop.
        with pytest.raises(PositionMismatchError, match="no record 20"):
            list(read(d, start=pos))
        log.append({"new": 19})
        log.append({"new": 20})
        log.append({"new": 21})
    w = walk(d, pos)
    with pytest.raises(PositionMismatchError):
        seqs(w)
    # A position before the cut is still good.
    w = walk(d, positions[17])
    assert seqs(w) == [18, 19, 20, 21]
    assert w.position_use == "used"


def test_a_position_never_hides_damage_after_it(tmp_path: Path) -> None:
    d = tmp_path / "log"
    positions = build(d, 20, segment_bytes=10**9)
    (seg,) = segments(d)
    pos = positions[10]
    data = bytearray(seg.read_bytes())
    data[positions[14].offset + 40] ^= 0x01  # the payload of seq 15
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="body crc"):
        list(read(d, start=pos))
    # Damage in the record at the position itself: the position is refused, the
    # scan from the header then reports the damage.
    w = walk(d, positions[14])
    with pytest.raises(CorruptLogError):
        seqs(w)
    assert w.position_use.startswith("fallback")


def test_end_position_is_none_when_the_log_moved_on(tmp_path: Path) -> None:
    d = tmp_path / "log"
    positions = build(d, 10)
    last = max(positions)
    assert end_position(d, last - 1, positions[last - 1].digest) is None
    assert end_position(d, last, positions[last].digest) == positions[last]
    assert end_position(tmp_path / "nothing-here", 1, bytes(32)) is None


def test_from_seq_must_follow_the_position(tmp_path: Path) -> None:
    d = tmp_path / "log"
    positions = build(d, 5)
    with pytest.raises(ValueError, match="from_seq"):
        read(d, from_seq=3, start=positions[3])


def test_keyed_log_position(tmp_path: Path) -> None:
    d = tmp_path / "log"
    key = b"k" * 16
    with EventLog.open(d, durability="none", key=key, segment_bytes=800) as log:
        for seq in range(1, 15):
            log.append(payload_for(seq))
        pos = end_position(d, 6, b"")  # wrong digest length: no position
        assert pos is None
    full = list(read(d, key=key))
    start = Position(full[6].segment, full[6].offset, 6, full[5].digest)
    w = SegmentWalk(str(d), key=key, lenient=True, from_seq=7, position=start)
    assert [r.seq for r in w.records()] == list(range(7, 15))
    assert w.position_use == "used"
    # Without the key the chain cannot be checked; the crcs and digest bytes still are.
    w = SegmentWalk(str(d), key=None, lenient=True, from_seq=7, position=start)
    assert [r.seq for r in w.records()] == list(range(7, 15))
    assert not w.chain_checked
