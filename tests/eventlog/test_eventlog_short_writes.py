"""A write may be short (a signal, a full disk): every writer finishes it or fails.

``eventlog.files.write_all`` is the one loop the appender, new files and
snapshots use. The kernel rarely writes a regular file short on demand, so
``os.write`` is narrowed to a few bytes a call here - the bytes still go to
a real file - and once to a write that writes nothing, which must be an
error, not an endless loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support import sandbox

import eventlog
from eventlog import files
from sandbox import Store

_real_write = os.write


def _at_most(limit: int) -> Callable[[int, bytes | memoryview], int]:
    def write(fd: int, data: bytes | memoryview) -> int:
        return _real_write(fd, bytes(data[:limit]))

    return write


def test_write_all_finishes_a_short_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * 40
    monkeypatch.setattr(os, "write", _at_most(7))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        files.write_all(fd, data, 0)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_a_write_of_nothing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(OSError, match="write returned 0"):
        files.write_file_durably(str(tmp_path / "new"), b"x" * 10)
    assert not (tmp_path / "new").exists()  # nothing partial left behind


def test_log_and_snapshot_survive_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, unused_netns_dir = tmp_path / "state", tmp_path / "no-netns"
    monkeypatch.setattr(os, "write", _at_most(5))
    with Store.open(state, netns_dir=unused_netns_dir) as store:
        for i in range(5):
            store.add(sandbox(f"pod{i}"))
        path = store.snapshot()
        truth = store.projection()
    monkeypatch.undo()
    assert eventlog.verify(state).ok
    with Store.open(state, netns_dir=unused_netns_dir) as store:
        assert store.load_result is not None and store.load_result.snapshot == path
        assert store.projection() == truth
