"""Each crash point fires where it says, and the state it leaves recovers.

Why a test per point: a crash point that silently stopped firing (renamed,
moved behind a condition the workload never meets) would make the harness
report "no violations" while testing nothing there. Each test arms one point
in a real child started as ``python -m replay.crash.child`` with
``SANDBOX_CRASHPOINT=<point>:kill:<n>``, sees it die by SIGKILL with the
stderr line ``crashpoint <point> hit <n>``, looks at the files and mounts it
left (what must hold right after a crash THERE), reopens, and runs the
harness's five checks.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from support import LOG_CRASH_POINTS

import eventlog
from replay.crash import checks, cleanup, harness, plan, storeio
from sandbox import mounts
from sandbox.netns import is_live_netns
from sandbox.ownership import NetNSState

# Seq 1 of every log is NetNSDirRecorded (the store's first open writes it).
SEED = 1  # op 0 snapshot (seq 1), op 1 add+netns, op 2 add+netns, ... op 16 snapshot


@attrs.define
class Crashed:
    spec: harness.RunSpec
    state_dir: str
    netns_dir: str
    seen: harness.ChildRun
    stderr: str

    def records(self) -> list[Any]:
        """The log as the dead child left it (read lock-free, no recovery)."""
        return list(eventlog.read(self.state_dir))

    def nsfs(self) -> list[str]:
        return [m.mount_point for m in mounts.mounts_under(self.netns_dir, fstype="nsfs")]

    def files(self, suffix: str = "") -> list[str]:
        return sorted(n for n in os.listdir(self.state_dir) if n.endswith(suffix))

    def check_all(self) -> list[checks.Violation]:
        return checks.run_checks(
            self.state_dir,
            self.netns_dir,
            self.seen.observation(),
            self.spec.seed,
            open_store=lambda: storeio.open_store(self.state_dir, self.netns_dir),
        )


@contextmanager
def crash_at(
    crash_dir: str, point: str, hit: int, *, seed: int = SEED, launch: str = "exec"
) -> Iterator[Crashed]:
    """Run a child armed at ``point:kill:hit``; yield what it left; clean up."""
    spec = attrs.evolve(harness.RunSpec.derive(0, seed, point, False), hit=hit)
    base = tempfile.mkdtemp(dir=crash_dir)
    state_dir, netns_dir = os.path.join(base, "state"), os.path.join(base, "netns")
    os.makedirs(netns_dir)
    err = os.path.join(base, "stderr")
    try:
        seen = harness.run_child(spec, state_dir, netns_dir, err, launch)
        with open(err, encoding="utf-8") as f:
            stderr = f.read()
        assert f"crashpoint {point} hit {hit}\n" in stderr, stderr
        assert seen.returncode == -signal.SIGKILL
        assert seen.kill_reason in ("", "cleanup"), "the parent had to kill it: point not hit"
        yield Crashed(spec, state_dir, netns_dir, seen, stderr)
    finally:
        cleanup.clear(base, remove_dir=True)


def _types(records: list[Any]) -> list[str]:
    return [str(r.payload["type"]) for r in records]


def test_every_registered_point_has_a_test() -> None:
    tested = {
        *LOG_CRASH_POINTS,
        "snapshot.after_temp_write",
        "snapshot.after_temp_fsync",
        "snapshot.after_rename",
        "store.after_intent",
        "netns.after_placeholder",
        "netns.after_mount_before_record",
        "reconcile.mid",
    }
    registered = set(harness.known_points()) - {harness.SIGKILL_POINT}
    assert registered == tested, "a crash point was added or removed: test it here"
    # Compaction's points are outside the store workload (plan.NOT_IN_STORE_WORKLOAD):
    # fired in a child and recovered from in tests/eventlog/test_eventlog_compact.py
    # (compact.after_carry, Store.compact's: tests/sandbox/test_sandbox_retention_netns.py).
    outside = {p for p in eventlog.crashpoints.POINTS if p.startswith(plan.NOT_IN_STORE_WORKLOAD)}
    assert outside == {"compact.after_history", "compact.after_first_remove", "compact.after_carry"}


def test_append_points_leave_nothing_or_exactly_the_append(crash_dir: str) -> None:
    """before_write: the n-th append left nothing; after_write / after_fsync: it is
    all there (the page cache survives a kill). Append 1 is NetNSDirRecorded, append 5
    is op 2's NetNSCreated."""
    logs = {}
    for point in ("append.before_write", "append.after_write", "append.after_fsync"):
        with crash_at(crash_dir, point, 5) as c:
            logs[point] = _types(c.records())
            assert c.check_all() == []
    assert logs["append.before_write"] == [
        "NetNSDirRecorded",
        "SandboxAdded",
        "NetNSAssigned",
        "NetNSCreated",
        "SandboxAdded",
        "NetNSAssigned",
    ]
    assert logs["append.after_write"] == [*logs["append.before_write"], "NetNSCreated"]
    assert logs["append.after_fsync"] == logs["append.after_write"]


def test_append_point_with_fork_launch(crash_dir: str) -> None:
    """The harness's fast path (fork + crashpoints.arm) dies at the same place."""
    with crash_at(crash_dir, "append.after_write", 5, launch="fork") as c:
        assert len(c.records()) == 7
        assert c.check_all() == []


