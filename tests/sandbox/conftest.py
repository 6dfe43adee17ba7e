"""Fixtures for the sandbox store tests: real logs in tmp dirs, real namespaces.

Tests that need network namespaces take ``netns_dir``: a fresh directory under
tmp_path, checked at teardown against /proc/self/mountinfo. Anything still
mounted under it is detached (one failing test never leaks into the next)
and a leaked nsfs mount FAILS the test.

Test modules do not import this file (several test directories have a
conftest.py); helpers are handed out as fixtures.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import (
    Metadata,
    PodSandboxConfig,
    PodSandboxMetadata,
    Sandbox,
    State,
    Status,
    Store,
    _linux,
)

REPO = Path(__file__).resolve().parents[2]


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def nsfs_mounts_under(directory: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount under ``directory``."""
    real = os.path.realpath(directory)
    out: list[tuple[str, str]] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = _unescape(left.split()[4])
            if point.startswith(real + os.sep):
                out.append((point, right.split()[0]))
    return out


def _detach_all_under(directory: Path) -> list[tuple[str, str]]:
    found = nsfs_mounts_under(directory)
    for _ in range(len(found) + 8):
        left = nsfs_mounts_under(directory)
        if not left:
            break
        for point, _fs in sorted(left, key=lambda m: len(m[0]), reverse=True):
            with contextlib.suppress(OSError):
                _linux.umount_detach(point)
    return found


def _can_make_netns() -> str | None:
    """None if this process can create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "needs root: creates real network namespaces (unshare + bind mount)"
    return None


@pytest.fixture
def netns_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh netns directory; a leaked nsfs mount under it fails the test."""
    why = _can_make_netns()
    if why is not None:
        pytest.skip(why)
    d = tmp_path / "netns"
    d.mkdir()
    yield d
    leaked = [p for p, fs in _detach_all_under(d) if fs == "nsfs"]
    if leaked:
        pytest.fail("leaked network namespace mount(s): " + ", ".join(leaked), pytrace=False)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def unused_netns_dir(tmp_path: Path) -> Path:
    """A netns_dir for stores that never create namespaces (no root needed)."""
    return tmp_path / "no-netns"


def _make_sandbox(
    sandbox_id: str,
    name: str | None = None,
    *,
    state: State = State.READY,
    pid: int = 0,
    netns_path: str = "",
    config: PodSandboxConfig | None = None,
) -> Sandbox:
    cfg = config or PodSandboxConfig(
        metadata=PodSandboxMetadata(
            name=f"pod-{sandbox_id}", uid=f"uid-{sandbox_id}", namespace="ns"
        )
    )
    md = Metadata(sandbox_id, name if name is not None else f"name-{sandbox_id}", cfg, netns_path)
    return Sandbox(md, Status(state, pid=pid, created_at=1_700_000_000_000_000_000))


@pytest.fixture
def make_sandbox() -> Callable[..., Sandbox]:
    """``make_sandbox(id, name=None, *, state=READY, pid=0, netns_path="", config=None)``."""
    return _make_sandbox


@pytest.fixture
def open_store(unused_netns_dir: Path) -> Iterator[Callable[..., Store]]:
    """``open_store(state_dir, **kw)``: Store.open with a default netns_dir; every
    store opened this way is closed at teardown."""
    opened: list[Store] = []

    def opener(state_dir: str | os.PathLike[str], **kw: Any) -> Store:
        kw.setdefault("netns_dir", unused_netns_dir)
        store = Store.open(state_dir, **kw)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


def run_python(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child interpreter of this venv (repo on sys.path)."""
    full_env = dict(os.environ)
    full_env.pop("SANDBOX_CRASHPOINT", None)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def child() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``child(code, *args, env=None)``: run Python code in a fresh interpreter."""
    return run_python


@pytest.fixture
def mounts_under() -> Callable[[str | os.PathLike[str]], list[tuple[str, str]]]:
    return nsfs_mounts_under
