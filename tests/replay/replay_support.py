"""Helpers for the replay tests: raw segment surgery (sandboxes, mount checks and
``sandboxctl`` are in tests/support.py).

Byte surgery follows FORMAT.md and uses eventlog's own encoder
(``eventlog.format.encode_record`` / ``encode_segment_header``): a test that
forges a log must forge it exactly as a writer would, or it would only test
the forger.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import attrs

from eventlog import format as fmt

# -- raw segment surgery -------------------------------------------------------------------


@attrs.define
class RawRecord:
    offset: int
    seq: int
    time_ns: int
    batch_left: int
    payload: bytes
    digest: bytes
    durable_seq: int = 0


def segment(state_dir: Path) -> Path:
    segs = sorted(state_dir.glob("*.log"))
    assert len(segs) == 1, f"tests use single-segment logs, found {segs}"
    return segs[0]


def parse(state_dir: Path) -> tuple[fmt.SegmentHeader, list[RawRecord]]:
    """The header and every record of the (single) segment, as bytes on disk."""
    path = segment(state_dir)
    data = path.read_bytes()
    header = fmt.decode_segment_header(data, str(path))
    out: list[RawRecord] = []
    pos = fmt.SEGMENT_HEADER_SIZE
    while pos + fmt.RECORD_HEADER_SIZE <= len(data):
        h = fmt.decode_record_header(data, pos)
        start = pos + fmt.RECORD_HEADER_SIZE
        payload = data[start : start + h.payload_len]
        digest = data[start + h.payload_len : start + h.payload_len + fmt.DIGEST_SIZE]
        out.append(RawRecord(pos, h.seq, h.time_ns, h.batch_left, payload, digest, h.durable_seq))
        pos = start + h.payload_len + fmt.RECORD_TRAILER_SIZE
    return header, out


def _frame(r: RawRecord) -> bytes:
    """A record with its stored digest kept and both crcs recomputed (no re-chaining)."""
    signed = fmt.signed_header(len(r.payload), r.seq, r.time_ns, r.batch_left, r.durable_seq)
    tail = r.payload + r.digest
    return signed + fmt.CRC.pack(zlib.crc32(signed)) + tail + fmt.CRC.pack(zlib.crc32(tail))


def write_records(
    state_dir: Path,
    records: Sequence[RawRecord],
    *,
    rechain_from: int | None = None,
    key: bytes = b"",
    keyed: bool | None = None,
) -> None:
    """Rewrite the segment with ``records``.

    Records with seq < ``rechain_from`` (all, when None: none are re-chained)
    keep their stored digests; from ``rechain_from`` on, digests are
    recomputed with ``key`` from the previous record's digest - a consistent
    forgery from that point. ``keyed`` overrides the header's keyed flag.
    """
    path = segment(state_dir)
    header, _ = parse(state_dir)
    flag = header.keyed if keyed is None else keyed
    out = [fmt.encode_segment_header(header.first_seq, header.prev_digest, keyed=flag)]
    prev = header.prev_digest
    for r in records:
        if rechain_from is not None and r.seq >= rechain_from:
            blob, prev = fmt.encode_record(
                prev, r.seq, r.time_ns, r.batch_left, r.payload, key, r.durable_seq
            )
            r.digest = prev
            out.append(blob)
        else:
            out.append(_frame(r))
            prev = r.digest
    path.write_bytes(b"".join(out))


def replace_in_payload(r: RawRecord, old: bytes, new: bytes) -> None:
    assert old in r.payload, (old, r.payload)
    r.payload = r.payload.replace(old, new, 1)


def flip_record_byte(state_dir: Path, index: int, at: int, mask: int) -> list[RawRecord]:
    """XOR ``mask`` into byte ``at`` of record ``index`` (its crc NOT fixed); the
    records as they were before."""
    _, records = parse(state_dir)
    seg = next(state_dir.glob("*.log"))
    data = bytearray(seg.read_bytes())
    data[records[index].offset + at] ^= mask
    seg.write_bytes(bytes(data))
    return records
