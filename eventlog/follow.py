"""``follow(directory)``: tail a live log, record by record, across rotations.

The truth is byte offsets, not events. The follower keeps (segment, offset
after the last whole batch, next seq, chain digest) and on each wake-up
reads its segment from that offset to EOF with the shared scanner. inotify
(through watchdog) is only a hint to look sooner: events coalesce (1,000
fast appends gave 3 events on this machine) and can be lost when the queue
overflows, so the follower also looks every ``poll_interval`` seconds.

Rules, the same as ``read``'s: records come out in seq order with no gap,
crcs and chain checked, a batch only once its last record is there. A
torn-looking end of the last segment just means "nothing more yet"; the
follower re-reads from the start of that record (or batch) next time. It
moves to the next segment only when a segment file with a higher seq
exists *before* it reads the current one to EOF - a rotation happens only
after the current segment is complete - and then the next file must be
named for exactly the next seq and chain to the last digest. A new segment
whose header is not written yet is waited for.

Iteration ends when ``stop`` is set (checked before each record) or after
``close()``; ``close()`` also stops the watchdog thread. A missing directory
or a directory without a log raises EventLogError at once.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections.abc import Iterator

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from eventlog.closing import Closing

from .errors import CorruptLogError, HistoryNotLocalError
from .files import read_from
from .format import (
    DEFAULT_MAX_RECORD_BYTES,
    FORMAT_VERSION,
    SEGMENT_HEADER_SIZE,
    PayloadDecoder,
    Record,
)
from .scanner import CLEAN, ScanState, check_segment_header, scan_records
from .segments import (
    SegmentFile,
    list_segments,
    open_segments,
    segment_chain_key,
    segment_file,
)

__all__ = ["Follower", "follow"]

log = logging.getLogger("eventlog")

#: What ``segment_chain_key`` says when following: the keyed flag changed; a key for an unkeyed log.
_KEYED_MESSAGES = (
    "keyed flag differs between segments",
    "a key was given but the log is not keyed",
)

#: How often a follower with a ``stop`` event looks at it while idle.
_STOP_CHECK = 0.05
_WAKE_TYPES = ("modified", "created", "moved", "deleted", "closed")


class _Wake(FileSystemEventHandler):
    """Sets an Event on any change in the directory (a hint, never trusted)."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _WAKE_TYPES:
            self._event.set()


