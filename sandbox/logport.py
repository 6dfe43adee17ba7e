"""The log port: the operations the Store needs from an event log, and a log in memory.

The Store depends on this interface, not on ``eventlog.EventLog`` (which
satisfies it as it is), after pyeventsourcing's ``Recorder``: the domain's
command rules can then be exercised against ``MemoryLog`` in unit tests that
never touch a disk. Crash, kill and durability guarantees belong to the real
log and are tested on it only; ``MemoryLog`` promises none of them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from eventlog.closing import Closing
from eventlog.errors import LogClosedError
from eventlog.format import pack_payload, unpack_payload

__all__ = ["LogPort", "MemoryLog", "MemoryRecord"]


class LogPort(Protocol):
    """What the Store calls on its log (``eventlog.EventLog`` is the real one)."""

    @property
    def last_seq(self) -> int:
        """The seq of the last appended record (0: empty)."""
        ...

    @property
    def head(self) -> bytes:
        """The chain digest after ``last_seq``."""
        ...

    @property
    def synced_offset(self) -> tuple[str, int]:
        """``(current segment, bytes of it known durable)``."""
        ...

    def append(self, payload: dict[str, Any]) -> int:
        """Append one payload; its seq (1-based, gapless)."""
        ...

    def append_batch(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """Append payloads all-or-nothing; their seqs."""
        ...

    def close(self) -> None: ...


class MemoryRecord:
    """One appended payload, as a reader would return it (after a msgpack round trip)."""

    __slots__ = ("digest", "payload", "seq", "time_ns")

    def __init__(self, seq: int, time_ns: int, payload: dict[str, Any], digest: bytes) -> None:
        self.seq = seq
        self.time_ns = time_ns
        self.payload = payload
        self.digest = digest


class MemoryLog(Closing):
    """A ``LogPort`` in a list: no files, no fsync, no lock, nothing survives the process.

    Payloads go through the same msgpack encoding as the real log (a payload the
    real log cannot pack is refused here too, and readers get what a replay
    would), and each record's digest chains the previous one (sha256), so
    ``head`` changes with every append as the real log's does.
    """

    def __init__(self) -> None:
        self._records: list[MemoryRecord] = []
        self._head = bytes(32)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def last_seq(self) -> int:
        return len(self._records)

    @property
    def head(self) -> bytes:
        return self._head

    @property
    def synced_offset(self) -> tuple[str, int]:
        return ("", 0)  # memory is never durable

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, payload: dict[str, Any]) -> int:
        return self.append_batch([payload])[0]

    def append_batch(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        datas = [pack_payload(p) for p in payloads]  # all packed before any is kept
        with self._lock:
            if self._closed:
                raise LogClosedError("the in-memory log is closed")
            seqs = []
            for data in datas:
                seq = len(self._records) + 1
                self._head = hashlib.sha256(self._head + data).digest()
                self._records.append(
                    MemoryRecord(seq, time.time_ns(), unpack_payload(data), self._head)
                )
                seqs.append(seq)
            return seqs

    def records(self, from_seq: int = 1) -> Iterator[MemoryRecord]:
        """The records from ``from_seq`` on, in order (a copy of the list: safe to append)."""
        with self._lock:
            snapshot = self._records[max(from_seq, 1) - 1 :]
        return iter(snapshot)

    def history(self, from_seq: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(seq, payload)`` of each record from ``from_seq`` on: ``Store.from_log``'s input."""
        return ((r.seq, r.payload) for r in self.records(from_seq))

    def close(self) -> None:
        self._closed = True
