"""Snapshots are an optimisation, never an authority (DESIGN.md).

On a keyed log a snapshot carries a MAC under the log's key and is used only
with a valid one. On an unkeyed log a snapshot is a cache: it is used, but a
removal whose ownership rests only on it is first confirmed against the
NetNSAssigned record it names. Attacks D, E and K are in tests/security.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
import support

import replay
from sandbox import NetNS, Store
from sandbox import snapshot as snap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
import snapshot_forgery as sec

KEY = b"k" * 40


def test_keyed_store_writes_a_mac_and_uses_it(tmp_path: Path, unused_netns_dir: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=unused_netns_dir, key=KEY) as store:
        store.add(support.sandbox("a"))
        path = store.snapshot()
        truth = store.projection()
    data = Path(path).read_bytes()
    assert snap.decode_info(data, key=KEY).authenticated
    assert not snap.decode_info(data).authenticated  # no key: read, proves nothing
    with Store.open(state, netns_dir=unused_netns_dir, key=KEY) as store:
        assert store.load_result is not None and store.load_result.snapshot == path
        assert store.load_result.authenticated
        assert store.projection() == truth


@pytest.mark.parametrize("damage", ["flip-mac-bit", "strip-mac", "wrong-key"])
def test_keyed_log_skips_a_snapshot_without_a_valid_mac(
    damage: str, tmp_path: Path, unused_netns_dir: Path
) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=unused_netns_dir, key=KEY) as store:
        store.add(support.sandbox("a"))
        path = store.snapshot()
        truth = store.projection()
    data = bytearray(Path(path).read_bytes())
    if damage == "flip-mac-bit":
        data[-1] ^= 1
    elif damage == "strip-mac":
        info = snap.decode_info(bytes(data), key=KEY)
        data = bytearray(snap.encode(info.projection, info.digest, info.position))
    else:
        info = snap.decode_info(bytes(data), key=KEY)
        data = bytearray(snap.encode(info.projection, info.digest, info.position, key=b"x"))
    Path(path).write_bytes(bytes(data))
    with pytest.raises(snap.SnapshotError, match="MAC"):
        snap.decode_info(bytes(data), key=KEY)
    with Store.open(state, netns_dir=unused_netns_dir, key=KEY) as store:
        assert store.load_result is not None and store.load_result.snapshot is None
        assert store.projection() == truth


def test_unknown_flags_are_refused(tmp_path: Path, unused_netns_dir: Path) -> None:
    with Store.open(tmp_path / "s", netns_dir=unused_netns_dir) as store:
        store.add(support.sandbox("a"))
        data = bytearray(Path(store.snapshot()).read_bytes())
    struct.pack_into(">H", data, 10, 0x8000)
    with pytest.raises(snap.SnapshotError, match="flags"):
        snap.decode_info(bytes(data))


def test_unkeyed_forged_removal_is_not_carried_out(tmp_path: Path, netns_dir: Path) -> None:
    """Attack D on an unkeyed log: the snapshot is a cache, so it is used, but the
    removal it alone claims is checked against the log and refused."""
    state = tmp_path / "state"
    real = support.sandbox("real")
    with Store.open(state, netns_dir=netns_dir) as store:
        store.add(real)
        for pid in (11, 12, 13):
            store.update_status(real.id, lambda old, p=pid: type(old)(old.state, pid=p))
        last = store.last_seq
    foreign = NetNS.new(netns_dir).get_path()
    try:
        lies = sec.ghost_events(support.sandbox("ghost"), foreign)
        sec.forge_snapshot(state, netns_dir, last, lies, None)
        with Store.open(state, netns_dir=netns_dir) as store:
            assert store.load_result is not None and not store.load_result.authenticated
            report = store.last_reconcile_report
            assert foreign not in report.removed
            assert [p for p, why in report.errors if "unauthenticated" in why] == [foreign]
        assert support.mounts_at(foreign)[-1].fstype == support.NSFS
    finally:
        sec.drop_namespace(foreign)


def test_unkeyed_removal_of_a_snapshotted_namespace_is_confirmed(
    tmp_path: Path, netns_dir: Path
) -> None:
    """A namespace whose ownership came from a snapshot is still removed when the
    log confirms its NetNSAssigned record."""
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir) as store:
        pod = store.add(support.sandbox("pod"), create_netns=True)
        store.snapshot()
    assert pod.netns is not None
    path = pod.netns.get_path()
    with Store.open(state, netns_dir=netns_dir) as store:
        assert store.load_result is not None and store.load_result.snapshot is not None
        store.delete(pod.id)
        assert not support.mounts_at(path)
        assert store.projection().owned_state(path) is None


@pytest.mark.parametrize("damage", ["strip-mac", "wrong-key"])
def test_verify_with_the_key_flags_a_snapshot_without_a_valid_mac(
    damage: str, tmp_path: Path, unused_netns_dir: Path
) -> None:
    """The store skips such a snapshot; ``verify --key-file`` says so (it is a forgery
    or a copy from elsewhere), and without the key it cannot tell."""
    state = tmp_path / "state"
    with Store.open(state, netns_dir=unused_netns_dir, key=KEY) as store:
        store.add(support.sandbox("a"))
        good = store.snapshot()
        store.add(support.sandbox("b"))
        path = store.snapshot()
    assert replay.verify(state, key=KEY, netns_dir=str(unused_netns_dir)).ok
    info = snap.decode_info(Path(path).read_bytes(), key=KEY)
    mac_key = None if damage == "strip-mac" else b"x"
    Path(path).write_bytes(snap.encode(info.projection, info.digest, info.position, key=mac_key))

    result = replay.verify(state, key=KEY, netns_dir=str(unused_netns_dir))
    assert not result.ok
    [problem] = result.problems
    assert problem.kind == "snapshot" and problem.segment == path and "MAC" in problem.reason
    assert {c.path: c.ok for c in result.snapshots} == {good: True, path: False}
