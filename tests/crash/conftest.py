"""Fixtures for the crash-harness tests: real children, real kills, real namespaces.

Every test that runs children gets ``crash_dir``: a directory under tmp_path
that the harness puts its per-run state and netns dirs in. At teardown the
fixture reads /proc/self/mountinfo: anything still mounted under it is
detached (one failing test never leaks into the next), and a leaked nsfs
mount FAILS the test - the harness promises to clean up after itself.

Test modules do not import this file (several test directories have a
conftest.py); what they need is handed out as fixtures.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import support


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "crashtest_ci: the bounded crashtest CI runs on every change (a few hundred runs)",
    )


@pytest.fixture(autouse=True)
def _need_root() -> None:
    support.skip_unless_root("the store creates real network namespaces")


@pytest.fixture(autouse=True)
def _no_armed_point(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A SANDBOX_CRASHPOINT in the developer's shell must not reach the children."""
    monkeypatch.delenv("SANDBOX_CRASHPOINT", raising=False)
    monkeypatch.delenv("SANDBOX_TEST_FAULT", raising=False)
    yield


@pytest.fixture
def crash_dir(tmp_path: Path) -> Iterator[str]:
    """A work dir for harness runs; fails the test if a namespace leaks under it."""
    d = tmp_path / "crash"
    d.mkdir()
    yield str(d)
    leaked = support.nsfs_mounts_under(d)
    support.detach_everything_under(d)
    shutil.rmtree(d, ignore_errors=True)
    support.fail_on_leaks(leaked)
