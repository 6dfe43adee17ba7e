"""Walk the records of one segment's bytes and classify how they end.

This is the only code that decides what the bytes of a log mean; the
reader, the follower, ``verify`` and writer-open recovery all call it, so
they cannot disagree about where a log ends or whether it is corrupt.

How a scan ends (FORMAT.md, "Torn tails and corruption"):

``clean``
    the bytes end exactly after a whole record that closes its batch.
``torn``
    only in the LAST segment, a failure at offset ``o`` that a crash (process
    kill or power loss) can leave behind:

    1. fewer than 28 bytes remain (a torn record header);
    2. every byte from ``o`` to EOF is zero (a zero-filled tail);
    3. the header crc is good and the record extends past EOF (a short write);
    4. the header or body crc fails, nothing but zeros follows the record's
       end (EOF when the header is bad), and some 512-byte file-aligned
       sector, intersected with the range from ``o`` to EOF (the record plus
       the zeros after it), is an all-zero chunk of at least 8 bytes, or is
       the file's last, partial sector, all zero from its boundary to EOF:
       power loss zeroes whole sectors, a bit flip never does (etcd's
       ``isTornEntry``);
    5. the bytes end inside a batch (no record with batch_left 0 yet).

    The log ends at ``o`` - or at the start of the batch ``o`` is in, so a
    batch is all-or-nothing.
``tail`` (readers only, ``lenient=True``)
    also in the last segment: a record whose header is good but whose body
    fails, with nothing but zeros after it. A reader cannot tell that from a
    writer in the middle of an append, so it stops quietly; writer-open
    recovery and ``verify`` call it corruption.

Everything else raises :class:`CorruptLogError`: a bad crc with more data
after it, any defect outside the last segment, a chain mismatch, a seq gap
or repeat, an oversized length (never allocated), a payload that is not a
msgpack map, a batch interrupted by another one. Nothing is ever skipped.

The loop is the readers' hot path: one read of the segment, bytes slices
(cheaper to crc than memoryview slices), a precompiled struct, two crc32
calls, one copy of a pre-keyed blake2b state, one msgpack call and one
tuple-backed Record per record.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from typing import Any

import attrs
import msgpack

from .errors import CorruptLogError
from .format import (
    DIGEST_SIZE,
    MIN_ZERO_CHUNK,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    RECORD_TRAILER_SIZE,
    SECTOR_SIZE,
    SEGMENT_HEADER_SIZE,
    Record,
    SegmentHeader,
    decode_segment_header,
)
from .format import new_record as _new_record

CLEAN = "clean"
TORN = "torn"
TAIL = "tail"
STOPPED = "stopped"

_ZEROS = bytes(SECTOR_SIZE)
RECORD_TRAILER = RECORD_TRAILER_SIZE
#: zlib.crc32(data + crc32(data) as 4 little-endian bytes), for any data.
CRC_RESIDUE = 0x2144DF1C


@attrs.define(slots=True)
class ScanState:
    """Where a scan got to; updated after every whole batch.

    ``offset`` is the absolute file offset just past the last whole batch,
    ``seq`` the next seq expected there and ``digest`` the chain digest
    after the last whole record. ``end`` says how the scan ended (``clean``,
    ``torn``, ``tail`` or ``stopped`` when the caller's ``to_seq`` was
    reached) and ``reason`` why, for torn and tail ends. ``eof`` is the
    absolute offset of the end of the scanned bytes.
    """

    offset: int
    seq: int
    digest: bytes
    records: int = 0
    end: str = ""
    reason: str = ""
    eof: int = 0


def is_all_zero(data: bytes | memoryview) -> bool:
    """True when every byte is zero (also for empty data)."""
    view = memoryview(data)
    n = len(view)
    pos = 0
    while pos < n:
        step = min(SECTOR_SIZE, n - pos)
        if view[pos : pos + step] != _ZEROS[:step]:
            return False
        pos += step
    return True


def has_zero_sector_chunk(buf: bytes | memoryview, base: int, start: int, end: int) -> bool:
    """Is some 512-aligned sector, cut to ``[start, end)``, an all-zero chunk of >= 8 bytes?

    ``buf`` holds the file from absolute offset ``base``; ``start`` and
    ``end`` are absolute offsets.
    """
    view = memoryview(buf)
    pos = start
    while pos < end:
        stop = min(end, (pos // SECTOR_SIZE + 1) * SECTOR_SIZE)
        n = stop - pos
        # A lost final sector holds only what was past its boundary: from a
        # sector boundary to EOF it may be shorter than MIN_ZERO_CHUNK.
        whole = n >= MIN_ZERO_CHUNK or (pos % SECTOR_SIZE == 0 and stop == base + len(buf))
        if whole and view[pos - base : stop - base] == _ZEROS[:n]:
            return True
        pos = stop
    return False


def classify_failure(
    buf: bytes | memoryview, base: int, offset: int, *, header_ok: bool, record_end: int | None
) -> str | None:
    """The torn-tail reason for a failure at ``offset``, or None if it is corruption.

    Rules 1-4 of the module docstring (rule 5, the incomplete batch, is the
    scanner's). ``record_end`` is the absolute end of the failing record when
    its header is good.
    """
    eof = base + len(buf)
    view = memoryview(buf)
    if eof - offset < RECORD_HEADER_SIZE:
        return f"torn record header ({eof - offset} bytes at end of file)"
    if is_all_zero(view[offset - base :]):
        return f"zero-filled tail ({eof - offset} bytes)"
    if header_ok and record_end is not None and record_end > eof:
        return f"record extends past end of file (needs {record_end - offset}, has {eof - offset})"
    end = record_end if header_ok and record_end is not None else eof
    # Only zeros after the record, so sector chunks of [offset, eof) are the
    # record's own plus the zeroed sectors after it: a zeroed sector that
    # begins a few bytes before the record's end still counts as evidence.
    if is_all_zero(view[end - base :]) and has_zero_sector_chunk(buf, base, offset, eof):
        return "torn write (zeroed sector in the last record)"
    return None


def check_segment_header(
    data: bytes | memoryview,
    path: str,
    name_seq: int,
    *,
    is_last: bool,
) -> SegmentHeader | None:
    """Decode a segment's header; None when it is a crash during creation.

    A last segment shorter than a header, or all zeros, is what a crash
    between creating the file and syncing its header leaves; the caller
    treats it as a torn tail. Anything else wrong is corruption, as is a
    header whose first_seq differs from the file name.
    """
    if is_last and (len(data) < SEGMENT_HEADER_SIZE or is_all_zero(data)):
        return None
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptLogError(path, 0, name_seq, f"segment header truncated ({len(data)} bytes)")
    if is_all_zero(data[:SEGMENT_HEADER_SIZE]):
        raise CorruptLogError(path, 0, name_seq, "zeroed segment header with data after it")
    header = decode_segment_header(data[:SEGMENT_HEADER_SIZE], path)
    if header.first_seq != name_seq:
        raise CorruptLogError(
            path,
            16,
            name_seq,
            f"segment header says first_seq {header.first_seq}, file name says {name_seq}",
        )
    return header


def _payload_error(path: str, offset: int, seq: int, exc: Exception) -> CorruptLogError:
    detail = str(exc)[:120]
    return CorruptLogError(
        path, offset, seq, f"payload is not valid msgpack ({type(exc).__name__}: {detail})"
    )


def _header_error(path: str, offset: int, seq: int, length: int, rseq: int, limit: int) -> None:
    """Raise for a header whose crc is good but whose length or seq is wrong."""
    if length > limit:
        raise CorruptLogError(
            path, offset, seq, f"oversized length {length} (max_record_bytes {limit})"
        )
    if rseq != seq:
        what = "gap" if rseq > seq else "repeat"
        raise CorruptLogError(path, offset, seq, f"seq {what}: found seq {rseq}")


def scan_records(
    buf: bytes,
    base: int,
    start: int,
    state: ScanState,
    *,
    path: str,
    name: str,
    key: bytes | None,
    is_last: bool,
    lenient: bool = False,
    max_record_bytes: int,
    from_seq: int = 1,
    to_seq: int | None = None,
) -> Iterator[Record]:
    """Yield the whole records of ``buf`` from absolute offset ``start``.

    ``buf`` holds the file's bytes from absolute offset ``base`` to (what
    was then) EOF. ``state`` comes in holding the seq expected at ``start``
    and the chain digest before it; when the generator is exhausted it
    holds the position after the last whole batch and ``state.end`` says
    how the scan ended (an abandoned or failed scan leaves it stale).
    ``key`` is the chain key (``b""`` for an unkeyed log) or None to skip
    chain checks (a keyed log read without its key; crcs are still
    checked). Records with seq < ``from_seq`` are checked but not decoded
    or yielded; the scan stops after ``to_seq``.
    """
    # Everything the loop touches is a local: this is the readers' hot path.
    unpack_header = RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    unpackb = msgpack.unpackb
    new_record = _new_record
    record_type = Record
    check_chain = key is not None
    # One keyed (or unkeyed: an empty key) blake2b state made once; each
    # record's digest starts from a copy of it, which skips the argument
    # parsing and key block of a fresh ``blake2b(..., key=...)`` per record.
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE, key=key or b"").copy
    end = len(buf)
    pos = start - base
    first_seq = seq = state.seq
    prev = state.digest
    last = to_seq if to_seq is not None else 2**64
    limit = max_record_bytes
    state.eof = base + end
    # A batch in progress: its records wait in ``pending`` until the record
    # with batch_left 0; (batch_pos, batch_seq, batch_prev) is where it began.
    pending: list[Record] = []
    batch_pos = -1
    batch_seq = 0
    batch_prev = prev
    expect_left = -1

    def failure(at: int, reason: str, *, header_ok: bool, record_end: int | None) -> str:
        """Classify a failure at relative offset ``at``: returns the end kind or raises."""
        abs_at = base + at
        abs_end = None if record_end is None else base + record_end
        if is_last:
            torn = classify_failure(buf, base, abs_at, header_ok=header_ok, record_end=abs_end)
            if torn is not None:
                state.reason = f"{torn} at offset {abs_at}"
                return TORN
            if (
                lenient
                and header_ok
                and record_end is not None
                and record_end <= end
                and is_all_zero(memoryview(buf)[record_end:])
            ):
                state.reason = f"{reason} in the last record at offset {abs_at}"
                return TAIL
        raise CorruptLogError(path, abs_at, seq, reason)

    kind = CLEAN
    while True:
        if end - pos < RECORD_HEADER_SIZE:
            if pos >= end:
                if batch_pos >= 0:
                    if not is_last:
                        raise CorruptLogError(
                            path, base + batch_pos, batch_seq, "segment ends inside a batch"
                        )
                    state.reason = (
                        f"incomplete batch at end of file (from offset {base + batch_pos})"
                    )
                    kind = TORN
                break
            kind = failure(pos, "torn record header", header_ok=False, record_end=None)
            break
        length, rseq, time_ns, left, header_crc = unpack_header(buf, pos)
        head = buf[pos : pos + 24]
        if crc32(head) != header_crc:
            kind = failure(pos, "record header crc mismatch", header_ok=False, record_end=None)
            break
        if length > limit or rseq != seq:
            _header_error(path, base + pos, seq, length, rseq, limit)
        payload_end = pos + RECORD_HEADER_SIZE + length
        record_end = payload_end + RECORD_TRAILER
        if record_end > end:
            kind = failure(
                pos, "record extends past end of file", header_ok=True, record_end=record_end
            )
            break
        body = pos + RECORD_HEADER_SIZE
        # crc32 over payload + digest + its own stored crc is a constant (the
        # CRC residue) exactly when the stored crc is right: one call, no unpack.
        # (A bytes slice is cheaper here than a memoryview slice: crc32 of a
        # memoryview pays for the buffer protocol.)
        if crc32(buf[body:record_end]) != CRC_RESIDUE:
            kind = failure(pos, "record body crc mismatch", header_ok=True, record_end=record_end)
            break
        payload = buf[body:payload_end]
        digest = buf[payload_end : payload_end + DIGEST_SIZE]
        if check_chain:
            h = hasher()
            h.update(prev + head + payload)
            if h.digest() != digest:
                raise CorruptLogError(
                    path, base + pos, seq, "chain digest mismatch (history edited, or wrong key)"
                )
        if seq >= from_seq:
            # unpackb's defaults are the reader's hostile-input settings
            # (format.unpack_payload): raw=False, strict_map_key=True and every
            # length bounded by len(payload).
            try:
                obj: Any = unpackb(payload)
            except Exception as exc:  # hostile bytes: any msgpack failure is corruption
                raise _payload_error(path, base + pos, seq, exc) from None
            if type(obj) is not dict:
                raise CorruptLogError(
                    path, base + pos, seq, f"payload is a {type(obj).__name__}, not a map"
                )
            record = new_record(record_type, (seq, time_ns, obj, digest, name, base + pos))
            if left == 0 and expect_left < 0:
                # The common case: a record on its own.
                yield record
            else:
                pending.append(record)
        if left or expect_left >= 0:
            if expect_left < 0:
                batch_pos = pos
                batch_seq = seq
                batch_prev = prev
            elif left != expect_left:
                raise CorruptLogError(
                    path,
                    base + pos,
                    seq,
                    f"batch interrupted: expected batch_left {expect_left}, found {left}",
                )
            if left:
                expect_left = left - 1
            else:
                # The batch is whole: it becomes visible all at once.
                expect_left = -1
                batch_pos = -1
                batch = pending
                pending = []
                for record in batch:
                    if record.seq <= last:
                        yield record
        prev = digest
        seq += 1
        pos = record_end
        if seq > last and batch_pos < 0:
            kind = STOPPED
            break
    if batch_pos >= 0:
        # Whatever ended the scan, the log ends before the unfinished batch.
        if kind == TORN and "incomplete batch" not in state.reason:
            state.reason += f" inside a batch (cut back to its start at offset {base + batch_pos})"
        pos, seq, prev = batch_pos, batch_seq, batch_prev
    state.offset = base + pos
    state.seq = seq
    state.digest = prev
    state.records += seq - first_seq
    state.end = kind
