"""The on-disk format of FORMAT.md as constants, struct layouts and pure codecs.

Nothing here does I/O. The writer encodes with these functions; the scanner
(the hot read loop) inlines the same layouts for speed, and the tests check
both against each other. All integers are little-endian.

Segment file ``<first_seq:020d>.log``::

    0   8  magic  b"SBXEVLOG"
    8   2  u16 format version (2; 1 is still read)
    10  2  u16 flags (bit 0: keyed chain)
    12  4  u32 reserved, 0
    16  8  u64 first_seq
    24 32  prev_digest (chain digest after first_seq - 1; zeros for seq 1)
    56  4  u32 reserved, 0
    60  4  u32 crc32 of bytes 0..59

then records, each (version 2)::

    0   4  u32 payload_len
    4   8  u64 seq
    12  8  u64 time_ns
    20  4  u32 batch_left
    24  8  u64 durable_seq (highest seq whose fsync had returned when written)
    32  4  u32 header_crc = crc32(bytes 0..31)
    36  n  payload (msgpack map)
    36+n    32  digest = blake2b-256(key)(prev_digest + bytes 0..31 + payload)
    68+n     4  u32 body_crc = crc32(payload + digest)

Version 1 records lack ``durable_seq`` (a 28-byte header, 24 signed bytes);
:data:`LAYOUTS` gives each version's record layout.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import msgpack

from .errors import CorruptLogError, UnsupportedFormatError

MAGIC = b"SBXEVLOG"
#: The version this code writes. Version 1 segments are still read.
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
FLAG_KEYED = 0x0001
KNOWN_FLAGS = FLAG_KEYED

#: Segment header without its trailing crc: magic, version, flags, reserved,
#: first_seq, prev_digest, reserved.
SEGMENT_HEADER_BODY = struct.Struct("<8sHHIQ32sI")
SEGMENT_HEADER_SIZE = 64
CRC = struct.Struct("<I")

#: Record header (v2): payload_len, seq, time_ns, batch_left, durable_seq, header_crc.
RECORD_HEADER = struct.Struct("<IQQIQI")
RECORD_HEADER_SIZE = 36
#: The header bytes covered by header_crc and by the chain digest.
RECORD_HEADER_SIGNED = 32
DIGEST_SIZE = 32
#: digest + body_crc after the payload.
RECORD_TRAILER_SIZE = DIGEST_SIZE + 4
#: Bytes a record takes besides its payload.
RECORD_OVERHEAD = RECORD_HEADER_SIZE + RECORD_TRAILER_SIZE
ZERO_DIGEST = bytes(DIGEST_SIZE)

#: Version 1's record header: payload_len, seq, time_ns, batch_left, header_crc.
RECORD_HEADER_V1 = struct.Struct("<IQQII")
RECORD_HEADER_SIZE_V1 = 28
RECORD_HEADER_SIGNED_V1 = 24

DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024
#: The unit a power loss zeroes (the torn-write rule of FORMAT.md).
SECTOR_SIZE = 512
#: Shortest all-zero sector chunk that counts as evidence of a torn write
#: in a version 1 segment (version 2 decides by proof first).
MIN_ZERO_CHUNK = 8

_SIGNED = struct.Struct("<IQQIQ")
_SIGNED_V1 = struct.Struct("<IQQI")


@attrs.frozen(slots=True)
class RecordLayout:
    """Where a format version puts a record's fields.

    ``unpack(buf, pos)`` always returns ``(payload_len, seq, time_ns,
    batch_left, durable_seq, header_crc)``; version 1 has no durable_seq and
    reports 0 (no proof). ``header_size`` bytes of header, the first
    ``signed_size`` of them covered by the header crc and the chain.
    """

    version: int
    header_size: int
    signed_size: int
    unpack: Callable[[bytes | memoryview, int], tuple[int, int, int, int, int, int]]

    @property
    def overhead(self) -> int:
        return self.header_size + RECORD_TRAILER_SIZE


def _unpack_v1(buf: bytes | memoryview, pos: int) -> tuple[int, int, int, int, int, int]:
    length, seq, time_ns, left, crc = RECORD_HEADER_V1.unpack_from(buf, pos)
    return length, seq, time_ns, left, 0, crc


LAYOUTS: dict[int, RecordLayout] = {
    1: RecordLayout(1, RECORD_HEADER_SIZE_V1, RECORD_HEADER_SIGNED_V1, _unpack_v1),
    2: RecordLayout(2, RECORD_HEADER_SIZE, RECORD_HEADER_SIGNED, RECORD_HEADER.unpack_from),
}
_blake2b = hashlib.blake2b
_crc32 = zlib.crc32


class Record(NamedTuple):
    """One record as readers return it (immutable).

    ``digest`` is the chain digest after this record: an auditor who keeps the
    digest of the last record she saw can later prove the log still extends
    it (``verify(head=...)``). ``segment`` (file name) and ``offset`` say where
    the record's bytes are, for tooling that points at a record.

    A NamedTuple rather than an attrs class: readers build one per record
    and a frozen attrs ``__init__`` (one ``object.__setattr__`` per field)
    cost more than checking the record's crcs. Use the attributes; the tuple
    order is the order above.
    """

    seq: int
    time_ns: int
    payload: dict[str, Any]
    digest: bytes
    segment: str
    offset: int


class DecodedRecord(NamedTuple):
    """A record read with a typed-decode hook (``read(..., decode=hook)``).

    The fields of :class:`Record`; ``payload`` is what the hook built from the
    payload's bytes, or the reference map (``msgpack.unpackb``) where the hook
    declined (returned None). The tuple order is the order above.
    """

    seq: int
    time_ns: int
    payload: Any
    digest: bytes
    segment: str
    offset: int


#: A typed-decode hook of the read path: a payload's bytes in, the record's
#: payload out - or None to decode them the reference way. A hook returns a
#: value only for bytes the reference accepts as a map (scanner docstring).
PayloadDecoder = Callable[[bytes], Any]


class RawRecord(NamedTuple):
    """A record with its bytes: what a reader asked for ``raw`` returns.

    The fields of :class:`Record` first (so code written for a Record works),
    then ``payload_bytes`` (the msgpack bytes exactly as on disk, already
    decoded once into ``payload`` to check them), ``batch_left`` (records
    still to follow in its batch), ``durable_seq`` (the proof it carries;
    0 in version 1) and ``version`` (of its segment): everything needed to
    recompute its chain digest elsewhere (``signed_header``).
    """

    seq: int
    time_ns: int
    payload: dict[str, Any]
    digest: bytes
    segment: str
    offset: int
    payload_bytes: bytes
    batch_left: int
    durable_seq: int
    version: int


def signed_header(
    payload_len: int,
    seq: int,
    time_ns: int,
    batch_left: int,
    durable_seq: int,
    *,
    version: int = FORMAT_VERSION,
) -> bytes:
    """The header bytes a record's crc and chain digest cover, for its version."""
    if version == 1:
        return _SIGNED_V1.pack(payload_len, seq, time_ns, batch_left)
    return _SIGNED.pack(payload_len, seq, time_ns, batch_left, durable_seq)