def test_batch_mid_write_is_all_or_nothing(crash_dir: str) -> None:
    """Half of op 1's SandboxAdded + NetNSAssigned batch on disk: recovery cuts
    it whole (kept as .broken), no sandbox, and no namespace was ever made."""
    with crash_at(crash_dir, "batch.mid_write", 1) as c:
        # A reader stops before an incomplete batch: only seq 1, the netns dir record.
        assert _types(c.records()) == ["NetNSDirRecorded"]
        assert c.nsfs() == [] and os.listdir(c.netns_dir) == []
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            assert store.last_seq == 1 and len(store) == 0
        assert c.files(".broken")
        assert c.check_all() == []


@pytest.mark.parametrize(
    "point", ["rotate.after_sync_old", "rotate.after_create", "rotate.after_header"]
)
def test_rotation_points(crash_dir: str, point: str) -> None:
    """A crash inside a rotation loses nothing acknowledged; the next segment is
    (re)made on reopen and appends go on."""
    with crash_at(crash_dir, point, 1) as c:
        before = c.files(".log")
        n = len(c.records())
        if point == "rotate.after_sync_old":
            assert len(before) == 1  # the new segment is not created yet
        elif point == "rotate.after_create":
            assert len(before) == 2
            assert os.path.getsize(os.path.join(c.state_dir, before[-1])) == 0
        else:
            assert len(before) == 2
            assert os.path.getsize(os.path.join(c.state_dir, before[-1])) == 64
        assert c.seen.observation().last_acked_seq <= n
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            assert store.last_seq >= n
        assert c.check_all() == []


@pytest.mark.parametrize("point", ["snapshot.after_temp_write", "snapshot.after_temp_fsync"])
def test_snapshot_before_rename_leaves_no_snapshot(crash_dir: str, point: str) -> None:
    """Hit 2 is op 16's snapshot: only a temp file exists; reopen ignores it (and
    uses op 0's snapshot, of seq 1: the netns dir record)."""
    with crash_at(crash_dir, point, 2) as c:
        assert c.files(".snap.tmp")
        last = len(c.records())
        assert f"{last:020d}.snap" not in c.files(".snap")
        first = os.path.join(c.state_dir, f"{1:020d}.snap")
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            assert store.load_result is not None
            assert store.load_result.snapshot == first and not store.load_result.skipped
            assert store.last_seq == last
        assert c.check_all() == []


def test_snapshot_after_rename_is_whole_and_used(crash_dir: str) -> None:
    with crash_at(crash_dir, "snapshot.after_rename", 2) as c:
        last = len(c.records())
        snap = os.path.join(c.state_dir, f"{last:020d}.snap")
        assert os.path.exists(snap)
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            assert store.load_result is not None
            assert store.load_result.snapshot == snap and not store.load_result.skipped
        assert c.check_all() == []


def test_store_after_intent_reopen_creates_the_namespace(crash_dir: str) -> None:
    """Intent durable, nothing made: reopen creates it (not adopted), once."""
    with crash_at(crash_dir, "store.after_intent", 1) as c:
        recs = c.records()
        assert _types(recs) == ["NetNSDirRecorded", "SandboxAdded", "NetNSAssigned"]
        path = recs[2].payload["path"]
        assert c.nsfs() == [] and os.listdir(c.netns_dir) == []
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            report = store.last_reconcile_report
            assert report.created == (path,) and report.adopted == ()
            assert is_live_netns(path)
        assert len(c.nsfs()) == 1
        assert c.check_all() == []


def test_netns_after_placeholder_reopen_reuses_it(crash_dir: str) -> None:
    with crash_at(crash_dir, "netns.after_placeholder", 1) as c:
        recs = c.records()
        path = recs[2].payload["path"]
        assert os.listdir(c.netns_dir) == [os.path.basename(path)]
        assert os.path.getsize(path) == 0 and c.nsfs() == []
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            assert store.last_reconcile_report.created == (path,)
            assert is_live_netns(path)
        assert len(c.nsfs()) == 1
        assert c.check_all() == []


def test_netns_after_mount_before_record_reopen_adopts(crash_dir: str) -> None:
    """Mounted but not recorded (cri #568): reopen adopts it - no second namespace."""
    with crash_at(crash_dir, "netns.after_mount_before_record", 1) as c:
        recs = c.records()
        assert _types(recs) == ["NetNSDirRecorded", "SandboxAdded", "NetNSAssigned"]
        path = recs[2].payload["path"]
        assert len(c.nsfs()) == 1
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            report = store.last_reconcile_report
            assert report.adopted == (path,) and report.created == (path,)
            owned = store.projection().owned()
            assert [(o.path, o.state) for o in owned] == [(path, NetNSState.CREATED)]
        assert len(c.nsfs()) == 1
        assert c.check_all() == []


def test_reconcile_mid_reopen_finishes_the_run(crash_dir: str) -> None:
    """Killed after the first of several reconcile actions: reopen does the rest."""
    with crash_at(crash_dir, "reconcile.mid", 1) as c:
        with storeio.open_store(c.state_dir, c.netns_dir) as store:
            assert store.last_reconcile_report.changed
            pending = [o for o in store.projection().owned() if not o.state.terminal]
            assert all(o.state is NetNSState.CREATED for o in pending)
        assert c.check_all() == []
