"""Compaction carries the proof of namespace ownership forward (sandbox/retention.py).

A snapshot of an unkeyed log is a cache, not proof: before the reconciler removes
a namespace it knows only from such a snapshot, it reads the record that assigned
it. Compaction removes that record, so it first writes a NetNSOwnershipCarried
record per pending path assigned before the compaction point. Without it, a
namespace assigned before a compaction could never be removed after a reopen.

These tests make real namespaces (the ``netns_dir`` fixture fails a test that
leaves one mounted) and remove every one they make.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import support

import eventlog
import replay
from eventlog.segments import list_segments
from sandbox import NetNS, Sandbox, Store, rules, store_retention
from sandbox import events as ev
from sandbox import snapshot as snap
from sandbox.errors import InvalidTransitionError
from sandbox.ownership import NetNSState
from sandbox.projection import Projection

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
import snapshot_forgery as sec

SEGMENT_BYTES = 2048
KEY = b"k" * 40
ENV = ev.Env(1, "node", 1, 0, "carry-test")
A, B = "a" * 64, "b" * 64


def build(store: Store) -> Sandbox:
    """The defect's setup: a pod with a namespace, then three rounds of 30 adds each
    followed by a snapshot (enough small segments for a compaction to remove its
    NetNSAssigned record)."""
    pod = store.add(support.sandbox("old"), create_netns=True)
    for r in range(3):
        for i in range(30):
            store.add(support.sandbox(f"pod{r}-{i}"))
        store.snapshot()
    return pod


def path_of(pod: Sandbox) -> str:
    assert pod.netns is not None
    return pod.netns.get_path()


def carries(state: Path, key: bytes | None = None) -> list[tuple[int, ev.NetNSOwnershipCarried]]:
    out = []
    for rec in eventlog.read(state, from_seq=eventlog.verify(state, key=key).first_seq, key=key):
        event = ev.decode(rec.payload)
        if isinstance(event, ev.NetNSOwnershipCarried):
            out.append((rec.seq, event))
    return out


def is_live(path: str) -> bool:
    mounts = support.mounts_at(path)
    return bool(mounts) and mounts[-1].fstype == support.NSFS


def delete_after_reopen(
    state: Path, netns_dir: Path, pod: Sandbox, key: bytes | None = None
) -> None:
    """Reopen, delete the pod: its namespace goes, and nothing is reported wrong."""
    path = path_of(pod)
    assert is_live(path)
    with Store.open(state, netns_dir=netns_dir, key=key) as store:
        assert store.load_result is not None and store.load_result.snapshot is not None
        assert store.load_result.authenticated is (key is not None)
        assert store.last_reconcile_report.errors == ()
        store.delete(pod.id)
        assert not support.mounts_at(path)
        assert store.projection().owned_state(path) is None
        assert store.reconcile().errors == ()
    result = replay.verify(state, key=key)
    assert result.ok, result.problems


# -- the defect, fixed -----------------------------------------------------------------


@pytest.mark.parametrize("snapshot_after", [False, True], ids=["tail", "snapshot"])
def test_a_namespace_assigned_before_compaction_is_removed_after_reopen(
    tmp_path: Path, netns_dir: Path, snapshot_after: bool
) -> None:
    """The repro (unkeyed). ``snapshot``: a snapshot taken after the compaction holds the
    carry's seq as the path's proof, so the reopened store reads the carry record itself."""
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES) as store:
        pod = build(store)
        path = path_of(pod)
        assigned = store.projection().assigned_seq(path)
        assert assigned is not None
        report = store.compact(keep_snapshots=2, force=True)
        assert report.first_seq > assigned  # the NetNSAssigned record is gone
        carried = store.projection().assigned_seq(path)
        if snapshot_after:
            store.snapshot()
    [(seq, carry)] = carries(state)
    assert (carry.id, carry.path, carry.assigned_seq) == (pod.id, path, assigned)
    assert seq == carried and seq > report.before_seq
    result = replay.verify(state)
    assert result.ok, result.problems
    delete_after_reopen(state, netns_dir, pod)


def test_sandboxctl_compact_carries_too(tmp_path: Path, netns_dir: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES) as store:
        pod = build(store)
        assigned = store.projection().assigned_seq(path_of(pod))
    cp = support.sandboxctl(
        "--state-dir", str(state), "--netns-dir", str(netns_dir),
        "compact", "--keep-snapshots", "2", "--force", "-o", "json",
    )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert out["first_seq"] > assigned and out["segments_removed"]
    assert [(c.id, c.path, c.assigned_seq) for _s, c in carries(state)] == [
        (pod.id, path_of(pod), assigned)
    ]
    delete_after_reopen(state, netns_dir, pod)


def test_a_refused_compaction_carries_nothing(tmp_path: Path, netns_dir: Path) -> None:
    """With a shipper behind, every compaction is refused: no carry record may be
    written for it (one per live namespace per snapshot would pile up meanwhile)."""
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES) as store:
        pod = build(store)
        first = next(iter(eventlog.read(state)))
        eventlog.write_shipped(state, first.seq, first.digest)
        last = store.last_seq
        for _ in range(3):
            with pytest.raises(eventlog.CompactionRefusedError, match="never shipped"):
                store.compact(keep_snapshots=2)
        assert store.last_seq == last
        assert carries(state) == []
        store.compact(keep_snapshots=2, force=True)
    assert len(carries(state)) == 1
    delete_after_reopen(state, netns_dir, pod)


def test_a_keyed_store_carries_and_removes_too(tmp_path: Path, netns_dir: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES, key=KEY) as store:
        pod = build(store)
        assigned = store.projection().assigned_seq(path_of(pod))
        report = store.compact(keep_snapshots=2, force=True)
        assert assigned is not None and report.first_seq > assigned
    assert [(c.id, c.assigned_seq) for _s, c in carries(state, KEY)] == [(pod.id, assigned)]
    delete_after_reopen(state, netns_dir, pod, key=KEY)


def test_compaction_carries_only_pending_paths_assigned_before_the_point(
    tmp_path: Path, netns_dir: Path
) -> None:
    """A removed namespace needs no proof, nor one assigned after the compaction point;
    a second compaction carries the carried proof on again."""
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES) as store:
        gone = store.add(support.sandbox("gone"), create_netns=True)
        pod = build(store)
        store.delete(gone.id)
        late = store.add(support.sandbox("late"), create_netns=True)
        store.compact(keep_snapshots=2, force=True)
        assert [c.path for _s, c in carries(state)] == [path_of(pod)]
        for r in range(3):
            for i in range(30):
                store.add(support.sandbox(f"more{r}-{i}"))
            store.snapshot()
        store.compact(keep_snapshots=1, force=True)
        second = [c for _s, c in carries(state)]
        assert {c.path for c in second} == {path_of(pod), path_of(late)}
        first_carry = store.projection()  # the carried proofs are what the log now says
        assert all(first_carry.assigned_seq(c.path) is not None for c in second)
    delete_after_reopen(state, netns_dir, pod)
    with Store.open(state, netns_dir=netns_dir) as store:
        store.delete(late.id)
        assert not support.mounts_at(path_of(late))
        assert store.last_reconcile_report.errors == ()


_CHILD = """
import sys
from sandbox import Store

