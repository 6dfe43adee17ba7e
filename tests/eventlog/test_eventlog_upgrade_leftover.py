"""A ``.v2tmp`` left by a crash during the v1 -> v2 upgrade of an empty tail.

The upgrade writes ``<segment>.v2tmp`` (O_EXCL) and renames it over the
segment; a crash before the rename leaves the temp file. The writer removes
and redoes it only when it proves the file is its own - a regular file with
one link holding a prefix of the v2 header it would write (or zeros where
those bytes were not persisted); anything else is refused, naming the file,
and left untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest

import eventlog
from eventlog.format import ZERO_DIGEST, encode_record, encode_segment_header, segment_name
from eventlog.rotate import UPGRADE_TEMP_SUFFIX


def _v1_log(d: Path) -> tuple[Path, bytes]:
    """A v1 log: three records, then an empty v1 tail segment (a rotation's result).
    The tail's path and the v2 header the upgrade writes for it."""
    d.mkdir()
    data = encode_segment_header(1, ZERO_DIGEST, keyed=False, version=1)
    prev = ZERO_DIGEST
    for seq in (1, 2, 3):
        payload = msgpack.packb({"seq": seq})
        record, prev = encode_record(prev, seq, 1_000 + seq, 0, payload, b"", version=1)
        data += record
    (d / segment_name(1)).write_bytes(data)
    tail = d / segment_name(4)
    tail.write_bytes(encode_segment_header(4, prev, keyed=False, version=1))
    return tail, encode_segment_header(4, prev, keyed=False)


def _upgraded(d: Path, tail: Path, header: bytes) -> None:
    """Open upgrades the tail (v2 header, temp gone), appends go on, the log verifies."""
    with eventlog.EventLog.open(d) as log:
        assert log.last_seq == 3
        log.append({"seq": 4})
    assert tail.read_bytes()[: len(header)] == header
    assert not Path(str(tail) + UPGRADE_TEMP_SUFFIX).exists()
    assert [r.seq for r in eventlog.read(d)] == [1, 2, 3, 4]
    assert eventlog.verify(d).ok


@pytest.mark.parametrize("kept", ["empty", "prefix", "whole", "zeros", "prefix-then-zeros"])
def test_a_leftover_of_our_own_upgrade_is_redone(tmp_path: Path, kept: str) -> None:
    d = tmp_path / "log"
    tail, header = _v1_log(d)
    leftover = {
        "empty": b"",
        "prefix": header[:30],
        "whole": header,
        "zeros": bytes(len(header)),
        "prefix-then-zeros": header[:20] + bytes(44),
    }[kept]
    Path(str(tail) + UPGRADE_TEMP_SUFFIX).write_bytes(leftover)
    _upgraded(d, tail, header)


def test_no_leftover_upgrades_as_before(tmp_path: Path) -> None:
    d = tmp_path / "log"
    tail, header = _v1_log(d)
    _upgraded(d, tail, header)


@pytest.mark.parametrize("kind", ["foreign", "longer", "other-segment-header", "hard-link"])
def test_anything_else_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    d = tmp_path / "log"
    tail, header = _v1_log(d)
    tmp = Path(str(tail) + UPGRADE_TEMP_SUFFIX)
    content = {
        "foreign": b"someone else's notes\n",
        "longer": header + b"x",
        "other-segment-header": encode_segment_header(5, bytes(32), keyed=False),
        "hard-link": header,
    }[kind]
    tmp.write_bytes(content)
    if kind == "hard-link":
        os.link(tmp, tmp_path / "elsewhere")
    with pytest.raises(eventlog.EventLogError) as info:
        eventlog.EventLog.open(d)
    assert str(tmp) in str(info.value)
    assert tmp.read_bytes() == content  # untouched
    before = tail.read_bytes()
    assert before == encode_segment_header(4, before[24:56], keyed=False, version=1)
    # Moved away by a person, the upgrade goes through.
    tmp.rename(tmp_path / "moved-away")
    _upgraded(d, tail, header)


def test_a_symlink_leftover_is_never_followed(tmp_path: Path) -> None:
    d = tmp_path / "log"
    tail, _header = _v1_log(d)
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    tmp = Path(str(tail) + UPGRADE_TEMP_SUFFIX)
    tmp.symlink_to(target)
    with pytest.raises(eventlog.UnsafeFileError, match="symlink") as info:
        eventlog.EventLog.open(d)
    assert str(tmp) in str(info.value)
    assert tmp.is_symlink() and target.read_bytes() == b"precious"
