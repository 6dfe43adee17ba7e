"""Fixtures for the replay tests: real logs in tmp dirs, real namespaces.

``netns_dir`` is a fresh directory under tmp_path; at teardown anything
still mounted under it is detached and an nsfs mount left behind FAILS the
test (a leaked namespace is a bug). Helpers live in replay_support.py.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from replay_support import nsfs_mounts_under

from sandbox import _linux


def _detach_all(directory: Path) -> list[str]:
    found = nsfs_mounts_under(directory)
    for _ in range(len(found) + 8):
        left = nsfs_mounts_under(directory)
        if not left:
            break
        for point in sorted(left, key=len, reverse=True):
            with contextlib.suppress(OSError):
                _linux.umount_detach(point)
    return found


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """Where the log goes; not created (Store.open creates it, readers must not)."""
    return tmp_path / "state"


@pytest.fixture
def netns_dir(tmp_path: Path) -> Iterator[Path]:
    """A netns dir under tmp_path, leak-checked at teardown; skips when not root."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates real network namespaces")
    d = tmp_path / "netns"
    d.mkdir()
    yield d
    leaked = _detach_all(tmp_path)
    if leaked:
        pytest.fail("leaked network namespace mount(s): " + ", ".join(leaked), pytrace=False)


@pytest.fixture
def spare_netns_dir(tmp_path: Path) -> Path:
    """A netns dir for stores that make no namespaces (never created on disk)."""
    return tmp_path / "unused-netns"
