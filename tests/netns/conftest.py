"""Fixtures for the network-namespace tests: real namespaces, real mounts.

Every test gets its own netns_dir under tmp_path. At teardown the fixture
reads /proc/self/mountinfo: anything still mounted under that directory is
unmounted (so one failing test never leaks into the next), and an nsfs mount
left behind FAILS the test - a leaked namespace is a bug, not noise.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import support
from support import NSFS, Mount

from sandbox.ownership import NetNSState, OwnedNetNS

#: Tests that only the machine's root can run (not root of the user namespace
#: ``./dev test`` gives a plain user), with why; they skip there with that reason.
REAL_ROOT_ONLY = {
    "test_real_ip_netns_add_namespace_in_the_system_dir_is_foreign": (
        "`ip netns add` writes the shared /var/run/netns"
    ),
}


@pytest.fixture(autouse=True)
def _need_root(request: pytest.FixtureRequest) -> None:
    support.skip_unless_root("creates real network namespaces (unshare + bind mount)")
    why = REAL_ROOT_ONLY.get(getattr(request.node, "originalname", request.node.name))
    if why is not None:
        support.skip_unless_real_root(why)


def nsfs_magic(path: str | os.PathLike[str]) -> int:
    """statfs f_type of ``path`` via stat(1), independent of the code under test."""
    out = subprocess.run(
        ["stat", "-f", "-c", "%t", os.fspath(path)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip(), 16)


class NetnsDirs:
    """Hands out netns directories under tmp_path, all leak-checked at teardown."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.made: list[Path] = []

    def __call__(self, name: str = "netns", *, create: bool = True) -> Path:
        d = self.base / name
        if create:
            d.mkdir(parents=True, exist_ok=True)
        self.made.append(d)
        return d

    def check_and_clean(self) -> list[Mount]:
        """Detach everything under every dir handed out; the nsfs mounts found."""
        return [
            m for d in self.made for m in support.detach_everything_under(d) if m.fstype == NSFS
        ]


@pytest.fixture
def netns_dirs(tmp_path: Path) -> Iterator[NetnsDirs]:
    dirs = NetnsDirs(tmp_path)
    yield dirs
    support.fail_on_leaks([m.mount_point for m in dirs.check_and_clean()])


@pytest.fixture
def netns_dir(netns_dirs: NetnsDirs) -> Path:
    """A fresh, existing netns directory under tmp_path (leak-checked)."""
    return netns_dirs("netns")


@attrs.define
class FakeStore:
    """The part of the store the reconciler talks to: owned entries and record().

    ``record`` appends the call and applies the same transition the
    projection would (ASSIGNED -created-> CREATED, -removed-> REMOVED,
    -closed-> CLOSED), so a second reconcile sees what a real store would.
    """

    entries: dict[str, OwnedNetNS] = attrs.field(factory=dict)
    calls: list[tuple[str, str, str, str]] = attrs.field(factory=list)
    fail_on: Callable[[str, str], Exception | None] | None = None

    def own(self, sandbox_id: str, path: str | os.PathLike[str], state: NetNSState) -> str:
        p = os.fspath(path)
        self.entries[p] = OwnedNetNS(sandbox_id, p, state)
        return p

    def owned(self) -> list[OwnedNetNS]:
        return [o for o in self.entries.values() if not o.state.terminal]

    def record(self, kind: str, sandbox_id: str, path: str, reason: str) -> None:
        if self.fail_on is not None:
            err = self.fail_on(kind, path)
            if err is not None:
                raise err
        self.calls.append((kind, sandbox_id, path, reason))
        self.apply(kind, sandbox_id, path)

    def apply(self, kind: str, sandbox_id: str, path: str) -> None:
        new = {
            "created": NetNSState.CREATED,
            "removed": NetNSState.REMOVED,
            "closed": NetNSState.CLOSED,
        }[kind]
        self.entries[path] = OwnedNetNS(sandbox_id, path, new)

    def state(self, path: str | os.PathLike[str]) -> NetNSState:
        return self.entries[os.fspath(path)].state


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


run_python = functools.partial(support.run_python, timeout=60)


@attrs.frozen
class Helpers:
    """Module-level helpers handed to tests as a fixture (test modules do not
    import conftest: several test directories have one)."""

    mounts_at: Callable[[str | os.PathLike[str]], list[Mount]] = support.mounts_at
    mounts_under: Callable[[str | os.PathLike[str]], list[Mount]] = support.mounts_under
    nsfs_magic: Callable[[str | os.PathLike[str]], int] = nsfs_magic
    run_python: Callable[..., subprocess.CompletedProcess[str]] = run_python
    cni_name: re.Pattern[str] = support.CNI_NAME


@pytest.fixture
def kx() -> Helpers:
    return Helpers()
