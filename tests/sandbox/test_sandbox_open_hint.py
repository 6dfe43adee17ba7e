"""Store.open from a snapshot checks the log only from the snapshot's position.

Why: with a snapshot, opening a small store used to cost a check of the whole
last segment (which then holds the whole log), as much as the replay the
snapshot saves. The position is only a hint: a stale or forged one must cost
the full check, never an error or a wrong state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import Sandbox, Store
from sandbox.snapshot_hint import newest_position


def _store_with_snapshot(
    state_dir: Path, open_store: Callable[..., Store], make_sandbox: Callable[..., Sandbox]
) -> int:
    with open_store(state_dir) as store:
        for i in range(40):
            store.add(make_sandbox(f"p{i}"))
        store.snapshot()
        for i in range(3):
            store.add(make_sandbox(f"after{i}"))
        return store.last_seq


def test_open_checks_only_the_records_after_the_snapshot(
    tmp_path: Path, open_store: Callable[..., Store], make_sandbox: Callable[..., Sandbox]
) -> None:
    last = _store_with_snapshot(tmp_path / "s", open_store, make_sandbox)
    assert newest_position(tmp_path / "s") is not None
    with open_store(tmp_path / "s") as store:
        check = store._log.open_check  # type: ignore[attr-defined]
        assert check.position_use == "used"
        assert check.records_checked == 3
        assert store.last_seq == last and len(store) == 43


def test_a_forged_position_costs_the_full_check_not_an_error(
    tmp_path: Path, open_store: Callable[..., Store], make_sandbox: Callable[..., Sandbox]
) -> None:
    last = _store_with_snapshot(tmp_path / "s", open_store, make_sandbox)
    (snap,) = sorted((tmp_path / "s").glob("*.snap"))
    data = bytearray(snap.read_bytes())
    data[30] ^= 0xFF  # the recorded chain digest: the position no longer matches the log
    snap.write_bytes(bytes(data))
    with open_store(tmp_path / "s") as store:
        check = store._log.open_check  # type: ignore[attr-defined]
        assert check.position_use.startswith("fallback")
        assert check.records_checked == last
        assert len(store) == 43


@pytest.mark.parametrize("content", [b"", b"SBXSNAP\x00" + b"\x00" * 10])
def test_a_broken_snapshot_header_gives_no_hint(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "00000000000000000005.snap").write_bytes(content)
    assert newest_position(tmp_path) is None