#: ``new_record(Record, (seq, time_ns, payload, digest, segment, offset))``:
#: NamedTuple construction without the Python-level ``__new__`` (hot loops).
new_record = tuple.__new__


class Position(NamedTuple):
    """A point in a log just after record ``seq``: where a reader can resume.

    ``segment`` is the segment's file name (not a path), ``offset`` the byte
    offset just after record ``seq`` in it (``SEGMENT_HEADER_SIZE`` when
    ``seq`` is the segment's ``first_seq - 1``) and ``digest`` the chain
    digest after record ``seq`` (the ``prev`` of record ``seq + 1``). It is
    what a follower keeps, and what a snapshot records so that replay of the
    tail does not re-scan the segment up to it. A position is only ever a
    claim: ``read(..., start=position)`` checks it before using it (see
    ``eventlog.reader``).
    """

    segment: str
    offset: int
    seq: int
    digest: bytes


@attrs.frozen(slots=True)
class SegmentHeader:
    """The decoded 64-byte header of a segment file."""

    version: int
    flags: int
    first_seq: int
    prev_digest: bytes

    @property
    def keyed(self) -> bool:
        return bool(self.flags & FLAG_KEYED)

    @property
    def layout(self) -> RecordLayout:
        return LAYOUTS[self.version]


@attrs.frozen(slots=True)
class RecordHeader:
    """The decoded 36-byte (version 2) header of a record (tooling and tests)."""

    payload_len: int
    seq: int
    time_ns: int
    batch_left: int
    durable_seq: int
    header_crc: int

    @property
    def crc_ok(self) -> bool:
        return self.header_crc == _crc32(_SIGNED.pack(*attrs.astuple(self)[:5]))


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record is ``first_seq``."""
    return f"{first_seq:020d}.log"


def encode_segment_header(
    first_seq: int, prev_digest: bytes, *, keyed: bool, version: int = FORMAT_VERSION
) -> bytes:
    """A segment header; ``version`` 1 only for tests and tools that make old logs."""
    if len(prev_digest) != DIGEST_SIZE:
        raise ValueError("prev_digest must be 32 bytes")
    if not 1 <= first_seq < 2**64:
        raise ValueError(f"first_seq out of range: {first_seq}")
    if version not in READ_VERSIONS:
        raise ValueError(f"unknown format version {version}")
    body = SEGMENT_HEADER_BODY.pack(
        MAGIC, version, FLAG_KEYED if keyed else 0, 0, first_seq, prev_digest, 0
    )
    return body + CRC.pack(_crc32(body))


def decode_segment_header(data: bytes | memoryview, path: str) -> SegmentHeader:
    """Decode and check a segment header; every defect is a CorruptLogError.

    The caller decides beforehand whether a short or all-zero header is a
    crash during creation (last segment) - this function treats it as
    corruption like anything else.
    """
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptLogError(path, 0, None, f"segment header truncated ({len(data)} bytes)")
    magic, version, flags, res1, first_seq, prev, res2 = SEGMENT_HEADER_BODY.unpack_from(data, 0)
    (crc,) = CRC.unpack_from(data, 60)
    if magic != MAGIC:
        raise CorruptLogError(path, 0, None, f"wrong magic {bytes(magic)!r} (expected {MAGIC!r})")
    if crc != _crc32(data[:60]):
        raise CorruptLogError(path, 60, None, "segment header crc mismatch")
    if version not in READ_VERSIONS:
        raise UnsupportedFormatError(
            path,
            8,
            None,
            f"segment has format version {version}; this eventlog reads versions "
            f"{READ_VERSIONS[0]}-{READ_VERSIONS[-1]} (a newer writer made it: upgrade)",
        )
    if flags & ~KNOWN_FLAGS:
        raise CorruptLogError(path, 10, None, f"unknown segment flags {flags:#06x}")
    if res1 or res2:
        raise CorruptLogError(path, 12 if res1 else 56, None, "reserved header field is not zero")
    if first_seq < 1:
        raise CorruptLogError(path, 16, None, "first_seq is 0")
    if first_seq == 1 and prev != ZERO_DIGEST:
        raise CorruptLogError(path, 24, 1, "genesis segment has a non-zero prev_digest")
    return SegmentHeader(version, flags, first_seq, bytes(prev))


def chain_digest(
    prev_digest: bytes, signed_header: bytes | memoryview, payload: bytes | memoryview, key: bytes
) -> bytes:
    """The chain digest of a record: blake2b-256 over prev + signed header bytes + payload.

    With a key it is a MAC: without the key nobody can forge a record that
    chains, so a keyed log's history cannot be rewritten even by someone who
    can write the files.
    """
    return _blake2b(
        prev_digest + bytes(signed_header) + bytes(payload), digest_size=DIGEST_SIZE, key=key
    ).digest()


def encode_record(
    prev_digest: bytes,
    seq: int,
    time_ns: int,
    batch_left: int,
    payload: bytes,
    key: bytes,
    durable_seq: int = 0,
    *,
    version: int = FORMAT_VERSION,
) -> tuple[bytes, bytes]:
    """Encode one record; returns (record bytes, chain digest after it)."""
    signed = signed_header(len(payload), seq, time_ns, batch_left, durable_seq, version=version)
    digest = _blake2b(prev_digest + signed + payload, digest_size=DIGEST_SIZE, key=key).digest()
    tail = payload + digest
    return (
        b"".join((signed, CRC.pack(_crc32(signed)), tail, CRC.pack(_crc32(tail)))),
        digest,
    )


def decode_record_header(data: bytes | memoryview, offset: int = 0) -> RecordHeader:
    """Decode a version 2 record header (no checks; see ``RecordHeader.crc_ok``)."""
    return RecordHeader(*RECORD_HEADER.unpack_from(data, offset))


def pack_payload(payload: dict[str, Any]) -> bytes:
    """msgpack a payload the way every writer must (bin type for bytes)."""
    data: bytes = msgpack.packb(payload, use_bin_type=True)
    return data


def unpack_payload(data: bytes | memoryview) -> dict[str, Any]:
    """Decode a payload with the reader's hostile-input settings.

    ``unpackb`` bounds every str/bin/array/map/ext length by ``len(data)``
    (itself bounded by max_record_bytes), so a crafted header claiming 2**31
    entries is refused before anything is allocated; ``raw=False`` insists
    on utf-8 strings and ``strict_map_key=True`` on str/bytes map keys. Any
    failure is a ValueError whose text says why; callers add the location.
    """
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types on hostile bytes
        detail = str(exc)[:120]
        raise ValueError(f"payload is not valid msgpack ({type(exc).__name__}: {detail})") from None
    if type(obj) is not dict:
        raise ValueError(f"payload is a {type(obj).__name__}, not a map")
    return obj
