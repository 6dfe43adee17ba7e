"""Store + real network namespaces: intent first, effect second, never a leak."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import CNI_NAME as CNI
from support import MakeSandbox, Mount, add_with_netns

import eventlog
from sandbox import NetNS, Store
from sandbox.netns import is_live_netns


def events(state_dir: Path, *types: str) -> list[dict[str, Any]]:
    return [r.payload for r in eventlog.read(state_dir) if not types or r.payload["type"] in types]


def external_umount(path: str) -> None:
    subprocess.run(["umount", path], check=True, capture_output=True)


def test_add_with_create_netns_then_delete(
    state_dir: Path, netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        sb, path = add_with_netns(store, make_sandbox("s1"))
        assert sb.netns is not None
        assert os.path.dirname(path) == str(netns_dir)
        assert CNI.match(os.path.basename(path))
        assert not sb.netns.closed() and is_live_netns(path)
        assert sb.metadata.netns_path == path
        kinds = [e["type"] for e in events(state_dir)]
        assert kinds == ["NetNSDirRecorded", "SandboxAdded", "NetNSAssigned", "NetNSCreated"]
        # Intent before effect, in one atomic batch with the add.
        assert events(state_dir, "NetNSAssigned")[0]["path"] == path

        store.delete("s1")
        assert store.get("s1") is None
        assert not os.path.lexists(path)
        assert [e["type"] for e in events(state_dir)][-2:] == ["SandboxDeleted", "NetNSRemoved"]
        assert not store.projection().pending()


def test_remove_netns_is_idempotent(
    state_dir: Path, netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        path = store.add(make_sandbox("s1"), create_netns=True).metadata.netns_path
        store.remove_netns("s1")
        assert not os.path.lexists(path)
        assert store["s1"].netns is None
        seq = store.last_seq
        assert [e["type"] for e in events(state_dir)][-2:] == [
            "NetNSRemoveRequested",
            "NetNSRemoved",
        ]
        store.remove_netns("s1")
        store.remove_netns("s")  # by prefix too
        assert store.last_seq == seq
        store.delete("s1")
        assert [e["type"] for e in events(state_dir)][-1] == "SandboxDeleted"


def test_caller_given_namespace_is_never_removed(
    state_dir: Path, netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    mine = NetNS.new(netns_dir)
    try:
        with Store.open(state_dir, netns_dir=netns_dir) as store:
            sb = store.add(make_sandbox("s1", netns_path=mine.get_path()))
            assert sb.netns == NetNS(mine.get_path(), str(netns_dir))
            store.remove_netns("s1")
            store.delete("s1")
            report = store.reconcile()
            assert mine.get_path() in report.foreign
            assert not mine.closed()
            assert not events(state_dir, "NetNSRemoved", "NetNSRemoveRequested")
    finally:
        mine.remove()


def test_crash_between_intent_and_effect_creates_exactly_once_on_reopen(
    state_dir: Path, netns_dir: Path, child: Callable[..., Any]
) -> None:
    code = """
import sys
from sandbox import Metadata, PodSandboxConfig, Sandbox, State, Status, Store
store = Store.open(sys.argv[1], netns_dir=sys.argv[2])
store.add(Sandbox(Metadata("s1", "n1", PodSandboxConfig()), Status(State.READY)), create_netns=True)
print("survived")
"""
    result = child(
        code, str(state_dir), str(netns_dir), env={"SANDBOX_CRASHPOINT": "store.after_intent"}
    )
    assert result.returncode == -9, result.stderr
    assert "crashpoint store.after_intent hit 1" in result.stderr
    (assigned,) = events(state_dir, "NetNSAssigned")
    path = assigned["path"]
    assert not events(state_dir, "NetNSCreated")
    assert not os.path.lexists(path)  # intent only: nothing made yet

    with Store.open(state_dir, netns_dir=netns_dir) as store:
        assert path in store.last_reconcile_report.created
        sb = store["s1"]
        assert sb.netns is not None and not sb.netns.closed()
        created = events(state_dir, "NetNSCreated")
        assert [e["path"] for e in created] == [path]
        seq = store.last_seq
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        assert store.last_seq == seq  # nothing to do the second time
        assert not store.last_reconcile_report.changed
        assert len(events(state_dir, "NetNSCreated")) == 1
        store.delete("s1")
    assert not os.path.lexists(path)


def _wait_for_event(state_dir: Path, kind: str) -> None:
    """Until the log holds a ``kind`` event (20 s at most; the caller checks it came)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not events(state_dir, kind):
        time.sleep(0.05)


