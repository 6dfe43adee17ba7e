"""Writer-open recovery: find the end of the log and repair a torn tail.

Only the LAST segment is examined when a writer opens (opening must stay
cheap; ``verify`` checks the rest). The shared scanner walks it, checking
framing, crcs and the chain (payloads are not decoded here: readers and
``verify`` do that), and classifies its end exactly as readers do.

Given a known position (``start``, e.g. a snapshot's) that holds by the
readers' rule (``eventlog.position``, the one home of that rule) and lies
in the last segment, the walk starts there instead of at the segment's
header: a small log with a snapshot then opens in the time of its tail,
not of its last segment. The records before the position are then left to
``verify``, like earlier segments; everything after it is checked and
judged exactly as in a full walk. A position that does not hold only costs
the full walk, never an error (a snapshot is a hint, not an authority).
How the segment ends:

- clean: nothing to do;
- torn (FORMAT.md, "Torn tails and corruption": short header, zero-filled
  tail, short record, crc failure with a zeroed sector and only zeros
  after, incomplete batch): the bytes from the cut point to EOF are copied
  to ``<segment>.broken`` (fsynced), the segment is truncated to the cut
  point, the segment and the directory are fsynced and a warning is
  logged. A cut inside a batch goes back to the batch's start, so a batch
  is all-or-nothing;
- a last segment whose header is incomplete or all zeros (a crash between
  creating the file and syncing its header, during rotation): the file is
  renamed to ``<segment>.broken`` and the segment recreated with a proper
  header (its ``prev_digest`` taken from the previous segment);
- anything else raises CorruptLogError and the log is left untouched: a
  human must look at it. Nothing is ever silently dropped.

Why copy the cut bytes rather than just truncate: the cut is a judgement
made by a heuristic (the torn-write rule); if it was wrong, the bytes are
still there for a person or a court to see.
"""

from __future__ import annotations

import logging
import os

import attrs

from .errors import CorruptLogError, EventLogError, KeyRequiredError
from .files import open_existing, read_file, write_file_durably
from .format import (
    SEGMENT_HEADER_SIZE,
    ZERO_DIGEST,
    Position,
    SegmentHeader,
    encode_segment_header,
)
from .position import Resume, check_position
from .scanner import CLEAN, TORN, ScanState, check_segment_header, scan_records
from .segments import SegmentFile, broken_path, fsync_dir

__all__ = ["Tail", "check_key", "recover_tail"]

log = logging.getLogger("eventlog")

#: from_seq that makes the scanner check records without decoding them.
_NO_DECODE = 2**64


@attrs.frozen
class Tail:
    """The end of a log as writer-open recovery left it.

    ``size`` is the segment's length after repair (where the next record
    goes), ``last_seq`` the last whole record (``first_seq - 1`` for an
    empty segment) and ``digest`` the chain digest after it. ``repair``
    describes what was cut, or is empty.
    """

    segment: SegmentFile
    header: SegmentHeader
    size: int
    last_seq: int
    digest: bytes
    repair: str = ""
    #: The proof the last record carries (format v2): seqs up to it were durable.
    #: 0 when a start position was used and no record follows it (no proof
    #: claimed; a lower proof is always safe).
    durable_seq: int = 0
    #: Where the check of the last segment began (64: its header) and how many
    #: records it checked: what a start position saved, without timing anything.
    checked_from: int = SEGMENT_HEADER_SIZE
    records_checked: int = 0
    #: How a start position was used: "" (none given), "used" or "fallback: <why>".
    position_use: str = ""


def check_key(header: SegmentHeader, key: bytes | None, path: str) -> None:
    """A writer must hold the key of a keyed log and must not key an unkeyed one."""
    if header.keyed and key is None:
        raise KeyRequiredError(
            f"event log segment {path} is keyed (its chain is a MAC): open it with its key"
        )
    if not header.keyed and key is not None:
        raise EventLogError(
            f"event log segment {path} is not keyed but a key was given: a log's keying "
            "is fixed when it is created"
        )


def _scan_segment(
    seg: SegmentFile,
    data: bytes,
    header: SegmentHeader,
    *,
    key: bytes,
    is_last: bool,
    max_record_bytes: int,
) -> ScanState:
    state = ScanState(SEGMENT_HEADER_SIZE, header.first_seq, header.prev_digest)
    for _ in scan_records(
        data,
        0,
        SEGMENT_HEADER_SIZE,
        state,
        path=seg.path,
        name=seg.name,
        key=key,
        is_last=is_last,
        max_record_bytes=max_record_bytes,
        from_seq=_NO_DECODE,
        version=header.version,
    ):
        pass
    return state


