"""Getting appended records to disk: encode and write a group, group commit, batch syncs.

``GroupCommit`` is a mixin of ``EventLog`` (``writer``), not an object the
writer owns: its methods run on every append, and a mixin's ``self._x`` costs
what it did when they were the writer's own methods, where a helper object
would add an attribute hop (and its own copy of the state, or a reference
back) per call. ``EventLog.__init__`` sets the state it uses (declared below
for the type checker); ``rotate`` and ``writer`` provide the methods it calls.

Durability ``always``: group commit by combining (LevelDB's writer queue):
an appender queues its request; if no group is in flight it becomes the
leader, takes every queued request, encodes them, writes them with one
``os.write``, calls ``os.fdatasync`` once, and wakes each request it
carried. Requests that arrive meanwhile queue up for the next group, whose
leader is the first of them. N concurrent appenders thus share one write and
one fsync, and each sleeping appender is woken exactly once. (A first version
let each appender write for itself and share only the fsync, waking waiters
with a Condition's notify_all: with 16 threads the GIL hand-offs of those
wake-ups, not the disk, set the pace.)

Durability ``batch``: appends only write; a background thread
(``_batch_loop``) fdatasyncs every ``batch_interval`` seconds when something
is unsynced.

``os.fdatasync`` and ``os.fsync`` are looked up at call time, never bound at
import: crash tests wrap them (``replay.crash.faults``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import crashpoints
from .files import write_all
from .format import _SIGNED, CRC
from .observe import CAP as _TIMINGS_CAP
from .observe import Timings, keep

if TYPE_CHECKING:
    from .errors import LogPoisonedError

__all__ = ["GroupCommit"]

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


class GroupCommit:
    """Mixin of ``EventLog``: the write path (encode, write, sync) and group commit."""

    # Set by EventLog.__init__ (see there for what each is).
    directory: str
    segment_bytes: int
    _always: bool
    _hasher: Callable[[], hashlib.blake2b]
    _wlock: threading.Lock
    _mutex: threading.Lock
    _queue: list[_Request]
    _gate: threading.Lock | None
    _leading: bool
    _fd: int
    _seg_path: str
    _seg_size: int
    _seg_records: int
    _last_seq: int
    _head: bytes
    _written: int
    _synced: int
    _synced_offset: tuple[str, int]
    _durable: int
    _poison: BaseException | None
    _closed: bool
    _appends: int
    _records: int
    _syncs: int
    _stop: threading.Event
    _batch_interval: float
    _timings: Timings | None

    if TYPE_CHECKING:
        # Provided by EventLog (writer) and Rotation (rotate).
        def _check_usable(self) -> None: ...
        def _poison_error(self) -> LogPoisonedError: ...
        def _poisoned(self, exc: BaseException) -> LogPoisonedError: ...
        def _rotate(self) -> None: ...

    # -- submitting and group commit -------------------------------------------

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
            fd = self._fd
            tail = (self._seg_path, self._seg_size, self._written, self._last_seq)
        timings = self._timings
        began = _perf_counter() if timings is not None else 0.0
        try:
            os.fdatasync(fd)
        except OSError as exc:
            raise self._poisoned(exc) from exc
        if timings is not None:
            # observe.keep, inlined: this runs once per commit group.
            fsyncs = timings.fsync
            fsyncs.append(_perf_counter() - began)
            timings.groups.append(len(batches))
            if len(fsyncs) > _TIMINGS_CAP:
                del fsyncs[: _TIMINGS_CAP // 2]
                del timings.groups[: _TIMINGS_CAP // 2]
        self._synced_upto(*tail)
        if crashpoints.ARMED:
            crashpoints.hit(APPEND_AFTER_FSYNC)
        return firsts

    # -- timings ---------------------------------------------------------------

    def _timed_sync(self, began: float) -> None:
        """Keep the seconds of an fdatasync that started at ``began`` outside a group."""
        timings = self._timings
        if timings is not None:
            keep(timings.fsync, _perf_counter() - began)

    def _synced_all(self, began: float) -> None:
        """Count an fdatasync (started at ``began``) of all that is written."""
        self._timed_sync(began)
        with self._mutex:
            self._syncs += 1
            self._synced = self._written
            self._synced_offset = (self._seg_path, self._seg_size)
            self._durable = self._last_seq

    def _synced_upto(self, segment: str, offset: int, written: int, last_seq: int) -> None:
        """Count an fdatasync that covered ``written`` bytes (the log's end was then
        ``offset`` in ``segment``, after ``last_seq``).

        The fdatasync ran outside the write lock: another sync (or a rotation's)
        may have moved the marks further meanwhile, and they never move back.
        """
        with self._mutex:
            self._syncs += 1
            if written > self._synced:
                self._synced = written
                self._synced_offset = (segment, offset)
            if last_seq > self._durable:
                self._durable = last_seq

    # -- writing ---------------------------------------------------------------

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
        write_all(self._fd, data, n)

    # -- durability "batch" ------------------------------------------------

    def _sync_now(self) -> None:
        """fdatasync what is written so far (batch thread; write lock not held meanwhile)."""
        with self._wlock:
            if self._closed or self._poison is not None or self._synced >= self._written:
                return
            # A dup stays valid if rotation closes the segment's fd meanwhile.
            fd = os.dup(self._fd)
            tail = (self._seg_path, self._seg_size, self._written, self._last_seq)
        began = _perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._poisoned(exc)
            return
        finally:
            os.close(fd)
        self._timed_sync(began)
        self._synced_upto(*tail)

    def _batch_loop(self) -> None:
        while not self._stop.wait(self._batch_interval):
            if self._poison is not None:
                return
            self._sync_now()


_allocate_lock = threading.Lock
_perf_counter = time.perf_counter
_pack_signed = _SIGNED.pack
_pack_crc = CRC.pack
_crc32 = zlib.crc32
