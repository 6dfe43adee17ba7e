"""replay.load: the state at any point equals the live state captured there."""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest
from support import sandbox

import eventlog
import replay
from sandbox import (
    AmbiguousPrefixError,
    InvalidIDError,
    NotFoundError,
    Projection,
    State,
    Status,
    Store,
)
from sandbox.rules import TRANSITIONS


def _legal_next(state: State, rng: random.Random) -> State:
    return rng.choice(sorted((to for frm, to in TRANSITIONS if frm is state), key=str))


def run_workload(
    state_dir: Path, netns_dir: Path, *, seed: int, commands: int = 160
) -> tuple[dict[int, dict[str, Any]], dict[int, int]]:
    """A random single-event-per-command workload; returns the live projection
    snapshot and the record time after every seq."""
    rng = random.Random(seed)
    live: dict[int, dict[str, Any]] = {0: Projection().to_snapshot()}
    with Store.open(state_dir, netns_dir=netns_dir, durability="none", actor="tester") as store:
        live[store.last_seq] = store.projection().to_snapshot()  # seq 1: the netns dir
        n = 0
        while store.last_seq < commands:
            ids = list(store)
            op = rng.random()
            if op < 0.35 or not ids:
                n += 1
                state = rng.choice([State.READY, State.READY, State.NOTREADY, State.UNKNOWN])
                path = str(netns_dir / f"callers-own-{n}") if rng.random() < 0.2 else ""
                ns = rng.choice(["default", "kube-system"])
                store.add(sandbox(f"pod-{n}", ns, state=state, netns_path=path))
            elif op < 0.8:
                sid = rng.choice(ids)
                old = store[sid].status
                state = _legal_next(old.state, rng)
                new = attrs.evolve(old, state=state, pid=rng.randrange(1, 99999))
                store.update_status(sid, lambda _old, new=new: new)
            else:
                store.delete(rng.choice(ids))
            # A projection copy built through a snapshot dict: exact, and a value.
            live[store.last_seq] = store.projection().to_snapshot()
            if rng.random() < 0.05:
                store.snapshot()
    times = {r.seq: r.time_ns for r in eventlog.read(state_dir)}
    return live, times


def test_load_upto_every_seq_equals_the_live_state(state_dir: Path, spare_netns_dir: Path) -> None:
    live, _ = run_workload(state_dir, spare_netns_dir, seed=7)
    last = max(live)
    assert set(live) == set(range(last + 1)), "every command wrote exactly one event"
    assert list(state_dir.glob("*.snap")), "the workload took snapshots"
    used_snapshot = 0
    for k in range(last + 1):
        view = replay.load(state_dir, upto_seq=k)
        assert view.seq == k
        assert view.projection.to_snapshot() == live[k], f"state after seq {k} differs"
        used_snapshot += view.snapshot is not None
    assert used_snapshot, "load started from a snapshot where one was at or before the point"
    assert replay.load(state_dir).projection.to_snapshot() == live[last]


