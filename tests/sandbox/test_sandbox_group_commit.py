"""Store-level group commit (sandbox/store_commit.py): concurrent commands share an
fsync, validate in seq order against the pending state, and readers never see an
event that is not durable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from support import DOCUMENTED, MakeSandbox, OpenStore, run_threads

import eventlog
from eventlog.errors import LogPoisonedError
from sandbox import (
    AlreadyExistsError,
    Projection,
    State,
    Store,
    StoreError,
)
from sandbox.logport import MemoryLog


def _run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    run_threads(count, run)
    return errors


def _replayed(state_dir: Path, netns_dir: str) -> Projection:
    replayed = Projection(netns_dir)
    for rec in eventlog.read(state_dir):
        replayed.apply(rec.seq, rec.payload)
    return replayed


def test_mixed_commands_replay_equals_live(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="always")
    pool = 40
    seen_bad: list[str] = []

    def worker(i: int) -> None:
        rng = random.Random(i)
        for _ in range(120):
            sid = f"sb{rng.randrange(pool):03d}"
            op = rng.random()
            try:
                if op < 0.35:
                    name = f"name{int(sid[2:]) % (pool // 2)}"
                    store.add(make_sandbox(sid, name, state=rng.choice(list(State))))
                elif op < 0.55:
                    store.delete(sid)
                elif op < 0.85:
                    state = rng.choice(list(State))
                    store.update_status(
                        sid, lambda old, s=state: attrs.evolve(old, state=s, pid=old.pid + 1)
                    )
                elif op < 0.95:
                    store.remove_netns(sid)
                else:
                    store.snapshot()
            except DOCUMENTED:
                pass
            sb = store.get(sid)
            if sb is not None and sb.id != sid:
                seen_bad.append(sid)

    errors = _run_threads(12, worker)
    assert not errors, errors[:3]
    assert not seen_bad
    live = store.projection()
    stats = store.log_stats()
    assert stats is not None and live.last_seq == store.last_seq == stats.records
    assert _replayed(state_dir, store.netns_dir) == live
    netns_dir = store.netns_dir
    store.close()
    with Store.open(state_dir, netns_dir=netns_dir, durability="none") as again:
        assert again.projection() == live


def test_sixteen_adders_share_fsyncs(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="always")
    stats = store.log_stats()
    assert stats is not None
    before_syncs, before_appends = stats.syncs, stats.records
    per_thread = 40

    def adder(i: int) -> None:
        for n in range(per_thread):
            store.add(make_sandbox(f"t{i:02d}-{n:03d}"))

    assert not _run_threads(16, adder)
    stats = store.log_stats()
    assert stats is not None
    commands = 16 * per_thread
    assert stats.records - before_appends == commands
    assert len(store) == commands
    assert stats.syncs - before_syncs < commands, (stats.syncs - before_syncs, commands)
    assert _replayed(state_dir, store.netns_dir) == store.projection()


def test_same_name_race_exactly_one_wins(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="always")
    for rnd in range(15):
        won: list[str] = []
        lost: list[BaseException] = []
        seq_before = store.last_seq

        def racer(i: int, rnd: int = rnd, won: list[str] = won, lost: list[Any] = lost) -> None:
            try:
                store.add(make_sandbox(f"r{rnd:02d}-{i:02d}", f"same-{rnd}"))
                won.append(f"r{rnd:02d}-{i:02d}")
            except AlreadyExistsError as exc:
                lost.append(exc)

        assert not _run_threads(16, racer)
        assert len(won) == 1 and len(lost) == 15
        assert store.last_seq == seq_before + 1  # the losers wrote nothing
        assert [sb.id for sb in store.list() if sb.name == f"same-{rnd}"] == won
    assert _replayed(state_dir, store.netns_dir) == store.projection()


class _GatedLog(MemoryLog):
    """A MemoryLog whose appends wait for ``gate``: an fsync that takes forever."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def append_batch(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        self.entered.set()
        assert self.gate.wait(10)
        return super().append_batch(payloads)


