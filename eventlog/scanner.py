"""Walk the records of one segment's bytes and classify how they end.

This is the only code that decides what the bytes of a log mean; the
reader, the follower, ``verify`` and writer-open recovery all call it, so
they cannot disagree about where a log ends or whether it is corrupt.

How a scan ends (FORMAT.md, "Where a log ends"):

``clean``
    the bytes end exactly after a whole record that closes its batch.
``torn``
    only in the LAST segment: a failure that a crash can leave behind, as
    ``eventlog.torn`` decides it (version 2: by proof - a record that a later
    intact record proves durable is never torn - then by what a crash can
    leave in the unproven tail; version 1: by the zero-sector rule). The
    bytes ending inside a batch are torn too. The log ends at the failure,
    or at the start of the batch it is in, so a batch is all-or-nothing.
``tail`` (readers only, ``lenient=True``)
    also in the last segment: a record whose header is good but whose body
    fails, with nothing but zeros after it. A reader cannot tell that from a
    writer in the middle of an append, so it stops quietly; writer-open
    recovery and ``verify`` call it corruption.

Everything else raises :class:`CorruptLogError`: a bad record that is not
torn, any defect outside the last segment, a chain mismatch, a seq gap or
repeat, an oversized length (never allocated), a ``durable_seq`` that
claims its own record, a payload that is not a msgpack map, a batch
interrupted by another one. Nothing is ever skipped.

The loop is the readers' hot path: one read of the segment, bytes slices
(cheaper to crc than memoryview slices), a precompiled struct, two crc32
calls, one copy of a pre-keyed blake2b state fed the three pieces of the
chained message (no concatenation), one payload decode and one
tuple-backed Record per record (~1.2 us per record besides the decode on
this 2-core VM; docs/BENCHMARKS.md, "Checked replay with a typed decoder").

The payload decode is ``msgpack.unpackb`` (FORMAT.md's reference) unless
the caller gives a typed-decode hook (``decode``): the hook gets the
payload's bytes and returns the record's payload - typically a typed value
built straight from the bytes - or None, and then the reference decode runs
as it always does (a payload that is not a msgpack map is corruption). A
hook must return a value only for bytes the reference accepts as a map;
``sandbox.event_fastdecode`` is the one the store uses, with its proof.
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
    FORMAT_VERSION,
    LAYOUTS,
    RECORD_TRAILER_SIZE,
    SEGMENT_HEADER_SIZE,
    DecodedRecord,
    PayloadDecoder,
    RawRecord,
    Record,
    SegmentHeader,
    decode_segment_header,
)
from .format import new_record as _new_record
from .torn import CRC_RESIDUE, is_all_zero, judge, judge_v1

CLEAN = "clean"
TORN = "torn"
TAIL = "tail"
STOPPED = "stopped"

RECORD_TRAILER = RECORD_TRAILER_SIZE
__all__ = [
    "CLEAN",
    "CRC_RESIDUE",
    "STOPPED",
    "TAIL",
    "TORN",
    "ScanState",
    "check_segment_header",
    "is_all_zero",
    "scan_records",
]


@attrs.define(slots=True)
class ScanState:
    """Where a scan got to; updated after every whole batch.

    ``offset`` is the absolute file offset just past the last whole batch,
    ``seq`` the next seq expected there and ``digest`` the chain digest
    after the last whole record. ``end`` says how the scan ended (``clean``,
    ``torn``, ``tail`` or ``stopped`` when the caller's ``to_seq`` was
    reached) and ``reason`` why, for torn and tail ends. ``eof`` is the
    absolute offset of the end of the scanned bytes. ``durable_seq`` is the
    proof carried by the last record scanned (0 for version 1 or none).
    """

    offset: int
    seq: int
    digest: bytes
    records: int = 0
    end: str = ""
    reason: str = ""
    eof: int = 0
    durable_seq: int = 0


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


def _header_error(
    path: str, offset: int, seq: int, length: int, rseq: int, durable: int, limit: int
) -> None:
    """Raise for a header whose crc is good but whose length, seq or proof is wrong."""
    if length > limit:
        raise CorruptLogError(
            path, offset, seq, f"oversized length {length} (max_record_bytes {limit})"
        )
    if rseq != seq:
        what = "gap" if rseq > seq else "repeat"
        raise CorruptLogError(path, offset, seq, f"seq {what}: found seq {rseq}")
    raise CorruptLogError(
        path, offset, seq, f"durable_seq {durable} claims a record not yet written before it"
    )


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
    version: int = FORMAT_VERSION,
    raw: bool = False,
    decode: PayloadDecoder | None = None,
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
    or yielded; the scan stops after ``to_seq``. ``version`` is the
    segment's format version (its header says). With ``raw`` the records
    are :class:`RawRecord`s, which also carry the payload's bytes, the
    batch position and the proof (what a shipper forwards byte for byte).
    ``decode`` is a typed-decode hook (module docstring): a record's
    ``payload`` is then what it returned, or the reference map when it
    returned None.
    """
    # Everything the loop touches is a local: this is the readers' hot path.
    layout = LAYOUTS[version]
    unpack_header = layout.unpack
    header_size = layout.header_size
    signed_size = layout.signed_size
    crc32 = zlib.crc32
    unpackb = msgpack.unpackb
    new_record = _new_record
    record_type = Record if decode is None else DecodedRecord
    check_chain = key is not None
    trailer_size, digest_size, residue = RECORD_TRAILER, DIGEST_SIZE, CRC_RESIDUE
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
        if is_last:
            if version == 1:
                abs_end = None if record_end is None else base + record_end
                torn = judge_v1(buf, base, abs_at, header_ok=header_ok, record_end=abs_end)
                why = ""
            else:
                ok, why = judge(
                    buf, base, abs_at, layout=layout, seq=seq, prev=prev, key=key, limit=limit
                )
                torn = why if ok else None
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
            if why:
                reason = f"{reason}; {why}"
        raise CorruptLogError(path, abs_at, seq, reason)

    kind = CLEAN
    proof = state.durable_seq
    while True:
        if end - pos < header_size:
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
        length, rseq, time_ns, left, durable, header_crc = unpack_header(buf, pos)
        head = buf[pos : pos + signed_size]
        if crc32(head) != header_crc:
            kind = failure(pos, "record header crc mismatch", header_ok=False, record_end=None)
            break
        if length > limit or rseq != seq or durable >= seq:
            _header_error(path, base + pos, seq, length, rseq, durable, limit)
        body = pos + header_size
        payload_end = body + length
        record_end = payload_end + trailer_size
        if record_end > end:
            kind = failure(
                pos, "record extends past end of file", header_ok=True, record_end=record_end
            )
            break
        # crc32 over payload + digest + its own stored crc is a constant (the
        # CRC residue) exactly when the stored crc is right: one call, no unpack.
        # (A bytes slice is cheaper here than a memoryview slice: crc32 of a
        # memoryview pays for the buffer protocol.)
        if crc32(buf[body:record_end]) != residue:
            kind = failure(pos, "record body crc mismatch", header_ok=True, record_end=record_end)
            break
        payload = buf[body:payload_end]
        digest = buf[payload_end : payload_end + digest_size]
        if check_chain:
            # Three updates hash the same bytes as one of ``prev + head + payload``
            # without building that string (~0.1 us a record).
            h = hasher()
            h.update(prev)
            h.update(head)
            h.update(payload)
            if h.digest() != digest:
                raise CorruptLogError(
                    path, base + pos, seq, "chain digest mismatch (history edited, or wrong key)"
                )
        # A record on its own (the common case), not part of a batch.
        single = not left and expect_left < 0
        if seq >= from_seq:
            obj: Any = None if decode is None else decode(payload)
            if obj is None:
                # unpackb's defaults are the reader's hostile-input settings
                # (format.unpack_payload): raw=False, strict_map_key=True and every
                # length bounded by len(payload).
                try:
                    obj = unpackb(payload)
                except Exception as exc:  # hostile bytes: any msgpack failure is corruption
                    raise _payload_error(path, base + pos, seq, exc) from None
                if type(obj) is not dict:
                    raise CorruptLogError(
                        path, base + pos, seq, f"payload is a {type(obj).__name__}, not a map"
                    )
            record: Any
            if raw:
                record = new_record(
                    RawRecord,
                    (seq, time_ns, obj, digest, name, base + pos, payload, left, durable, version),
                )
            else:
                record = new_record(record_type, (seq, time_ns, obj, digest, name, base + pos))
            if single:
                yield record
            else:
                pending.append(record)
        if not single:
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
                if seq <= last:
                    yield from batch  # all of it is wanted (the usual case)
                else:
                    for record in batch:
                        if record.seq <= last:
                            yield record
        prev = digest
        proof = durable
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
    state.durable_seq = min(proof, seq - 1)
