"""The shipper: tail a node's event log and publish every record to JetStream.

    python -m replay.fleet.ship --state-dir DIR --nats URL [--stream S] [--node N]
    sandboxctl ship --nats URL [--stream S] [--node N]        (same thing)

Why it works the way it does - the guarantees, and what gives them:

* **Every record, once, in order, per node.** Records go to subject
  ``<stream>.<node>`` in seq order with message id ``<node>:<seq>``. On each
  (re)connect the shipper asks the stream for the last record it holds for
  the node and resumes right after it, so what the stream acknowledged is
  never sent again and nothing after it is skipped. A record that was stored
  but whose ack was lost is re-sent, and the server's duplicate window
  (``--duplicate-window``, default 2 min) drops it.
* **Never reorders.** Publishes are pipelined (a bounded window of un-acked
  publishes, ``--window``), acks are consumed in order, and the first
  failure abandons the whole connection: the client's own reconnect (and its
  buffer, which would re-send old publishes out of our control) is off. The
  next connection resumes from what the stream really holds. The first
  publish of a connection carries ``Nats-Expected-Last-Subject-Sequence`` so
  a second shipper for the same node (a misconfiguration) cannot interleave.
* **Whole batches only.** Records of an ``append_batch`` are shipped when
  the batch is complete (the reader only returns whole batches, and the
  shipper holds a batch until its ``batch_left == 0`` record as well).
* **Same history or nothing.** Before publishing, the stream's last record
  for the node must be in the local log with the same digest; otherwise two
  histories would be spliced into one chain and the shipper stops with
  DivergedError (exit 11) instead.
* **Survives the server going away.** Reconnects with exponential backoff
  (``--backoff-initial`` doubling to ``--backoff-max``, with jitter) for at
  most ``--give-up-after`` seconds of continuous failure (then exit 10: a
  supervisor restarts it). Memory is bounded by the window and the handover
  queue, whatever the backlog.
* **Stops cleanly** on SIGINT/SIGTERM: stops reading, waits (bounded) for the
  acks of what is in flight, closes, exits 0.

The digest of every record travels with it, with the bytes it covers, so the
chain can be re-verified on the far side (``replay.fleet.chain``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import queue
import random
import signal
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.client import JetStreamContext

import eventlog
from eventlog.errors import EventLogError
from eventlog.format import (
    DIGEST_SIZE,
    RECORD_HEADER,
    RECORD_HEADER_SIGNED,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    ZERO_DIGEST,
    Record,
    decode_segment_header,
)
from eventlog.segments import list_segments
from replay.fleet.errors import (
    DivergedError,
    FleetError,
    ShipFatalError,
    ShipGaveUpError,
)
from replay.fleet.message import (
    DEFAULT_STREAM,
    MessageFormatError,
    ShippedRecord,
    check_node,
    check_stream,
    decode,
    encode,
    subject_for,
)
from replay.fleet.source import connect, subject_messages

log = logging.getLogger("replay.fleet.ship")

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

#: Records of one batch held back at most before shipping anyway (a batch
#: larger than this is shipped as it is read; the reader already returns
#: whole batches only, so this is a second line of defence, bounded).
MAX_HELD_BATCH = 65536

#: Seconds between two warnings of one outage.
WARN_EVERY_S = 60.0

#: Bytes read ahead from a segment in one go: one syscall per hundreds of records.
_READ_AHEAD = 256 * 1024

#: Exit codes of ``run_ship`` / ``python -m replay.fleet.ship`` and the fleet
#: readers; 0-9 mean what they mean for every sandboxctl command.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_STATE_DIR = 3
EXIT_NOT_FOUND = 4
EXIT_CORRUPT = 6
EXIT_INVALID = 7
#: NATS could not be reached (a reader), or not for --give-up-after seconds (ship).
EXIT_UNREACHABLE = 10
#: The stream holds a different history for this node than its log.
EXIT_DIVERGED = 11


@attrs.frozen
class ShipConfig:
    """Everything a shipper needs; defaults are the CLI's."""

    state_dir: Path
    nats_url: str
    stream: str = DEFAULT_STREAM
    node: str = "node"
    key: bytes | None = None
    creds: str | None = None
    #: Un-acked publishes in flight at most (bounded memory, pipelining).
    window: int = 256
    #: Seconds an ack may take before the connection is called broken.
    ack_timeout: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    #: Seconds of continuous failure to connect or publish before giving up.
    give_up_after: float = 3600.0
    #: The stream's de-duplication window, when the shipper creates it.
    duplicate_window: float = 120.0
    #: Stream replicas when the shipper creates it (a cluster: 3).
    replicas: int = 1
    #: Ship what the log holds now, then exit (instead of tailing).
    once: bool = False
    #: Seconds between re-reads of the log when the follower gets no wake-up.
    poll_interval: float = 1.0

    def __attrs_post_init__(self) -> None:
        check_stream(self.stream)
        check_node(self.node)
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.give_up_after <= 0:
            raise ValueError("give_up_after must be > 0 seconds")
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")

    @property
    def subject(self) -> str:
        """The subject this node publishes on."""
        return subject_for(self.stream, self.node)