def _recreate_segment(
    directory: str,
    segments: list[SegmentFile],
    data: bytes,
    *,
    key: bytes | None,
    max_record_bytes: int,
) -> Tail:
    """The last segment's header never made it to disk: set it aside, write it anew."""
    seg = segments[-1]
    if len(segments) > 1:
        prev_seg = segments[-2]
        prev_data = read_file(prev_seg.path)
        prev_header = check_segment_header(
            prev_data, prev_seg.path, prev_seg.first_seq, is_last=False
        )
        assert prev_header is not None
        check_key(prev_header, key, prev_seg.path)
        state = _scan_segment(
            prev_seg,
            prev_data,
            prev_header,
            key=key or b"",
            is_last=False,
            max_record_bytes=max_record_bytes,
        )
        if state.seq != seg.first_seq:
            raise CorruptLogError(
                seg.path,
                0,
                state.seq,
                f"segment named for seq {seg.first_seq} follows a segment ending at seq "
                f"{state.seq - 1}",
            )
        prev_digest = state.digest
    else:
        prev_digest = ZERO_DIGEST
    moved = broken_path(seg.path)
    os.rename(seg.path, moved)
    fsync_dir(directory)
    header_bytes = encode_segment_header(seg.first_seq, prev_digest, keyed=key is not None)
    write_file_durably(seg.path, header_bytes)
    fsync_dir(directory)
    repair = (
        f"segment {seg.name} had an incomplete header ({len(data)} bytes; crash while it was "
        f"created): moved to {os.path.basename(moved)} and recreated"
    )
    log.warning("event log %s: %s", directory, repair)
    header = check_segment_header(header_bytes, seg.path, seg.first_seq, is_last=False)
    assert header is not None
    return Tail(seg, header, SEGMENT_HEADER_SIZE, seg.first_seq - 1, prev_digest, repair)


def recover_tail(
    directory: str,
    segments: list[SegmentFile],
    *,
    key: bytes | None,
    max_record_bytes: int,
    start: Position | None = None,
) -> Tail:
    """Check the last segment, repair a torn tail, return where appends continue.

    ``start``: a known position (e.g. a snapshot's). When it holds by the
    readers' rule (``eventlog.position``) and lies in the last segment, only
    the bytes after it are checked; otherwise the whole last segment is.
    """
    seg = segments[-1]
    fallback = ""
    if start is not None:
        resumed = _resume(segments, start, key=key, max_record_bytes=max_record_bytes)
        if isinstance(resumed, Resume):
            return _check_from(directory, seg, resumed, max_record_bytes=max_record_bytes)
        fallback = f"fallback: {resumed}"
    data = read_file(seg.path)
    header = check_segment_header(data, seg.path, seg.first_seq, is_last=True)
    if header is None:
        tail = _recreate_segment(
            directory, segments, data, key=key, max_record_bytes=max_record_bytes
        )
        return attrs.evolve(tail, position_use=fallback)
    check_key(header, key, seg.path)
    state = _scan_segment(
        seg, data, header, key=key or b"", is_last=True, max_record_bytes=max_record_bytes
    )
    return _scanned_tail(directory, seg, header, data, 0, state, SEGMENT_HEADER_SIZE, fallback)


def _resume(
    segments: list[SegmentFile], start: Position, *, key: bytes | None, max_record_bytes: int
) -> Resume | str:
    """The checked ``start`` in the last segment, or why it cannot be used."""
    if start.segment != segments[-1].name:
        return f"position is not in the last segment ({segments[-1].name})"

    def chain_key(seg: SegmentFile, header: SegmentHeader) -> bytes:
        check_key(header, key, seg.path)
        return key or b""

    return check_position(segments, start, chain_key=chain_key, max_record_bytes=max_record_bytes)


def _check_from(directory: str, seg: SegmentFile, resume: Resume, *, max_record_bytes: int) -> Tail:
    """Check the last segment from a checked position on: records after it only."""
    state = resume.state
    checked_from = state.offset
    for _ in scan_records(
        resume.data,
        resume.base,
        state.offset,
        state,
        path=seg.path,
        name=seg.name,
        key=resume.key,
        is_last=True,
        max_record_bytes=max_record_bytes,
        from_seq=_NO_DECODE,
        version=resume.header.version,
    ):
        pass
    return _scanned_tail(
        directory, seg, resume.header, resume.data, resume.base, state, checked_from, "used"
    )


def _scanned_tail(
    directory: str,
    seg: SegmentFile,
    header: SegmentHeader,
    data: bytes,
    base: int,
    state: ScanState,
    checked_from: int,
    position_use: str,
) -> Tail:
    """Where appends continue after a scan of the last segment (a torn tail cut first)."""
    repair = _cut_if_torn(directory, seg, data, base, state)
    return Tail(
        seg,
        header,
        state.offset,
        state.seq - 1,
        state.digest,
        repair,
        state.durable_seq,
        checked_from=checked_from,
        records_checked=state.records,
        position_use=position_use,
    )


def _cut_if_torn(directory: str, seg: SegmentFile, data: bytes, base: int, state: ScanState) -> str:
    """Cut a torn tail the scan found (``data`` holds the segment from ``base``).

    The cut bytes are kept in ``<segment>.broken`` first; returns what was
    done, or "" for a clean end.
    """
    if state.end != TORN:
        assert state.end == CLEAN, state.end
        return ""
    cut = state.offset
    moved = broken_path(seg.path)
    write_file_durably(moved, data[cut - base :])
    fsync_dir(directory)
    fd = open_existing(seg.path, os.O_RDWR)
    try:
        os.ftruncate(fd, cut)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(directory)
    repair = (
        f"cut torn tail of {seg.name}: {state.eof - cut} bytes from offset {cut} "
        f"({state.reason}); copied to {os.path.basename(moved)}"
    )
    log.warning("event log %s: %s", directory, repair)
    return repair
