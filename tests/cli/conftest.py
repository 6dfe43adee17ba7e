"""Fixtures for the CLI tests: every command run as a real subprocess on real
state dirs. Shared helpers come from tests/replay/replay_support.py and
tests/fleet/fleet_support.py (put on sys.path here, so the test directories do
not keep two copies); ``nats_server`` is the fleet tests' local JetStream
server, started with the same helper (replay.fleet.natsserver).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "replay"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fleet"))

from fleet_support import in_ci
from replay_support import nsfs_mounts_under

from replay.fleet.natsserver import LocalNatsServer, find_nats_server
from sandbox import _linux


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def spare_netns_dir(tmp_path: Path) -> Path:
    return tmp_path / "unused-netns"


@pytest.fixture
def netns_dir(tmp_path: Path) -> Iterator[Path]:
    """A netns dir under tmp_path; a namespace left mounted under tmp FAILS the test."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates real network namespaces")
    d = tmp_path / "netns"
    d.mkdir()
    yield d
    leaked = nsfs_mounts_under(tmp_path)
    for point in sorted(leaked, key=len, reverse=True):
        with contextlib.suppress(OSError):
            _linux.umount_detach(point)
    if leaked:
        pytest.fail("leaked network namespace mount(s): " + ", ".join(leaked), pytrace=False)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    """A running ``nats-server -js`` on 127.0.0.1 (a free port, a private store); killed
    at the end. Skips without nats-server, except in CI (as tests/fleet/conftest.py)."""
    if find_nats_server() is None:
        if in_ci():
            pytest.fail("nats-server is not installed in CI: run scripts/ensure-nats-server")
        pytest.skip("nats-server is not installed (scripts/ensure-nats-server installs it)")
    server = LocalNatsServer(store_dir=tmp_path / "nats-store")
    server.start()
    try:
        yield server
    finally:
        server.kill()
