"""Bugs the crash harness found in the other packages, pinned as tests.

Each was found by ``sandboxctl crashtest --power-loss`` and is reproduced
here on its own, without the harness, so that the owning package can see it
fail and fix it. Each stays as a regression test once fixed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import eventlog


def test_lost_partial_last_sector_is_a_torn_tail(tmp_path: Path) -> None:
    """Power loss drops the file's last, partial sector: the last record (never
    acknowledged with durability "always" - it was not fsynced) ends 1-7 bytes
    into that sector, which reads back as zeros. That is a torn write, not
    corruption: the writer must cut the record (keeping a .broken copy) and
    open, or the store cannot be reopened after an ordinary power cut.

    Found by ``sandboxctl crashtest --runs 1500 --seed 900004 --power-loss``;
    each of these replays one such run alone (Store.open: CorruptLogError
    "record body crc mismatch" at the last record's offset):

        sandboxctl crashtest --runs 1 --seed 7607948966970796552 \\
            --points append.after_write --power-loss
        sandboxctl crashtest --runs 1 --seed 543216695697034318 \\
            --points append.after_fsync --power-loss
    """
    d = str(tmp_path / "log")
    for pad in range(512):
        os.makedirs(d)
        with eventlog.EventLog.open(d, durability="none") as log:
            log.append({"t": "a", "p": "x" * 200})
            log.append({"t": "b", "p": "y" * pad})
        seg = os.path.join(d, "00000000000000000001.log")
        size = os.path.getsize(seg)
        if size % 512 == 3:
            break
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)
    else:
        pytest.fail("no padding put the last record 3 bytes into a sector")
    with open(seg, "r+b") as f:
        f.seek(size - 3)
        f.write(b"\0\0\0")  # that sector never reached the disk
    with eventlog.EventLog.open(d) as log:
        assert log.last_seq == 1
    assert [r.seq for r in eventlog.read(d)] == [1]