with Store.open(sys.argv[1], netns_dir=sys.argv[2]) as store:
    store.compact(keep_snapshots=2, force=True)
"""


def test_sigkill_between_carry_and_compaction_is_harmless(
    tmp_path: Path,
    netns_dir: Path,
    child: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES) as store:
        pod = build(store)
    segments = [s.first_seq for s in list_segments(str(state))]
    point = "compact.after_carry"
    proc = child(_CHILD, str(state), str(netns_dir), env={"SANDBOX_CRASHPOINT": f"{point}:kill"})
    assert proc.returncode == -9, proc.stderr
    assert f"crashpoint {point} hit" in proc.stderr
    # The carry is durable, nothing was removed, and the log verifies.
    assert [s.first_seq for s in list_segments(str(state))][: len(segments)] == segments
    assert [c.path for _s, c in carries(state)] == [path_of(pod)]
    result = replay.verify(state)
    assert result.ok, result.problems
    with Store.open(state, netns_dir=netns_dir) as store:
        assert store.last_reconcile_report.errors == ()
        report = store.compact(keep_snapshots=2, force=True)  # the next one finishes
        assert report.segments_removed
    assert len(carries(state)) == 1  # the proof was already carried past the point
    delete_after_reopen(state, netns_dir, pod)


# -- a forged snapshot cannot borrow a carry ---------------------------------------------


def test_a_forged_claim_pointing_at_another_paths_carry_is_not_removed(
    tmp_path: Path, netns_dir: Path
) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES) as store:
        pod = build(store)
        store.compact(keep_snapshots=2, force=True)
        store.add(support.sandbox("after"))
        last = store.last_seq
    [(carry_seq, _carry)] = carries(state)
    foreign = NetNS.new(netns_dir).get_path()
    try:
        # The attacker's forgery (tests/security/snapshot_forgery.py), folded from the
        # kept snapshot: the log before it is gone.
        lies = sec.ghost_events(support.sandbox("ghost"), foreign)
        proj = snap.load(state, to_seq=last - len(lies), netns_dir=str(netns_dir)).projection
        for i, lie in enumerate(lies):
            proj.apply(last - len(lies) + 1 + i, lie)
        data = snap.encode(proj, sec.head_at(state, last, None))
        forged = snap.write_snapshot(state, last, data, keep=100)

        def point_at_the_carry(body: dict[str, object]) -> None:
            owned = body["owned"]
            assert isinstance(owned, list)
            for entry in owned:
                if entry[0] == foreign:
                    entry[3] = carry_seq

        sec.rewrite_body(forged, point_at_the_carry)
        with Store.open(state, netns_dir=netns_dir) as store:
            assert store.load_result is not None and store.load_result.snapshot_seq == last
            assert store.projection().assigned_seq(foreign) == carry_seq
            report = store.last_reconcile_report
            assert foreign not in report.removed
            assert [p for p, why in report.errors if "unauthenticated" in why] == [foreign]
        assert is_live(foreign)
    finally:
        sec.drop_namespace(foreign)
        Path(forged).unlink()  # it would go on claiming the foreign path
    # The pod itself (whose carry it is) is still removable from the log alone.
    with Store.open(state, netns_dir=netns_dir) as store:
        store.delete(pod.id)
        assert not support.mounts_at(path_of(pod))


# -- the rule, the fold, verify, audit ------------------------------------------------------


def _added(sid: str, name: str) -> ev.SandboxAdded:
    return ev.SandboxAdded(
        sid, ENV, ev.AddedMetadata(sid, name, {}, ""), support.sandbox(name).status
    )


P, Q = "/nonexistent/netns/cni-p", "/nonexistent/netns/cni-q"
#: seq 1..6: A owns P (assigned at 2, created), B owns Q (assigned at 5, closed).
HISTORY: list[ev.Event] = [
    _added(A, "a"),
    ev.NetNSAssigned(A, ENV, P),
    ev.NetNSCreated(A, ENV, P),
    _added(B, "b"),
    ev.NetNSAssigned(B, ENV, Q),
    ev.NetNSCreated(B, ENV, Q),
    ev.NetNSClosed(B, ENV, Q, "gone"),
]
BAD_CARRIES = {
    "not owned": (ev.NetNSOwnershipCarried(A, ENV, "/nonexistent/netns/cni-x", 2), "not owned"),
    "another sandbox's": (ev.NetNSOwnershipCarried(B, ENV, P, 2), f"owned by sandbox {A}"),
    "terminal": (ev.NetNSOwnershipCarried(B, ENV, Q, 5), "it was closed"),
    "wrong seq": (ev.NetNSOwnershipCarried(A, ENV, P, 3), "rests on seq 2, expected 3"),
}


def _folded(events: list[ev.Event]) -> Projection:
    proj = Projection()
    for seq, event in enumerate(events, 1):
        proj.apply(seq, event)
    return proj


def test_a_carry_of_the_owners_proof_is_allowed_and_moves_the_proof() -> None:
    proj = _folded(HISTORY)
    carry = ev.NetNSOwnershipCarried(A, ENV, P, 2)
    rules.check(proj, carry)
    proj.apply(len(HISTORY) + 1, carry)
    assert proj.assigned_seq(P) == len(HISTORY) + 1
    assert proj.owned_state(P) is NetNSState.CREATED and proj.owner_of(P) == A
    # The next carry must name the carry as the proof.
    with pytest.raises(InvalidTransitionError, match="expected 2"):
        rules.check(proj, ev.NetNSOwnershipCarried(A, ENV, P, 2))


@pytest.mark.parametrize("name", sorted(BAD_CARRIES))
def test_a_bad_carry_is_refused_not_folded_and_flagged_by_verify(
    name: str, state_dir: Path
) -> None:
    carry, words = BAD_CARRIES[name]
    proj = _folded(HISTORY)
    before = proj.to_snapshot()
    with pytest.raises(InvalidTransitionError, match=words) as refused:
        rules.check(proj, carry)
    assert carry.id in str(refused.value) and carry.path in str(refused.value)
    proj.apply(len(HISTORY) + 1, carry)
    assert {**proj.to_snapshot(), "last_seq": 0} == {**before, "last_seq": 0}

    with eventlog.EventLog.open(state_dir, durability="none") as log:
        for event in [*HISTORY, carry]:
            log.append(event.to_payload())
    result = replay.verify(state_dir)
    assert not result.ok
    assert result.first is not None and result.first.kind == "transition"
    assert result.first.seq == len(HISTORY) + 1 and words in result.first.reason


def test_verify_and_audit_of_a_good_carry(state_dir: Path) -> None:
    with eventlog.EventLog.open(state_dir, durability="none") as log:
        for event in [*HISTORY, ev.NetNSOwnershipCarried(A, ENV, P, 2)]:
            log.append(event.to_payload())
    result = replay.verify(state_dir)
    assert result.ok, result.problems
    entry = replay.audit(state_dir, types=["netnsownershipcarried"])[-1]
    assert (entry.seq, entry.sandbox_id, entry.name) == (len(HISTORY) + 1, A, "a")
    assert entry.summary == f"netns {P} ownership carried forward from seq 2 before compaction"
    assert entry.changes == {
        "netns": {"path": P, "from": "created", "to": "created", "assigned_seq": 2}
    }


def test_audit_of_a_compacted_store_shows_its_carry(tmp_path: Path, netns_dir: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES) as store:
        pod = build(store)
        assigned = store.projection().assigned_seq(path_of(pod))
        store.compact(keep_snapshots=2, force=True)
    [entry] = replay.audit(state, types=["NetNSOwnershipCarried"], netns_dir=str(netns_dir))
    assert entry.sandbox_id == pod.id
    assert entry.summary == (
        f"netns {path_of(pod)} ownership carried forward from seq {assigned} before compaction"
    )
    assert entry.changes["netns"]["assigned_seq"] == assigned
    delete_after_reopen(state, netns_dir, pod)


def test_close_during_a_compaction_waits_for_it(
    tmp_path: Path, netns_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The carry writes through the command lock while the log's compaction lock is
    held, and closing the log waits for that lock: close must not hold the command
    lock meanwhile (it did: a shutdown during a compaction hung for ever)."""
    state = tmp_path / "state"
    store = Store.open(state, netns_dir=netns_dir, segment_bytes=SEGMENT_BYTES)
    pod = build(store)
    in_carry, close_started = threading.Event(), threading.Event()
    carry = store_retention.carry_ownership

    def carry_after_close_started(st: Store, first_seq: int) -> list[str]:
        in_carry.set()
        close_started.wait(30)
        time.sleep(0.2)  # let close reach its locks first: the order that hung
        return carry(st, first_seq)

    monkeypatch.setattr(store_retention, "carry_ownership", carry_after_close_started)
    reports: list[object] = []
    compacting = threading.Thread(
        target=lambda: reports.append(store.compact(keep_snapshots=1)), daemon=True
    )
    compacting.start()
    assert in_carry.wait(30)
    closing = threading.Thread(target=store.close, daemon=True)
    closing.start()
    close_started.set()
    compacting.join(60)
    closing.join(60)
    assert not compacting.is_alive() and not closing.is_alive(), "close and compact deadlocked"
    assert store.closed and len(reports) == 1
    assert len(carries(state)) == 1
    delete_after_reopen(state, netns_dir, pod)
