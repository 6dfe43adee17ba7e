"""The shipper publishes a record only once it is durable (``replay.fleet.durable``).

The logs here are written with durability "none": the writer never syncs,
so the log proves nothing and only the shipper's own fdatasync can make a
record durable. Two ways to see that it does, before every publish:

* hooks on ``os.fdatasync`` and on the client's publish calls record, in
  order, what was synced (segment, size before the sync) and what was
  published: every published record lies inside a sync of its segment that
  happened before the publish;
* a power loss, modelled as every segment cut back to what had been
  synced (the unsynced writes in the page cache are lost), takes back
  nothing the stream holds: the node recovers, writes new records under the
  seqs it lost, ships again, and the stream still matches its log. The same
  run with the shipper's sync switched off ends diverged (exit 11) - the
  check the test relies on does catch an unsynced publish.

The gate itself (what the log proves, one sync per segment) is also checked
without NATS.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from fleet_support import payload, stream_last_seq, wait_for, write_log
from nats.js.client import JetStreamContext

import eventlog
from eventlog import EventLog
from eventlog.format import LAYOUTS, RECORD_TRAILER_SIZE, SEGMENT_HEADER_SIZE, segment_name
from replay.fleet.durable import DurabilityGate, SegmentFiles
from replay.fleet.errors import DivergedError
from replay.fleet.message import decode
from replay.fleet.natsserver import LocalNatsServer
from replay.fleet.ship import ShipConfig, Shipper, ShipStats, ship_async
from replay.fleet.source import fleet_records
from replay.fleet.verify import fleet_verify

STREAM = "SANDBOXLOG"


class DiskAndWire:
    """What was fdatasynced in a log directory and what was published, in one ordered list.

    A sync is recorded when it has returned, with the file's size taken
    before it started (what it surely covered); a publish when it is called.
    """

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.directory = os.path.realpath(directory)
        self.events: list[tuple[str, str, int]] = []
        real_sync = os.fdatasync

        def fdatasync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            size = os.fstat(fd).st_size
            real_sync(fd)
            if os.path.dirname(path) == self.directory:
                self.events.append(("sync", os.path.basename(path), size))

        real_publish = JetStreamContext.publish
        real_publish_async = JetStreamContext.publish_async

        async def publish(
            js: JetStreamContext, subject: str, body: bytes, *a: Any, **kw: Any
        ) -> Any:
            self.events.append(("publish", subject, decode(body).seq))
            return await real_publish(js, subject, body, *a, **kw)

        async def publish_async(
            js: JetStreamContext, subject: str, body: bytes, *a: Any, **kw: Any
        ) -> Any:
            self.events.append(("publish", subject, decode(body).seq))
            return await real_publish_async(js, subject, body, *a, **kw)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(JetStreamContext, "publish", publish)
        monkeypatch.setattr(JetStreamContext, "publish_async", publish_async)

    def synced_sizes(self) -> dict[str, int]:
        """Per segment name, the most that a sync surely covered."""
        sizes: dict[str, int] = {}
        for kind, name, size in self.events:
            if kind == "sync":
                sizes[name] = max(sizes.get(name, 0), size)
        return sizes

    def published(self) -> list[int]:
        return [seq for kind, _subject, seq in self.events if kind == "publish"]

    def assert_synced_before_published(self, log_dir: Path) -> None:
        """Every publish comes after a sync of its record's segment that covered the record."""
        where = {}
        for raw in eventlog.read(log_dir, raw=True):
            assert isinstance(raw, eventlog.RawRecord)
            size = LAYOUTS[raw.version].header_size + len(raw.payload_bytes) + RECORD_TRAILER_SIZE
            where[raw.seq] = (raw.segment, raw.offset + size)
        synced: dict[str, int] = {}
        for kind, name, n in self.events:
            if kind == "sync":
                synced[name] = max(synced.get(name, 0), n)
                continue
            segment, end = where[n]
            assert synced.get(segment, 0) >= end, (
                f"seq {n} was published before a sync of {segment} covered it "
                f"(bytes up to {end}, synced {synced.get(segment, 0)})"
            )


class LiveShipper:
    """A tailing shipper in this process (so the hooks see it), on its own thread and loop."""

    def __init__(self, cfg: ShipConfig) -> None:
        self.shipper = Shipper(cfg)
        self.loop = asyncio.new_event_loop()
        self.result: ShipStats | BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="live-shipper", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.loop.run_until_complete(self.shipper.run())
        except BaseException as exc:
            self.result = exc

    def stop(self) -> ShipStats:
        """Stop it the way SIGTERM does; its summary."""
        self.loop.call_soon_threadsafe(self.shipper.request_stop)
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the shipper did not stop"
        self.loop.close()
        if isinstance(self.result, BaseException):
            raise self.result
        assert self.result is not None
        return self.result


def _config(state_dir: Path, url: str, **kw: Any) -> ShipConfig:
    return ShipConfig(state_dir=state_dir, nats_url=url, node="n", poll_interval=0.2, **kw)


def _ship_once(state_dir: Path, url: str, **kw: Any) -> ShipStats:
    return asyncio.run(ship_async(_config(state_dir, url, once=True, **kw), handle_signals=False))


