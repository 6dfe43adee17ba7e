"""Crash points: a real child process is SIGKILLed mid-creation, the parent recovers.

After every crash the parent reconciles the same ASSIGNED entries again: each
path must end up with exactly one namespace, nothing may leak, and a second
run must do nothing.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sandbox.netns import NetNS, probe
from sandbox.ownership import NetNSState

if TYPE_CHECKING:
    from conftest import FakeStore, Helpers

CHILD = """
import json, sys
from sandbox.netns import create_at
from sandbox.ownership import NetNSState, OwnedNetNS
from sandbox.reconciler import reconcile

spec = json.loads(sys.argv[1])
if spec["op"] == "create_at":
    create_at(spec["owned"][0][1], spec["dir"])
else:
    out = open(spec["records"], "a")

    def record(kind, sandbox_id, path, reason):
        out.write(json.dumps([kind, sandbox_id, path, reason]) + "\\n")
        out.flush()

    owned = [OwnedNetNS(s, p, NetNSState(st)) for s, p, st in spec["owned"]]
    reconcile(owned, spec["dir"], record)
print("survived")
"""


def crash_child(
    kx: Helpers, point: str, op: str, store: FakeStore, netns_dir: Path, records: Path
) -> list[list[str]]:
    spec = {
        "op": op,
        "dir": os.fspath(netns_dir),
        "records": os.fspath(records),
        "owned": [[o.sandbox_id, o.path, o.state.value] for o in store.owned()],
    }
    proc = kx.run_python(CHILD, json.dumps(spec), env={"SANDBOX_CRASHPOINT": point})
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)
    assert f"crashpoint {point} hit 1" in proc.stderr
    assert "survived" not in proc.stdout
    if not records.exists():
        return []
    return [json.loads(line) for line in records.read_text().splitlines()]


def recover_and_check(store: FakeStore, netns_dir: Path, kx: Helpers, paths: list[str]) -> None:
    from sandbox.reconciler import reconcile

    report = reconcile(store.owned(), netns_dir, store.record)
    assert report.errors == ()
    for p in paths:
        assert store.state(p) is NetNSState.CREATED
        assert len(kx.mounts_at(p)) == 1, f"{p}: expected exactly one namespace"
        assert probe(p).kind == "netns"
    assert sorted(os.listdir(netns_dir)) == sorted(os.path.basename(p) for p in paths)
    assert len(kx.mounts_under(netns_dir)) == len(paths)
    calls = len(store.calls)
    again = reconcile(store.owned(), netns_dir, store.record)
    assert not again.changed and len(store.calls) == calls
    for p in paths:
        NetNS(p, netns_dir).remove()


@pytest.mark.parametrize("op", ["create_at", "reconcile"])
def test_crash_after_placeholder(
    netns_dir: Path, store: FakeStore, kx: Helpers, tmp_path: Path, op: str
) -> None:
    p = store.own("sb1", netns_dir / f"cni-{uuid.uuid4()}", NetNSState.ASSIGNED)
    recorded = crash_child(kx, "netns.after_placeholder", op, store, netns_dir, tmp_path / "rec")
    assert recorded == []
    # The child died with an empty placeholder and nothing mounted.
    assert probe(p).kind == "empty-file" and kx.mounts_at(p) == []
    recover_and_check(store, netns_dir, kx, [p])
    assert store.calls[0][3] == "created"  # the placeholder was reused, not adopted


@pytest.mark.parametrize("op", ["create_at", "reconcile"])
def test_crash_after_mount_before_record(
    netns_dir: Path, store: FakeStore, kx: Helpers, tmp_path: Path, op: str
) -> None:
    p = store.own("sb1", netns_dir / f"cni-{uuid.uuid4()}", NetNSState.ASSIGNED)
    recorded = crash_child(
        kx, "netns.after_mount_before_record", op, store, netns_dir, tmp_path / "rec"
    )
    assert recorded == []  # the effect happened, the record did not
    # The namespace outlived the process that made it (the mount holds it).
    assert probe(p).kind == "netns" and len(kx.mounts_at(p)) == 1
    recover_and_check(store, netns_dir, kx, [p])
    assert "adopted" in store.calls[0][3]


def test_crash_mid_reconcile(
    netns_dir: Path, store: FakeStore, kx: Helpers, tmp_path: Path
) -> None:
    paths = [
        store.own(f"sb{i}", netns_dir / f"cni-{uuid.uuid4()}", NetNSState.ASSIGNED)
        for i in range(3)
    ]
    recorded = crash_child(kx, "reconcile.mid", "reconcile", store, netns_dir, tmp_path / "rec")
    # The first action was done and recorded before the crash.
    assert [r[:3] for r in recorded] == [["created", "sb0", paths[0]]]
    for kind, sandbox_id, path, _reason in recorded:
        store.apply(kind, sandbox_id, path)  # what the store's log would replay
    assert [probe(p).kind for p in paths] == ["netns", "missing", "missing"]
    recover_and_check(store, netns_dir, kx, paths)
    assert [c[2] for c in store.calls] == paths[1:]


def test_crash_mid_reconcile_with_removals(
    netns_dir: Path, store: FakeStore, kx: Helpers, tmp_path: Path
) -> None:
    doomed = [
        store.own(f"old{i}", NetNS.new(netns_dir).path, NetNSState.REMOVING) for i in range(2)
    ]
    keep = store.own("new", netns_dir / f"cni-{uuid.uuid4()}", NetNSState.ASSIGNED)
    recorded = crash_child(kx, "reconcile.mid", "reconcile", store, netns_dir, tmp_path / "rec")
    for kind, sandbox_id, path, _reason in recorded:
        store.apply(kind, sandbox_id, path)
    assert store.state(doomed[0]) is NetNSState.REMOVED
    recover_and_check(store, netns_dir, kx, [keep])
    assert all(store.state(p) is NetNSState.REMOVED for p in doomed)
    assert all(not os.path.lexists(p) for p in doomed)
