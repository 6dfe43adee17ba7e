"""``sandboxctl compact`` end to end: a store with small segments and snapshots is
compacted (and archived); ``verify``, ``audit`` and ``history`` then say which
history is not local and pass on what is; the store reopens from its snapshot."""

from __future__ import annotations

import json
from pathlib import Path

from support import fails, ok, sandbox, sandboxctl

import eventlog
from eventlog.segments import list_segments
from sandbox import Store, snapshot


def _build(state_dir: Path, netns_dir: Path, cycles: int = 30) -> list[int]:
    """Add/delete churn with a snapshot every 10 cycles; the snapshot seqs."""
    snaps = []
    with Store.open(state_dir, netns_dir=netns_dir, durability="none", segment_bytes=4096) as st:
        for i in range(cycles):
            sb = st.add(sandbox(f"pod{i}"))
            if i % 3:
                st.delete(sb.id)
            if i % 10 == 9:
                st.snapshot()
                snaps.append(st.last_seq)
    return snaps


def test_compact_then_verify_audit_history(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    snaps = _build(state_dir, spare_netns_dir)
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    segments_before = len(list_segments(str(state_dir)))
    archive = tmp_path / "archive"
    out = json.loads(
        ok(
            sandboxctl(
                *g, "compact", "--keep-snapshots", "2", "--archive", str(archive), "-o", "json"
            )
        )
    )
    assert out["before_seq"] == snaps[-2]
    assert out["snapshots_kept"] == [snaps[-1], snaps[-2]]
    assert len(out["snapshots_removed"]) == 1
    assert out["segments_removed"] and out["first_seq"] > 1
    assert len(list_segments(str(state_dir))) == segments_before - len(out["segments_removed"])
    assert sorted(p.name for p in archive.iterdir()) == out["segments_removed"]
    first = out["first_seq"]
    note = f"history before seq {first} is not local (compacted; archived in {archive})"

    text = ok(sandboxctl(*g, "verify"))
    assert text.startswith("OK: ") and note in text
    cp = sandboxctl(*g, "audit")
    assert cp.returncode == 0 and note in cp.stderr, (cp.stdout, cp.stderr)
    assert cp.stdout.count("\n") > 10
    # history (a time-travel fold) needs the whole history: a clear error says what is missing.
    cp = sandboxctl(*g, "history", "--at", "0s")
    assert f"history before seq {first} is not local" in cp.stderr, (cp.stdout, cp.stderr)

    # The state still loads (from the kept snapshot plus the tail) with every live pod.
    # (Store.open itself also reads the NetNSDirRecorded first record: see the report.)
    last = eventlog.verify(state_dir).last_seq
    loaded = snapshot.load(state_dir, to_seq=last, netns_dir=str(spare_netns_dir))
    assert loaded.snapshot_seq == snaps[-1] and loaded.projection.last_seq == last
    assert len(loaded.projection) == 10


def test_compact_needs_a_snapshot_and_respects_shipped(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    with Store.open(
        state_dir, netns_dir=spare_netns_dir, durability="none", segment_bytes=4096
    ) as st:
        for i in range(20):
            st.add(sandbox(f"p{i}"))
    fails(sandboxctl(*g, "compact"), 7, "no intact snapshot")
    fails(sandboxctl(*g, "compact", "--keep-snapshots", "0"), 7, "at least 1")
    snaps = _build(state_dir, spare_netns_dir, cycles=20)
    first = next(iter(eventlog.read(state_dir)))
    eventlog.write_shipped(state_dir, first.seq, first.digest)
    fails(sandboxctl(*g, "compact", "--keep-snapshots", "1"), 1, "never shipped")
    assert ok(sandboxctl(*g, "compact", "--keep-snapshots", "1", "--force"))
    report = eventlog.verify(state_dir)
    assert report.ok and report.first_seq is not None and report.first_seq <= snaps[-1]
