"""Fixtures for the fleet tests: a real local ``nats-server -js`` and real logs.

Why a real server: what must hold (exactly once, in order, across a server
that is killed and restarted, and a shipper that is SIGKILLed) is a property
of the client and the server together; a fake server would test the fake.
The server binds 127.0.0.1 on a free port with a private store dir.

Without nats-server the integration tests skip with the reason - except in
CI (``CI=true``), where a missing server is a failure: CI runs
scripts/ensure-nats-server first, so a skip there would hide a broken setup.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_support import in_ci

from replay.fleet.natsserver import LocalNatsServer, find_nats_server


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    """A running JetStream server on 127.0.0.1; killed at the end."""
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
