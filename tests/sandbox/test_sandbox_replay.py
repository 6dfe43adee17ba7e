"""Replay, snapshots and upcasting: the same log always yields the same projection."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import MakeSandbox, OpenStore

import eventlog
from sandbox import (
    AlreadyExistsError,
    AmbiguousPrefixError,
    InvalidIDError,
    InvalidTransitionError,
    NotFoundError,
    Projection,
    State,
    Status,
    Store,
    UnknownEventError,
    UnsupportedVersionError,
    _linux,
)
from sandbox import snapshot as snap
from sandbox.events import CURRENT, upcast

IS_ROOT = os.geteuid() == 0


def packed(projection: Projection) -> bytes:
    return msgpack.packb(projection.to_snapshot(), use_bin_type=True)  # type: ignore[no-any-return]


def replay_all(state_dir: str | os.PathLike[str]) -> Projection:
    proj = Projection()
    for rec in eventlog.read(state_dir):
        proj.apply(rec.seq, rec.payload)
    return proj


# -- property: replay == live == snapshot + tail, for every prefix --------------

IDS = ["a1", "a2", "ab", "b7", "c"]
NAMES = ["n1", "n2", "n3", "n4"]
STATES = list(State)

command = st.one_of(
    st.tuples(
        st.just("add"),
        st.sampled_from(IDS),
        st.sampled_from(NAMES),
        st.sampled_from(STATES),
        st.booleans() if IS_ROOT else st.just(False),
    ),
    st.tuples(st.just("delete"), st.sampled_from([*IDS, "a", "zz", ""])),
    st.tuples(st.just("status"), st.sampled_from(IDS), st.sampled_from(STATES), st.integers(0, 2)),
    st.tuples(st.just("raise"), st.sampled_from(IDS)),
    st.tuples(st.just("remove_netns"), st.sampled_from(IDS)),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("reconcile")),
)

REFUSED = (
    AlreadyExistsError,
    AmbiguousPrefixError,
    InvalidIDError,
    InvalidTransitionError,
    NotFoundError,
)


class Refused(Exception):
    pass


def run_command(store: Store, cmd: tuple[Any, ...], make_sandbox: MakeSandbox) -> None:
    kind = cmd[0]
    if kind == "add":
        _, sid, name, state, create = cmd
        store.add(make_sandbox(sid, name, state=state), create_netns=create)
    elif kind == "delete":
        store.delete(cmd[1])
    elif kind == "status":
        _, sid, state, pid = cmd
        store.update_status(sid, lambda old: attrs.evolve(old, state=state, pid=pid))
    elif kind == "raise":

        def fn(old: Status) -> Status:
            raise Refused(old)

        store.update_status(cmd[1], fn)
    elif kind == "remove_netns":
        store.remove_netns(cmd[1])
    elif kind == "snapshot":
        store.snapshot()
    elif kind == "reconcile":
        store.reconcile()


def _detach_under(d: str) -> None:
    real = os.path.realpath(d) + os.sep
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(real)]
    for p in sorted(points, key=len, reverse=True):
        with contextlib.suppress(OSError):
            _linux.umount_detach(p)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(commands=st.lists(command, max_size=40))
def test_replay_equals_live_and_snapshot_plus_tail_for_every_prefix(
    commands: list[tuple[Any, ...]], make_sandbox: MakeSandbox
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = os.path.join(tmp, "state")
        netns_dir = os.path.join(tmp, "netns")
        try:
            live: dict[int, bytes] = {0: packed(Projection(netns_dir))}
            with Store.open(state_dir, netns_dir=netns_dir, durability="none") as store:
                live[store.last_seq] = packed(store.projection())  # open records the netns dir
                for cmd in commands:
                    seq = store.last_seq
                    try:
                        run_command(store, cmd, make_sandbox)
                    except (*REFUSED, Refused):
                        assert store.last_seq == seq, f"{cmd} was refused but wrote"
                    live[store.last_seq] = packed(store.projection())
                final = packed(store.projection())
                # Clean up the namespaces this example made (the delete is logged too).
                for sid in list(store):
                    store.delete(sid)
                assert not store.projection().pending()

            records = list(eventlog.read(state_dir))
            if not records:
                return
            # Full replay of every prefix, once.
            full: list[bytes] = []
            proj = Projection(netns_dir)
            full.append(packed(proj))
            snaps: list[bytes] = [snap.encode(proj, b"\0" * 32)]
            for rec in records:
                proj.apply(rec.seq, rec.payload)
                full.append(packed(proj))
                snaps.append(snap.encode(proj, rec.digest))
            for k, state in live.items():
                assert full[k] == state, f"replay of 1..{k} differs from the live projection"
            # Snapshot at j plus tail j+1..k equals full replay of 1..k.
            for j in range(len(records) + 1):
                seq_j, _digest, from_snap = snap.decode(snaps[j], netns_dir)
                assert seq_j == j
                assert packed(from_snap) == full[j]
                for k in range(j, len(records)):
                    from_snap.apply(records[k].seq, records[k].payload)
                    assert packed(from_snap) == full[k + 1]
            # And a real reopen (newest snapshot file + tail) agrees with the live state
            # before the cleanup deletes.
            before_cleanup = max(s for s in live)
            assert full[before_cleanup] == final
            with Store.open(state_dir, netns_dir=netns_dir, durability="none") as again:
                assert packed(again.projection()) == full[-1]
        finally:
            if IS_ROOT:
                _detach_under(netns_dir)


def test_same_log_same_projection_bit_for_bit(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    for i in range(50):
        store.add(make_sandbox(f"id{i:03d}"))
    for i in range(0, 50, 3):
        store.update_status(f"id{i:03d}", lambda old: attrs.evolve(old, state=State.NOTREADY))
    for i in range(0, 50, 7):
        store.delete(f"id{i:03d}")
    live = store.projection()
    a, b = replay_all(state_dir), replay_all(state_dir)
    assert a == b == live
    assert packed(a) == packed(b) == packed(live)
    round_trip = Projection.from_snapshot(msgpack.unpackb(packed(live), raw=False), live.netns_dir)
    assert round_trip == live and packed(round_trip) == packed(live)
    assert [s.id for s in round_trip.sandboxes()] == [s.id for s in store.list()]


# -- upcasting: old events written with eventlog directly ------------------------

ENV = {"time": 1, "host": "old-node", "pid": 1, "uid": 0, "actor": None}


def test_upcast_paths_on_reopen(state_dir: Path, open_store: OpenStore) -> None:
    from test_sandbox_metadata import GOLDEN, SANDBOX_ID, golden_metadata

    with eventlog.EventLog.open(state_dir, durability="none") as log:
        # SandboxAdded v0: containerd's own metadata blob, status without exit_status.
        log.append(
            {
                "type": "SandboxAdded",
                "v": 0,
                "id": SANDBOX_ID,
                "env": ENV,
                "metadata": GOLDEN,
                "status": {"state": "READY", "pid": 99, "created_at": 5},
            }
        )
        # StatusUpdated v1: no exit_status field yet.
        log.append(
            {
                "type": "StatusUpdated",
                "v": 1,
                "id": SANDBOX_ID,
                "env": ENV,
                "status": {"state": "NOTREADY", "pid": 0, "created_at": 5, "exited_at": 9},
            }
        )
    store = open_store(state_dir, durability="none")
    sb = store[SANDBOX_ID[:6]]
    assert sb.metadata == golden_metadata()
    assert sb.status == Status(State.NOTREADY, pid=0, created_at=5, exited_at=9, exit_status=None)
    # The store's own caller-given netns path is a handle, never removed.
    assert sb.netns is not None and sb.netns.path == golden_metadata().netns_path
    # New events are written at the current versions.
    store.update_status(SANDBOX_ID, lambda old: attrs.evolve(old, exit_status=0))
    last = list(eventlog.read(state_dir))[-1].payload
    assert last["v"] == CURRENT["StatusUpdated"] == 2


def test_upcast_function_directly() -> None:
    old = {"type": "StatusUpdated", "v": 1, "id": "x", "env": ENV, "status": {"state": "READY"}}
    new = upcast(old)
    assert new["v"] == 2 and new["status"]["exit_status"] is None
    assert "exit_status" not in old["status"]  # the input is not mutated
    current = {"type": "SandboxDeleted", "v": 1, "id": "x", "env": ENV}
    assert upcast(current) is current


@pytest.mark.parametrize(
    ("event", "error", "words"),
    [
        (
            {"type": "StatusUpdated", "v": 3, "id": "x", "env": ENV, "status": {}},
            UnsupportedVersionError,
            ["StatusUpdated", "3"],
        ),
        (
            {"type": "SandboxAdded", "v": 7, "id": "x", "env": ENV},
            UnsupportedVersionError,
            ["SandboxAdded", "7"],
        ),
        (
            {"type": "SandboxDeleted", "id": "x", "env": ENV},
            UnsupportedVersionError,
            ["SandboxDeleted", "None"],
        ),
        (
            {"type": "SandboxResized", "v": 1, "id": "x", "env": ENV},
            UnknownEventError,
            ["SandboxResized"],
        ),
    ],
)
def test_unknown_version_or_type_on_reopen(
    state_dir: Path,
    unused_netns_dir: Path,
    event: dict[str, Any],
    error: type[Exception],
    words: list[str],
) -> None:
    with eventlog.EventLog.open(state_dir, durability="none") as log:
        log.append({"type": "SandboxDeleted", "v": 1, "id": "nothing", "env": ENV})
        log.append(event)
    with pytest.raises(error) as info:
        Store.open(state_dir, netns_dir=unused_netns_dir, durability="none")
    for word in words:
        assert word in str(info.value)
    assert "seq 2" in str(info.value)
    # The failed open released the writer lock.
    with eventlog.EventLog.open(state_dir, durability="none") as log:
        assert log.last_seq == 2


# -- snapshots -----------------------------------------------------------------


def _populate(store: Store, make_sandbox: MakeSandbox, start: int, n: int) -> None:
    for i in range(start, start + n):
        store.add(make_sandbox(f"sb{i:04d}"))
        if i % 2:
            store.update_status(f"sb{i:04d}", lambda old: attrs.evolve(old, pid=old.pid + 1))


def test_open_uses_newest_snapshot_and_replays_only_the_tail(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    _populate(store, make_sandbox, 0, 20)
    path = store.snapshot()
    assert os.path.basename(path) == f"{store.last_seq:020d}.snap"
    _populate(store, make_sandbox, 20, 5)
    live = store.projection()
    store.close()
    with Store.open(state_dir, durability="none") as again:
        assert again.load_result is not None
        assert again.load_result.snapshot == path
        assert again.load_result.replayed == live.last_seq - 31  # NetNSDirRecorded + 30
        assert again.projection() == live


def test_only_the_newest_three_snapshots_are_kept(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    paths = []
    for i in range(5):
        store.add(make_sandbox(f"s{i}"))
        paths.append(store.snapshot())
    assert sorted(p for _s, p in snap.list_snapshots(state_dir)) == sorted(paths[-3:])


def test_corrupt_newest_snapshot_falls_back_to_older_then_full_replay(
    state_dir: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(state_dir, durability="none")
    _populate(store, make_sandbox, 0, 10)
    older = store.snapshot()
    _populate(store, make_sandbox, 10, 10)
    newest = store.snapshot()
    _populate(store, make_sandbox, 20, 3)
    live = store.projection()
    store.close()

    data = bytearray(Path(newest).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(newest).write_bytes(bytes(data))
    with (
        caplog.at_level(logging.WARNING, logger="sandbox.snapshot"),
        Store.open(state_dir, durability="none") as again,
    ):
        assert again.load_result is not None
        assert again.load_result.snapshot == older
        assert again.projection() == live
    assert any("checksum" in r.getMessage() and newest in r.getMessage() for r in caplog.records)

    Path(older).write_bytes(b"SBXSNAP\0 truncated")
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="sandbox.snapshot"),
        Store.open(state_dir, durability="none") as again,
    ):
        assert again.load_result is not None
        assert again.load_result.snapshot is None
        assert again.load_result.replayed == live.last_seq
        assert len(again.load_result.skipped) == 2
        assert again.projection() == live
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_snapshot_from_a_different_history_is_rejected(
    tmp_path: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    a = open_store(one, durability="none")
    b = open_store(two, durability="none")
    _populate(a, make_sandbox, 0, 10)
    _populate(b, make_sandbox, 100, 12)  # other ids, more events
    foreign = a.snapshot()
    live_b = b.projection()
    b.close()
    shutil.copy(foreign, two / os.path.basename(foreign))
    with (
        caplog.at_level(logging.WARNING, logger="sandbox.snapshot"),
        Store.open(two, durability="none") as again,
    ):
        assert again.load_result is not None and again.load_result.snapshot is None
        assert again.projection() == live_b
    assert any("different history" in r.getMessage() for r in caplog.records)


def test_snapshot_ahead_of_the_log_is_skipped(
    tmp_path: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    a = open_store(one, durability="none")
    _populate(a, make_sandbox, 0, 10)
    ahead = a.snapshot()
    b = open_store(two, durability="none")
    _populate(b, make_sandbox, 0, 2)
    live_b = b.projection()
    b.close()
    shutil.copy(ahead, two / os.path.basename(ahead))
    with Store.open(two, durability="none") as again:
        assert again.load_result is not None
        assert "beyond the log" in again.load_result.skipped[0][1]
        assert again.projection() == live_b


SNAPSHOT_CHILD = """
import sys
from sandbox import Metadata, PodSandboxConfig, Sandbox, State, Status, Store
store = Store.open(sys.argv[1], netns_dir=sys.argv[2], durability="always")
for i in range(5):
    store.add(Sandbox(Metadata(f"c{i}", f"n{i}", PodSandboxConfig()), Status(State.READY)))
