"""The event log's errors.

Every error the log raises on purpose derives from :class:`EventLogError`, so a
caller can catch one class. Reading hostile bytes never lets a low-level
exception (``struct.error``, ``MemoryError``, ``ValueError``,
``UnicodeDecodeError``, a msgpack exception) escape: the scanner turns each
into a :class:`CorruptLogError` that says where the bad bytes are.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .format import Position


class EventLogError(Exception):
    """Base class of every error the event log raises on purpose."""


class CorruptLogError(EventLogError):
    """The log's bytes break the format in a way a crash cannot explain.

    ``segment`` is the path of the segment file (or of the directory when the
    problem is the set of segments), ``offset`` the byte offset in that file
    where the bad bytes start, ``seq`` the sequence number that was expected
    there (``None`` when not known) and ``reason`` a short human description.
    The message carries all four because it may be read by someone who has
    only the message (an operator, an auditor).
    """

    def __init__(self, segment: str | os.PathLike[str], offset: int, seq: int | None, reason: str):
        self.segment = os.fspath(segment)
        self.offset = offset
        self.seq = seq
        self.reason = reason
        where = f"{self.segment} at offset {offset}"
        if seq is not None:
            where += f" (seq {seq})"
        super().__init__(f"corrupt event log: {where}: {reason}")

    def __reduce__(self) -> tuple[type[CorruptLogError], tuple[str, int, int | None, str]]:
        # Keep the four fields across pickling (multiprocessing, pytest-xdist).
        return (type(self), (self.segment, self.offset, self.seq, self.reason))


class UnsupportedFormatError(CorruptLogError):
    """A segment of a format version this code does not know (a newer writer's).

    A CorruptLogError so that every reader and ``verify`` report it where
    they report damage, with the segment and the version in the reason; it
    is not damage, and a newer eventlog reads it.
    """


class UnsafeFileError(CorruptLogError):
    """A file below the log directory is not the regular, single-link file it must be.

    ``found`` says what is there instead (a symlink, a FIFO, a directory, a
    device, a regular file with N hard links). A CorruptLogError so that
    readers and ``verify`` report it where they report damage (at offset 0 of
    that path), and never follow, block on or write through it.
    """

    def __init__(self, path: str | os.PathLike[str], found: str):
        super().__init__(path, 0, None, f"{found} where a regular file with one link must be")
        self.found = found
        self.args = (f"unsafe file in event log: {self.segment} is {self.reason}",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[UnsafeFileError], tuple[str, str]]:  # type: ignore[override]
        return (type(self), (self.segment, self.found))


class LogLockedError(EventLogError):
    """Another writer holds the directory's lock.

    ``pid`` is the holder's process id as it wrote it into ``LOCK`` (``None``
    when it could not be read). Raised at once, never after waiting: two
    writers on one log is a deployment bug, not a contention to wait out.
    """

    def __init__(self, directory: str | os.PathLike[str], pid: int | None):
        self.directory = os.fspath(directory)
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "an unknown process"
        super().__init__(f"event log {self.directory} is locked by another writer ({holder})")

    def __reduce__(self) -> tuple[type[LogLockedError], tuple[str, int | None]]:
        return (type(self), (self.directory, self.pid))


class LogPoisonedError(EventLogError):
    """A write or fsync failed earlier; this writer refuses every later append.

    After a failed fsync the kernel may already have dropped the dirty pages,
    so a retry could report success for data that is not on disk. The only
    safe continuation is to close, reopen (which re-reads what is really on
    disk) and carry on from there. The first failure is the ``__cause__``.
    """


class LogClosedError(EventLogError):
    """The log was used after ``close()``."""


class RecordTooLargeError(EventLogError, ValueError):
    """A payload is larger than the log's ``max_record_bytes``; nothing was written."""


class KeyRequiredError(EventLogError):
    """The log is keyed (its chain is a MAC) and no key was given to a writer."""


class PositionMismatchError(EventLogError):
    """The log's digest after ``position.seq`` is not ``position.digest``.

    Raised by ``read(..., start=position)`` (before it yields anything) when
    the position belongs to another history - a log replaced or rewritten
    under it, a tail cut by recovery and written again - or when the log
    ends before ``position.seq``. Not corruption: the log itself may be fine.
    """

    def __init__(self, position: Position, reason: str):
        self.position = position
        self.reason = reason
        super().__init__(
            f"position {position.segment}@{position.offset} (seq {position.seq}) "
            f"does not match the log: {reason}"
        )


class HistoryNotLocalError(EventLogError):
    """A read asked for records that compaction removed from this directory.

    ``first_local_seq`` is the first seq still here (FORMAT.md, "Compaction");
    ``where`` says where the older history went (an archive directory, the
    fleet stream, or nowhere). Not corruption: the log's ``HISTORY`` record
    says the head was removed on purpose.
    """

    def __init__(self, directory: str, from_seq: int, first_local_seq: int, where: str):
        self.directory = directory
        self.from_seq = from_seq
        self.first_local_seq = first_local_seq
        self.where = where
        super().__init__(
            f"event log {directory}: history before seq {first_local_seq} is not local "
            f"(compacted; {where}); asked for seq {from_seq}"
        )

    def __reduce__(self) -> tuple[type[HistoryNotLocalError], tuple[str, int, int, str]]:
        return (type(self), (self.directory, self.from_seq, self.first_local_seq, self.where))


class CompactionRefusedError(EventLogError):
    """``compact`` would remove history it must keep (unshipped records, a bad log)."""
