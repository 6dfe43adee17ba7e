"""Fixtures shared by every test directory; plain helpers live in tests/support.py.

``netns_dir`` is a fresh directory under tmp_path (the test skips when not
root; ``./dev test`` makes a plain user root of a user namespace first, and
every test using it is marked ``netns``). At teardown everything still
mounted under tmp_path is detached (one failing test never leaks into the
next) and an nsfs mount left behind FAILS the test - a leaked namespace is a
bug, not noise. tests/netns overrides it with its own ``netns_dirs`` factory,
leak-checked the same way.

Test modules do not import conftest files (several test directories have
one); what they need is a fixture here or a helper in ``support``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("support")

import support  # noqa: E402  (after register_assert_rewrite, so its asserts explain)

from replay.fleet.natsserver import LocalNatsServer, find_nats_server  # noqa: E402

#: Fixtures that mean "this test creates real network namespaces": the netns dir
#: factories, and the ``_need_root`` autouse fixture of tests/netns and tests/crash.
NETNS_FIXTURES = frozenset({"netns_dir", "netns_dirs", "_need_root"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: ~1.5 s or more (deselect with -m 'not slow' for the quick loop)"
    )
    config.addinivalue_line(
        "markers",
        "netns: creates real network namespaces; needs root, or root of a user namespace "
        "(set from the fixtures a test uses; scripts/test-as-plain-user selects on it)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marked from the fixtures, not by hand: a new namespace test cannot be
    # forgotten by the plain-user CI step that runs ``-m netns``.
    for item in items:
        if NETNS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.netns)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """Where the log goes; not created (Store.open creates it, readers must not)."""
    return tmp_path / "state"


@pytest.fixture
def netns_dir(tmp_path: Path) -> Iterator[Path]:
    """A netns dir under tmp_path; a namespace left mounted under tmp FAILS the test."""
    support.skip_unless_root()
    d = tmp_path / "netns"
    d.mkdir()
    yield d
    support.clean_and_check(tmp_path)


@pytest.fixture
def spare_netns_dir(tmp_path: Path) -> Path:
    """A netns dir for stores that make no namespaces (never created on disk)."""
    return tmp_path / "unused-netns"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    """A running ``nats-server -js`` on 127.0.0.1 (a free port, a private store); killed
    at the end.

    Why a real server: what must hold (exactly once, in order, across a server that
    is killed and restarted, and a shipper that is SIGKILLed) is a property of the
    client and the server together; a fake server would test the fake.

    Skips without nats-server, except in CI (``CI=true``), where a missing server is
    a failure: CI runs scripts/ensure-nats-server first, so a skip there would hide
    a broken setup.
    """
    if find_nats_server() is None:
        if support.in_ci():
            pytest.fail("nats-server is not installed in CI: run scripts/ensure-nats-server")
        pytest.skip("nats-server is not installed (scripts/ensure-nats-server installs it)")
    server = LocalNatsServer(store_dir=tmp_path / "nats-store")
    server.start()
    try:
        yield server
    finally:
        server.kill()
