"""Benchmarks of the sandbox Store against raw references measured in the same run.

Run: ``sandboxctl bench --only store,eventsourcing`` (``python -m
replay.bench.commands`` takes the same options).

===========================================  =========================================  =========
figure                                       reference                                  target
===========================================  =========================================  =========
durable add (Store.add, durability always)   bare os.write + fdatasync loop, same size  >= 0.5
durable add, 16 threads (store-level group   durable add, 1 thread                      >= 2
commit: one fsync per group of commands)
the same with fdatasync delayed 2 ms         durable add, 1 thread, same delay          >= 8
(strace fault injection, a child process)
replay N events into the projection          bare msgpack.Unpacker over the same        >= 0.3
(eventlog.read: crc + chain + typed decode,  payloads
then apply)
replay, apply only (projection fold of the   bare msgpack.Unpacker                      (info)
typed events the read decoded)
our append, 1 event per durable append       eventsourcing + SQLite file (WAL), 1       (info)
                                             event per save
our replay (read + apply), events/s          eventsourcing rebuild of the same          >= 10
                                             aggregate history (repository.get)
===========================================  =========================================  =========

Store.open with and without a snapshot is ``replay.bench.openscale``'s
(three sizes, one history each).

The workload is a node's life: sandboxes are added READY (with a realistic
CRI config), get several StatusUpdated events (pid changes, stop), and are
deleted, with about ``live`` sandboxes alive at any time - so a snapshot
holds a node's worth of sandboxes while the log grows without bound. Events
are built by ``sandbox.events``, i.e. exactly what the Store writes.

The add target (0.5 of a bare write+fdatasync loop) is this module's own
choice: an add is one validated event, one msgpack encode, one record with
checksum and chain digest, one fdatasync, one projection apply.

Absolute figures depend on the machine (a VM's write-back cache makes
fdatasync cheap); compare ratios. Each ``bench_*`` function returns
``replay.bench.rows.Row`` objects (one repetition), like ``replay.bench.log``.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack

import eventlog
from eventlog import EventLog
from sandbox import events as ev
from sandbox import snapshot
from sandbox.config import (
    DNSConfig,
    LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext,
    NamespaceOption,
    PodSandboxConfig,
    PodSandboxMetadata,
    PortMapping,
)
from sandbox.event_fastdecode import decode_payload
from sandbox.metadata import Metadata
from sandbox.projection import Projection
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status
from sandbox.store import Store

from . import measure
from .measure import scratch
from .rows import Row, skipped_rows

_row = functools.partial(Row.measured, unit="events/s")

__all__ = [
    "bench_durable_add",
    "bench_threaded_add",
    "bench_threaded_add_slow_disk",
    "bench_eventsourcing",
    "bench_replay",
    "workload",
    "write_workload",
]


# -- the workload --------------------------------------------------------------


def _metadata(i: int) -> Metadata:
    uid = f"{i:08x}-7c1e-4b5a-9d2f-{i:012x}"
    name = f"web-{i % 997}-{i:x}"
    config = PodSandboxConfig(
        metadata=PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname=name,
        log_directory=f"/var/log/pods/default_{name}_{uid}",
        dns_config=DNSConfig(
            servers=("10.96.0.10",),
            searches=("default.svc.cluster.local", "svc.cluster.local", "cluster.local"),
            options=("ndots:5",),
        ),
        port_mappings=(PortMapping(container_port=8080, host_port=0),),
        labels={"app": "web", "io.kubernetes.pod.name": name},
        annotations={"kubernetes.io/config.seen": "2024-01-01T00:00:00Z"},
        linux=LinuxPodSandboxConfig(
            cgroup_parent=f"/kubepods/besteffort/pod{uid}",
            security_context=LinuxSandboxSecurityContext(
                namespace_options=NamespaceOption(host_network=False)
            ),
        ),
    )
    return Metadata(f"{i:064x}", f"{name}_default_{uid}_0", config)


def workload(count: int, *, live: int = 5000, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` store events: adds, ~8 status updates per sandbox, deletes."""
    rng = random.Random(seed)
    env = ev.Envelope("bench")
    alive: list[int] = []
    next_id = 0
    meta_cache: dict[int, Metadata] = {}
    made = 0
    base = 1_700_000_000_000_000_000
    while made < count:
        r = rng.random()
        if not alive or (len(alive) < live and r < 0.1):
            i = next_id
            next_id += 1
            md = meta_cache.get(i % 1024)
            md = Metadata(f"{i:064x}", f"sb-{i}", (md or _metadata(i % 1024)).config)
            meta_cache.setdefault(i % 1024, md)
            alive.append(i)
            yield ev.sandbox_added(env(), md, Status(State.READY, pid=1000 + i, created_at=base))
        elif r < 0.9 or len(alive) < live // 2:
            i = alive[rng.randrange(len(alive))]
            status = Status(State.READY, pid=1000 + made % 50000, created_at=base)
            yield ev.status_updated(env(), f"{i:064x}", status)
        else:
            i = alive.pop(rng.randrange(len(alive)))
            yield ev.sandbox_deleted(env(), f"{i:064x}")
        made += 1