@attrs.define
class ShipStats:
    """Counters of one shipper run (printed at exit, read by tests and the bench)."""

    node: str
    subject: str
    acked: int = 0
    duplicates: int = 0
    published: int = 0
    sessions: int = 0
    failures: int = 0
    resumed_from: int = 0
    last_acked_seq: int = 0
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return attrs.asdict(self)


class _SessionFailed(Exception):
    """A publish or ack failed; the connection is abandoned and a new one resumes."""


class SegmentBytes:
    """Reads a record's exact header fields and payload bytes back from its segment.

    Why: ``eventlog.Record`` carries the decoded payload, not the bytes the
    digest covers nor ``batch_left``; re-packing the dict could differ by a
    byte. The reader already checked crcs and chain; the bytes are read again
    at the record's offset and tied to the record by seq, time and digest.

    Reads go through a read-ahead buffer (one ``pread`` serves hundreds of
    records during a catch-up). A buffer can be stale where a crashed
    writer's torn tail was cut and rewritten; a record that does not match
    is read again from the file before it is called changed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._name: str | None = None
        self._fd: int | None = None
        self._buf = b""
        self._base = 0
        self.keyed = False

    def close(self) -> None:
        """Close the open segment, if any."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._name = None
        self._buf = b""

    def _open(self, rec: Record) -> int:
        self.close()
        path = rec.segment if os.path.isabs(rec.segment) else self.directory / rec.segment
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._fd = fd
        self._name = rec.segment
        header = os.pread(fd, SEGMENT_HEADER_SIZE, 0)
        self.keyed = decode_segment_header(header, os.fspath(path)).keyed
        return fd

    def _bytes(self, fd: int, offset: int, size: int, fresh: bool) -> bytes:
        """``size`` bytes at ``offset`` (fewer at EOF), from the buffer unless ``fresh``."""
        rel = offset - self._base
        if fresh or rel < 0 or rel + size > len(self._buf):
            self._buf = os.pread(fd, max(size, _READ_AHEAD), offset)
            self._base = offset
            rel = 0
        return self._buf[rel : rel + size]

    def read(self, rec: Record) -> tuple[int, bytes]:
        """(batch_left, payload bytes) of ``rec``; ``keyed`` says if its segment is keyed."""
        fd = self._fd if rec.segment == self._name and self._fd is not None else self._open(rec)
        got = self._parse(fd, rec, fresh=False)
        if got is None:
            got = self._parse(fd, rec, fresh=True)
        if got is None:
            raise EventLogError(
                f"record seq {rec.seq} at {rec.segment} offset {rec.offset} changed since it "
                "was read"
            )
        return got

    def _parse(self, fd: int, rec: Record, *, fresh: bool) -> tuple[int, bytes] | None:
        head = self._bytes(fd, rec.offset, RECORD_HEADER_SIZE, fresh)
        if len(head) < RECORD_HEADER_SIZE:
            return None
        length, seq, time_ns, batch_left, header_crc = RECORD_HEADER.unpack_from(head, 0)
        if seq != rec.seq or time_ns != rec.time_ns:
            return None
        if zlib.crc32(head[:RECORD_HEADER_SIGNED]) != header_crc:
            return None
        body = self._bytes(fd, rec.offset + RECORD_HEADER_SIZE, length + DIGEST_SIZE, fresh)
        if body[length:] != rec.digest:
            return None
        return batch_left, body[:length]


