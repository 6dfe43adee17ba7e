"""Fixtures for the sandbox store tests: real logs in tmp dirs, real namespaces.

Tests that need network namespaces take ``netns_dir`` (tests/conftest.py): a
fresh directory under tmp_path, checked at teardown against
/proc/self/mountinfo. Anything still mounted there is detached (one failing
test never leaks into the next) and a leaked nsfs mount FAILS the test.

Test modules do not import this file (several test directories have a
conftest.py); helpers are handed out as fixtures.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import support

from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, Sandbox, State, Status, Store


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


@pytest.fixture
def child() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``child(code, *args, env=None)``: run Python code in a fresh interpreter."""
    return support.run_python


@pytest.fixture
def mounts_under() -> Callable[[str | os.PathLike[str]], list[support.Mount]]:
    return support.mounts_under