def write_workload(directory: str, count: int, *, chunk: int = 1000) -> list[bytes]:
    """Write ``count`` workload events to a log in ``directory``; their packed payloads."""
    packed: list[bytes] = []
    batch: list[dict[str, Any]] = []
    packb = msgpack.packb
    with EventLog.open(directory, durability="none") as log:
        for event in workload(count):
            batch.append(event)
            packed.append(packb(event, use_bin_type=True))
            if len(batch) >= chunk:
                log.append_batch(batch)
                batch = []
        if batch:
            log.append_batch(batch)
    return packed


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_unpacker_rate(directory: str, packed: list[bytes]) -> float:
    """events/s of a bare streaming msgpack.Unpacker over a file of the payloads."""
    path = os.path.join(directory, "payloads.msgpack")
    with open(path, "wb") as f:
        f.write(b"".join(packed))

    def loop() -> None:
        n = measure.count_unpacked(path)
        assert n == len(packed)

    rate = len(packed) / _timed(loop)
    os.unlink(path)
    return rate


# -- durable add -----------------------------------------------------------------


def bench_durable_add(parent: str | None = None, count: int = 2000) -> list[Row]:
    """Store.add with durability "always" vs a bare write+fdatasync loop, same record size."""
    with scratch(parent, "store-bench-") as d:
        sandboxes = [
            Sandbox(_metadata(i), Status(State.READY, pid=i, created_at=1)) for i in range(count)
        ]
        size = len(
            msgpack.packb(
                ev.sandbox_added(ev.Envelope()(), sandboxes[0].metadata, sandboxes[0].status),
                use_bin_type=True,
            )
        )
        record = b"x" * (size + 64)
        raw = count / measure.write_fdatasync_loop(
            os.path.join(d, "raw.bin"), record, count, _timed
        )
        with Store.open(
            os.path.join(d, "state"), netns_dir=os.path.join(d, "netns"), durability="always"
        ) as store:

            def add_loop() -> None:
                for sb in sandboxes:
                    store.add(sb)

            value = count / _timed(add_loop)
    extra = {"event_bytes": size}
    return [
        _row(
            "durable add",
            value,
            "raw os.write+fdatasync loop",
            raw,
            0.5,
            unit="adds/s",
            extra=extra,
        )
    ]


# -- concurrent adds (store-level group commit) ---------------------------------------

#: The slow-disk row's strace: 2 ms added to every fdatasync of the child (NOTES.md).
SLOW_DISK_DELAY_US = 2000