class Follower(Closing):
    """An iterator over a live log's records; see ``follow``."""

    def __init__(
        self,
        directory: str,
        from_seq: int,
        *,
        key: bytes | None,
        stop: threading.Event | None,
        poll_interval: float,
        max_record_bytes: int,
        raw: bool = False,
        decode: PayloadDecoder | None = None,
    ):
        if raw and decode is not None:
            raise ValueError("raw records carry the reference map: no decode hook with raw")
        if from_seq < 1:
            raise ValueError(f"from_seq must be >= 1, got {from_seq}")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.directory = directory
        self.from_seq = from_seq
        self._raw = raw
        self._decode = decode
        self._key = key
        self._stop = stop
        self._poll_interval = poll_interval
        self._max = max_record_bytes
        segments, history = open_segments(directory)
        if history is not None and from_seq < history.first_seq:
            raise HistoryNotLocalError(directory, from_seq, history.first_seq, history.where())
        firsts = [s.first_seq for s in segments]
        self._segment: SegmentFile = segments[max(0, bisect.bisect_right(firsts, from_seq) - 1)]
        # None until the current segment's header has been read and checked.
        self._state: ScanState | None = None
        self._version = FORMAT_VERSION
        # (seq, digest) the current segment's header must continue from.
        self._expect: tuple[int, bytes] | None = None
        if history is not None and self._segment.first_seq == history.first_seq:
            # The kept first segment must chain to the compaction record's digest.
            self._expect = (history.first_seq, history.prev_digest)
        self._keyed: bool | None = None
        self._records: Iterator[Record] | None = None
        self._has_next = False
        self._closed = False
        self._wake = threading.Event()
        self._observer: BaseObserver | None = None
        try:
            observer = Observer()
            observer.schedule(
                _Wake(self._wake),
                directory,
                recursive=False,
                event_filter=[
                    FileModifiedEvent,
                    FileCreatedEvent,
                    FileMovedEvent,
                    FileDeletedEvent,
                    FileClosedEvent,
                ],
            )
            observer.start()
            self._observer = observer
        except OSError as exc:
            # inotify limits reached: polling alone is still correct, just slower.
            log.warning("event log %s: no inotify watch (%s); polling only", directory, exc)

    # -- iteration -------------------------------------------------------

    def __iter__(self) -> Follower:
        return self

    def __next__(self) -> Record:
        while True:
            if self._closed or (self._stop is not None and self._stop.is_set()):
                self.close()
                raise StopIteration
            try:
                if self._records is None:
                    self._wake.clear()
                    self._records = self._read_more()
                    if self._records is None:
                        self._idle()
                        continue
                record = next(self._records, None)
                if record is not None:
                    return record
                self._records = None
                moved = self._advance()
            except Exception:
                self.close()
                raise
            if not moved:
                self._idle()

    def _idle(self) -> None:
        """Wait for a wake-up hint, the poll interval, stop or close."""
        deadline = time.monotonic() + self._poll_interval
        while not self._closed:
            if self._stop is not None and self._stop.is_set():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = remaining if self._stop is None else min(remaining, _STOP_CHECK)
            if self._wake.wait(step):
                return

    def _read_more(self) -> Iterator[Record] | None:
        """Start scanning the current segment from the saved offset (None: not ready)."""
        seg = self._segment
        later = [s for s in list_segments(self.directory) if s.first_seq > seg.first_seq]
        # Decided before reading: if a later segment exists now, this one is complete.
        self._has_next = bool(later)
        if self._state is None:
            try:
                data = read_from(seg.path, 0)
            except FileNotFoundError:
                if self._has_next:
                    raise CorruptLogError(seg.path, 0, seg.first_seq, "segment vanished") from None
                return None  # being recreated by writer-open recovery
            header = check_segment_header(data, seg.path, seg.first_seq, is_last=not later)
            if header is None:
                return None  # the writer is creating it
            if self._expect is not None:
                seq, digest = self._expect
                if header.first_seq != seq or header.prev_digest != digest:
                    raise CorruptLogError(
                        seg.path,
                        16,
                        seq,
                        "segment does not continue the previous one (seq or digest)",
                    )
            if self._keyed is None:
                self._keyed = header.keyed
            segment_chain_key(seg, header, self._keyed, self._key, _KEYED_MESSAGES)
            self._state = ScanState(SEGMENT_HEADER_SIZE, header.first_seq, header.prev_digest)
            self._version = header.version
            base = 0
        else:
            base = self._state.offset
            try:
                data = read_from(seg.path, base)
            except FileNotFoundError:
                return None
        state = self._state
        # A keyed log followed without its key: crcs only (chain_key None).
        chain_key = self._key if self._keyed else b""
        return scan_records(
            data,
            base,
            state.offset,
            state,
            path=seg.path,
            name=seg.name,
            key=chain_key,
            is_last=not self._has_next,
            lenient=True,
            max_record_bytes=self._max,
            from_seq=self.from_seq,
            version=self._version,
            raw=self._raw,
            decode=self._decode,
        )

    def _advance(self) -> bool:
        """After a scan: move to the next segment if this one is done. True if moved."""
        state = self._state
        if state is None or not self._has_next or state.end != CLEAN:
            return False
        name_seq = state.seq
        # The next segment's name is known: look for it by name, because a
        # listing taken while the writer creates segments can miss one.
        nxt = segment_file(self.directory, name_seq)
        if nxt is None:
            later = [s for s in list_segments(self.directory) if s.first_seq > name_seq]
            if not later:
                return False
            nxt = segment_file(self.directory, name_seq)
            if nxt is None:
                raise CorruptLogError(
                    later[0].path,
                    0,
                    name_seq,
                    f"missing segment: expected one starting at seq {name_seq}",
                )
        self._segment = nxt
        self._expect = (state.seq, state.digest)
        self._state = None
        return True

    # -- closing ---------------------------------------------------------

    def close(self) -> None:
        """Stop iterating and stop the watchdog thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer is not threading.current_thread():
                observer.join()


def follow(
    directory: str | os.PathLike[str],
    from_seq: int = 1,
    *,
    key: bytes | None = None,
    stop: threading.Event | None = None,
    poll_interval: float = 1.0,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    raw: bool = False,
    decode: PayloadDecoder | None = None,
) -> Follower:
    """Tail the log at ``directory`` from ``from_seq``; see the module docstring.

    With ``raw`` the records are ``RawRecord``s; with ``decode`` (a typed-decode
    hook) ``DecodedRecord``s: see ``eventlog.read``.
    """
    return Follower(
        os.path.abspath(os.fspath(directory)),
        from_seq,
        key=key,
        stop=stop,
        poll_interval=poll_interval,
        max_record_bytes=max_record_bytes,
        raw=raw,
        decode=decode,
    )
