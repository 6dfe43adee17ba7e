"""Retention on an open store: ``Store.compact`` and ``Store.open(retention=...)``.

A node agent keeps its store open, so it holds the writer lock that
``sandboxctl compact`` needs; these tests compact through the open store
instead (the same rule, sandbox/retention.py). The properties: the segments
wholly before the oldest kept snapshot go (or are archived), never anything
after it; the live state does not change; commands go on meanwhile and lose
nothing; the result reopens to the same projection and verifies; records a
shipper has not had acknowledged stay unless forced; a crash mid-compaction
reopens and the next compaction finishes the job.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import support

import eventlog
import replay
from eventlog.segments import list_segments
from sandbox import MemoryLog, Store, StoreClosedError, StoreError
from sandbox.retention import NoSnapshotError, Retention
from sandbox.snapshot import list_snapshots, snapshot_path

SEGMENT_BYTES = 2048
OpenStore = Callable[..., Store]


def churn(store: Store, first: int, count: int) -> None:
    """``count`` adds; every third sandbox added is deleted again."""
    for i in range(first, first + count):
        added = store.add(support.sandbox(f"pod{i}"))
        if i % 3 == 0:
            store.delete(added.id)


def build(store: Store) -> list[int]:
    """Three rounds of churn, each followed by a snapshot, then more churn: the snapshot seqs."""
    snaps = []
    for r in range(3):
        churn(store, r * 30, 30)
        store.snapshot()
        snaps.append(store.last_seq)
    churn(store, 90, 10)
    return snaps


def firsts(state: Path) -> list[int]:
    return [s.first_seq for s in list_segments(str(state))]


def live_ids(store: Store) -> list[str]:
    return sorted(s.id for s in store.list())


def test_compact_an_open_store(tmp_path: Path, open_store: OpenStore) -> None:
    state = tmp_path / "state"
    store = open_store(state, segment_bytes=SEGMENT_BYTES)
    snaps = build(store)
    segments_before = firsts(state)
    truth = store.projection()

    report = store.compact(keep_snapshots=2)
    assert (report.before_seq, report.snapshots_kept) == (snaps[1], (snaps[2], snaps[1]))
    assert report.snapshots_removed == (snapshot_path(state, snaps[0]),)
    assert [seq for seq, _ in list_snapshots(state)] == [snaps[2], snaps[1]]
    # Exactly the segments wholly before the oldest kept snapshot are gone.
    assert report.segments_removed and report.first_seq > 1
    kept = firsts(state)
    assert kept == [s for s in segments_before if s >= report.first_seq]
    assert kept[0] <= snaps[1] and (len(kept) == 1 or kept[1] > snaps[1])
    assert store.last_compaction == report
    assert store.projection() == truth  # the live state does not change

    churn(store, 100, 20)  # commands go on
    after = store.projection()
    last = store.last_seq
    store.close()

    result = replay.verify(state)
    assert result.ok, result.problems
    note = f"history before seq {report.first_seq} is not local (compacted; removed)"
    assert note in result.notes
    reopened = open_store(state, segment_bytes=SEGMENT_BYTES)
    assert reopened.last_seq == last and reopened.projection() == after

    # The CLI's readers say which history is not local, as after `sandboxctl compact`.
    g = ["--state-dir", str(state)]
    assert note in support.ok(support.sandboxctl(*g, "verify"))
    cp = support.sandboxctl(*g, "audit")
    assert cp.returncode == 0 and note in cp.stderr, (cp.stdout, cp.stderr)
    cp = support.sandboxctl(*g, "history", "--at", "0s")
    assert cp.returncode != 0 and f"history before seq {report.first_seq} is not local" in (
        cp.stderr
    ), (cp.stdout, cp.stderr)


def test_compact_into_an_archive(tmp_path: Path, open_store: OpenStore) -> None:
    state, archive = tmp_path / "state", tmp_path / "archive"
    store = open_store(state, segment_bytes=SEGMENT_BYTES)
    build(store)
    originals = {s.name: Path(s.path).read_bytes() for s in list_segments(str(state))}
    report = store.compact(archive_dir=archive)
    assert report.archive == str(archive)
    assert sorted(p.name for p in archive.iterdir()) == list(report.segments_removed)
    for name in report.segments_removed:
        assert (archive / name).read_bytes() == originals[name]
    archived = [r.seq for r in eventlog.read(archive)]  # a readable log from seq 1
    assert archived == list(range(1, report.first_seq))
    assert f"archived in {archive}" in report.note


def test_retention_option_compacts_after_each_snapshot(
    tmp_path: Path, open_store: OpenStore
) -> None:
    state = tmp_path / "state"
    store = open_store(state, segment_bytes=SEGMENT_BYTES, retention=Retention(keep_snapshots=2))
    snaps: list[int] = []
    for r in range(4):
        churn(store, r * 30, 30)
        store.snapshot()
        snaps.append(store.last_seq)
        assert [seq for seq, _ in list_snapshots(state)] == snaps[::-1][:2]
        report = store.last_compaction
        assert report is not None and report.before_seq == snaps[-2:][0]
        history = eventlog.local_history(str(state))
        assert history is not None and history.first_seq == firsts(state)[0]
        assert history.first_seq <= report.before_seq
    truth = store.projection()
    store.close()
    assert replay.verify(state).ok
    assert open_store(state).projection() == truth


def test_retention_keeps_more_snapshots_than_the_default(
    tmp_path: Path, open_store: OpenStore
) -> None:
    state = tmp_path / "state"
    store = open_store(state, segment_bytes=SEGMENT_BYTES, retention=Retention(keep_snapshots=4))
    snaps = []
    for r in range(5):
        churn(store, r * 20, 20)
        store.snapshot()
        snaps.append(store.last_seq)
    assert [seq for seq, _ in list_snapshots(state)] == snaps[::-1][:4]
    assert store.last_compaction is not None and store.last_compaction.before_seq == snaps[1]


def test_unshipped_history_stays_unless_forced(
    tmp_path: Path, open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    store = open_store(state, segment_bytes=SEGMENT_BYTES, retention=Retention())
    churn(store, 0, 30)
    first = next(iter(eventlog.read(state)))
    eventlog.write_shipped(state, first.seq, first.digest)  # a shipper is behind
    segments = firsts(state)
    with caplog.at_level(logging.WARNING, logger="sandbox.store"):
        churn(store, 30, 30)
        store.snapshot()  # the snapshot is taken; the retention step is refused
        churn(store, 60, 30)
        store.snapshot()
    assert "never shipped" in caplog.text
    assert store.last_compaction is None and eventlog.local_history(str(state)) is None
    assert firsts(state)[: len(segments)] == segments
    with pytest.raises(eventlog.CompactionRefusedError, match="never shipped"):
        store.compact()
    assert eventlog.local_history(str(state)) is None

    forced = store.compact(force=True)
    assert forced.first_seq > 1
    history = eventlog.local_history(str(state))
    assert history is not None and history.shipped_seq == first.seq

    # Once the shipper has caught up, the retention step compacts on its own.
    churn(store, 90, 30)
    store.snapshot()
    assert store.last_compaction == forced  # behind again: refused
    eventlog.write_shipped(state, store.last_seq, store.head)
    churn(store, 120, 30)
    store.snapshot()
    assert store.last_compaction is not None
    assert store.last_compaction.first_seq > forced.first_seq
    store.close()
    assert replay.verify(state).ok


def test_refusals_of_bad_requests(
    tmp_path: Path, open_store: OpenStore, unused_netns_dir: Path
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Retention(keep_snapshots=0)
    state = tmp_path / "state"
    store = open_store(state, segment_bytes=SEGMENT_BYTES)
    churn(store, 0, 30)
    with pytest.raises(ValueError, match="keep_snapshots must be at least 1"):
        store.compact(keep_snapshots=0)
    with pytest.raises(NoSnapshotError, match="no intact snapshot"):
        store.compact()
    # A damaged snapshot is not one to compact before.
    path = Path(store.snapshot())
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NoSnapshotError):
        store.compact()
    assert issubclass(NoSnapshotError, StoreError) and issubclass(NoSnapshotError, ValueError)
    assert eventlog.local_history(str(state)) is None

    with (
        Store.from_log(MemoryLog(), netns_dir=unused_netns_dir) as memory,
        pytest.raises(StoreError, match="in-memory log"),
    ):
        memory.compact()
    store.close()
    with pytest.raises(StoreClosedError):
        store.compact()


def test_a_snapshot_of_another_history_is_not_kept(tmp_path: Path, open_store: OpenStore) -> None:
    """Intact, but the log's digest at its seq is not the one it recorded: ``load``
    would skip it, so compacting before it would leave a store that cannot open."""
    state, other = tmp_path / "state", tmp_path / "other"
    store = open_store(state, segment_bytes=SEGMENT_BYTES)
    churn(store, 0, 20)
    mine = store.snapshot()
    churn(store, 20, 60)
    foreign = open_store(other, segment_bytes=SEGMENT_BYTES)
    churn(foreign, 500, 40)
    foreign_path = Path(foreign.snapshot())
    assert int(Path(mine).name[:20]) < foreign.last_seq < store.last_seq
    Path(state, foreign_path.name).write_bytes(foreign_path.read_bytes())

    report = store.compact(keep_snapshots=1)
    assert report.snapshots_kept == (int(Path(mine).name[:20]),)
    truth = store.projection()
    store.close()
    reopened = open_store(state, segment_bytes=SEGMENT_BYTES)
    assert reopened.projection() == truth


def test_commands_during_compaction_lose_nothing(tmp_path: Path, open_store: OpenStore) -> None:
    """An appending thread runs the whole time the main thread snapshots and compacts
    (rotations included: small segments); every add it made is there, reopened too."""
    state = tmp_path / "state"
    store = open_store(state, segment_bytes=1024)
    stop = threading.Event()
    added: list[str] = []
    errors: list[BaseException] = []

    def appender() -> None:
        try:
            i = 0
            while not stop.is_set() or i < 30:
                added.append(store.add(support.sandbox(f"c{i}")).id)
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=appender)
    thread.start()
    removed = 0
    try:
        for _ in range(6):
            target = store.last_seq + 40  # progress, not time: a few segments' worth
            while store.last_seq < target and not errors:
                time.sleep(0.001)
            store.snapshot()
            removed += len(store.compact(keep_snapshots=1).segments_removed)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert removed > 0
    assert live_ids(store) == sorted(added)
    truth, last = store.projection(), store.last_seq
    store.close()
    result = replay.verify(state)
    assert result.ok, result.problems
    assert result.last_seq == last
    reopened = open_store(state, segment_bytes=1024)
    assert reopened.projection() == truth


_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[3])
import support
from sandbox import Store

with Store.open(sys.argv[1], netns_dir=sys.argv[2], segment_bytes=1024) as store:
    for i in range(60):
        added = store.add(support.sandbox(f"p{i}"))
        if i % 3 == 0:
            store.delete(added.id)
        if i % 20 == 19:
            store.snapshot()
    print(json.dumps([sorted(s.id for s in store.list()), store.last_seq]), flush=True)
    store.compact(keep_snapshots=2)
"""


