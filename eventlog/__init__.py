"""A crash-safe, tamper-evident, append-only event log (msgpack records).

Writers: ``EventLog.open(directory, durability=...)`` then ``append`` /
``append_batch``; one writer per directory (``LOCK``). Readers never lock:
``read`` (a snapshot prefix; ``start=Position(...)`` resumes at a known,
checked position), ``follow`` (live tail), ``verify`` (whole-log
audit), ``compact`` (retention: drop or archive the oldest segments,
recorded in ``HISTORY``). Every file below a log directory is opened through ``eventlog.files``
(``open_existing``, ``create_new``, ``reading``, also for the store's own
files there): a symlink, FIFO, device or hard link is an ``UnsafeFileError``,
never followed, blocked on or written through. The bytes on disk are
specified in FORMAT.md at the repository root; the recovery rules are in
``eventlog.scanner`` and ``eventlog.recovery``.
"""

from __future__ import annotations

from .compact import CompactResult, compact, write_shipped
from .errors import (
    CompactionRefusedError,
    CorruptLogError,
    EventLogError,
    HistoryNotLocalError,
    KeyRequiredError,
    LogClosedError,
    LogLockedError,
    LogPoisonedError,
    PositionMismatchError,
    RecordTooLargeError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from .files import create_new, open_existing, reading
from .follow import Follower, follow
from .format import DEFAULT_MAX_RECORD_BYTES, Position, RawRecord, Record, signed_header
from .history import History, Shipped, load_shipped
from .observe import Timings
from .reader import end_position, local_history, read, read_record
from .verify import Problem, VerifyReport, verify
from .writer import DEFAULT_SEGMENT_BYTES, Durability, EventLog, EventLogStats

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "CompactResult",
    "CompactionRefusedError",
    "CorruptLogError",
    "Durability",
    "EventLog",
    "EventLogError",
    "EventLogStats",
    "Follower",
    "History",
    "HistoryNotLocalError",
    "KeyRequiredError",
    "LogClosedError",
    "LogLockedError",
    "LogPoisonedError",
    "Position",
    "PositionMismatchError",
    "Problem",
    "RawRecord",
    "Record",
    "Timings",
    "RecordTooLargeError",
    "Shipped",
    "UnsafeFileError",
    "UnsupportedFormatError",
    "VerifyReport",
    "compact",
    "create_new",
    "end_position",
    "follow",
    "load_shipped",
    "local_history",
    "open_existing",
    "read",
    "read_record",
    "reading",
    "signed_header",
    "verify",
    "write_shipped",
]