def test_readers_never_see_a_pending_event(make_sandbox: MakeSandbox) -> None:
    log_ = _GatedLog()
    store = Store.from_log(log_)
    log_.gate.set()
    store.add(make_sandbox("first"))
    log_.gate.clear()
    log_.entered.clear()
    a = threading.Thread(target=store.add, args=(make_sandbox("a", "na"),))
    b = threading.Thread(target=store.add, args=(make_sandbox("b", "nb"),))
    c = threading.Thread(target=store.add, args=(make_sandbox("c", "nc"),))
    try:
        a.start()
        assert log_.entered.wait(10)
        # In flight, not durable: no reader sees it ...
        assert store.get("a") is None and "a" not in store
        assert len(store) == 1 and [sb.id for sb in store.list()] == ["first"]
        assert list(store) == ["first"] and store.last_seq == 1
        # ... also while b, the first command to overlap another, waits (holding the
        # command lock) for a to be durable before it builds the command view.
        b.start()
        # Wait (bounded) until b holds the command lock, i.e. it is the waiter.
        deadline = time.monotonic() + 10
        while not store._cmd.locked() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert store._cmd.locked(), "b never took the command lock"
        assert store.get("b") is None and store.get("a") is None and store.last_seq == 1
        log_.gate.set()
        a.join(10)
        b.join(10)
        assert store.get("a") is not None and store.get("b") is not None
        # With the view built: c in flight is checked against, never read.
        log_.gate.clear()
        log_.entered.clear()
        c.start()
        assert log_.entered.wait(10)
        assert store.get("c") is None and store.last_seq == 3
        with pytest.raises(AlreadyExistsError):
            store.add(make_sandbox("c2", "nc"))
        with pytest.raises(AlreadyExistsError):
            store.add(make_sandbox("c", "nc2"))
        assert store.get("c") is None and store.last_seq == 3
    finally:
        log_.gate.set()
        for t in (a, b, c):
            if t.ident is not None:
                t.join(10)
    assert store.get("c") is not None and store.last_seq == 4
    assert [r.seq for r in log_.records()] == [1, 2, 3, 4]
    replayed = Projection(store.netns_dir)
    for seq, payload in log_.history():
        replayed.apply(seq, payload)
    assert replayed == store.projection()


def test_first_add_with_open_gate(make_sandbox: MakeSandbox) -> None:
    log_ = _GatedLog()
    log_.gate.set()
    store = Store.from_log(log_)
    store.add(make_sandbox("a"))
    store.update_status("a", lambda old: attrs.evolve(old, state=State.NOTREADY))
    store.delete("a")
    assert len(store) == 0 and store.last_seq == 3


def test_failed_fsync_fails_the_command_and_writes_nothing_visible(
    state_dir: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = open_store(state_dir, durability="always")
    store.add(make_sandbox("ok"))

    def broken_sync(fd: int) -> None:
        raise OSError(5, "simulated EIO")

    monkeypatch.setattr(os, "fdatasync", broken_sync)
    with pytest.raises(LogPoisonedError):
        store.add(make_sandbox("lost"))
    monkeypatch.undo()
    assert store.get("lost") is None and [sb.id for sb in store.list()] == ["ok"]
    # The log stays poisoned; the store's command view was rebuilt without "lost".
    with pytest.raises(LogPoisonedError):
        store.add(make_sandbox("lost"))
    with pytest.raises(StoreError):
        store.snapshot()


_CHILD = r"""
import sys, threading
sys.path[:0] = {paths!r}
import support
from sandbox import Store
store = Store.open(sys.argv[1], netns_dir=sys.argv[2], durability="always")
out = sys.stdout

def adder(i):
    n = 0
    while True:
        store.add(support.sandbox(f"t{{i:02d}}-{{n:06d}}"))
        n += 1

def reader():
    seen = set()
    while True:
        ids = [sb.id for sb in store.list()]
        if store.get(ids[-1] if ids else "x") is None and ids:
            raise SystemExit("get disagrees with list")
        new = [i for i in ids if i not in seen]
        seen.update(new)
        if new:
            out.write("".join(i + "\n" for i in new))
            out.flush()

for i in range(16):
    threading.Thread(target=adder, args=(i,), daemon=True).start()
reader()
"""


def test_sigkill_loses_nothing_a_reader_saw(state_dir: Path, unused_netns_dir: Path) -> None:
    tests_dir = str(Path(__file__).resolve().parent.parent)
    code = _CHILD.format(paths=[tests_dir, *sys.path])
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(state_dir), str(unused_netns_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.endswith("\n"):
                seen.append(line[:-1])
            if len(seen) >= 1500 or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    seen += [line for line in rest.split("\n")[:-1]]  # whole lines only
    assert proc.returncode == -signal.SIGKILL
    assert len(seen) >= 100
    with Store.open(state_dir, netns_dir=unused_netns_dir, durability="none") as again:
        missing = [i for i in seen if i not in again]
        assert not missing, missing[:5]
        assert _replayed(state_dir, again.netns_dir) == again.projection()