@pytest.mark.parametrize("point", ["compact.after_history", "compact.after_first_remove"])
def test_sigkill_mid_store_compaction(
    point: str,
    tmp_path: Path,
    open_store: OpenStore,
    unused_netns_dir: Path,
    child: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    state = tmp_path / "state"
    tests_dir = str(Path(__file__).resolve().parents[1])
    proc = child(
        _CHILD,
        str(state),
        str(unused_netns_dir),
        tests_dir,
        env={"SANDBOX_CRASHPOINT": f"{point}:kill"},
    )
    assert proc.returncode == -9, proc.stderr
    assert f"crashpoint {point} hit" in proc.stderr
    ids, last = json.loads(proc.stdout)

    report = eventlog.verify(state)
    assert report.ok, report.problem
    assert report.last_seq == last
    assert any("interrupted compaction" in n for n in report.notes)
    assert replay.verify(state).ok
    store = open_store(state, segment_bytes=1024)
    assert live_ids(store) == ids and store.last_seq == last
    # The next compaction (same rule, same point) finishes the job.
    again = store.compact(keep_snapshots=2)
    assert firsts(state)[0] == again.first_seq
    assert not any("interrupted" in n for n in eventlog.verify(state).notes)
    churn(store, 100, 5)
    store.close()
    assert replay.verify(state).ok
