"""Attack J: writer opens attempted while the disk is full.

Before: each attempt created ``<segment>.broken.N`` for the torn tail's bytes,
failed to write it (ENOSPC) and left it empty; ``verify`` then listed a pile
of empty "evidence". Now a failed attempt removes what it created: the opens
fail with the disk's error and leave nothing; once there is room, one open
repairs the tail and leaves exactly one complete ``.broken`` copy.

The full disk is a real one: a small tmpfs mounted under the test's tmp dir
(root only), unmounted afterwards.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import support

from eventlog import EventLog, read, verify

PAGE = 4096
ATTEMPTS = 3


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    support.skip_unless_root("mounts a small tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(directory: Path) -> list[Path]:
    """Fill the filesystem with one-page files until it refuses; the files."""
    made: list[Path] = []
    while True:
        path = directory / f"filler-{len(made)}"
        try:
            with open(path, "wb") as f:
                f.write(b"f" * PAGE)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            path.unlink()
            return made
        made.append(path)


def test_opens_on_a_full_disk_leave_no_empty_broken_files(small_disk: Path) -> None:
    d = small_disk / "state"
    with EventLog.open(d, durability="always") as log:
        for i in range(10):
            log.append({"n": i, "pad": "x" * 100})
    (seg,) = sorted(d.glob("*.log"))
    whole = seg.read_bytes()
    with open(seg, "r+b") as f:
        f.truncate(len(whole) - 7)  # a torn last record: the next open cuts it
    fillers = fill(small_disk)
    # One free page: enough for LOCK's pid, not for the copy of the torn bytes.
    fillers.pop().unlink()
    for _ in range(ATTEMPTS):
        with pytest.raises(OSError) as info:
            EventLog.open(d, durability="always")
        assert info.value.errno == errno.ENOSPC
        assert not list(d.glob("*.broken*")), os.listdir(d)
    for path in fillers:
        path.unlink()
    with EventLog.open(d, durability="always") as log:
        assert log.last_seq == 9
    (broken,) = d.glob("*.broken*")
    assert broken.name == seg.name + ".broken"
    assert broken.stat().st_size > 0
    assert [r.payload["n"] for r in read(d)] == list(range(9))
    assert verify(d).ok
