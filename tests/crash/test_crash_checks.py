"""The checks can fail: each one is shown a state that breaks its promise.

Why: a harness that reports "no violations" is only worth something if it
would have reported the violation. Each test here crashes a real child,
then damages what it left the way a buggy store would (an acknowledged
record lost, a namespace leaked or stacked twice, a record no one asked
for, a snapshot from another history) and asserts the matching check
names it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import pytest

import eventlog
from replay.crash import checks, cleanup, harness, storeio
from sandbox import mounts, netns

SEED = 1


@attrs.define
class Left:
    state_dir: str
    netns_dir: str
    seen: harness.ChildRun

    def check(self) -> list[checks.Violation]:
        return checks.run_checks(
            self.state_dir,
            self.netns_dir,
            self.seen.observation(),
            SEED,
            open_store=lambda: storeio.open_store(self.state_dir, self.netns_dir),
        )


@contextmanager
def crashed(crash_dir: str, point: str = "append.before_write", hit: int = 30) -> Iterator[Left]:
    spec = attrs.evolve(harness.RunSpec.derive(0, SEED, point, False), hit=hit)
    base = tempfile.mkdtemp(dir=crash_dir)
    state_dir, netns_dir = os.path.join(base, "state"), os.path.join(base, "netns")
    os.makedirs(netns_dir)
    try:
        seen = harness.run_child(spec, state_dir, netns_dir, os.path.join(base, "err"), "fork")
        assert seen.returncode == -signal.SIGKILL and seen.acks
        yield Left(state_dir, netns_dir, seen)
    finally:
        cleanup.clear(base, remove_dir=True)


def _kinds(violations: list[checks.Violation]) -> set[str]:
    return {v.check for v in violations}


def test_untouched_state_is_clean(crash_dir: str) -> None:
    with crashed(crash_dir) as left:
        assert left.check() == []


def test_lost_acknowledged_events_are_reported(crash_dir: str) -> None:
    """Cut the log back to a whole-record boundary before the last acked record:
    recovery sees a clean, shorter log - only check 1 can tell."""
    with crashed(crash_dir) as left:
        records = list(eventlog.read(left.state_dir))
        last = max(records, key=lambda r: r.seq)
        victim = os.path.join(left.state_dir, last.segment)
        os.truncate(victim, last.offset)  # drop the last acknowledged record exactly
        found = left.check()
        # Lost - or, if recovery wrote its own events since, replaced at that seq.
        assert any(
            v.check == checks.ACKED
            and ("acknowledged event(s) lost" in v.message or f"seq {last.seq} " in v.message)
            for v in found
        ), found
        assert any(v.check == checks.VERIFY and "history rewritten" in v.message for v in found)


def test_a_record_nobody_wrote_is_reported(crash_dir: str) -> None:
    """An event appended by a third process after the crash: check 1 names its pid."""
    with crashed(crash_dir) as left:
        with eventlog.EventLog.open(left.state_dir) as log:
            log.append(
                {"type": "SandboxDeleted", "v": 1, "id": "f" * 64, "env": {"pid": 1, "time": 0}}
            )
        found = left.check()
        assert any(v.check == checks.ACKED and "writer pid 1" in v.message for v in found), found


def test_a_leaked_namespace_is_reported(crash_dir: str) -> None:
    """A namespace under netns_dir the log never assigned: the reconciler must
    leave it alone (foreign), and check 3 must call it a leak."""
    with crashed(crash_dir) as left:
        stray = os.path.join(left.netns_dir, "cni-00000000-0000-4000-8000-000000000000")
        netns.create_at(stray, left.netns_dir)
        found = left.check()
        assert any(v.check == checks.NETNS and "leaked namespace" in v.message for v in found)


@pytest.mark.skipif(shutil.which("mount") is None, reason="needs mount(8)")
def test_a_stacked_namespace_is_reported(crash_dir: str) -> None:
    """Two nsfs mounts on one path (a namespace hidden under another): check 3."""
    with crashed(crash_dir) as left:
        live = [m.mount_point for m in mounts.mounts_under(left.netns_dir, fstype="nsfs")]
        assert live, "seed 1 has live namespaces at op 30"
        subprocess.run(["mount", "--bind", live[0], live[0]], check=True)
        found = left.check()
        assert any(v.check == checks.NETNS and "duplicate namespace" in v.message for v in found)


def test_a_damaged_record_is_reported(crash_dir: str) -> None:
    """A flipped byte inside an early acknowledged record. Opening may still work
    (it checks only the last segment, and replays from the newest snapshot), but
    a full read and verify must name it."""
    with crashed(crash_dir) as left:
        first = next(iter(eventlog.read(left.state_dir)))
        path = os.path.join(left.state_dir, first.segment)
        with open(path, "r+b") as f:
            f.seek(first.offset + 40)
            byte = f.read(1)
            f.seek(first.offset + 40)
            f.write(bytes([byte[0] ^ 0x01]))
        found = left.check()
        assert checks.VERIFY in _kinds(found), found
        assert any("body crc mismatch" in v.message for v in found), found


def test_a_snapshot_from_another_history_is_reported(crash_dir: str) -> None:
    """Swap in a snapshot whose chain digest does not match the log: the store
    skips it on open (right), and check 2 reports that it had to."""
    with crashed(crash_dir) as left:
        from sandbox import snapshot
        from sandbox.projection import Projection

        records = list(eventlog.read(left.state_dir))
        seq = records[-1].seq  # the newest: the one open tries first
        proj = Projection(left.netns_dir)
        snapshot.replay((r for r in records if r.seq <= seq), proj)
        data = snapshot.encode(proj, b"\x07" * 32)
        snapshot.write_snapshot(left.state_dir, seq, data, keep=100)
        found = left.check()
        assert any(v.check == checks.PROJECTION and "skipped snapshot" in v.message for v in found)
        assert any(v.check == checks.PROJECTION and "chain digest" in v.message for v in found)


def test_command_that_wrote_the_wrong_events_is_reported() -> None:
    """check_commands on a fabricated ack: an add that wrote a StatusUpdated."""
    from replay.crash import workload as wl

    op = next(o for o in wl.take(SEED, 20) if o.kind == wl.ADD)
    rec = checks.AckedRecord(1, 0, b"\0" * 32, {"type": "StatusUpdated", "id": op.sandbox_id})
    ack = checks.Ack(op, True, "", "", 0, 1, (rec,))
    obs = checks.Observation(child_pid=1, open_seq=0, acks=(ack,), in_flight=None)
    found = checks.check_commands(obs)
    assert found and all(v.check == checks.COMMAND for v in found)
