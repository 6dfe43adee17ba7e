"""The writer: ``EventLog.open``, append, append_batch, group commit, rotation.

Durability modes:

``always``
    ``append`` returns only after its record is on stable storage;
    concurrent appenders share one ``os.write`` and one ``os.fdatasync``
    (group commit, see ``commit``).
``batch``
    ``append`` returns after ``os.write``; a background thread fdatasyncs
    every ``batch_interval`` seconds when something is unsynced, and
    ``close`` syncs. Loss window: a power loss (not a process crash - the
    page cache survives that) can lose the appends acknowledged in the last
    ``batch_interval`` (default 50 ms) before it, never an earlier one, and
    recovery cuts the log back to a whole-batch prefix.
``none``
    never fsyncs - not on append, rotation or close (tests, tooling,
    benchmarks). A process crash loses nothing; a power loss can lose
    anything written by this writer.

Failure rule: any error from ``write`` or ``fsync`` POISONS the writer. That
append and every later one raise LogPoisonedError (chained to the first
OSError); the sync is never retried, because after a failed fsync Linux may
already have dropped the dirty pages and a retry could "succeed" for data
that is not on disk. Close and reopen: recovery re-reads what is really
there.

Rotation (see ``rotate``) happens between appends, when the current segment
has reached ``segment_bytes``; a batch never straddles segments.

Opening creates a missing directory, takes the lock (see ``lock``), repairs
the last segment (see ``recovery``) and, unless durability is ``none``,
fsyncs the last segment and the directory once, because the records this
writer appends chain to what a previous (possibly ``none``) writer left in
the page cache. Always ``close()`` a writer (or use it as a context
manager): the lock is held until then, or until the process dies.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import msgpack

from . import crashpoints
from .closing import Closing
from .commit import APPEND_AFTER_FSYNC, GroupCommit, _Request

# The crash points were registered here before commit and rotate were split
# out: still importable from here.
from .commit import APPEND_AFTER_WRITE as APPEND_AFTER_WRITE
from .commit import APPEND_BEFORE_WRITE as APPEND_BEFORE_WRITE
from .commit import BATCH_MID_WRITE as BATCH_MID_WRITE
from .compact import Compaction
from .errors import EventLogError, LogClosedError, LogPoisonedError, RecordTooLargeError
from .files import open_existing, write_file_durably
from .format import (
    DEFAULT_MAX_RECORD_BYTES,
    DIGEST_SIZE,
    FORMAT_VERSION,
    SEGMENT_HEADER_SIZE,
    ZERO_DIGEST,
    Position,
    encode_segment_header,
    segment_name,
)
from .lock import WriterLock
from .observe import Timings, keep
from .recovery import Tail, recover_tail
from .rotate import ROTATE_AFTER_CREATE as ROTATE_AFTER_CREATE
from .rotate import ROTATE_AFTER_HEADER as ROTATE_AFTER_HEADER
from .rotate import ROTATE_AFTER_SYNC_OLD as ROTATE_AFTER_SYNC_OLD
from .rotate import Rotation
from .scanner import check_segment_header
from .segments import (
    SegmentFile,
    check_first_segment,
    fsync_dir,
    list_segments,
    make_directory,
)

__all__ = ["DEFAULT_SEGMENT_BYTES", "Durability", "EventLog", "EventLogStats"]

Durability = Literal["always", "batch", "none"]
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
_MAX_U32 = 2**32 - 1

log = logging.getLogger("eventlog")


def _check_open_arguments(
    durability: str,
    segment_bytes: int,
    max_record_bytes: int,
    key: bytes | None,
    batch_interval: float,
) -> None:
    """Raise ValueError for an argument of ``EventLog.open`` out of its range."""
    if durability not in ("always", "batch", "none"):
        raise ValueError(f"durability must be 'always', 'batch' or 'none', not {durability!r}")
    if segment_bytes < 1:
        raise ValueError("segment_bytes must be >= 1")
    if not 1 <= max_record_bytes <= _MAX_U32:
        raise ValueError("max_record_bytes must be between 1 and 2**32 - 1")
    if key is not None and not (isinstance(key, bytes) and 1 <= len(key) <= 64):
        raise ValueError("key must be 1 to 64 bytes (a blake2b key)")
    if batch_interval <= 0:
        raise ValueError("batch_interval must be > 0")


@attrs.frozen
class EventLogStats:
    """Counters since open: calls that wrote, records, fdatasync calls, rotations.

    ``syncs`` counts data syncs of segments (group-commit leaders, the batch
    thread, rotation, close), so ``syncs < records`` shows group commit at
    work without timing anything.
    """

    appends: int
    records: int
    syncs: int
    rotations: int
    bytes_written: int


class EventLog(GroupCommit, Rotation, Compaction, Closing):
    """An open, locked event log directory: the only thing that appends to it."""

    #: How ``open`` checked the last segment (``recovery.Tail``: where the check
    #: began, how many records it checked, whether a start position was used).
    open_check: Tail

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        durability: Durability = "always",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        key: bytes | None = None,
        batch_interval: float = 0.05,
        timings: Timings | None = None,
        start: Position | None = None,
    ) -> EventLog:
        """Open (creating if missing) the log at ``directory`` for writing.

        ``start``: a known position of this log (a snapshot's recorded
        ``Position``), only a hint. When it holds (checked as ``read`` checks
        one) and lies in the last segment, the open checks that segment from
        there instead of from its header, so a snapshot open costs the tail,
        not the segment; a wrong, stale or foreign one costs the full check,
        never an error (FORMAT.md, "Recovery (writer open)").

        ``timings`` (see ``eventlog.observe``) collects fsync and sampled
        append latencies and group sizes for a metrics reader; None costs one
        ``is None`` test per append. Raises
        LogLockedError when another writer holds it, CorruptLogError when its
        last segment is corrupt (a torn tail is repaired, see
        ``recovery``), KeyRequiredError for a keyed log without ``key`` and
        EventLogError for a key on an unkeyed log.
        """
        _check_open_arguments(durability, segment_bytes, max_record_bytes, key, batch_interval)
        path = os.path.abspath(os.fspath(directory))
        make_directory(path)
        lock = WriterLock.acquire(path)
        try:
            tail = cls._find_tail(path, key=key, max_record_bytes=max_record_bytes, start=start)
            fd = cls._open_tail(path, tail, sync=durability != "none")
        except BaseException:
            lock.release()
            raise
        log = cls(
            path,
            lock,
            fd,
            tail,
            durability=durability,
            segment_bytes=segment_bytes,
            max_record_bytes=max_record_bytes,
            key=key,
            batch_interval=batch_interval,
            timings=timings,
        )
        log.open_check = tail
        if tail.header.version != FORMAT_VERSION:
            try:
                log._upgrade()
            except BaseException:
                log.close()
                raise
        return log

    @staticmethod
    def _find_tail(
        directory: str, *, key: bytes | None, max_record_bytes: int, start: Position | None
    ) -> Tail:
        segments, _ = check_first_segment(directory, list_segments(directory))
        if segments:
            return recover_tail(
                directory, segments, key=key, max_record_bytes=max_record_bytes, start=start
            )
        name = segment_name(1)
        seg = SegmentFile(1, name, os.path.join(directory, name))
        header_bytes = encode_segment_header(1, ZERO_DIGEST, keyed=key is not None)
        write_file_durably(seg.path, header_bytes)
        fsync_dir(directory)
        header = check_segment_header(header_bytes, seg.path, 1, is_last=False)
        assert header is not None
        return Tail(seg, header, SEGMENT_HEADER_SIZE, 0, ZERO_DIGEST)

    @staticmethod
    def _open_tail(directory: str, tail: Tail, *, sync: bool) -> int:
        """Open the last segment to append; with ``sync`` fsync it and the directory (why:
        see the module docstring)."""
        fd = open_existing(tail.segment.path, os.O_WRONLY | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if size != tail.size:
                raise EventLogError(
                    f"segment {tail.segment.path} changed during open ({size} != {tail.size} "
                    "bytes): is something else writing to the log directory?"
                )
            if sync:
                os.fdatasync(fd)
                fsync_dir(directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def __init__(
        self,
        directory: str,
        lock: WriterLock,
        fd: int,
        tail: Tail,
        *,
        durability: Durability,
        segment_bytes: int,
        max_record_bytes: int,
        key: bytes | None,
        batch_interval: float,
        timings: Timings | None = None,
    ):
        """Private: use ``EventLog.open``."""
        self.directory = directory
        self.durability: Durability = durability
        self.segment_bytes = segment_bytes
        self.max_record_bytes = max_record_bytes
        #: What writer-open recovery cut or recreated ("" when nothing).
        self.recovery = tail.repair
        self._key = key
        self._chain_key = key or b""
        #: ``copy`` of a blake2b state keyed with the chain key (empty: unkeyed).
        self._hasher = hashlib.blake2b(digest_size=DIGEST_SIZE, key=self._chain_key).copy
        self._lock = lock
        self._sync = durability != "none"
        self._always = durability == "always"
        # The write lock serialises encoding (the chain), os.write, rotation
        # and close. With "always" only a group leader takes it.
        self._wlock = threading.Lock()
        # The mutex protects the request queue, poison and sync bookkeeping.
        self._mutex = threading.Lock()
        self._compacting = threading.Lock()  # see compact.Compaction
        self._queue: list[_Request] = []
        # The gate the queue's requests after its head sleep on (see _join_queue).
        self._gate: threading.Lock | None = None
        self._leading = False
        self._fd = fd
        self._seg_path = tail.segment.path
        self._seg_size = tail.size
        self._seg_records = tail.last_seq - tail.segment.first_seq + 1
        self._last_seq = tail.last_seq
        self._head = tail.digest
        self._written = 0  # bytes of records written since open, all segments
        self._synced = 0  # how much of _written is known durable
        self._synced_offset = (self._seg_path, tail.size if self._sync else 0)
        # The highest seq whose fsync has returned: every record carries it
        # (format v2), so recovery can tell a record a later one proves
        # durable from the unproven tail. Open fsynced the tail (unless
        # "none", which proves nothing new and carries the old proof on).
        self._durable = tail.last_seq if self._sync else tail.durable_seq
        self._poison: BaseException | None = None
        self._closed = False
        self._appends = 0
        self._records = 0
        self._syncs = 0
        self._rotations = 0
        self._stop = threading.Event()
        self._batch_thread: threading.Thread | None = None
        self._batch_interval = batch_interval
        self._timings = timings
        self._tick = 0  # appends since open, for sampling their latency
        if durability == "batch":
            self._batch_thread = threading.Thread(
                target=self._batch_loop, name=f"eventlog-batch-sync {directory}", daemon=True
            )
            self._batch_thread.start()

    # -- public state ----------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The seq of the last record written (0 for an empty log)."""
        return self._last_seq

    @property
    def head(self) -> bytes:
        """The chain digest after ``last_seq`` (32 zero bytes for an empty log)."""
        return self._head

    @property
    def synced_offset(self) -> tuple[str, int]:
        """(current segment path, bytes of it known to be on stable storage).

        For a power-loss simulator: bytes past this offset may vanish.
        Earlier segments were fsynced when the writer rotated away from them
        (except with durability ``none``, where nothing is ever synced).
        """
        with self._mutex:
            return self._synced_offset

    @property
    def stats(self) -> EventLogStats:
        with self._mutex:
            return EventLogStats(
                self._appends, self._records, self._syncs, self._rotations, self._written
            )

    @property
    def closed(self) -> bool:
        return self._closed

    # -- appending -------------------------------------------------------

    def _encode(self, payload: dict[str, Any]) -> bytes:
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
        # A reused Packer (msgpack.packb builds a new one per call). Packers
        # are not thread-safe: each call takes one from the pool (list pop and
        # append are atomic) and puts it back; one that raised is dropped.
        try:
            packer = _packers.pop()
        except IndexError:
            packer = msgpack.Packer(use_bin_type=True)
        data: bytes = packer.pack(payload)
        _packers.append(packer)
        if len(data) > self.max_record_bytes:
            raise RecordTooLargeError(
                f"payload of {len(data)} bytes exceeds max_record_bytes {self.max_record_bytes}"
            )
        # Refuse now what a reader would refuse later (e.g. int map keys under
        # strict_map_key): one bad append must not make the log unreadable.
        # raw=True skips only the utf-8 check of str objects, which cannot fail
        # here: the packer writes the str type only for Python str, encoded
        # strictly (a lone surrogate already raised above); every other check
        # of the readers' decode (map key types, lengths, structure) is made.
        try:
            _unpackb(data, raw=True, strict_map_key=True)
        except Exception as exc:
            raise ValueError(f"payload would not read back: {type(exc).__name__}: {exc}") from None
        return data

    def append(self, payload: dict[str, Any]) -> int:
        """Append one record; returns its seq (durable first, with ``always``)."""
        data = self._encode(payload)
        if self._timings is not None:
            self._tick += 1
            if not self._tick % self._timings.every:
                return self._timed_submit([data])
        if self._always:
            return self._submit([data])
        # _submit's "batch"/"none" path, inlined for the common single append.
        with self._wlock:
            if self._closed or self._poison is not None:
                self._check_usable()
            first = self._write_group([[data]])[0]
        if crashpoints.ARMED:
            crashpoints.hit(APPEND_AFTER_FSYNC)
        return first

    def append_batch(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """Append records that recovery keeps all or none of; returns their seqs."""
        datas = [self._encode(p) for p in payloads]
        if not datas:
            return []
        if self._timings is not None:
            self._tick += 1
            if not self._tick % self._timings.every:
                first = self._timed_submit(datas)
                return list(range(first, first + len(datas)))
        first = self._submit(datas)
        return list(range(first, first + len(datas)))

    def _timed_submit(self, datas: list[bytes]) -> int:
        """``_submit``, its latency kept (the sampled appends; see ``eventlog.observe``)."""
        began = _perf_counter()
        first = self._submit(datas)
        if self._timings is not None:
            keep(self._timings.append, _perf_counter() - began)
        return first

    def _check_usable(self) -> None:
        if self._closed:
            raise LogClosedError(f"event log {self.directory} is closed")
        if self._poison is not None:
            raise self._poison_error()

    # -- failures ------------------------------------------------------------

    def _poison_error(self) -> LogPoisonedError:
        err = LogPoisonedError(
            f"event log {self.directory} is poisoned by an earlier write/fsync failure "
            f"({self._poison}); close and reopen it"
        )
        err.__cause__ = self._poison
        return err

    def _poisoned(self, exc: BaseException) -> LogPoisonedError:
        """Poison the writer with ``exc`` (the first failure wins); returns the error to raise."""
        with self._mutex:
            if self._poison is None:
                self._poison = exc
        err = LogPoisonedError(
            f"event log {self.directory}: write/fsync failed ({exc}); the writer is poisoned"
        )
        err.__cause__ = exc
        return err

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Sync (with ``batch``), close the segment, release the lock. Idempotent.

        With ``always`` every acknowledged record is already durable; with
        ``batch`` this is the final sync; ``none`` never syncs. A poisoned log
        is closed without syncing, and close does not raise the old failure.
        Appends racing with close either complete or raise LogClosedError.
        """
        barrier: _Request | None = None
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._leading:
                # A group is in flight (its leader syncs outside the write
                # lock): queue behind it and wait to be completed or handed
                # the lead. Nothing can queue after us (closed is set).
                barrier = _Request([])
                wait = self._join_queue(barrier)
            else:
                self._leading = True
        if barrier is not None:
            wait.acquire()
            if barrier.lock is None:
                wait.release()
        self._stop.set()
        if self._batch_thread is not None and self._batch_thread is not threading.current_thread():
            self._batch_thread.join()
        with self._wlock:
            try:
                if self.durability == "batch" and self._poison is None:
                    began = _perf_counter()
                    try:
                        os.fdatasync(self._fd)
                    except OSError as exc:
                        raise self._poisoned(exc) from exc
                    self._synced_all(began)
            finally:
                os.close(self._fd)
                with self._compacting:  # a compaction in flight ends before the lock is free
                    self._lock.release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"last_seq={self._last_seq}"
        return f"<EventLog {self.directory} {self.durability} {state}>"


_perf_counter = time.perf_counter
_unpackb = msgpack.unpackb
#: Idle msgpack Packers (use_bin_type=True), shared by all writers.
_packers: list[msgpack.Packer] = []
