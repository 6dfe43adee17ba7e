"""Attack A: ``LOCK`` (or a segment) replaced by a symlink to a file elsewhere.

Before: a writer opened ``LOCK`` with O_RDWR and no O_NOFOLLOW, wrote its pid
over the target and emptied it on release (a dangling link even created the
target); a symlinked last segment with a torn tail was truncated through
the link. Now the link is refused with UnsafeFileError naming the path, and
the target is untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from security_support import make_log, refused_with_lock_replaced

from eventlog import EventLog, UnsafeFileError, verify
from sandbox import Store

PRECIOUS = b"root:x:0:0:root:/root:/bin/bash\n"


def test_lock_symlink_to_a_file_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    d, target, err = refused_with_lock_replaced(
        tmp_path, "passwd", PRECIOUS, lambda target, lock: lock.symlink_to(target)
    )
    assert str(d / "LOCK") in err
    assert "symlink" in err
    assert target.read_bytes() == PRECIOUS
    assert (d / "LOCK").is_symlink()


def test_dangling_lock_symlink_creates_nothing(tmp_path: Path) -> None:
    d = tmp_path / "state"
    make_log(d)
    target = tmp_path / "created-by-the-store"
    (d / "LOCK").unlink()
    (d / "LOCK").symlink_to(target)
    with pytest.raises(UnsafeFileError, match="symlink"):
        EventLog.open(d, durability="none")
    assert not os.path.lexists(target)


def test_symlinked_torn_segment_is_not_truncated_through_the_link(tmp_path: Path) -> None:
    d = tmp_path / "state"
    (seg,) = make_log(d)
    outside = tmp_path / "outside.log"
    data = seg.read_bytes()[:-5]  # a torn last record: recovery would cut it
    outside.write_bytes(data)
    seg.unlink()
    seg.symlink_to(outside)
    with pytest.raises(UnsafeFileError, match="symlink"):
        EventLog.open(d, durability="none")
    assert outside.read_bytes() == data
    assert not list(d.glob("*.broken*"))
    report = verify(d)  # a reader reports it, it does not raise
    assert not report.ok and report.problem is not None
    assert report.problem.segment == str(seg)


def test_the_store_refuses_a_symlinked_lock(tmp_path: Path) -> None:
    # What every sandboxctl writer command opens first.
    d = tmp_path / "state"
    netns = tmp_path / "unused-netns"
    Store.open(d, netns_dir=netns, durability="none").close()
    target = tmp_path / "passwd"
    target.write_bytes(PRECIOUS)
    (d / "LOCK").unlink()
    (d / "LOCK").symlink_to(target)
    with pytest.raises(UnsafeFileError, match="symlink"):
        Store.open(d, netns_dir=netns, durability="none")
    assert target.read_bytes() == PRECIOUS
