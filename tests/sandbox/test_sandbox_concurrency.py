"""Many threads on one store: no undocumented exception, and replay equals live."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import attrs
import pytest
from support import DOCUMENTED, MakeSandbox, OpenStore

import eventlog
from sandbox import (
    Projection,
    State,
    Store,
)


def hammer(
    store: Store, make_sandbox: MakeSandbox, *, threads: int, per_thread: int, pool: int
) -> tuple[list[BaseException], dict[str, int]]:
    """Run ``threads`` x ``per_thread`` random commands (and reads) on ``store``."""
    errors: list[BaseException] = []
    counts: dict[str, int] = {}
    lock = threading.Lock()
    n_readers = 2
    start = threading.Barrier(threads + n_readers + 1)
    stop_readers = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        local: dict[str, int] = {}
        start.wait()
        for _ in range(per_thread):
            sid = f"{rng.randrange(pool):04d}"
            op = rng.random()
            try:
                if op < 0.35:
                    # Names collide across ids on purpose (pool // 2 names).
                    store.add(
                        make_sandbox(
                            f"sb{sid}",
                            f"name{int(sid) % (pool // 2)}",
                            state=rng.choice(list(State)),
                        )
                    )
                    kind = "add"
                elif op < 0.55:
                    store.delete(f"sb{sid}")
                    kind = "delete"
                elif op < 0.85:
                    state = rng.choice(list(State))
                    store.update_status(
                        f"sb{sid}",
                        lambda old, state=state: attrs.evolve(old, state=state, pid=old.pid + 1),
                    )
                    kind = "status"
                elif op < 0.9:
                    store.remove_netns(f"sb{sid}")
                    kind = "remove_netns"
                else:
                    sb = store.get(f"sb{sid}")
                    assert sb is None or sb.id == f"sb{sid}"
                    kind = "get"
            except DOCUMENTED as exc:
                kind = type(exc).__name__
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            local[kind] = local.get(kind, 0) + 1
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    def reader() -> None:
        start.wait()
        while not stop_readers.is_set():
            try:
                listed = store.list()
                ids = [sb.id for sb in listed]
                names = [sb.name for sb in listed]
                assert len(set(ids)) == len(ids), "duplicate id in list()"
                assert len(set(names)) == len(names), "duplicate name in list()"
                for sb in listed[:20]:
                    assert sb.metadata.id == sb.id
                    assert isinstance(sb.status.state, State)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    readers = [threading.Thread(target=reader) for _ in range(n_readers)]
    for t in workers + readers:
        t.start()
    start.wait()
    for t in workers:
        t.join()
    stop_readers.set()
    for t in readers:
        t.join()
    return errors, counts


@pytest.mark.parametrize(
    ("durability", "threads", "per_thread"),
    [("none", 8, 2000), ("batch", 8, 2000), ("always", 4, 150)],
)
def test_threads_then_reopen(
    state_dir: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
    durability: str,
    threads: int,
    per_thread: int,
) -> None:
    store = open_store(state_dir, durability=durability)
    errors, counts = hammer(store, make_sandbox, threads=threads, per_thread=per_thread, pool=200)
    assert not errors, errors[:3]
    assert sum(counts.values()) == threads * per_thread
    assert counts.get("add", 0) > 0 and counts.get("delete", 0) > 0
    assert counts.get("status", 0) > 0
    live = store.projection()
    assert live.last_seq == store.last_seq
    # The log replayed from scratch gives the live state ...
    replayed = Projection(live.netns_dir)
    for rec in eventlog.read(state_dir):
        replayed.apply(rec.seq, rec.payload)
    assert replayed == live
    netns_dir = store.netns_dir
    store.close()
    # ... and so does a reopen.
    with Store.open(state_dir, netns_dir=netns_dir, durability="none") as again:
        assert again.projection() == live
        assert [s.id for s in again.list()] == [s.id for s in live.sandboxes()]


def test_concurrent_snapshots_and_commands(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    stop = threading.Event()
    errors: list[BaseException] = []

    def snapshotter() -> None:
        while not stop.is_set():
            try:
                store.snapshot()
            except BaseException as exc:
                errors.append(exc)
                return

    t = threading.Thread(target=snapshotter)
    t.start()
    try:
        hammer_errors, _ = hammer(store, make_sandbox, threads=4, per_thread=300, pool=50)
    finally:
        stop.set()
        t.join()
    assert not hammer_errors and not errors
    store.snapshot()
    live = store.projection()
    netns_dir = store.netns_dir
    store.close()
    with Store.open(state_dir, netns_dir=netns_dir, durability="none") as again:
        assert again.load_result is not None and again.load_result.snapshot is not None
        assert again.projection() == live