def _append(log: EventLog, start: int, count: int, salt: str) -> None:
    """``count`` events from ``start`` (a multiple of 4), every fifth step a batch of 4."""
    i = start
    while i < start + count:
        if (i // 4) % 5 == 0 and i % 4 == 0 and start + count - i >= 4:
            log.append_batch([payload(i + k, "n", salt) for k in range(4)])
            i += 4
        else:
            log.append(payload(i, "n", salt))
            i += 1


def test_no_record_is_published_before_a_sync_covers_it(
    nats_server: LocalNatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = nats_server.url
    d = tmp_path / "n"
    write_log(d, 100, batch_every=9)
    assert {r.durable_seq for r in eventlog.read(d, raw=True)} == {0}  # type: ignore[attr-defined]
    hooks = DiskAndWire(d, monkeypatch)

    # Catch-up: one sync per group of records read (the window), never one per record.
    stats = _ship_once(d, url, window=16)
    assert (stats.acked, stats.syncs) == (100, math.ceil(100 / 16))

    # Live tail: a writer (durability "none") appends while the shipper follows.
    live = LiveShipper(_config(d, url, window=16))
    try:
        with EventLog.open(d, durability="none", segment_bytes=8192) as log:
            for burst in range(6):
                _append(log, 100 + burst * 20, 20, "live")
                want = log.last_seq
                wait_for(lambda want=want: stream_last_seq(url, STREAM, "n") == want, 30, "tail")
    finally:
        tail_stats = live.stop()
    assert len(list(Path(d).glob("*.log"))) > 1  # the tail crossed segments
    assert tail_stats.syncs >= 1

    assert hooks.published() == list(range(1, 221))
    hooks.assert_synced_before_published(d)


def test_records_the_log_proves_durable_need_no_sync(
    nats_server: LocalNatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With durability "always" each record proves the one before: one sync, for the newest."""
    d = tmp_path / "n"
    with EventLog.open(d, durability="always") as log:
        for i in range(60):
            log.append(payload(i))
    hooks = DiskAndWire(d, monkeypatch)
    stats = _ship_once(d, nats_server.url, window=16)
    assert (stats.acked, stats.syncs) == (60, 1)
    syncs = [i for i, e in enumerate(hooks.events) if e[0] == "sync"]
    last_publish = max(i for i, e in enumerate(hooks.events) if e[0] == "publish")
    assert len(syncs) == 1 and syncs[0] < last_publish  # seq 60 waited for it


def _power_loss(directory: Path, synced: dict[str, int]) -> None:
    """Keep of each segment only what a sync made durable.

    The first segment's header is written durably when the log is created;
    a later segment that nobody synced loses its directory entry too.
    """
    for seg in sorted(directory.glob("*.log")):
        keep = synced.get(seg.name)
        if keep is None and seg.name == segment_name(1):
            keep = SEGMENT_HEADER_SIZE
        if keep is None:
            seg.unlink()
        else:
            os.truncate(seg, keep)


@pytest.mark.parametrize("shipper_syncs", [True, False], ids=["synced", "control-no-sync"])
def test_a_power_loss_takes_back_nothing_the_stream_holds(
    nats_server: LocalNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shipper_syncs: bool,
) -> None:
    url = nats_server.url
    d = tmp_path / "n"
    hooks = DiskAndWire(d, monkeypatch)
    if not shipper_syncs:
        # The control: a shipper that trusts its reads without syncing them.
        monkeypatch.setattr(SegmentFiles, "sync", lambda self, name: None)

    with EventLog.open(d, durability="none", segment_bytes=8192) as log:
        live = LiveShipper(_config(d, url))
        try:
            _append(log, 0, 120, "before")
            wait_for(lambda: stream_last_seq(url, STREAM, "n") == 120, 30, "shipping")
        finally:
            live.stop()
        _append(log, 120, 40, "unshipped")  # written, never shipped, never synced
    _power_loss(d, hooks.synced_sizes())

    with EventLog.open(d, durability="always") as log:  # recovery cuts the torn tail
        survived = log.last_seq
        _append(log, 1000, 32, "after")  # new records under the seqs the node lost
        last = log.last_seq
    if not shipper_syncs:
        assert survived < 120
        with pytest.raises(DivergedError):
            _ship_once(d, url)
        return
    assert survived == 120  # everything shipped survived; the unshipped 40 were lost
    stats = _ship_once(d, url)
    assert (stats.resumed_from, stats.last_acked_seq) == (120, last)
    local = list(eventlog.read(d))
    shipped = list(fleet_records(url, STREAM, "n"))
    assert [(r.seq, r.digest) for r in shipped] == [(r.seq, r.digest) for r in local]
    (report,) = fleet_verify(url, node="n")
    assert report.ok, report.problems


def test_the_gate_holds_what_is_unproven_and_plans_one_sync_per_segment(tmp_path: Path) -> None:
    """No NATS: the log's proof releases records; the rest wait for a sync of their segments."""
    d = tmp_path / "n"
    with EventLog.open(d, durability="always", segment_bytes=2048, key=b"k") as log:
        for i in range(40):
            log.append(payload(i))
    with EventLog.open(d, durability="none", segment_bytes=2048, key=b"k") as log:
        _append(log, 40, 20, "none")  # nothing new is proven
    raws = [r for r in eventlog.read(d, key=b"k", raw=True) if isinstance(r, eventlog.RawRecord)]
    assert len(raws) == 60
    files = SegmentFiles(d)
    try:
        gate = DurabilityGate(files)
        for r in raws:
            gate.add(r)
        # Each "always" record proves the one before; the "none" writer's records
        # carry only what the log proved before it (seq 40's fsync is in no record).
        assert gate.proven == 39
        assert [r.seq for r in gate.take()] == list(range(1, 40))
        plan = gate.sync_plan()
        assert plan is not None
        names, last = plan
        assert last == 60
        assert names == sorted({r.segment for r in raws[39:]}) and len(names) > 1
        files.sync_all(names)
        assert files.syncs == len(names)
        gate.mark_synced(last)
        assert [r.seq for r in gate.take()] == list(range(40, 61))
        assert gate.held == 0 and gate.sync_plan() is None
        assert files.keyed(raws[0].segment)
    finally:
        files.close()