def add_rates(
    parent: str | None, single: int, per_thread: int, threads: int
) -> tuple[float, float]:
    """Adds/s of ``Store.add`` (durability "always") from 1 thread, then from
    ``threads`` threads at once, each on a fresh store in the same scratch dir."""
    with scratch(parent, "store-threads-") as d:
        netns = os.path.join(d, "netns")
        one = [
            Sandbox(_metadata(i), Status(State.READY, pid=i, created_at=1)) for i in range(single)
        ]
        with Store.open(os.path.join(d, "one"), netns_dir=netns, durability="always") as store:

            def add_loop() -> None:
                for sb in one:
                    store.add(sb)

            rate_one = single / _timed(add_loop)
        batches = [
            [
                Sandbox(_metadata(i), Status(State.READY, pid=i, created_at=1))
                for i in range(t * per_thread, (t + 1) * per_thread)
            ]
            for t in range(threads)
        ]
        with Store.open(os.path.join(d, "many"), netns_dir=netns, durability="always") as store:
            barrier = threading.Barrier(threads + 1)

            def worker(batch: list[Sandbox]) -> None:
                barrier.wait()
                for sb in batch:
                    store.add(sb)

            pool = [threading.Thread(target=worker, args=(b,)) for b in batches]
            for t in pool:
                t.start()
            gc.collect()
            barrier.wait()
            began = time.perf_counter()
            for t in pool:
                t.join()
            rate_many = threads * per_thread / (time.perf_counter() - began)
    return rate_one, rate_many


def _threads_row(name: str, one: float, many: float, threads: int, target: float) -> Row:
    return _row(
        name, many, "durable add, 1 thread", one, target, unit="adds/s", extra={"threads": threads}
    )


