"""Checking a known position before starting there: the one rule, for readers and recovery.

A position (``format.Position``: segment, offset, seq, digest) comes from
outside - a follower's memory, a snapshot file - so it is a claim, never
trusted as such. Both the reader (``read(start=...)``) and writer-open
recovery (``EventLog.open(start=...)``) start a scan there only when
:func:`check_position` says it holds; otherwise they scan from the segment's
header as if they had no position. Keeping the rule here, once, means the
two cannot disagree about which positions are good. FORMAT.md, "Starting at
a known position", is the prose; what a good position saves is checking the
records before it in its segment (left, like earlier segments, to
``verify``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

import attrs

from .errors import CorruptLogError, EventLogError
from .files import reading
from .format import (
    DIGEST_SIZE,
    RECORD_TRAILER_SIZE,
    SEGMENT_HEADER_SIZE,
    Position,
    SegmentHeader,
)
from .scanner import ScanState, check_segment_header
from .segments import SegmentFile
from .torn import record_at

__all__ = ["ChainKey", "Resume", "check_position"]

#: The caller's chain key for a segment (``b""`` unkeyed, None: chain not
#: checkable); it may raise CorruptLogError (the position is then not used)
#: or any other error (which then propagates, as it would in a full scan).
ChainKey = Callable[[SegmentFile, SegmentHeader], "bytes | None"]


@attrs.frozen
class Resume:
    """A checked position: its segment's bytes from ``base`` to EOF and the scan state there.

    ``state`` starts at the position (offset, next seq, digest); hand it to
    ``scanner.scan_records`` with ``data``, ``base`` and ``key``.
    """

    index: int
    header: SegmentHeader
    data: bytes
    base: int
    state: ScanState
    key: bytes | None


def check_position(
    segments: Sequence[SegmentFile],
    pos: Position,
    *,
    chain_key: ChainKey,
    max_record_bytes: int,
) -> Resume | str:
    """The :class:`Resume` at ``pos`` if it holds, else a string saying why not.

    ``segments`` is the directory's listing, in order. Reads the segment's
    header and its bytes from just before ``offset`` (the digest of the
    record ending there) to EOF; never the records before the position.
    """
    index = next((i for i, s in enumerate(segments) if s.name == pos.segment), -1)
    if index < 0:
        return f"no segment {pos.segment!r}"
    seg = segments[index]
    is_last = index == len(segments) - 1
    seq, offset, digest = pos.seq, pos.offset, pos.digest
    if not seg.first_seq - 1 <= seq or (not is_last and segments[index + 1].first_seq <= seq):
        return f"seq {seq} is not in segment {seg.name}"
    if offset < SEGMENT_HEADER_SIZE or len(digest) != DIGEST_SIZE:
        return "offset or digest out of range"
    base = max(SEGMENT_HEADER_SIZE, offset - RECORD_TRAILER_SIZE)
    try:
        with reading(seg.path) as f:
            if offset > os.fstat(f.fileno()).st_size:
                return f"offset {offset} is past the end of {seg.name}"
            head = f.read(SEGMENT_HEADER_SIZE)
            f.seek(base)
            data = f.read()
    except (OSError, OverflowError, ValueError, EventLogError) as exc:
        return f"segment {seg.name} unreadable at the position ({exc})"
    if offset > base + len(data):
        return f"offset {offset} is past the end of {seg.name}"
    try:
        header = check_segment_header(head, seg.path, seg.first_seq, is_last=is_last)
        if header is None:
            return f"segment {seg.name} has no header yet"
        key = chain_key(seg, header)
    except CorruptLogError as exc:
        return str(exc)
    why = _check_digest_before(header, data, base, pos) or _check_after(
        segments, index, header, data, base, pos, key, max_record_bytes
    )
    if why:
        return why
    return Resume(index, header, data, base, ScanState(offset, seq + 1, digest), key)


def _check_digest_before(header: SegmentHeader, data: bytes, base: int, pos: Position) -> str:
    """Rule 2: the bytes before ``offset`` end a record with ``digest`` (or the header does)."""
    if pos.offset == SEGMENT_HEADER_SIZE:
        if pos.seq != header.first_seq - 1 or pos.digest != header.prev_digest:
            return "offset 64 but seq/digest differ from the segment header"
    elif (
        pos.seq < header.first_seq
        or data[pos.offset - base - RECORD_TRAILER_SIZE :][:DIGEST_SIZE] != pos.digest
    ):
        return f"the record ending at offset {pos.offset} does not end with the digest"
    return ""


def _check_after(
    segments: Sequence[SegmentFile],
    index: int,
    header: SegmentHeader,
    data: bytes,
    base: int,
    pos: Position,
    key: bytes | None,
    max_record_bytes: int,
) -> str:
    """Rule 3: what follows ``offset`` (a record, or the next segment) continues from it."""
    offset, seq, digest = pos.offset, pos.seq, pos.digest
    rest = len(data) - (offset - base)
    layout = header.layout
    if rest >= layout.header_size:
        at = offset - base
        found = record_at(data, at, layout, max_record_bytes)
        if found is None or found.seq != seq + 1:
            return f"no whole record with seq {seq + 1} at offset {offset}"
        if key is not None:
            h = hashlib.blake2b(digest_size=DIGEST_SIZE, key=key)
            h.update(digest + data[at : at + layout.signed_size])
            h.update(data[at + layout.header_size : found.end - RECORD_TRAILER_SIZE])
            if h.digest() != found.digest:
                return f"the record at offset {offset} does not chain from the digest"
        return ""
    if rest:
        return f"a partial record at offset {offset}"
    if index == len(segments) - 1:
        return ""
    nxt = segments[index + 1]
    try:
        with reading(nxt.path) as f:
            nhead = f.read(SEGMENT_HEADER_SIZE)
        nheader = check_segment_header(
            nhead, nxt.path, nxt.first_seq, is_last=index + 1 == len(segments) - 1
        )
    except (OSError, CorruptLogError) as exc:
        return str(exc)
    if nheader is not None and (nheader.first_seq != seq + 1 or nheader.prev_digest != digest):
        return f"segment {nxt.name} does not continue from the position"
    return ""