store.snapshot()
print("survived")
"""


@pytest.mark.parametrize(
    "point", ["snapshot.after_temp_write", "snapshot.after_temp_fsync", "snapshot.after_rename"]
)
def test_snapshot_crash_points_leave_an_openable_store(
    state_dir: Path, unused_netns_dir: Path, child: Callable[..., Any], point: str
) -> None:
    result = child(
        SNAPSHOT_CHILD,
        str(state_dir),
        str(unused_netns_dir),
        env={"SANDBOX_CRASHPOINT": point},
    )
    assert result.returncode == -9, result.stderr
    assert f"crashpoint {point} hit 1" in result.stderr
    assert "survived" not in result.stdout
    with Store.open(state_dir, netns_dir=unused_netns_dir, durability="none") as store:
        assert [s.id for s in store.list()] == [f"c{i}" for i in range(5)]
        assert store.load_result is not None
        if point == "snapshot.after_rename":
            assert store.load_result.snapshot is not None
        else:
            assert store.load_result.snapshot is None
        assert store.projection() == replay_all(state_dir)
        store.snapshot()  # and the next snapshot sweeps any leftover temp file
    assert not [n for n in os.listdir(state_dir) if n.endswith(".tmp")]


def test_keyed_log_with_snapshot(
    state_dir: Path, unused_netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    key = b"node-secret-key"
    with Store.open(state_dir, netns_dir=unused_netns_dir, durability="none", key=key) as store:
        _populate(store, make_sandbox, 0, 6)
        store.snapshot()
        _populate(store, make_sandbox, 6, 2)
        live = store.projection()
    with Store.open(state_dir, netns_dir=unused_netns_dir, durability="none", key=key) as again:
        assert again.load_result is not None and again.load_result.snapshot is not None
        assert again.projection() == live
    with pytest.raises(eventlog.KeyRequiredError):
        Store.open(state_dir, netns_dir=unused_netns_dir, durability="none")