def test_load_at_agrees_with_record_times(state_dir: Path, spare_netns_dir: Path) -> None:
    live, times = run_workload(state_dir, spare_netns_dir, seed=11, commands=60)
    seqs = sorted(times)
    for k in seqs:
        # The state as of t_k: the longest prefix whose records are all <= t_k.
        expected = max(j for j in seqs if all(times[i] <= times[k] for i in range(1, j + 1)))
        view = replay.load(state_dir, at=times[k])
        assert view.seq == expected
        assert view.projection.to_snapshot() == live[expected]
        assert view.time_ns == times[expected]
    assert replay.load(state_dir, at=times[1] - 1).seq == 0
    assert len(replay.load(state_dir, at=times[1] - 1)) == 0
    # A datetime works too (microsecond resolution: at or after the record's time).
    k = seqs[len(seqs) // 2]
    when = dt.datetime.fromtimestamp(times[k] / 1e9, tz=dt.UTC) + dt.timedelta(microseconds=1)
    assert replay.load(state_dir, at=when).seq >= k


def test_view_has_the_store_read_api(state_dir: Path, spare_netns_dir: Path) -> None:
    a = sandbox("alpha", sid="aaaa1" + "0" * 59)
    b = sandbox("beta", sid="aaaa2" + "0" * 59)
    c = sandbox("gamma", sid="bbbb1" + "0" * 59)
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as store:
        for sb in (a, b, c):
            store.add(sb)
        store.update_status(b.id, lambda old: attrs.evolve(old, state=State.NOTREADY))
        store.delete(c.id)
        expected = store.list()
    view = replay.load(state_dir)
    assert view.list() == expected
    assert list(view) == [a.id, b.id]
    assert len(view) == 2
    assert view.get("aaaa1") == expected[0]
    assert view["aaaa2"].status.state is State.NOTREADY
    assert view.get("bbbb") is None  # deleted: None, as the seed's Get
    assert "aaaa1" in view and "bbbb1" not in view and "aaaa" not in view
    with pytest.raises(NotFoundError):
        view["bbbb"]
    with pytest.raises(AmbiguousPrefixError):
        view.get("aaaa")
    with pytest.raises(InvalidIDError):
        view.get("")
    # Back in time the deleted one is there.
    assert replay.load(state_dir, upto_seq=4)["bbbb"].name.startswith("gamma_")


def test_load_never_locks_or_writes_and_works_beside_a_writer(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        store.add(sandbox("one"))
        before = {p.name: p.stat().st_mtime_ns for p in state_dir.iterdir()}
        view = replay.load(state_dir)  # the writer holds the lock right now
        assert len(view) == 1
        store.add(sandbox("two"))
        assert len(replay.load(state_dir)) == 2
        after = {p.name: p.stat().st_mtime_ns for p in state_dir.iterdir() if p.suffix != ".log"}
        assert after == {k: v for k, v in before.items() if not k.endswith(".log")}


def test_missing_state_dir_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for call in (
        lambda: replay.load(missing),
        lambda: replay.verify(missing),
        lambda: replay.audit(missing),
        lambda: replay.diff(missing, 0, 1),
        lambda: replay.follow(missing),
    ):
        with pytest.raises(replay.StateDirMissingError):
            call()
    assert not missing.exists()


def test_point_beyond_the_log_is_an_error(state_dir: Path, spare_netns_dir: Path) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as store:
        store.add(sandbox("one"))  # seq 2, after the netns dir record
    with pytest.raises(replay.PointOutOfRangeError):
        replay.load(state_dir, upto_seq=3)
    with pytest.raises(ValueError):
        replay.load(state_dir, upto_seq=1, at=0)
    empty = state_dir.parent / "empty"
    empty.mkdir()
    assert len(replay.load(empty)) == 0 and replay.load(empty).seq == 0


def test_a_snapshot_of_another_history_is_never_used(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    with Store.open(other, netns_dir=spare_netns_dir, durability="none") as store:
        store.add(sandbox("impostor"))
        store.add(sandbox("impostor-2"))
        forged = store.snapshot()
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as store:
        store.add(sandbox("real"))
        store.add(sandbox("real-2"))
        store.add(sandbox("real-3"))
        want = store.projection().to_snapshot()
    shutil.copy(forged, state_dir / os.path.basename(forged))
    view = replay.load(state_dir)
    assert view.snapshot is None
    assert view.projection.to_snapshot() == want
    res = replay.verify(state_dir)
    assert not res.ok and res.first is not None and res.first.kind == "snapshot"
    assert "another history" in res.first.reason


def test_status_times_survive_replay(state_dir: Path, spare_netns_dir: Path) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as store:
        sb = store.add(sandbox("timed", created_at=123))
        store.update_status(sb.id, lambda old: Status(State.NOTREADY, 7, 123, 456, 137))
    got = replay.load(state_dir)[sb.id].status
    assert got == Status(State.NOTREADY, 7, 123, 456, 137)


def test_load_with_namespace_commands_at_every_seq(state_dir: Path, netns_dir: Path) -> None:
    """Commands that write several events (add with a namespace: a batch, then
    the effect) have no live state between their events; there the view must
    equal an independent fold of the records, and at command boundaries the
    live state."""
    rng = random.Random(3)
    live: dict[int, dict[str, Any]] = {}
    with Store.open(state_dir, netns_dir=netns_dir, durability="none") as store:
        for i in range(12):
            ids = list(store)
            op = rng.random()
            if op < 0.5 or not ids:
                store.add(sandbox(f"ns-pod-{i}"), create_netns=True)
            elif op < 0.75:
                store.remove_netns(rng.choice(ids))
            else:
                store.delete(rng.choice(ids))
            live[store.last_seq] = store.projection().to_snapshot()
        for sid in list(store):
            store.delete(sid)  # leave no namespace behind
    fold = Projection()
    for rec in eventlog.read(state_dir):
        fold.apply(rec.seq, rec.payload)
        view = replay.load(state_dir, upto_seq=rec.seq)
        assert view.projection == fold, f"seq {rec.seq}"
        if rec.seq in live:
            assert view.projection.to_snapshot() == live[rec.seq]
    kinds = {rec.payload["type"] for rec in eventlog.read(state_dir)}
    assert {"NetNSAssigned", "NetNSCreated", "NetNSRemoved"} <= kinds
