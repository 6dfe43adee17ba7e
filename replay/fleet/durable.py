"""The shipper publishes only what is durable: the rule, and the syncs that enforce it.

Why: a record that a reader of the log sees is not necessarily on stable
storage yet - a writer with durability ``none`` or ``batch`` never synced it,
and even ``always`` fsyncs a moment after the bytes are readable. Were such a
record shipped and then lost to a power loss, the node's recovery would cut
it, the node would write new records under the same seqs, and the stream
would hold a different history for the node than its log: the shipper stops
with exit 11 and that node can no longer ship under its id.

The rule. A record read from the log is published only once it is durable,
which is known in one of two ways:

1. **The log's own proof**: a record read after it carries ``durable_seq``
   at least its seq (FORMAT.md, "Proof of durability": the writer had seen
   an ``fdatasync`` covering it return before writing the later record).
2. **The shipper's own sync**: ``os.fdatasync`` of the record's segment
   file, on the shipper's own read-only descriptor, started AFTER the record
   was read and returned BEFORE it is published. On Linux an fdatasync
   flushes every dirty page of the file, whoever wrote it, so the writer's
   unsynced appends are made durable by it. The first sync of a segment also
   fsyncs the log directory once, because a writer with durability ``none``
   never fsyncs the directory entry of a segment it creates, and a segment
   whose entry is lost is lost with its records.

Cost: one ``fdatasync`` per group of records read (at most ``--window``
records) - never one per record - and none at all for records the log
already proves. The records read wait here (``DurabilityGate``) until they
are proven or synced. The feeder (``replay.fleet.feeder``) syncs when a
whole group waits, when nothing more can be read right now, or when nothing
read is provably durable and the publisher needs a record; so a catch-up of
a log written with ``always`` (each record proves the ones before its commit
group) syncs only for its newest records, and a log written with ``none``
is synced once per group read. A group that spans segments syncs each of
its segments once: a segment the shipper moves past gets its last sync then.
The sync runs in a worker thread, a group ahead of the publishing.

An ``fdatasync`` that fails is not retried (after a failed sync Linux may
have dropped the dirty pages, so a second attempt could "succeed" for data
that is not on disk): the shipper stops with an EventLogError.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from pathlib import Path

from eventlog import RawRecord
from eventlog.closing import Closing
from eventlog.errors import CorruptLogError, EventLogError
from eventlog.format import SEGMENT_HEADER_SIZE, decode_segment_header
from eventlog.segments import fsync_dir

__all__ = ["DurabilityGate", "SegmentFiles"]

#: Segment descriptors kept open at most (the current segment and the one before).
MAX_OPEN_SEGMENTS = 2

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class SegmentFiles(Closing):
    """The shipper's own read-only descriptors of a log's segments.

    Two jobs: ``sync`` a segment (the rule above; a worker thread's job) and
    tell whether a segment's chain is ``keyed`` (its header's flag, which
    the far side needs to know whether a digest is a MAC; asked from the
    event loop's thread, so it never waits for a sync). Headers are decoded
    with eventlog's own decoder; record bytes are never read here - the
    scanner is their only parser. Opens follow no symlink and accept only a
    regular file, as every open below a state dir does.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: name -> (fd, first_seq) of the segments synced lately; oldest first.
        self._open: dict[str, tuple[int, int]] = {}
        #: name -> keyed flag of the segments asked about lately; oldest first.
        self._keyed: dict[str, bool] = {}
        #: first_seq of the newest segment whose directory entry was fsynced.
        self._dir_synced_upto = 0
        #: fdatasync calls made (the summary's ``syncs``).
        self.syncs = 0
        # Syncs run in a worker thread; close() must not pull a descriptor away.
        self._lock = threading.Lock()
        self._closed = False

    def _open_segment(self, name: str) -> tuple[int, int, bool]:
        """(fd, first_seq, keyed) of a fresh read-only descriptor of segment ``name``."""
        path = os.fspath(self.directory / name)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise EventLogError(f"segment {path} cannot be opened: {exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CorruptLogError(path, 0, None, "segment is not a regular file")
            header = decode_segment_header(os.pread(fd, SEGMENT_HEADER_SIZE, 0), path)
        except BaseException:
            os.close(fd)
            raise
        return fd, header.first_seq, header.keyed

    def keyed(self, name: str) -> bool:
        """Whether segment ``name``'s chain is keyed (a MAC)."""
        keyed = self._keyed.get(name)
        if keyed is None:
            fd, _first, keyed = self._open_segment(name)
            os.close(fd)
            self._keyed[name] = keyed
            while len(self._keyed) > MAX_OPEN_SEGMENTS:
                del self._keyed[next(iter(self._keyed))]
        return keyed

    def sync(self, name: str) -> None:
        """fdatasync segment ``name`` (and, the first time, the directory); blocking."""
        with self._lock:
            if self._closed:  # a sync abandoned with its session must not reopen anything
                raise EventLogError(f"segment files of {self.directory} are closed")
            entry = self._open.get(name)
            if entry is None:
                fd, first_seq, _keyed = self._open_segment(name)
                entry = self._open[name] = (fd, first_seq)
                while len(self._open) > MAX_OPEN_SEGMENTS:
                    os.close(self._open.pop(next(iter(self._open)))[0])
            fd, first_seq = entry
            try:
                os.fdatasync(fd)
                self.syncs += 1
                if first_seq > self._dir_synced_upto:
                    fsync_dir(os.fspath(self.directory))
                    self._dir_synced_upto = first_seq
            except OSError as exc:
                raise EventLogError(
                    f"fdatasync of {self.directory / name} failed ({exc}): records read from "
                    "it cannot be proven durable, so none is shipped"
                ) from exc

    def sync_all(self, names: list[str]) -> None:
        """``sync`` each segment of ``names`` once, in order (blocking)."""
        for name in names:
            self.sync(name)

    def close(self) -> None:
        """Close every descriptor (after a sync in progress has returned)."""
        with self._lock:
            self._closed = True
            while self._open:
                _name, (fd, _first) = self._open.popitem()
                os.close(fd)


class DurabilityGate:
    """Records read from the log, held until they are durable (see the module docstring).

    ``add`` every record in seq order as it is read; ``take`` returns the
    ones now known durable, in order. To make the held ones durable:
    ``sync_plan`` names their segments and the last seq they reach, the
    caller runs ``files.sync_all(names)`` (blocking: in a worker thread, while
    it keeps reading and publishing what is already durable) and then
    reports ``mark_synced(last)``. Only the caller's thread touches the gate.
    """

    def __init__(self, files: SegmentFiles) -> None:
        self.files = files
        self._held: deque[RawRecord] = deque()
        #: The highest seq a record read so far proves durable (its durable_seq).
        self.proven = 0
        #: The highest seq covered by one of the shipper's own syncs.
        self.synced = 0

    @property
    def held(self) -> int:
        """Records read and not yet known durable."""
        return len(self._held)

    @property
    def durable_upto(self) -> int:
        """Every record read with a seq up to this one is durable."""
        return max(self.proven, self.synced)

    def add(self, rec: RawRecord) -> None:
        """Hold a record just read (records come in seq order)."""
        self._held.append(rec)
        if rec.durable_seq > self.proven:
            self.proven = rec.durable_seq

    def take(self) -> list[RawRecord]:
        """The held records now known durable, oldest first (removed from the gate)."""
        upto = self.durable_upto
        held = self._held
        out: list[RawRecord] = []
        while held and held[0].seq <= upto:
            out.append(held.popleft())
        return out

    def sync_plan(self) -> tuple[list[str], int] | None:
        """(segments holding the held records, in order; the last held seq), None if none.

        Taken after the records were read: a sync started after this covers them.
        """
        if not self._held:
            return None
        names: list[str] = []
        for rec in self._held:
            if not names or names[-1] != rec.segment:
                names.append(rec.segment)
        return names, self._held[-1].seq

    def mark_synced(self, seq: int) -> None:
        """A sync planned by ``sync_plan`` (reaching ``seq``) has returned."""
        if seq > self.synced:
            self.synced = seq
