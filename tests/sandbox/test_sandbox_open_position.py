"""Snapshots record their log position; ``Store.open`` reads the tail from there.

The position is a claim checked by the reader: a wrong, stale or foreign one
costs a scan (or the snapshot is skipped), never a wrong state. Also here:
``Store.open(segment_bytes=...)``, ``Store.synced_offset`` and ``add``
returning the sandbox as ``get`` would.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from support import MakeSandbox, OpenStore, run_threads

import eventlog
from eventlog.reader import SegmentWalk
from sandbox import NetNS, Projection, Store
from sandbox import snapshot as snap


def _populate(store: Store, make_sandbox: MakeSandbox, start: int, n: int) -> None:
    for i in range(start, start + n):
        store.add(make_sandbox(f"sb{i:04d}"))
        if i % 2:
            store.update_status(f"sb{i:04d}", lambda old: attrs.evolve(old, pid=old.pid + 1))
        if i % 5 == 4:
            store.delete(f"sb{i - 2:04d}")


def _replayed(state_dir: Path, netns_dir: Path) -> Projection:
    proj = Projection(str(netns_dir))
    for rec in eventlog.read(state_dir):
        proj.apply(rec.seq, rec.payload)
    return proj


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every fallback a reader takes from a start position, with its reason."""
    seen: list[str] = []
    original = SegmentWalk._fallback

    def spy(self: SegmentWalk, pos: eventlog.Position) -> Iterator[Any]:
        seen.append(self.position_use)
        return original(self, pos)

    monkeypatch.setattr(SegmentWalk, "_fallback", spy)
    yield seen


def _rewrite_position(path: str, position: eventlog.Position | None) -> None:
    info = snap.read_snapshot_info(path, "/nonexistent")
    proj = info.projection
    Path(path).write_bytes(snap.encode(proj, info.digest, position))


def test_snapshot_records_its_position_and_open_uses_it(
    state_dir: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
    fallbacks: list[str],
) -> None:
    store = open_store(state_dir, durability="none", segment_bytes=2000)
    _populate(store, make_sandbox, 0, 30)
    path = store.snapshot()
    info = snap.read_snapshot_info(path)
    assert info.position is not None
    assert info.position == eventlog.end_position(state_dir, store.last_seq, store.head)
    _populate(store, make_sandbox, 30, 12)
    live = store.projection()
    assert len(list(state_dir.glob("*.log"))) > 2
    store.close()
    with Store.open(state_dir, durability="none") as again:
        assert again.load_result is not None and again.load_result.snapshot == path
        assert again.load_result.replayed == live.last_seq - info.seq
        assert again.projection() == live
    assert fallbacks == []


@pytest.mark.parametrize(
    "damage", ["offset", "offset-u64-max", "segment", "digest-of-other-seq", "none"]
)
def test_a_wrong_position_falls_back_and_still_gives_the_right_state(
    state_dir: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
    fallbacks: list[str],
    damage: str,
) -> None:
    store = open_store(state_dir, durability="none", segment_bytes=2000)
    _populate(store, make_sandbox, 0, 20)
    path = store.snapshot()
    _populate(store, make_sandbox, 20, 10)
    live = store.projection()
    store.close()
    pos = snap.read_snapshot_info(path).position
    assert pos is not None
    segs = sorted(p.name for p in state_dir.glob("*.log"))
    wrong: eventlog.Position | None = {
        "offset": pos._replace(offset=pos.offset - 7),
        # Hostile bytes that pass the (unkeyed) snapshot checksum: no seek can take it.
        "offset-u64-max": pos._replace(offset=2**64 - 1),
        "segment": pos._replace(segment=segs[0] if segs[0] != pos.segment else segs[-1]),
        # A position whose own digest is not the snapshot's cannot be encoded:
        # pretend an older position (other seq) was recorded, offset and all.
        "digest-of-other-seq": pos._replace(offset=pos.offset + 1000),
        "none": None,
    }[damage]
    _rewrite_position(path, wrong)
    with Store.open(state_dir, durability="none") as again:
        assert again.load_result is not None
        assert again.load_result.snapshot == path  # still used: its digest matches
        assert again.projection() == live
    assert len(fallbacks) == 1 and fallbacks[0].startswith("fallback"), fallbacks


def test_a_position_into_a_rewritten_log_is_refused(
    tmp_path: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
) -> None:
    """Same segment names and seqs, another history: the snapshot is skipped."""
    one, two = tmp_path / "one", tmp_path / "two"
    a = open_store(one, durability="none", segment_bytes=2000)
    b = open_store(two, durability="none", segment_bytes=2000)
    _populate(a, make_sandbox, 0, 15)
    _populate(b, make_sandbox, 500, 15)  # other ids: other bytes everywhere
    foreign = a.snapshot()
    assert b.last_seq >= a.last_seq
    live_b = b.projection()
    b.close()
    shutil.copy(foreign, two / os.path.basename(foreign))
    with Store.open(two, durability="none") as again:
        assert again.load_result is not None and again.load_result.snapshot is None
        assert "different history" in again.load_result.skipped[0][1]
        assert again.projection() == live_b


