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
