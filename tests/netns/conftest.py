"""Fixtures for the network-namespace tests: real namespaces, real mounts.

Every test gets its own netns_dir under tmp_path. At teardown the fixture
reads /proc/self/mountinfo: anything still mounted under that directory is
unmounted (so one failing test never leaks into the next), and an nsfs mount
left behind FAILS the test - a leaked namespace is a bug, not noise.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from sandbox import _linux
from sandbox.ownership import NetNSState, OwnedNetNS

NSFS = "nsfs"
CNI_NAME = re.compile(r"^cni-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates real network namespaces (unshare + bind mount)")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@attrs.frozen
class Mount:
    mount_point: str
    fstype: str
    root: str


def mounts() -> list[Mount]:
    """The calling process's mount table, from /proc/self/mountinfo."""
    out: list[Mount] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append(Mount(_unescape(fields[4]), right.split()[0], _unescape(fields[3])))
    return out


def mounts_at(path: str | os.PathLike[str]) -> list[Mount]:
    """Every mount stacked exactly at ``path`` (its real path)."""
    real = os.path.realpath(path)
    return [m for m in mounts() if m.mount_point == real]


def mounts_under(directory: str | os.PathLike[str]) -> list[Mount]:
    real = os.path.realpath(directory)
    return [m for m in mounts() if m.mount_point.startswith(real + os.sep)]


def nsfs_magic(path: str | os.PathLike[str]) -> int:
    """statfs f_type of ``path`` via stat(1), independent of the code under test."""
    out = subprocess.run(
        ["stat", "-f", "-c", "%t", os.fspath(path)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip(), 16)


def detach_everything_under(directory: str | os.PathLike[str]) -> list[Mount]:
    """Unmount (lazily) every mount under ``directory``; returns what was found."""
    found = mounts_under(directory)
    for _ in range(len(found) + 8):
        left = mounts_under(directory)
        if not left:
            break
        for m in sorted(left, key=lambda m: len(m.mount_point), reverse=True):
            with contextlib.suppress(OSError):
                _linux.umount_detach(m.mount_point)
    return found


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
        leaked: list[Mount] = []
        for d in self.made:
            leaked += [m for m in detach_everything_under(d) if m.fstype == NSFS]
        return leaked


@pytest.fixture
def netns_dirs(tmp_path: Path) -> Iterator[NetnsDirs]:
    dirs = NetnsDirs(tmp_path)
    yield dirs
    leaked = dirs.check_and_clean()
    if leaked:
        pytest.fail(
            "leaked network namespace mount(s): " + ", ".join(m.mount_point for m in leaked),
            pytrace=False,
        )


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


def run_python(
    code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child interpreter (the venv's), returning its result."""
    full_env = dict(os.environ)
    full_env.pop("SANDBOX_CRASHPOINT", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@attrs.frozen
class Helpers:
    """Module-level helpers handed to tests as a fixture (test modules do not
    import conftest: several test directories have one)."""

    mounts_at: Callable[[str | os.PathLike[str]], list[Mount]] = mounts_at
    mounts_under: Callable[[str | os.PathLike[str]], list[Mount]] = mounts_under
    nsfs_magic: Callable[[str | os.PathLike[str]], int] = nsfs_magic
    run_python: Callable[..., subprocess.CompletedProcess[str]] = run_python
    cni_name: re.Pattern[str] = CNI_NAME


@pytest.fixture
def kx() -> Helpers:
    return Helpers()
