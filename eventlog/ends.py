"""Where a log starts and ends, for readers: ``local_history`` (the ``HISTORY``
record of a compacted log) and ``end_position`` (a claim of where the log ends now,
for a writer's owner to hand to a later ``read(start=...)``).

Both are read-only looks at the directory; ``eventlog.reader`` re-exports them.
"""

from __future__ import annotations

import os

from .errors import CorruptLogError, EventLogError
from .files import reading
from .format import (
    DIGEST_SIZE,
    RECORD_TRAILER_SIZE,
    SEGMENT_HEADER_SIZE,
    Position,
)
from .history import History
from .scanner import check_segment_header
from .segments import check_first_segment, list_segments

__all__ = ["end_position", "local_history"]


def local_history(directory: str | os.PathLike[str]) -> History | None:
    """The log's ``HISTORY`` record: None when its history is local from seq 1.

    For tools that read "everything that is here": ``read(directory,
    from_seq=h.first_seq)``, and a note saying where the rest went
    (``h.note()``). ``read`` itself defaults to seq 1 and raises
    HistoryNotLocalError on a compacted log, so that nothing (a full replay
    of the store, say) mistakes the local tail for the whole history.
    """
    d = os.fspath(directory)
    _, history = check_first_segment(d, list_segments(d))
    return history


def end_position(directory: str | os.PathLike[str], seq: int, digest: bytes) -> Position | None:
    """The position just after record ``seq`` if it is the log's last record now.

    For a writer's owner with no append in flight (the Store holds its
    command lock): ``seq`` and ``digest`` are the writer's ``last_seq`` and
    ``head``. The position is the end of the last segment file, returned
    only if the bytes there agree (the last record ends with ``digest``, or
    an empty segment's header has ``prev_digest == digest`` and starts at
    ``seq + 1``); None otherwise (the log moved on, or is not this one). It is
    still only a claim: ``read(start=...)`` checks it again before use.
    """
    try:
        segments = list_segments(os.fspath(directory))
    except EventLogError:
        return None
    if not segments or len(digest) != DIGEST_SIZE:
        return None
    seg = segments[-1]
    try:
        with reading(seg.path) as f:
            size = os.fstat(f.fileno()).st_size
            if size == SEGMENT_HEADER_SIZE:
                header = f.read(SEGMENT_HEADER_SIZE)
                ok = (
                    seq == seg.first_seq - 1
                    and check_segment_header(header, seg.path, seg.first_seq, is_last=False)
                    is not None
                    and header[24:56] == digest
                )
            elif size > SEGMENT_HEADER_SIZE + RECORD_TRAILER_SIZE:
                f.seek(size - RECORD_TRAILER_SIZE)
                ok = seq >= seg.first_seq and f.read(DIGEST_SIZE) == digest
            else:
                ok = False
    except (OSError, CorruptLogError):
        return None
    return Position(seg.name, size, seq, digest) if ok else None