def has_log(directory: Path) -> bool:
    """Whether ``directory`` holds a segment file yet."""
    try:
        return bool(list_segments(os.fspath(directory)))
    except EventLogError:
        return False


def to_shipped(
    records: Iterable[Record],
    directory: Path,
    node: str,
    *,
    from_seq: int = 1,
    prev_digest: bytes = ZERO_DIGEST,
) -> Iterator[ShippedRecord]:
    """Turn a log reader's records into what is shipped (raw bytes, prev digest).

    ``records`` must start at ``from_seq`` and ``prev_digest`` must be the
    chain digest before it; a reader that skips or repeats a seq is an error.
    """
    raw = SegmentBytes(directory)
    expected = from_seq
    prev = prev_digest
    try:
        for rec in records:
            if rec.seq != expected:
                raise EventLogError(f"log reader gave seq {rec.seq}, expected {expected}")
            expected += 1
            batch_left, payload = raw.read(rec)
            yield ShippedRecord(
                node=node,
                seq=rec.seq,
                time_ns=rec.time_ns,
                batch_left=batch_left,
                payload_bytes=payload,
                prev_digest=prev,
                digest=rec.digest,
                keyed=raw.keyed,
            )
            prev = rec.digest
    finally:
        raw.close()


def shipped_from_log(
    directory: str | os.PathLike[str], node: str, *, key: bytes | None = None
) -> Iterator[ShippedRecord]:
    """A local log's records exactly as the shipper would publish them (tests, bench)."""
    return to_shipped(eventlog.read(directory, key=key), Path(directory), node)