def test_watch_records_an_external_umount(
    state_dir: Path, netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        path = store.add(make_sandbox("s1"), create_netns=True).metadata.netns_path
        keep = store.add(make_sandbox("s2"), create_netns=True).metadata.netns_path
        store.watch(resync_interval=0.2)
        external_umount(path)  # sends no inotify event: the resync must find it
        _wait_for_event(state_dir, "NetNSClosed")
        (closed,) = events(state_dir, "NetNSClosed")
        assert closed["path"] == path and closed["id"] == "s1"
        sb = store["s1"]
        assert sb.netns is not None and sb.netns.closed()
        assert not store["s2"].netns.closed()  # type: ignore[union-attr]
        store.stop_watching()
        # Closed is terminal: never recreated, and the other one is untouched.
        seq = store.last_seq
        assert not store.reconcile().changed
        assert store.last_seq == seq
        assert not is_live_netns(path) and is_live_netns(keep)
        store.delete("s1")
        store.watch(resync_interval=0.05)
        store.delete("s2")
    # close() stopped the watcher's threads.
    assert not [t for t in threading.enumerate() if t.name.startswith("sandbox-watch")]
    assert not os.path.lexists(keep)


def test_watch_reacts_to_an_external_delete_quickly(
    state_dir: Path, netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        path = store.add(make_sandbox("s1"), create_netns=True).metadata.netns_path
        store.watch(resync_interval=3600)  # only inotify can trigger within the test
        subprocess.run(["umount", path], check=True)
        os.unlink(path)  # an `ip netns delete`: umount + unlink, the unlink is seen
        _wait_for_event(state_dir, "NetNSClosed")
        assert [e["path"] for e in events(state_dir, "NetNSClosed")] == [path]
        store.delete("s1")


def test_reboot_simulation_records_closed_and_recreates_nothing(
    state_dir: Path,
    netns_dir: Path,
    make_sandbox: MakeSandbox,
    mounts_under: Callable[[Path], list[Mount]],
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        paths = [
            store.add(make_sandbox(f"s{i}"), create_netns=True).metadata.netns_path
            for i in range(3)
        ]
    for p in paths:  # the reboot: every mount is gone, the placeholders stay
        external_umount(p)
    assert not mounts_under(netns_dir)
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        report = store.last_reconcile_report
        assert sorted(report.closed) == sorted(paths)
        assert not report.created and not report.errors
        assert not mounts_under(netns_dir)  # none recreated
        assert sorted(e["path"] for e in events(state_dir, "NetNSClosed")) == sorted(paths)
        for i in range(3):
            sb = store[f"s{i}"]
            assert sb.netns is not None and sb.netns.closed()
        seq = store.last_seq
        second = store.reconcile()
        assert not second.changed and store.last_seq == seq
        for i in range(3):
            store.delete(f"s{i}")
        assert store.last_seq == seq + 3  # deleting a sandbox with a closed netns: one event


def test_reconcile_twice_changes_nothing_the_second_time(
    state_dir: Path, netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        for i in range(3):
            store.add(make_sandbox(f"s{i}"), create_netns=True)
        (netns_dir / "foreign-file").write_text("not ours")
        store.reconcile()
        seq = store.last_seq
        report = store.reconcile()
        assert not report.changed
        assert store.last_seq == seq
        assert str(netns_dir / "foreign-file") in report.foreign
        assert (netns_dir / "foreign-file").read_text() == "not ours"
        for i in range(3):
            store.delete(f"s{i}")
