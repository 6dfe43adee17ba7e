"""A crash-safe, tamper-evident, append-only event log (msgpack records).

Writers: ``EventLog.open(directory, durability=...)`` then ``append`` /
``append_batch``; one writer per directory (``LOCK``). Readers never lock:
``read`` (a snapshot prefix; ``start=Position(...)`` resumes at a known,
checked position), ``follow`` (live tail), ``verify`` (whole-log
audit). The bytes on disk are specified in FORMAT.md at the repository root;
the recovery rules are in ``eventlog.scanner`` and ``eventlog.recovery``.
"""

from __future__ import annotations

from .errors import (
    CorruptLogError,
    EventLogError,
    KeyRequiredError,
    LogClosedError,
    LogLockedError,
    LogPoisonedError,
    PositionMismatchError,
    RecordTooLargeError,
    UnsupportedFormatError,
)
from .follow import Follower, follow
from .format import DEFAULT_MAX_RECORD_BYTES, Position, RawRecord, Record, signed_header
from .reader import end_position, read
from .verify import Problem, VerifyReport, verify
from .writer import DEFAULT_SEGMENT_BYTES, Durability, EventLog, EventLogStats

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "CorruptLogError",
    "Durability",
    "EventLog",
    "EventLogError",
    "EventLogStats",
    "Follower",
    "KeyRequiredError",
    "LogClosedError",
    "LogLockedError",
    "LogPoisonedError",
    "Position",
    "PositionMismatchError",
    "Problem",
    "RawRecord",
    "Record",
    "RecordTooLargeError",
    "UnsupportedFormatError",
    "VerifyReport",
    "end_position",
    "follow",
    "read",
    "signed_header",
    "verify",
]