def test_a_snapshot_past_a_torn_tail_that_recovery_cut(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    """The snapshot saw events a power loss took; new events then reused their seqs."""
    store = open_store(state_dir, durability="none")
    _populate(store, make_sandbox, 0, 10)
    kept = eventlog.end_position(state_dir, store.last_seq, store.head)
    assert kept is not None
    kept_state = store.projection()
    _populate(store, make_sandbox, 10, 4)
    path = store.snapshot()
    store.close()
    # The power loss: every byte after ``kept`` never reached the disk.
    seg = state_dir / kept.segment
    size = seg.stat().st_size
    with seg.open("r+b") as f:
        f.seek(kept.offset)
        f.write(bytes(size - kept.offset))
    with Store.open(state_dir, durability="none") as again:
        assert again.last_seq == kept.seq
        assert again.load_result is not None and again.load_result.snapshot is None
        assert "beyond the log" in again.load_result.skipped[0][1]
        assert again.projection() == kept_state
        _populate(again, make_sandbox, 700, 6)  # past the snapshot's seq, other events
        live = again.projection()
    snap_seq = snap.read_snapshot_info(path).seq
    assert live.last_seq > snap_seq
    with Store.open(state_dir, durability="none") as again:
        assert again.load_result is not None
        assert path in [p for p, _why in again.load_result.skipped]
        assert again.projection() == live == _replayed(state_dir, again.netns_dir)


def test_version_1_snapshots_still_load(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox, fallbacks: list[str]
) -> None:
    store = open_store(state_dir, durability="none")
    _populate(store, make_sandbox, 0, 10)
    path = store.snapshot()
    _rewrite_position(path, None)
    assert Path(path).read_bytes()[8:10] == b"\x00\x01"
    _populate(store, make_sandbox, 10, 3)
    live = store.projection()
    store.close()
    with Store.open(state_dir, durability="none") as again:
        assert again.load_result is not None and again.load_result.snapshot == path
        assert again.projection() == live


def test_write_snapshot_records_the_log_end_only_when_it_is_the_snapshots(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    _populate(store, make_sandbox, 0, 5)
    proj, head = store.projection(), store.head
    at_end = snap.write_snapshot(state_dir, proj.last_seq, snap.encode(proj, head))
    assert snap.read_snapshot_info(at_end).position == eventlog.end_position(
        state_dir, proj.last_seq, head
    )
    _populate(store, make_sandbox, 5, 1)
    stale = snap.write_snapshot(state_dir, proj.last_seq - 1, snap.encode(proj, head))
    assert snap.read_snapshot_info(stale).position is None
    with pytest.raises(ValueError, match="position"):
        snap.encode(proj, head, eventlog.Position("x.log", 64, proj.last_seq + 1, head))


def test_segment_bytes_and_synced_offset(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="always", segment_bytes=1000)
    _populate(store, make_sandbox, 0, 8)
    segs = sorted(state_dir.glob("*.log"))
    assert len(segs) > 2
    segment, offset = store.synced_offset
    assert segment == str(segs[-1]) and offset == segs[-1].stat().st_size
    with pytest.raises(AttributeError):
        store.synced_offset = ("x", 0)  # type: ignore[misc]


def test_add_returns_what_get_returns(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox, unused_netns_dir: Path
) -> None:
    store = open_store(state_dir, durability="none")
    plain = make_sandbox("plain")
    with_path = make_sandbox("withpath", netns_path=str(unused_netns_dir / "given"))
    with_handle = attrs.evolve(
        make_sandbox("withhandle"), netns=NetNS(str(unused_netns_dir / "h"), unused_netns_dir)
    )
    for sb in (plain, with_path, with_handle):
        added = store.add(sb)
        assert added == store.get(sb.id)
        assert added.status == sb.status
    assert store.add(make_sandbox("again")) == store["again"]


def test_a_str_subclass_is_applied_as_a_replay_reads_it(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    """A str Enum as a name is written as its text; the live projection must
    hold what a replay holds, not refuse an event the log already has."""
    import enum

    class Kind(enum.StrEnum):
        WEB = "web-pod"

    store = open_store(state_dir, durability="none")
    plain = make_sandbox("sb-enum")
    sb = attrs.evolve(plain, metadata=attrs.evolve(plain.metadata, name=Kind.WEB))
    store.add(sb)
    store.add(make_sandbox("sb-after"))  # the store is still usable
    got = store.get("sb-enum")
    assert got is not None and type(got.name) is str and got.name == "web-pod"
    assert store.projection() == _replayed(state_dir, store.netns_dir)


def test_concurrent_snapshots_do_not_collide(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    """Threads snapshotting at the same seq: each writes its own temp file and
    no prune removes another's write in flight."""
    store = open_store(state_dir, durability="none")
    _populate(store, make_sandbox, 0, 10)
    errors: list[BaseException] = []

    def snapshots(_i: int) -> None:
        try:
            for _ in range(25):
                store.snapshot()
        except BaseException as exc:
            errors.append(exc)

    run_threads(4, snapshots)
    assert errors == []
    assert not [p for p in os.listdir(state_dir) if p.endswith(snap.TEMP_SUFFIX)]
    live = store.projection()
    store.close()
    with Store.open(state_dir, durability="none") as again:
        assert again.projection() == live
