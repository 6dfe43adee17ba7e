"""The feeder: a node's log read, made durable and handed to the shipper's event loop.

Why it is shaped like this:

* **The scanner is the only parser of record bytes.** Records come from
  ``eventlog.read(..., raw=True)`` and ``eventlog.follow(..., raw=True)``:
  each ``eventlog.RawRecord`` carries, checked by the scanner (crcs, chain,
  whole batches), the exact payload bytes, ``batch_left``, ``durable_seq``
  and format version that its digest covers. The shipped record is built
  from those fields; nothing here reads a record's bytes from a segment.
* **Durable before it is handed out.** Every record read waits in a
  ``DurabilityGate`` until the log proves it durable or the shipper's own
  fdatasync of its segment (after the read, before the hand-over) made it
  so - the rule is in ``replay.fleet.durable``. The next group is read and
  its sync started while the group before it is being published; the sync
  runs in a worker thread, so the loop keeps publishing and consuming acks
  meanwhile, and waits for a sync only when nothing durable is left.
* **Catch-up in the loop, the live tail in a thread.** What the log already
  holds is read with ``eventlog.read`` right in the event loop's thread, a
  group of up to ``window`` records at a time. Why not a thread: a CPU-busy
  reader thread and a publishing loop hand the GIL to each other on every
  record and every socket call, which measured at about half the
  throughput of the loop reading by itself. Then ``eventlog.follow`` blocks
  waiting for the writer, so it runs in a thread and hands records over
  through a queue bounded by ``window``: a stalled server stalls the reading
  instead of filling memory.
* **Whole batches.** The readers return a batch only once its last record
  is on disk; the tail thread also holds a batch until its ``batch_left ==
  0`` record before handing any of it over (bounded by ``MAX_HELD_BATCH``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import eventlog
from eventlog import RawRecord
from eventlog.errors import EventLogError
from eventlog.format import ZERO_DIGEST
from eventlog.segments import list_segments
from replay.fleet.config import ShipConfig
from replay.fleet.durable import DurabilityGate, SegmentFiles
from replay.fleet.message import ShippedRecord

__all__ = ["MAX_HELD_BATCH", "Feeder", "RecordShipper", "has_log", "shipped_from_log"]

#: Records of one batch held back at most before shipping anyway (a batch
#: larger than this is shipped as it is read; the reader already returns
#: whole batches only, so this is a second line of defence, bounded).
MAX_HELD_BATCH = 65536


def has_log(directory: Path) -> bool:
    """Whether ``directory`` holds a segment file yet."""
    try:
        return bool(list_segments(os.fspath(directory)))
    except EventLogError:
        return False


class RecordShipper:
    """Turns the reader's ``RawRecord``s into ``ShippedRecord``s, in seq order.

    It carries the chain along (each shipped record names the digest before
    it) and asks ``files`` whether the record's segment is keyed. A reader
    that skips or repeats a seq is an error, never shipped.
    """

    def __init__(self, node: str, files: SegmentFiles, from_seq: int, prev_digest: bytes) -> None:
        self.node = node
        self.files = files
        self.expected = from_seq
        self.prev = prev_digest

    def __call__(self, raw: RawRecord) -> ShippedRecord:
        if raw.seq != self.expected:
            raise EventLogError(f"log reader gave seq {raw.seq}, expected {self.expected}")
        rec = ShippedRecord(
            node=self.node,
            seq=raw.seq,
            time_ns=raw.time_ns,
            batch_left=raw.batch_left,
            payload_bytes=raw.payload_bytes,
            prev_digest=self.prev,
            digest=raw.digest,
            durable_seq=raw.durable_seq,
            version=raw.version,
            keyed=self.files.keyed(raw.segment),
        )
        self.expected = raw.seq + 1
        self.prev = raw.digest
        return rec


def shipped_from_log(
    directory: str | os.PathLike[str], node: str, *, key: bytes | None = None
) -> Iterator[ShippedRecord]:
    """A local log's records exactly as the shipper would publish them (tests, bench).

    No durability wait: this is what would travel, not when.
    """
    files = SegmentFiles(Path(directory))
    try:
        convert = RecordShipper(node, files, 1, ZERO_DIGEST)
        for raw in cast(Iterator[RawRecord], eventlog.read(directory, key=key, raw=True)):
            yield convert(raw)
    finally:
        files.close()


class Feeder:
    """Hands the shipper's loop the log's records, durable, from ``from_seq`` on.

    ``start()``, then ``await get(timeout)`` repeatedly, ``close()`` at the
    end of the session. See the module docstring for the why.
    """

    def __init__(
        self,
        cfg: ShipConfig,
        from_seq: int,
        prev_digest: bytes,
        loop: asyncio.AbstractEventLoop,
        maxsize: int,
    ) -> None:
        self.cfg = cfg
        self.loop = loop
        self.files = SegmentFiles(cfg.state_dir)
        self.gate = DurabilityGate(self.files)
        self._convert = RecordShipper(cfg.node, self.files, from_seq, prev_digest)
        self._group = maxsize
        self._ready: deque[ShippedRecord] = deque()
        #: Where reading stands (the live tail starts here).
        self.read_seq = from_seq
        self.read_digest = prev_digest
        self.q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=maxsize)
        self.stop = threading.Event()
        self.wake = asyncio.Event()
        self._waiting = False
        self._thread = threading.Thread(target=self._run, name="fleet-feeder", daemon=True)
        self._catchup: Iterator[RawRecord] | None = None
        #: The sync in flight (a worker thread) and the last seq it covers.
        self._sync_task: asyncio.Future[None] | None = None
        self._sync_last = 0
        #: Set when no record will come any more: ("end", None) or ("error", exc).
        self._end: tuple[str, BaseException | None] | None = None

    def start(self) -> None:
        """Start reading: catch-up first if there is a log, else wait for one in the thread."""
        if has_log(self.cfg.state_dir):
            self._catchup = cast(
                Iterator[RawRecord],
                iter(eventlog.read(self.cfg.state_dir, self.read_seq, key=self.cfg.key, raw=True)),
            )
        elif self.cfg.once:
            self._end = ("end", None)
        else:
            self._thread.start()

    def close(self) -> None:
        """Stop reading, wait (bounded) for the thread, close the segment descriptors."""
        self.stop.set()
        self._close_catchup()
        task, self._sync_task = self._sync_task, None
        if task is not None:
            # Its records are dropped with the session; its outcome is of no use now.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            task.cancel()
        with contextlib.suppress(queue.Empty):
            while True:
                self.q.get_nowait()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, self.cfg.poll_interval * 3))
        self.files.close()

    def _close_catchup(self) -> None:
        close = getattr(self._catchup, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        self._catchup = None

    # -- the loop side -----------------------------------------------------

    async def get(self, timeout: float) -> ShippedRecord | None:
        """The next durable record; None after ``timeout`` with nothing; raises the reader's error.

        Raises StopAsyncIteration at the end of a ``--once`` read.
        """
        if not self._ready:
            await self._fill(timeout)
        if self._ready:
            self._read_ahead()
            return self._ready.popleft()
        if self._end is not None and not self.gate.held:
            _kind, exc = self._end
            if exc is not None:
                raise exc
            raise StopAsyncIteration
        return None

    async def _fill(self, timeout: float) -> None:
        """Nothing is ready: finish the sync in flight, or read and sync now."""
        if self._sync_task is not None:
            await asyncio.wait({self._sync_task})
            self._poll_sync()
            if self._ready:
                return
        if self._catchup is not None:
            self._read_catchup()
        elif self._end is None:
            await self._read_tail(timeout)
        self._release()
        if not self._ready and self.gate.held:
            # Nothing read is provably durable: make it so before any publish.
            self._start_sync()
            assert self._sync_task is not None
            await asyncio.wait({self._sync_task})
            self._poll_sync()

    def _read_ahead(self) -> None:
        """Read the next group and start its sync while the ready records are published.

        Why: an fdatasync costs milliseconds even on a clean file (a disk
        cache flush); run behind the publishing of the group before it, its
        latency is hidden instead of stalling the pipeline once per group.
        The sync starts once a whole group waits for it or nothing more can
        be read now; short of that, records read next may prove the held
        ones durable (a log written with "always") and no sync is needed.
        """
        self._poll_sync()
        if self._sync_task is not None:
            return
        idle = False
        if len(self._ready) < self._group and self.gate.held < self._group:
            if self._catchup is not None:
                idle = self._read_catchup() < self._group
            elif self._end is None:
                idle = self._drain() < self._group
            else:
                idle = True
            self._release()
        if self.gate.held >= self._group or (idle and self.gate.held):
            self._start_sync()

    def _start_sync(self) -> None:
        """Sync the held records' segments in a worker thread (they were read before this)."""
        plan = self.gate.sync_plan()
        if plan is None or self._sync_task is not None:
            return
        names, self._sync_last = plan
        self._sync_task = asyncio.ensure_future(asyncio.to_thread(self.files.sync_all, names))

    def _poll_sync(self) -> None:
        """If the sync in flight has returned: its records are durable (or its error raised)."""
        task = self._sync_task
        if task is None or not task.done():
            return
        self._sync_task = None
        task.result()
        self.gate.mark_synced(self._sync_last)
        self._release()

    def _release(self) -> None:
        for raw in self.gate.take():
            self._ready.append(self._convert(raw))

    def _note_read(self, raw: RawRecord) -> None:
        self.gate.add(raw)
        self.read_seq = raw.seq + 1
        self.read_digest = raw.digest

    def _read_catchup(self) -> int:
        """Up to one group of the log's records, read in the loop's thread; how many."""
        assert self._catchup is not None
        n = 0
        try:
            for raw in itertools.islice(self._catchup, self._group):
                self._note_read(raw)
                n += 1
        except Exception as exc:
            # Corruption after good records: those are still shipped, then this is raised.
            self._close_catchup()
            self._end = ("error", exc)
            return n
        if n < self._group:  # the end of what the log held
            self._close_catchup()
            if self.cfg.once:
                self._end = ("end", None)
            else:
                self._thread.start()  # from self.read_seq / self.read_digest
        return n

    async def _read_tail(self, timeout: float) -> None:
        """What the tail thread has queued (up to a group); waits up to ``timeout`` for one."""
        if not self._drain() and not self.gate.held:
            self._waiting = True
            self.wake.clear()
            try:
                if not self._drain():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), timeout)
                    self._drain()
            finally:
                self._waiting = False

    def _drain(self) -> int:
        """Move queued records into the gate without waiting; how many."""
        n = 0
        while n < self._group and self._end is None:
            try:
                kind, value = self.q.get_nowait()
            except queue.Empty:
                break
            if kind == "rec":
                self._note_read(value)
                n += 1
            else:
                self._end = (kind, value)
        return n

    # -- the tail thread ---------------------------------------------------

    def _wait_for_log(self) -> bool:
        """Wait (until stopped) for the log's first segment; False when stopped first.

        Why: a node whose agent has not written anything yet has a state dir
        without a log; the follower refuses that, the shipper just waits.
        """
        while not self.stop.is_set():
            if has_log(self.cfg.state_dir):
                return True
            if self.cfg.once:
                return False
            self.stop.wait(self.cfg.poll_interval)
        return False

    def _run(self) -> None:
        follower: eventlog.Follower | None = None
        try:
            if not self._wait_for_log():
                self._put(("end", None))
                return
            follower = eventlog.follow(
                self.cfg.state_dir,
                self.read_seq,
                key=self.cfg.key,
                stop=self.stop,
                poll_interval=self.cfg.poll_interval,
                raw=True,
            )
            held: list[RawRecord] = []
            for raw in cast(Iterator[RawRecord], follower):
                if self.stop.is_set():
                    return
                held.append(raw)
                if raw.batch_left and len(held) < MAX_HELD_BATCH:
                    continue
                for item in held:
                    if not self._put(("rec", item)):
                        return
                held.clear()
            self._put(("end", None))
        except BaseException as exc:
            self._put(("error", exc))
        finally:
            if follower is not None:
                with contextlib.suppress(Exception):
                    follower.close()

    def _put(self, item: tuple[str, Any]) -> bool:
        # Bounded per attempt; ends when the loop side stops us.
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
            except queue.Full:
                continue
            if self._waiting:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    self.loop.call_soon_threadsafe(self.wake.set)
            return True
        return False
