"""The writer: ``EventLog.open``, append, append_batch, group commit, rotation.

Durability modes:

``always``
    ``append`` returns only after its record is on stable storage, with
    group commit by combining (LevelDB's writer queue): an appender queues
    its request; if no group is in flight it becomes the leader, takes every
    queued request, encodes them, writes them with one ``os.write``, calls
    ``os.fdatasync`` once, and wakes each request it carried. Requests that
    arrive meanwhile queue up for the next group, whose leader is the first
    of them. N concurrent appenders thus share one write and one fsync, and
    each sleeping appender is woken exactly once. (A first version let each
    appender write for itself and share only the fsync, waking waiters
    with a Condition's notify_all: with 16 threads the GIL hand-offs of
    those wake-ups, not the disk, set the pace.)
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

Rotation happens between appends: when the current segment holds at least
one record and has reached ``segment_bytes``, the writer fsyncs it, creates
``<next seq>.log`` with O_EXCL, writes and fsyncs its 64-byte header, and
fsyncs the directory. A batch never straddles segments, so a batch bigger
than ``segment_bytes`` makes one big segment.

Opening creates a missing directory, takes the lock (see ``lock``), repairs
the last segment (see ``recovery``) and, unless durability is ``none``,
fsyncs the last segment and the directory once, because the records this
writer appends chain to what a previous (possibly ``none``) writer left in
the page cache. Always ``close()`` a writer (or use it as a context
manager): the lock is held until then, or until the process dies.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import msgpack

from . import crashpoints
from .closing import Closing
from .errors import (
    EventLogError,
    LogClosedError,
    LogPoisonedError,
    RecordTooLargeError,
)
from .format import (
    _SIGNED,
    CRC,
    DEFAULT_MAX_RECORD_BYTES,
    DIGEST_SIZE,
    FORMAT_VERSION,
    SEGMENT_HEADER_SIZE,
    ZERO_DIGEST,
    encode_segment_header,
    segment_name,
)
from .lock import WriterLock
from .recovery import Tail, recover_tail
from .scanner import check_segment_header
from .segments import (
    SegmentFile,
    check_first_segment,
    fsync_dir,
    list_segments,
    make_directory,
    write_file_durably,
)

__all__ = ["DEFAULT_SEGMENT_BYTES", "Durability", "EventLog", "EventLogStats"]

Durability = Literal["always", "batch", "none"]
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
_MAX_U32 = 2**32 - 1

APPEND_BEFORE_WRITE = crashpoints.register(
    "append.before_write", "eventlog.writer: records encoded, nothing written yet"
)
APPEND_AFTER_WRITE = crashpoints.register(
    "append.after_write", "eventlog.writer: records written to the segment, not yet fsynced"
)
APPEND_AFTER_FSYNC = crashpoints.register(
    "append.after_fsync", "eventlog.writer: records durable, append not yet returned"
)
BATCH_MID_WRITE = crashpoints.register(
    "batch.mid_write", "eventlog.writer: first half of a batch's bytes written, rest not"
)
ROTATE_AFTER_SYNC_OLD = crashpoints.register(
    "rotate.after_sync_old", "eventlog.writer: old segment fsynced, new segment not created"
)
ROTATE_AFTER_CREATE = crashpoints.register(
    "rotate.after_create", "eventlog.writer: new segment file exists, header not written"
)
ROTATE_AFTER_HEADER = crashpoints.register(
    "rotate.after_header",
    "eventlog.writer: new segment header written and fsynced, directory not fsynced",
)


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


class EventLog(Closing):
    """An open, locked event log directory: the only thing that appends to it."""

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
    ) -> EventLog:
        """Open (creating if missing) the log at ``directory`` for writing.

        Raises LogLockedError when another writer holds it, CorruptLogError
        when its last segment is corrupt (a torn tail is repaired, see
        ``recovery``), KeyRequiredError for a keyed log without ``key`` and
        EventLogError for a key on an unkeyed log.
        """
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
        path = os.path.abspath(os.fspath(directory))
        make_directory(path)
        lock = WriterLock.acquire(path)
        try:
            tail = cls._find_tail(path, key=key, max_record_bytes=max_record_bytes)
            fd = os.open(tail.segment.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except BaseException:
            lock.release()
            raise
        try:
            size = os.fstat(fd).st_size
            if size != tail.size:
                raise EventLogError(
                    f"segment {tail.segment.path} changed during open ({size} != {tail.size} "
                    "bytes): is something else writing to the log directory?"
                )
            if durability != "none":
                os.fdatasync(fd)
                fsync_dir(path)
        except BaseException:
            os.close(fd)
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
        )
        if tail.header.version != FORMAT_VERSION:
            try:
                log._upgrade()
            except BaseException:
                log.close()
                raise
        return log

    @staticmethod
    def _find_tail(directory: str, *, key: bytes | None, max_record_bytes: int) -> Tail:
        segments = list_segments(directory)
        if segments:
            check_first_segment(directory, segments)
            return recover_tail(directory, segments, key=key, max_record_bytes=max_record_bytes)
        name = segment_name(1)
        seg = SegmentFile(1, name, os.path.join(directory, name))
        header_bytes = encode_segment_header(1, ZERO_DIGEST, keyed=key is not None)
        write_file_durably(seg.path, header_bytes)
        fsync_dir(directory)
        header = check_segment_header(header_bytes, seg.path, 1, is_last=False)
        assert header is not None
        return Tail(seg, header, SEGMENT_HEADER_SIZE, 0, ZERO_DIGEST)

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
        first = self._submit(datas)
        return list(range(first, first + len(datas)))

    def _check_usable(self) -> None:
        if self._closed:
            raise LogClosedError(f"event log {self.directory} is closed")
        if self._poison is not None:
            raise self._poison_error()

    def _submit(self, datas: list[bytes]) -> int:
        """Write ``datas`` as one all-or-nothing batch; returns its first seq."""
        if not self._always:
            with self._wlock:
                self._check_usable()
                first = self._write_group([datas])[0]
            if crashpoints.ARMED:
                crashpoints.hit(APPEND_AFTER_FSYNC)
            return first
        request = _Request(datas)
        with self._mutex:
            self._check_usable()
            if self._leading:
                wait: threading.Lock | None = self._join_queue(request)
            else:
                # Not leading means nothing is queued: lead a group of one
                # (plus whatever queues while this thread takes the group).
                self._leading = True
                self._queue.append(request)
                wait = None
        if wait is not None:
            wait.acquire()
            if request.lock is None:
                # A group's shared gate: let the next sleeper of the group in.
                wait.release()
            if request.done:
                if request.error is not None:
                    raise request.error
                return request.first
            # Not done: the previous leader handed the lead to us.
        self._lead(request)
        if request.error is not None:
            raise request.error
        return request.first

    def _join_queue(self, request: _Request) -> threading.Lock:
        """Queue ``request`` behind the group in flight (mutex held); returns what
        to sleep on.

        The first request of a queue (its head, the heir if the leader hands
        the lead on) sleeps on its own lock; the others share the queue's
        gate, which the leader releases once and each woken sleeper passes on
        (``acquire`` then ``release``): one wake-up call per group for the
        leader instead of one per request.
        """
        queue = self._queue
        queue.append(request)
        if len(queue) == 1:
            request.lock = lock = _allocate_lock()
            lock.acquire()
            return lock
        gate = self._gate
        if gate is None:
            self._gate = gate = _allocate_lock()
            gate.acquire()
        return gate

    def _lead(self, me: _Request) -> None:
        """As group leader: write, sync and complete every queued request, then hand on."""
        with self._mutex:
            group, gate = self._queue, self._gate
            self._queue, self._gate = [], None
        error: BaseException | None = None
        firsts: list[int] = []
        try:
            batches = [r.datas for r in group if r.datas]
            if batches:
                firsts = self._commit(batches)
            elif self._poison is not None:
                raise self._poison_error()
        except BaseException as exc:  # every request of the group must learn of it
            error = exc
        with self._mutex:
            heir = self._queue[0] if self._queue else None
            if heir is None:
                self._leading = False
        if error is None:
            it = iter(firsts)
            for r in group:
                if r.datas:
                    r.first = next(it)
                r.done = True
        else:
            for r in group:
                r.error = error
                r.done = True
        # Wake the group's sleepers: one release of its gate, which each woken
        # sleeper passes on. (group[0], the queue's head and the only one with
        # a lock of its own, is this leader: it queued itself into an empty
        # queue, or was that queue's head and was handed the lead.)
        if gate is not None:
            gate.release()
        if heir is not None and heir.lock is not None:
            heir.lock.release()

    def _commit(self, batches: list[list[bytes]]) -> list[int]:
        """Write and sync one group's batches (``always``); returns each batch's first seq."""
        with self._wlock:
            # Requests queued before close() are still written: close
            # waits for the group in flight before it closes the file.
            if self._poison is not None:
                raise self._poison_error()
            firsts = self._write_group(batches)
            tail = (self._fd, self._seg_path, self._seg_size, self._written, self._last_seq)
        try:
            os.fdatasync(tail[0])
        except OSError as exc:
            raise self._poisoned(exc) from exc
        with self._mutex:
            self._syncs += 1
            if tail[3] > self._synced:
                self._synced = tail[3]
                self._synced_offset = (tail[1], tail[2])
            if tail[4] > self._durable:
                self._durable = tail[4]
        if crashpoints.ARMED:
            crashpoints.hit(APPEND_AFTER_FSYNC)
        return firsts

    def _write_group(self, batches: list[list[bytes]]) -> list[int]:
        """Encode and write batches (write lock held); returns each batch's first seq."""
        armed = crashpoints.ARMED
        if self._seg_size >= self.segment_bytes and self._seg_records > 0:
            self._rotate()
        now = time.time_ns()
        seq = self._last_seq
        prev = self._head
        durable = self._durable
        # format.encode_record, inlined: one keyed blake2b state copied per
        # record, the body crc chained over payload and digest (no tail copy),
        # every record's pieces joined once for the single write.
        hasher = self._hasher
        pack_signed = _pack_signed
        pack_crc = _pack_crc
        crc32 = _crc32
        firsts = []
        parts: list[bytes] = []
        multi = False
        for datas in batches:
            firsts.append(seq + 1)
            left = len(datas)
            if left > 1:
                multi = True
            for data in datas:
                seq += 1
                left -= 1
                signed = pack_signed(len(data), seq, now, left, durable)
                h = hasher()
                h.update(prev + signed + data)
                prev = h.digest()
                parts += (
                    signed,
                    pack_crc(crc32(signed)),
                    data,
                    prev,
                    pack_crc(crc32(prev, crc32(data))),
                )
        blob = b"".join(parts)
        if armed:
            crashpoints.hit(APPEND_BEFORE_WRITE)
        try:
            if armed and multi:
                half = len(blob) // 2
                self._write_all(blob[:half])
                crashpoints.hit(BATCH_MID_WRITE)
                self._write_all(blob[half:])
            else:
                n = os.write(self._fd, blob)
                if n != len(blob):
                    self._write_rest(blob, n)
        except OSError as exc:
            raise self._poisoned(exc) from exc
        count = seq - self._last_seq
        self._last_seq = seq
        self._head = prev
        self._seg_size += len(blob)
        self._seg_records += count
        with self._mutex:
            self._written += len(blob)
            self._appends += len(batches)
            self._records += count
        if armed:
            crashpoints.hit(APPEND_AFTER_WRITE)
        return firsts

    def _write_all(self, data: bytes) -> None:
        n = os.write(self._fd, data)
        if n != len(data):
            self._write_rest(data, n)

    def _write_rest(self, data: bytes, n: int) -> None:
        """After a short write of ``n`` bytes (a signal, a full disk): write the
        rest, or fail trying."""
        fd = self._fd
        view = memoryview(data)[n:]
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(f"write returned {n}")
            view = view[n:]

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

    # -- durability "batch" ------------------------------------------------

    def _sync_now(self) -> None:
        """fdatasync what is written so far (batch thread; write lock not held meanwhile)."""
        with self._wlock:
            if self._closed or self._poison is not None or self._synced >= self._written:
                return
            # A dup stays valid if rotation closes the segment's fd meanwhile.
            fd = os.dup(self._fd)
            tail = (self._seg_path, self._seg_size, self._written, self._last_seq)
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._poisoned(exc)
            return
        finally:
            os.close(fd)
        with self._mutex:
            self._syncs += 1
            if tail[2] > self._synced:
                self._synced = tail[2]
                self._synced_offset = (tail[0], tail[1])
            if tail[3] > self._durable:
                self._durable = tail[3]

    def _batch_loop(self) -> None:
        while not self._stop.wait(self._batch_interval):
            if self._poison is not None:
                return
            self._sync_now()

    # -- rotation ------------------------------------------------------------

    def _rotate(self) -> None:
        """Start the next segment (write lock held, so no append or sync races it)."""
        armed = crashpoints.ARMED
        old_fd = self._fd
        try:
            if self._sync:
                os.fdatasync(old_fd)
                with self._mutex:
                    self._syncs += 1
                    self._synced = self._written
                    self._synced_offset = (self._seg_path, self._seg_size)
                    self._durable = self._last_seq
            if armed:
                crashpoints.hit(ROTATE_AFTER_SYNC_OLD)
            first = self._last_seq + 1
            path = os.path.join(self.directory, segment_name(first))
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            raise self._poisoned(exc) from exc
        try:
            if armed:
                crashpoints.hit(ROTATE_AFTER_CREATE)
            header = encode_segment_header(first, self._head, keyed=self._key is not None)
            if os.write(fd, header) != len(header):
                raise OSError("short write of a segment header")
            if self._sync:
                os.fsync(fd)
            if armed:
                crashpoints.hit(ROTATE_AFTER_HEADER)
            if self._sync:
                fsync_dir(self.directory)
        except OSError as exc:
            os.close(fd)
            raise self._poisoned(exc) from exc
        self._fd = fd
        self._seg_path = path
        self._seg_size = len(header)
        self._seg_records = 0
        with self._mutex:
            self._rotations += 1
            self._synced_offset = (path, self._seg_size if self._sync else 0)
        os.close(old_fd)

    # -- format upgrade --------------------------------------------------------

    def _upgrade(self) -> None:
        """Continue a version 1 log in version 2 segments (a segment has one version).

        With records in the v1 tail, rotate now; an empty v1 tail (header
        only) is replaced by a v2 header for the same seq, through a
        fsynced temp file renamed over it.
        """
        with self._wlock:
            if self._seg_records > 0:
                self._rotate()
                return
            header = encode_segment_header(
                self._last_seq + 1, self._head, keyed=self._key is not None
            )
            tmp = self._seg_path + ".v2tmp"
            write_file_durably(tmp, header)
            os.rename(tmp, self._seg_path)
            fsync_dir(self.directory)
            fd = os.open(self._seg_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.close(self._fd)
            self._fd = fd
            self._seg_size = len(header)
            with self._mutex:
                self._synced_offset = (self._seg_path, self._seg_size if self._sync else 0)

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
                    try:
                        os.fdatasync(self._fd)
                    except OSError as exc:
                        raise self._poisoned(exc) from exc
                    with self._mutex:
                        self._syncs += 1
                        self._synced = self._written
                        self._synced_offset = (self._seg_path, self._seg_size)
                        self._durable = self._last_seq
            finally:
                os.close(self._fd)
                self._lock.release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"last_seq={self._last_seq}"
        return f"<EventLog {self.directory} {self.durability} {state}>"


class _Request:
    """One append or append_batch waiting in the group-commit queue."""

    __slots__ = ("datas", "done", "error", "first", "lock")

    def __init__(self, datas: list[bytes]):
        self.datas = datas
        self.done = False
        self.error: BaseException | None = None
        self.first = 0
        # A sleeping request's lock, held from birth; released by the leader
        # that completes the request or hands the lead to it.
        self.lock: threading.Lock | None = None


_allocate_lock = threading.Lock
_unpackb = msgpack.unpackb
_pack_signed = _SIGNED.pack
_pack_crc = CRC.pack
_crc32 = zlib.crc32
#: Idle msgpack Packers (use_bin_type=True), shared by all writers.
_packers: list[msgpack.Packer] = []