class Feeder:
    """Reads the log and hands ``ShippedRecord``s (raw bytes, prev digest) to the loop.

    Two phases, for two reasons:

    * **catch-up** - what the log already holds is read with ``eventlog.read``
      right in the event loop's thread, one record per ``get``. Why not a
      thread: a CPU-busy reader thread and a publishing loop hand the GIL to
      each other on every record and every socket call, which measured at
      about half the throughput of the loop reading by itself.
    * **live tail** - then ``eventlog.follow`` blocks waiting for the writer,
      so it runs in a thread and hands records over through a queue bounded
      by ``maxsize``: a stalled server stalls the reading instead of filling
      memory.
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
        self.from_seq = from_seq
        self.prev = prev_digest
        self.loop = loop
        self.q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=maxsize)
        self.stop = threading.Event()
        self.wake = asyncio.Event()
        self._waiting = False
        self._thread = threading.Thread(target=self._run, name="fleet-feeder", daemon=True)
        self._catchup: Iterator[ShippedRecord] | None = None
        self._catchup_source: Iterator[Record] | None = None
        self._finished = False

    def start(self) -> None:
        """Start reading: catch-up first if there is a log, else wait for one in the thread."""
        if has_log(self.cfg.state_dir):
            source = iter(eventlog.read(self.cfg.state_dir, self.from_seq, key=self.cfg.key))
            self._catchup_source = source
            self._catchup = to_shipped(
                source,
                self.cfg.state_dir,
                self.cfg.node,
                from_seq=self.from_seq,
                prev_digest=self.prev,
            )
        elif self.cfg.once:
            self._finished = True
        else:
            self._thread.start()

    def close(self) -> None:
        """Stop reading and wait (bounded) for the thread."""
        self.stop.set()
        self._close_catchup()
        with contextlib.suppress(queue.Empty):
            while True:
                self.q.get_nowait()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, self.cfg.poll_interval * 3))

    def _close_catchup(self) -> None:
        for it in (self._catchup, self._catchup_source):
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self._catchup = self._catchup_source = None

    def _next_catchup(self) -> ShippedRecord | None:
        """The next record of the catch-up read; None (and the tail begins) at its end."""
        assert self._catchup is not None
        try:
            rec = next(self._catchup)
        except StopIteration:
            self._close_catchup()
            if self.cfg.once:
                self._finished = True
            else:
                self._thread.start()  # from self.from_seq / self.prev, updated below
            return None
        self.from_seq = rec.seq + 1
        self.prev = rec.digest
        return rec

    def _records(self) -> Iterator[Record]:
        return eventlog.follow(
            self.cfg.state_dir,
            self.from_seq,
            key=self.cfg.key,
            stop=self.stop,
            poll_interval=self.cfg.poll_interval,
        )

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
        records: Iterator[Record] | None = None
        try:
            if not self._wait_for_log():
                self._put(("end", None))
                return
            records = self._records()
            held: list[ShippedRecord] = []
            shipped = to_shipped(
                records,
                self.cfg.state_dir,
                self.cfg.node,
                from_seq=self.from_seq,
                prev_digest=self.prev,
            )
            for rec in shipped:
                if self.stop.is_set():
                    return
                held.append(rec)
                if rec.batch_left and len(held) < MAX_HELD_BATCH:
                    continue
                for item in held:
                    if not self._put(("rec", item)):
                        return
                held.clear()
            self._put(("end", None))
        except BaseException as exc:
            self._put(("error", exc))
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

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

    async def get(self, timeout: float) -> ShippedRecord | None:
        """The next record; None after ``timeout`` with nothing; raises the reader's error.

        Raises StopAsyncIteration at the end of a ``--once`` read.
        """
        if self._catchup is not None:
            rec = self._next_catchup()
            if rec is not None:
                return rec
        if self._finished:
            raise StopAsyncIteration
        try:
            kind, value = self.q.get_nowait()
        except queue.Empty:
            self._waiting = True
            self.wake.clear()
            try:
                try:
                    kind, value = self.q.get_nowait()
                except queue.Empty:
                    try:
                        await asyncio.wait_for(self.wake.wait(), timeout)
                    except TimeoutError:
                        return None
                    try:
                        kind, value = self.q.get_nowait()
                    except queue.Empty:
                        return None
            finally:
                self._waiting = False
        if kind == "rec":
            assert isinstance(value, ShippedRecord)
            return value
        if kind == "end":
            raise StopAsyncIteration
        raise value


class Shipper:
    """Ships one node's log; ``await run()`` until stopped, finished (``once``) or fatal."""

    def __init__(self, cfg: ShipConfig) -> None:
        self.cfg = cfg
        self.stats = ShipStats(node=cfg.node, subject=cfg.subject)
        #: Record seq and stream seq of the last ack consumed in order.
        self._acked_seq = 0
        self._acked_sseq = 0
        self._stop: asyncio.Event | None = None
        self._done = False

    def request_stop(self) -> None:
        """Ask the shipper to stop after the acks in flight (signal handlers call this)."""
        if self._stop is not None:
            self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop is not None and self._stop.is_set()

    async def run(self) -> ShipStats:
        """Ship until stopped (or, with ``once``, until the log's end is acked).

        Raises DivergedError, EventLogError (a corrupt local log) and
        ShipGaveUpError; everything transient is retried with backoff.
        """
        self._stop = asyncio.Event()
        self._done = False
        attempt = 0
        last_warned = 0.0
        failing_since: float | None = None
        while not self.stopping and not self._done:
            acked_before = self.stats.acked
            try:
                await self._connection()
            except (ShipFatalError, EventLogError, ShipGaveUpError):
                raise
            except (
                FleetError,
                _SessionFailed,
                nats.errors.Error,
                OSError,
                TimeoutError,
                MessageFormatError,
            ) as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                now = time.monotonic()
                if self.stats.acked > acked_before or failing_since is None:
                    failing_since = now
                    attempt = 0
                # The first failure of an outage, then one line a minute: an
                # hour without NATS must not be a thousand lines of log.
                if attempt == 0 or now - last_warned >= WARN_EVERY_S:
                    last_warned = now
                    log.warning(
                        "ship %s: %s (retrying for up to %.0fs)",
                        self.cfg.subject,
                        self.stats.last_error,
                        self.cfg.give_up_after - (now - failing_since),
                    )
                else:
                    log.debug("ship %s: %s", self.cfg.subject, self.stats.last_error)
                if now - failing_since > self.cfg.give_up_after:
                    raise ShipGaveUpError(
                        f"NATS at {self.cfg.nats_url} unusable for {now - failing_since:.0f}s: "
                        f"{self.stats.last_error}"
                    ) from None
                delay = min(self.cfg.backoff_max, self.cfg.backoff_initial * 2 ** min(attempt, 30))
                delay *= random.uniform(0.5, 1.0)
                attempt += 1
                await self._sleep(delay)
                continue
            failing_since = None
            attempt = 0
        return self.stats

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _connection(self) -> None:
        """One connection's life: handshake, resume point, publishing until it breaks."""
        lost = asyncio.Event()

        async def on_closed() -> None:
            lost.set()

        async def on_error(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        nc = await connect(
            self.cfg.nats_url,
            name=f"sandboxctl-ship-{self.cfg.node}",
            creds=self.cfg.creds,
            closed_cb=on_closed,
            error_cb=on_error,
        )
        self.stats.sessions += 1
        try:
            js = nc.jetstream(timeout=self.cfg.ack_timeout)
            await self._ensure_stream(js)
            last_seq, last_digest, last_sseq = await self._stream_tail(js)
            await asyncio.to_thread(self._check_local, last_seq, last_digest)
            await self._check_unacked(js, last_seq)
            self.stats.resumed_from = last_seq
            self.stats.last_acked_seq = last_seq
            self._acked_seq, self._acked_sseq = last_seq, last_sseq
            log.info("ship %s: stream holds up to seq %d; resuming", self.cfg.subject, last_seq)
            await self._session(nc, js, lost, last_seq, last_digest, last_sseq)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        want = f"{self.cfg.stream}.*"
        for _ in range(2):  # a racing shipper may create it between our two calls
            try:
                info = await js.stream_info(self.cfg.stream)
            except nats.js.errors.NotFoundError:
                try:
                    await js.add_stream(
                        name=self.cfg.stream,
                        subjects=[want],
                        storage=api.StorageType.FILE,
                        retention=api.RetentionPolicy.LIMITS,
                        duplicate_window=self.cfg.duplicate_window,
                        num_replicas=self.cfg.replicas,
                        description="sandbox event logs, one subject per node (sandboxctl ship)",
                    )
                    log.info("created stream %s (subjects %s)", self.cfg.stream, want)
                    return
                except nats.js.errors.BadRequestError:
                    continue
            subjects = info.config.subjects or []
            if (
                want not in subjects
                and ">" not in subjects
                and f"{self.cfg.stream}.>" not in subjects
            ):
                raise ShipFatalError(
                    f"stream {self.cfg.stream} exists but does not take subject "
                    f"{self.cfg.subject} (its subjects: {', '.join(subjects)})"
                )
            return
        raise FleetError(f"stream {self.cfg.stream} could not be created or found")

    async def _stream_tail(self, js: JetStreamContext) -> tuple[int, bytes, int]:
        """(last record seq, its digest, its stream seq) the stream holds for this node."""
        try:
            msg = await js.get_last_msg(self.cfg.stream, self.cfg.subject)
        except nats.js.errors.NotFoundError:
            return 0, ZERO_DIGEST, 0
        try:
            rec = decode(msg.data or b"", subject=self.cfg.subject, stream_seq=msg.seq or 0)
        except MessageFormatError as exc:
            raise DivergedError(
                f"the last message on {self.cfg.subject} (stream seq {msg.seq}) is not a shipped "
                f"record ({exc}); refusing to extend it"
            ) from None
        if rec.node != self.cfg.node:
            raise DivergedError(
                f"the last message on {self.cfg.subject} is a record of node {rec.node}"
            )
        return rec.seq, rec.digest, int(msg.seq or 0)

    def _check_local(self, last_seq: int, last_digest: bytes) -> None:
        """The stream's last record must be this log's record (DivergedError otherwise)."""
        if last_seq == 0:
            return
        found = None
        if has_log(self.cfg.state_dir):
            records = iter(eventlog.read(self.cfg.state_dir, last_seq, last_seq, key=self.cfg.key))
            try:
                found = next(records, None)
            finally:
                close = getattr(records, "close", None)
                if close is not None:
                    close()
        if found is None:
            raise DivergedError(
                f"{self.cfg.subject} holds records up to seq {last_seq} but the log in "
                f"{self.cfg.state_dir} has fewer: another host ships as node "
                f"{self.cfg.node}, or this log was replaced"
            )
        if found.digest != last_digest:
            raise DivergedError(
                f"{self.cfg.subject} seq {last_seq} has digest {last_digest.hex()[:16]}... but the "
                f"log in {self.cfg.state_dir} has {found.digest.hex()[:16]}... at that seq: "
                f"different histories under node {self.cfg.node}"
            )

    async def _session(
        self,
        nc: NATS,
        js: JetStreamContext,
        lost: asyncio.Event,
        last_seq: int,
        last_digest: bytes,
        last_sseq: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        feeder = Feeder(self.cfg, last_seq + 1, last_digest, loop, maxsize=self.cfg.window)
        feeder.start()
        inflight: deque[tuple[int, asyncio.Future[api.PubAck]]] = deque()
        subject = self.cfg.subject
        max_payload = nc.max_payload
        first = True
        try:
            while not self.stopping:
                if lost.is_set():
                    raise _SessionFailed("connection lost")
                try:
                    rec = await feeder.get(0.2)
                except StopAsyncIteration:
                    await self._drain(inflight, lost)
                    self._done = True
                    return
                if rec is None:
                    await self._drain(inflight, lost)
                    continue
                body, headers = encode(rec)
                if len(body) + 256 > max_payload:
                    raise ShipFatalError(
                        f"record seq {rec.seq} is {len(body)} bytes shipped; the server's "
                        f"max_payload is {max_payload}: raise max_payload on the NATS servers"
                    )
                if first:
                    headers[EXPECTED_LAST_SUBJECT_SEQ] = str(last_sseq)
                    try:
                        ack = await js.publish(
                            subject, body, timeout=self.cfg.ack_timeout, headers=headers
                        )
                    except (nats.errors.TimeoutError, TimeoutError) as exc:
                        raise _SessionFailed(f"ack of seq {rec.seq} timed out") from exc
                    self.stats.published += 1
                    self._acked(rec.seq, ack)
                    first = False
                    continue
                while len(inflight) >= self.cfg.window:
                    await self._await_oldest(inflight, lost)
                self._reap(inflight)
                fut = await js.publish_async(subject, body, headers=headers)
                self.stats.published += 1
                inflight.append((rec.seq, fut))
            # Stop requested: let what is in flight be acknowledged (bounded).
            with contextlib.suppress(_SessionFailed, nats.errors.Error, TimeoutError):
                await self._drain(inflight, lost)
        finally:
            feeder.close()
            for _, fut in inflight:
                fut.cancel()

    def _acked(self, seq: int, ack: api.PubAck) -> None:
        self.stats.acked += 1
        if ack.duplicate:
            self.stats.duplicates += 1
        self.stats.last_acked_seq = seq
        self._acked_seq = seq
        self._acked_sseq = ack.seq

    async def _check_unacked(self, js: JetStreamContext, tail_seq: int) -> None:
        """After a broken connection: is what the stream stored beyond our acks in order?

        Publishes are pipelined, so when one fails a later one may already be
        stored. Normally the unacknowledged ones were all stored (only their
        acks were lost) or none was; anything else - a hole, a repeat - cannot
        be mended by appending, so the shipper stops (ShipFatalError) rather
        than extend a broken chain. Bounded by the messages after the last ack
        (at most about ``window`` of them).
        """
        acked_seq, acked_sseq = self._acked_seq, self._acked_sseq
        if not acked_sseq or tail_seq == acked_seq:
            return
        if tail_seq < acked_seq:
            log.warning(
                "ship %s: the stream holds up to seq %d but acknowledged seq %d: the server "
                "lost acknowledged records; sending them again",
                self.cfg.subject,
                tail_seq,
                acked_seq,
            )
            return
        expected = acked_seq + 1
        async for m in subject_messages(
            js, self.cfg.stream, self.cfg.subject, start_seq=acked_sseq + 1
        ):
            try:
                seq = decode(m.data, subject=m.subject, stream_seq=m.stream_seq).seq
            except MessageFormatError as exc:
                raise ShipFatalError(
                    f"{self.cfg.subject} stream seq {m.stream_seq} is not a shipped record: {exc}"
                ) from None
            if seq != expected:
                raise ShipFatalError(
                    f"{self.cfg.subject} holds seq {seq} at stream seq {m.stream_seq} where seq "
                    f"{expected} belongs (a failed publish with a later one stored); run "
                    "'sandboxctl --nats URL --node NODE verify' and repair the stream"
                )
            expected += 1
            if seq >= tail_seq:
                break

    def _reap(self, inflight: deque[tuple[int, asyncio.Future[api.PubAck]]]) -> None:
        """Consume the acks already in, oldest first, stopping at the first not yet in."""
        while inflight and inflight[0][1].done():
            seq, fut = inflight.popleft()
            exc = fut.exception() if not fut.cancelled() else _SessionFailed("cancelled")
            if exc is not None:
                raise _SessionFailed(f"publish of seq {seq} failed: {exc}") from exc
            self._acked(seq, fut.result())

    async def _await_oldest(
        self, inflight: deque[tuple[int, asyncio.Future[api.PubAck]]], lost: asyncio.Event
    ) -> None:
        seq, fut = inflight[0]
        lost_wait = asyncio.ensure_future(lost.wait())
        waiters: set[asyncio.Future[Any]] = {fut, lost_wait}
        try:
            await asyncio.wait(
                waiters, timeout=self.cfg.ack_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost_wait.cancel()
        if not fut.done():
            reason = (
                "connection lost" if lost.is_set() else f"no ack within {self.cfg.ack_timeout}s"
            )
            raise _SessionFailed(f"publish of seq {seq}: {reason}")
        self._reap(inflight)

    async def _drain(
        self, inflight: deque[tuple[int, asyncio.Future[api.PubAck]]], lost: asyncio.Event
    ) -> None:
        while inflight:
            await self._await_oldest(inflight, lost)


def hostname_node() -> str:
    """The default node id: this host's name as a subject token."""
    import socket

    from replay.fleet.message import default_node_id

    return default_node_id(socket.gethostname())


async def ship_async(cfg: ShipConfig, *, handle_signals: bool = True) -> ShipStats:
    """Run a shipper, stopping on SIGINT/SIGTERM when ``handle_signals``."""
    shipper = Shipper(cfg)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, shipper.request_stop)
                installed.append(sig)
    try:
        return await shipper.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def ship(cfg: ShipConfig) -> ShipStats:
    """Synchronous entry point (the CLI)."""
    return asyncio.run(ship_async(cfg))


def main(argv: list[str] | None = None) -> int:
    """``python -m replay.fleet.ship``: the shipper without the rest of the CLI."""
    from replay.fleet.commands import add_ship_arguments, run_ship

    parser = argparse.ArgumentParser(
        prog="python -m replay.fleet.ship",
        description="Ship a node's sandbox event log to a NATS JetStream stream.",
    )
    parser.add_argument(
        "--state-dir",
        default=argparse.SUPPRESS,
        help="the node's state dir (default: $SANDBOXCTL_STATE_DIR)",
    )
    add_ship_arguments(parser)
    args = parser.parse_args(argv)
    return run_ship(args)


if __name__ == "__main__":
    sys.exit(main())
