"""Attack P: a hard link to a file outside the log placed as ``LOCK`` or as a segment.

A hard link is not a symlink: ``O_NOFOLLOW`` does not see it, and before
this the writer wrote its pid over the linked file (and emptied it), or
appended to / truncated a linked segment. A file the log writes must have
exactly one link; anything else is one UnsafeFileError naming the path, and
``verify`` reports such a segment instead of raising.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from security_support import make_log, refused_with_lock_replaced

from eventlog import EventLog, UnsafeFileError, read, verify

PRECIOUS = b"the file outside the log\n"


def test_hard_linked_lock_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    d, outside, err = refused_with_lock_replaced(tmp_path, "precious", PRECIOUS, os.link)
    assert f"{d / 'LOCK'} is a regular file with 2 hard links" in err
    assert outside.read_bytes() == PRECIOUS


@pytest.mark.parametrize("torn", [False, True], ids=["appended-to", "truncated"])
def test_hard_linked_last_segment_is_not_written_through(tmp_path: Path, torn: bool) -> None:
    d = tmp_path / "state"
    (seg,) = make_log(d)
    outside = tmp_path / "outside.log"
    shutil.move(seg, outside)
    if torn:  # recovery would cut this tail, through the link
        with open(outside, "r+b") as f:
            f.truncate(outside.stat().st_size - 5)
    before = outside.read_bytes()
    os.link(outside, seg)
    with (
        pytest.raises(UnsafeFileError, match="2 hard links"),
        EventLog.open(d, durability="none") as log,
    ):
        log.append({"through": "the link"})
    assert outside.read_bytes() == before
    assert not list(d.glob("*.broken*"))


def test_readers_report_a_hard_linked_segment(tmp_path: Path) -> None:
    d = tmp_path / "state"
    segs = make_log(d, records=20, segment_bytes=200)
    os.link(segs[1], tmp_path / "second-name")
    report = verify(d)
    assert not report.ok and report.problem is not None
    assert report.problem.segment == str(segs[1])
    assert "2 hard links" in report.problem.reason
    with pytest.raises(UnsafeFileError, match="2 hard links"):
        list(read(d))


def test_a_directory_named_like_a_segment_is_reported(tmp_path: Path) -> None:
    d = tmp_path / "state"
    segs = make_log(d, records=20, segment_bytes=200)
    segs[-1].unlink()
    segs[-1].mkdir()
    report = verify(d)
    assert report.problem is not None and report.problem.segment == str(segs[-1])
    assert "a directory" in report.problem.reason
    with pytest.raises(UnsafeFileError, match="is a directory"):
        EventLog.open(d, durability="none")