def bench_threaded_add(
    parent: str | None = None, count: int = 2000, threads: int = 16
) -> list[Row]:
    """``threads`` threads calling Store.add vs 1 thread, on the real disk (target >= 2)."""
    one, many = add_rates(parent, count, max(1, count // threads), threads)
    return [_threads_row(f"durable add, {threads} threads", one, many, threads, 2.0)]


def bench_threaded_add_slow_disk(
    parent: str | None = None, count: int = 2000, threads: int = 16
) -> list[Row]:
    """The same, in a child process whose every fdatasync strace delays by 2 ms
    (target >= 8); a skipped row if strace is missing or cannot trace here."""
    name = f"durable add, {threads} threads, fdatasync +2 ms"
    strace = shutil.which("strace")
    if strace is None:
        return skipped_rows([name], "store", "strace missing (apt-get install strace)")
    single, per_thread = max(20, count // 8), max(1, count // threads)
    code = (
        "import json, sys\n"
        f"sys.path[:0] = {sys.path!r}\n"
        "from replay.bench.store import add_rates\n"
        f"print(json.dumps(add_rates({parent!r}, {single}, {per_thread}, {threads})))\n"
    )
    inject = f"fdatasync:delay_exit={SLOW_DISK_DELAY_US}"
    argv = [strace, "-f", "--seccomp-bpf", "-o", os.devnull, "-e", "trace=fdatasync"]
    argv += ["-e", f"inject={inject}", sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return skipped_rows([name], "store", f"strace run failed: {why}")
    one, many = json.loads(done.stdout.strip().splitlines()[-1])
    return [_threads_row(name, one, many, threads, 8.0)]


# -- replay ------------------------------------------------------------------------


def _replay(logdir: str) -> Projection:
    """Replay with the read path's typed decoder: every record checked, each payload
    decoded straight into its typed event (sandbox/event_fastdecode.py), then folded."""
    proj = Projection()
    snapshot.replay(eventlog.read(logdir, decode=decode_payload), proj)
    return proj


def bench_replay(
    parent: str | None = None, count: int = 1_000_000, logdir: str | None = None
) -> list[Row]:
    """Replay of a ``count``-event log (read + check + apply) vs a bare Unpacker."""
    with scratch(parent, "store-bench-") as d:
        if logdir is None:
            logdir = os.path.join(d, "log")
            packed = write_workload(logdir, count)
        else:
            packed = [msgpack.packb(r.payload, use_bin_type=True) for r in eventlog.read(logdir)]
        raw = raw_unpacker_rate(d, packed)
        full = count / _timed(lambda: _replay(logdir))
        # The fold alone, of what the read hands it (typed events).
        payloads = [r.payload for r in eventlog.read(logdir, decode=decode_payload)]

        def apply_only() -> None:
            proj = Projection()
            was = gc.isenabled()
            gc.disable()
            try:
                apply = proj.apply
                for seq, payload in enumerate(payloads, 1):
                    apply(seq, payload)
            finally:
                if was:
                    gc.enable()

        fold = count / _timed(apply_only)
    return [
        _row(f"replay {count:,} events (read+apply)", full, "raw msgpack.Unpacker", raw, 0.3),
        _row(
            f"replay {count:,} events (apply only)",
            fold,
            "raw msgpack.Unpacker",
            raw,
            None,
            note="fold of the typed events the read decoded",
        ),
    ]


# -- eventsourcing (the peer) ------------------------------------------------------


try:  # the optional extra: pip install .[bench]
    from eventsourcing.domain import Aggregate, event
except ImportError:  # pragma: no cover - bench_eventsourcing then reports the skip
    SandboxStoreAggregate: Any = None
else:

    class SandboxStoreAggregate(Aggregate):  # type: ignore[no-redef]
        """The store as one eventsourcing aggregate (events: Added / StatusUpdated /
        Deleted). Defined once, at module level: eventsourcing resolves a class by
        its topic (module and qualified name), so a module-level class is found
        again after its topic cache is cleared, and it is never defined twice."""

        def __init__(self) -> None:
            self.sandboxes: dict[str, Any] = {}

        @event("Added")
        def add(self, sandbox_id: str, metadata: dict[str, Any], status: dict[str, Any]) -> None:
            self.sandboxes[sandbox_id] = (metadata, status)

        @event("StatusUpdated")
        def update_status(self, sandbox_id: str, status: dict[str, Any]) -> None:
            if sandbox_id in self.sandboxes:
                self.sandboxes[sandbox_id] = (self.sandboxes[sandbox_id][0], status)

        @event("Deleted")
        def delete(self, sandbox_id: str) -> None:
            self.sandboxes.pop(sandbox_id, None)


def bench_eventsourcing(
    parent: str | None = None, count: int = 10_000, ours_replay: float | None = None
) -> list[Row]:
    """Append and rebuild the same workload with eventsourcing on an SQLite file (WAL).

    eventsourcing models the store as one aggregate whose events are the
    store's (Added / StatusUpdated / Deleted, same fields); each command is one
    ``app.save`` (one durable transaction), as each of ours is one durable
    append; the rebuild is ``repository.get`` of that aggregate. Our replay
    figure is measured on the same ``count`` events unless ``ours_replay`` is
    given (e.g. from the 1M-event run).
    """
    from eventsourcing.application import Application

    aggregate_class = SandboxStoreAggregate
    events = list(workload(count))
    with scratch(parent, "store-bench-") as d:
        app: Application[Any] = Application(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": os.path.join(d, "es.sqlite"),
            }
        )
        agg = aggregate_class()
        app.save(agg)

        def es_append() -> None:
            for e in events:
                kind = e["type"]
                if kind == ev.SANDBOX_ADDED:
                    agg.add(e["id"], e["metadata"], e["status"])
                elif kind == ev.STATUS_UPDATED:
                    agg.update_status(e["id"], e["status"])
                else:
                    agg.delete(e["id"])
                app.save(agg)

        es_append_rate = count / _timed(es_append)
        rebuilt: list[Any] = []
        es_rebuild_rate = count / _timed(lambda: rebuilt.append(app.repository.get(agg.id)))
        assert len(rebuilt[0].sandboxes) == len(agg.sandboxes)
        app.close()

        logdir = os.path.join(d, "log")
        with EventLog.open(logdir, durability="always") as log:

            def our_append() -> None:
                for e in events:
                    log.append(e)

            our_append_rate = count / _timed(our_append)
        if ours_replay is None:
            ours_replay = count / _timed(lambda: _replay(logdir))
    return [
        _row(
            "append, 1 event per durable write",
            our_append_rate,
            "eventsourcing SQLite file, 1 event/save",
            es_append_rate,
            None,
        ),
        _row(
            "replay (read + apply)",
            ours_replay,
            f"eventsourcing rebuild, same {count:,} events",
            es_rebuild_rate,
            10.0,
        ),
    ]
