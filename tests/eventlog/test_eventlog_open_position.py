"""``EventLog.open(start=Position)``: writer-open checks the last segment from a known position.

A good position (the one a snapshot records) makes the open check only the
records after it (``open_check`` counts them: nothing is timed); a wrong,
foreign or stale one falls back to the full check of the last segment and
never makes the open fail. Either way a torn tail after the position is cut
exactly as without a position, and damage after it is refused. Damage
before a good position is not seen by the open - that is what ``verify``
is for (FORMAT.md, "Recovery (writer open)").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from eventlog_support import append_noting_position, payload_for, segments

from eventlog import (
    CorruptLogError,
    EventLog,
    KeyRequiredError,
    Position,
    read,
    verify,
)
from eventlog.format import LAYOUTS, SEGMENT_HEADER_SIZE

N = 50
HEADER = LAYOUTS[2].header_size


def build(
    d: Path, n: int = N, *, segment_bytes: int = 1 << 20, key: bytes | None = None
) -> dict[int, Position]:
    """A log of ``n`` records (two batches near the end); the end position after each."""
    positions: dict[int, Position] = {}
    with EventLog.open(d, durability="none", segment_bytes=segment_bytes, key=key) as log:
        while log.last_seq < n:
            seq = log.last_seq + 1
            append_noting_position(log, d, positions, seq, batch=seq in (44, 47))
    return positions


def starts(d: Path) -> dict[int, int]:
    """seq -> the offset where its record starts."""
    return {r.seq: r.offset for r in read(d)}


def flip(d: Path, offset: int) -> None:
    """Flip one bit of the last segment at ``offset``."""
    seg = segments(d)[-1]
    data = bytearray(seg.read_bytes())
    data[offset] ^= 0x10
    seg.write_bytes(bytes(data))


def open_result(
    d: Path, start: Position | None
) -> tuple[tuple[int, bytes, str, bytes, list[bytes]], str]:
    """(last_seq, head, repair, last segment's bytes, .broken files' bytes) after an
    open, and how the position was used."""
    with EventLog.open(d, durability="none", start=start) as log:
        got = (log.last_seq, log.head, log.recovery)
        use = log.open_check.position_use
    broken = [p.read_bytes() for p in sorted(d.glob("*.broken*"))]
    return (*got, segments(d)[-1].read_bytes(), broken), use


def test_a_good_position_checks_only_the_records_after_it(tmp_path: Path) -> None:
    d = tmp_path / "log"
    positions = build(d)
    with EventLog.open(d, durability="none") as log:
        full = log.open_check
        head = log.head
    assert (full.checked_from, full.records_checked, full.position_use) == (64, N, "")
    for seq in (0 + 1, 40, 45, N):
        pos = positions[seq]
        with EventLog.open(d, durability="none", start=pos) as log:
            check = log.open_check
            assert (log.last_seq, log.head) == (N, head)
        assert check.position_use == "used", check.position_use
        assert check.checked_from == pos.offset
        assert check.records_checked == N - seq
        assert check.size == full.size
        assert check.repair == ""
    # A log opened from a position appends and verifies as any other.
    with EventLog.open(d, durability="always", start=positions[40]) as log:
        log.append(payload_for(N + 1))
    assert verify(d).ok
    assert verify(d).last_seq == N + 1


def test_a_position_at_offset_64_of_the_last_segment(tmp_path: Path) -> None:
    """Just after the header (seq = first_seq - 1, digest = prev_digest): a good position."""
    d = tmp_path / "log"
    build(d, 10, segment_bytes=1)  # every append rotates first: one record a segment
    last = segments(d)[-1]
    first = int(last.name[:20])
    digest = {r.seq: r.digest for r in read(d)}[first - 1]
    pos = Position(last.name, SEGMENT_HEADER_SIZE, first - 1, digest)
    with EventLog.open(d, durability="none", start=pos) as log:
        assert log.open_check.position_use == "used"
        assert log.open_check.checked_from == SEGMENT_HEADER_SIZE
        assert log.open_check.records_checked == 10 - first + 1
        assert log.last_seq == 10


def _bad_positions(
    d: Path, positions: dict[int, Position], foreign: Position
) -> dict[str, Position]:
    pos = positions[40]
    return {
        "offset off by one": pos._replace(offset=pos.offset + 1),
        "offset past EOF": pos._replace(offset=10**9),
        "negative offset": pos._replace(offset=-5),
        "stale digest": pos._replace(digest=bytes(32)),
        "wrong seq": pos._replace(seq=pos.seq + 1),
        "no such segment": pos._replace(segment="99999999999999999999.log"),
        "path, not a name": pos._replace(segment=str(segments(d)[-1])),
        "foreign log": foreign,
    }


BAD = [
    "offset off by one",
    "offset past EOF",
    "negative offset",
    "stale digest",
    "wrong seq",
    "no such segment",
    "path, not a name",
    "foreign log",
]


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_position_falls_back_to_the_full_check(tmp_path: Path, bad: str) -> None:
    d = tmp_path / "log"
    positions = build(d)
    other = tmp_path / "other"
    foreign = build(other, N + 5)[40]  # same names and seqs, another history
    pos = _bad_positions(d, positions, foreign)[bad]
    with EventLog.open(d, durability="none", start=pos) as log:
        check = log.open_check
        assert log.last_seq == N
    assert check.position_use.startswith("fallback: "), check.position_use
    assert (check.checked_from, check.records_checked) == (SEGMENT_HEADER_SIZE, N)


def test_a_position_in_an_earlier_segment_falls_back(tmp_path: Path) -> None:
    """A snapshot older than the last rotation: its position is good but saves nothing."""
    d = tmp_path / "log"
    positions = build(d, 30, segment_bytes=1500)
    first_of_last = int(segments(d)[-1].name[:20])
    assert first_of_last > 5
    with EventLog.open(d, durability="none", start=positions[3]) as log:
        check = log.open_check
    assert check.position_use.startswith("fallback: position is not in the last segment")
    assert check.records_checked == 30 - first_of_last + 1


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_position_still_finds_corruption_after_it(tmp_path: Path, bad: str) -> None:
    d = tmp_path / "log"
    positions = build(d)
    foreign = build(tmp_path / "other", N + 5)[40]
    flip(d, starts(d)[45] + HEADER + 3)  # a payload bit of record 45, intact records after
    with pytest.raises(CorruptLogError) as err:
        EventLog.open(d, durability="none", start=_bad_positions(d, positions, foreign)[bad])
    assert err.value.seq == 45


def test_a_good_position_still_finds_corruption_after_it(tmp_path: Path) -> None:
    d = tmp_path / "log"
    positions = build(d)
    flip(d, starts(d)[45] + HEADER + 3)
    with pytest.raises(CorruptLogError) as err:
        EventLog.open(d, durability="none", start=positions[40])
    assert err.value.seq == 45
    assert not list(d.glob("*.broken*"))  # corruption: nothing touched


def test_damage_before_a_good_position_is_left_to_verify(tmp_path: Path) -> None:
    """Documented: the open checks from the position on; verify checks everything."""
    d = tmp_path / "log"
    positions = build(d)
    flip(d, starts(d)[10] + HEADER + 3)
    with EventLog.open(d, durability="none", start=positions[40]) as log:
        assert log.open_check.position_use == "used"
        assert log.last_seq == N
    report = verify(d)
    assert not report.ok
    assert report.problem is not None and report.problem.seq == 10
    with pytest.raises(CorruptLogError):  # without the position the open sees it too
        EventLog.open(d, durability="none")


def _tear(d: Path, how: str) -> None:
    seg = segments(d)[-1]
    data = seg.read_bytes()
    at = starts(d)
    if how == "short last record":
        seg.write_bytes(data[:-20])
    elif how == "torn header":
        seg.write_bytes(data[: at[N] + 10])
    elif how == "zero-filled tail":
        seg.write_bytes(data + bytes(3000))
    elif how == "zeroed sector in the last record":
        cut = (len(data) // 512) * 512  # the file's last sector, lost
        assert cut > at[N - 2]
        seg.write_bytes(data[:cut] + bytes(len(data) - cut))
    elif how == "inside the last batch":
        seg.write_bytes(data[: at[48] + 40])  # record 48 is the 2nd of batch 47-48
    else:
        raise AssertionError(how)


TEARS = [
    "short last record",
    "torn header",
    "zero-filled tail",
    "zeroed sector in the last record",
    "inside the last batch",
]


@pytest.mark.parametrize(
    ("how", "at"),
    [(how, at) for how in TEARS for at in (40, 45, 46, 49) if how != TEARS[-1] or at < 47],
)
def test_a_torn_tail_after_the_position_is_cut_as_without_one(
    tmp_path: Path, how: str, at: int
) -> None:
    d = tmp_path / "log"
    positions = build(d, N + 1 if how == "inside the last batch" else N)
    _tear(d, how)
    twin = tmp_path / "twin"
    shutil.copytree(d, twin)
    with_pos, use = open_result(d, positions[at])
    without, _ = open_result(twin, None)
    assert with_pos == without
    if at == 40:
        assert use == "used"  # the tear lies well after it: the short check cut it
    assert with_pos[2].startswith("cut torn tail"), with_pos[2]
    assert with_pos[4], "the cut bytes are kept"
    assert verify(d).ok
    with EventLog.open(d, durability="none", start=positions[at]) as log:
        assert log.open_check.repair == ""  # nothing left to cut


def test_a_keyed_log_needs_its_key_whatever_the_position(tmp_path: Path) -> None:
    d = tmp_path / "log"
    key = b"k" * 32
    positions = build(d, key=key)
    with pytest.raises(KeyRequiredError):
        EventLog.open(d, durability="none", start=positions[40])
    with EventLog.open(d, durability="none", key=key, start=positions[40]) as log:
        assert log.open_check.position_use == "used"
        assert log.open_check.records_checked == N - 40
