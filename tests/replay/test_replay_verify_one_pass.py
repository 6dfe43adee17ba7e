"""replay.verify checks the bytes and folds the events in one pass; what it reports
about snapshots and where its fold starts is what the two-pass verify reported.

The cases: a snapshot beyond the log's end, a damaged one (its own error, wherever
it is), a fold stopped by an event that does not decode (later snapshots not
checked, and why), a byte-level problem mid-log (the fold ends before it), and a
compacted log - snapshots before the compaction point, the snapshot the fold
starts from, and a log no snapshot covers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
from replay_support import parse, replace_in_payload, write_records
from support import sandbox

import eventlog
import replay
from sandbox import State, Store
from sandbox import snapshot as snap


def _store(state_dir: Path, netns_dir: Path, pods: int, **kw: object) -> Store:
    store = Store.open(state_dir, netns_dir=netns_dir, durability="none", **kw)  # type: ignore[arg-type]
    for i in range(pods):
        sb = store.add(sandbox(f"pod-{state_dir.name}-{i}"))
        store.update_status(sb.id, lambda old: attrs.evolve(old, state=State.NOTREADY))
    return store


def test_a_snapshot_beyond_the_logs_end_is_a_failed_check(
    tmp_path: Path, spare_netns_dir: Path
) -> None:
    longer, shorter = tmp_path / "longer", tmp_path / "shorter"
    with _store(longer, spare_netns_dir, 3) as store:
        path = store.snapshot()
        seq = store.last_seq
    with _store(shorter, spare_netns_dir, 1) as store:
        last = store.last_seq
    shutil.copy(path, snap.snapshot_path(shorter, seq))
    res = replay.verify(shorter)
    assert not res.ok and res.events_checked == last
    (check,) = res.snapshots
    assert (check.seq, check.ok) == (seq, False)
    assert check.reason == f"it is at seq {seq}, beyond the log's last seq {last}"


def test_a_damaged_snapshot_reports_its_own_error_even_beyond_the_end(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    with _store(state_dir, spare_netns_dir, 2) as store:
        last = store.last_seq
    Path(snap.snapshot_path(state_dir, last + 5)).write_bytes(b"SBXSNAP\0 garbage")
    res = replay.verify(state_dir)
    (check,) = res.snapshots
    assert check.seq == last + 5 and not check.ok and "beyond" not in check.reason
    assert res.events_checked == last


def test_an_undecodable_event_stops_the_fold_and_later_snapshots_go_unchecked(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    with _store(state_dir, spare_netns_dir, 3) as store:
        store.snapshot()
        snap_seq = store.last_seq
        store.add(sandbox("after"))
    _, records = parse(state_dir)
    replace_in_payload(records[2], b"StatusUpdated", b"StatusUpdatex")  # seq 3
    write_records(state_dir, records, rechain_from=3)  # a consistent forgery from there
    res = replay.verify(state_dir)
    assert not res.ok and res.first is not None
    assert (res.first.kind, res.first.seq) == ("event", 3)
    assert "StatusUpdatex" in res.first.reason and res.first.sandbox_id is not None
    assert res.events_checked == 2
    (check,) = res.snapshots
    assert check.seq == snap_seq and not check.ok
    assert check.reason == "not checked: the events before it could not be folded"


def test_a_corrupt_record_ends_the_fold_before_it(state_dir: Path, spare_netns_dir: Path) -> None:
    with _store(state_dir, spare_netns_dir, 3) as store:
        store.snapshot()
        snap_seq = store.last_seq
    _, records = parse(state_dir)
    replace_in_payload(records[3], b"pod-", b"pod_")  # seq 4: crcs fixed, chain broken
    write_records(state_dir, records)
    res = replay.verify(state_dir)
    assert res.first is not None and (res.first.kind, res.first.seq) == ("log", 4)
    assert res.events_checked == 3 and res.last_seq == 3
    (check,) = res.snapshots
    assert check.reason == f"it is at seq {snap_seq}, beyond the log's last seq 3"


def _compacted(state_dir: Path, netns_dir: Path, *, snapshots: bool) -> tuple[int, list[int]]:
    """A multi-segment log compacted past its first segments; (first local seq, snapshot seqs)."""
    seqs: list[int] = []
    with _store(state_dir, netns_dir, 10, segment_bytes=4096) as store:
        if snapshots:
            store.snapshot()
            seqs.append(store.last_seq)
        for i in range(10):
            sb = store.add(sandbox(f"more-{i}"))
            store.update_status(sb.id, lambda old: attrs.evolve(old, state=State.NOTREADY))
        if snapshots:
            store.snapshot()
            seqs.append(store.last_seq)
        for i in range(2):
            store.add(sandbox(f"last-{i}"))
    segs = sorted(state_dir.glob("*.log"))
    assert len(segs) >= 4, segs
    first = int(segs[2].name.split(".")[0])
    if snapshots:
        assert seqs[0] < first - 1 <= seqs[1], (seqs, first)
    eventlog.compact(state_dir, before_seq=first, force=True)
    assert eventlog.local_history(state_dir) is not None
    return first, seqs


def test_a_compacted_log_is_folded_from_its_first_covering_snapshot(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    first, (old, base) = _compacted(state_dir, spare_netns_dir, snapshots=True)
    res = replay.verify(state_dir)
    assert res.ok, res.problems
    by_seq = {c.seq: c for c in res.snapshots}
    assert by_seq[old].ok
    assert by_seq[old].reason == f"not checked: history before seq {first} is not local"
    assert by_seq[base].ok and by_seq[base].reason == "the start of the local fold"
    assert res.events_checked == res.last_seq - base
    assert not any("transitions not checked" in n for n in res.notes)


def test_a_compacted_log_no_snapshot_covers_is_not_folded(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    _compacted(state_dir, spare_netns_dir, snapshots=False)
    res = replay.verify(state_dir)
    assert res.ok and res.events_checked == 0 and res.records > 0
    assert "transitions not checked: no snapshot at or after the compaction point" in res.notes
