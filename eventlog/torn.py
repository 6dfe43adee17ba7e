"""Torn or corrupt: the one rule that decides what a bad record at the end of a log is.

A record that fails its checks in the LAST segment is either what a crash
left (torn: writer-open cuts it and everything after it) or damage (corrupt:
nothing is touched, a person decides). The scanner asks :func:`judge` and
nothing else, so the reader, the follower, ``verify`` and writer-open
recovery cannot disagree. FORMAT.md ("Where a log ends") is the prose.

Version 2 decides by proof. Every v2 record carries ``durable_seq``: the
highest seq whose fsync had returned when the record was written. A bad
record ``k`` followed (anywhere later in the segment) by an intact record
whose ``durable_seq >= k`` was durable before the crash, so no crash can
have damaged it: corruption, always. Only the unproven tail - records no
later record vouches for - may be torn, and there the bytes must look like
what a crash leaves: the unsynced writes persisted partially, in 512-byte
sectors, out of order, a lost sector reading as zeros, the file cut short.
Each damaged stretch must be explained by an all-zero, sector-aligned chunk
in the right place (the header for a bad header; the body for a bad body,
where the bytes outside the zero chunks must also equal what the chain
predicts), or by the end of the file. A bit flip passes that only in the
residual cases FORMAT.md lists with their odds.

Version 1 records carry no proof; their segments keep the version 1 rule
(:func:`judge_v1`), which never lets intact records follow a torn one.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections.abc import Iterable
from typing import NamedTuple

from .format import (
    DIGEST_SIZE,
    MIN_ZERO_CHUNK,
    RECORD_TRAILER_SIZE,
    SECTOR_SIZE,
    RecordLayout,
)

__all__ = ["Found", "find_intact", "is_all_zero", "judge", "judge_v1", "record_at"]

_ZEROS = bytes(SECTOR_SIZE)
#: zlib.crc32(data + crc32(data) as 4 little-endian bytes), for any data.
CRC_RESIDUE = 0x2144DF1C
#: No real record header has its seq field inside a zero run this long
#: (a header is 36 bytes and its payload_len is never zero).
_LONG_ZERO_RUN = 64
_NONZERO = re.compile(rb"[^\x00]")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
#: Header bytes whose lost values are searched exhaustively (256**2 crcs).
_MAX_GUESSED_BYTES = 2


class Found(NamedTuple):
    """An intact record found past a bad one: where, its seq, its proof, its digest."""

    offset: int
    end: int
    seq: int
    durable_seq: int
    digest: bytes


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


def record_at(
    buf: bytes, rel: int, layout: RecordLayout, limit: int, *, seq_min: int = 0, seq_max: int = 0
) -> Found | None:
    """The intact record starting at ``buf[rel]`` (both crcs hold), else None.

    The chain is not checked (the previous digest may be unknown); offsets
    in the result are relative to ``buf``. ``seq_min``/``seq_max`` bound the
    seq when non-zero.
    """
    hs = layout.header_size
    if rel < 0 or len(buf) - rel < hs:
        return None
    length, seq, _time, _left, durable, crc = layout.unpack(buf, rel)
    if zlib.crc32(buf[rel : rel + layout.signed_size]) != crc or length > limit:
        return None
    if seq_max and not seq_min <= seq <= seq_max:
        return None
    end = rel + hs + length + RECORD_TRAILER_SIZE
    if end > len(buf) or zlib.crc32(buf[rel + hs : end]) != CRC_RESIDUE:
        return None
    digest = buf[end - RECORD_TRAILER_SIZE : end - 4]
    return Found(rel, end, seq, durable, digest)


def find_intact(
    buf: bytes, start: int, min_seq: int, layout: RecordLayout, limit: int
) -> list[Found]:
    """Every intact record at or after ``buf[start]`` with seq >= ``min_seq``, in order.

    Records are located by their seq field: any later record's seq lies in
    a small range, whose high six bytes take at most a few values, so
    ``bytes.find`` of those six bytes visits every candidate at C speed
    (long zero runs, where no header can be, are jumped over). Each
    candidate must pass both crcs; overlapping candidates keep the first.
    """
    max_seq = min_seq + (len(buf) - start) // layout.overhead + 1
    found: dict[int, Found] = {}
    for high in range(min_seq >> 16, (max_seq >> 16) + 1):
        pattern = _U64.pack(high << 16)[2:]
        zero = high == 0
        pos = buf.find(pattern, start + 6)
        while pos >= 0:
            if zero and buf[pos : pos + _LONG_ZERO_RUN] == _ZEROS[:_LONG_ZERO_RUN]:
                m = _NONZERO.search(buf, pos)
                if m is None:
                    break
                pos = buf.find(pattern, m.start())
                continue
            rel = pos - 6
            if rel >= start and rel not in found:
                rec = record_at(buf, rel, layout, limit, seq_min=min_seq, seq_max=max_seq)
                if rec is not None:
                    found[rel] = rec
            pos = buf.find(pattern, pos + 1)
    result: list[Found] = []
    end = start
    for rel in sorted(found):
        if rel >= end:
            result.append(found[rel])
            end = found[rel].end
    return result


def _zero_chunks(buf: bytes, base: int, start: int, end: int) -> list[tuple[int, int]]:
    """The sector-aligned pieces of ``buf[start:end]`` that are all zero.

    A lost sector of an unsynced write reads as zeros over its whole extent
    within the write; cut at a record's bounds, each piece of it is still a
    whole sector-aligned chunk. ``buf`` starts at absolute file offset
    ``base`` (sectors are aligned in the file); offsets in and out are
    relative to ``buf``.
    """
    chunks: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        stop = min(end, ((base + pos) // SECTOR_SIZE + 1) * SECTOR_SIZE - base)
        if buf[pos:stop] == _ZEROS[: stop - pos]:
            if chunks and chunks[-1][1] == pos:
                chunks[-1] = (chunks[-1][0], stop)
            else:
                chunks.append((pos, stop))
        pos = stop
    return chunks


def _clip(chunks: Iterable[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``chunks`` inside ``[start, end)``."""
    return [(max(a, start), min(b, end)) for a, b in chunks if a < end and b > start]


class _Span:
    """Context for explaining the damaged bytes of the unproven tail."""

    def __init__(
        self, buf: bytes, base: int, layout: RecordLayout, key: bytes | None, limit: int
    ) -> None:
        self.buf = buf
        self.base = base
        self.layout = layout
        self.key = key
        self.limit = limit
        #: Exhaustive header searches left: a crafted file with many bad
        #: headers must not make recovery slow (each search is 65,536 crcs).
        self.guesses = 4

    def explain(self, a: int, b: int, expect: int | None, chain: bytes | None) -> str | None:
        """None when a crash can leave ``buf[a:b]`` as it is; else why not.

        ``b`` is where the next intact record starts (or the end of the
        bytes); ``expect`` and ``chain`` are the seq and the chain digest the
        record at ``a`` must have when known.
        """
        buf, layout = self.buf, self.layout
        hs = layout.header_size
        eof = len(buf)
        while a < b:
            if b == eof and eof - a < hs:
                return None  # a torn record header at the end of the file
            if is_all_zero(buf[a:b]):
                return None  # lost sectors, or a zero-filled tail
            length, rseq, _time, _left, _durable, crc = layout.unpack(buf, a)
            if zlib.crc32(buf[a : a + layout.signed_size]) != crc:
                return self._bad_header(a, b, expect)
            where = f"record at offset {self.base + a}"
            if length > self.limit or (expect is not None and rseq != expect):
                return f"{where} has an intact header that does not fit (seq {rseq})"
            end = a + hs + length + RECORD_TRAILER_SIZE
            if end > b:
                # Cut by the end of the file: a short write. Running into the
                # next intact record: no crash makes records overlap.
                return None if b == eof else f"{where} overlaps the intact record after it"
            why = self._bad_body(a, end, length, chain)
            if why is not None:
                return f"{where}: {why}"
            a = end
            expect = rseq + 1
            chain = bytes(buf[end - RECORD_TRAILER_SIZE : end - 4])
        return None

    def _bad_header(self, a: int, b: int, expect: int | None) -> str | None:
        """A header whose crc fails: some of its bytes must lie in a lost sector."""
        buf, layout = self.buf, self.layout
        hs = layout.header_size
        lost = [
            p for x, y in _clip(_zero_chunks(buf, self.base, a, b), a, a + hs) for p in range(x, y)
        ]
        where = f"record header at offset {self.base + a}"
        if not lost:
            return f"{where} fails its crc and no lost sector covers it"
        if expect is not None:
            want = _U64.pack(expect)
            seq_at = a + 4
            for i in range(8):
                if seq_at + i not in lost and buf[seq_at + i] != want[i]:
                    return f"{where} fails its crc and its seq bytes are not {expect}'s"
        if len(lost) <= _MAX_GUESSED_BYTES and self.guesses > 0:
            self.guesses -= 1
            if not self._header_can_hold(a, lost):
                return f"{where} fails its crc whatever its zeroed bytes held"
        return None

    def _header_can_hold(self, a: int, lost: list[int]) -> bool:
        """Can some values of the zeroed ``lost`` bytes make the header's crc hold?"""
        layout = self.layout
        hs = layout.header_size
        head = bytearray(self.buf[a : a + hs])
        idx = [p - a for p in lost]
        for guess in range(256 ** len(idx)):
            for n, i in enumerate(idx):
                head[i] = (guess >> (8 * n)) & 0xFF
            crc = _U32.unpack_from(head, layout.signed_size)[0]
            if zlib.crc32(head[: layout.signed_size]) == crc:
                return True
        return False

    def _bad_body(self, a: int, end: int, length: int, chain: bytes | None) -> str | None:
        """A body whose crc fails under a good header: explained by lost sectors?

        The bytes outside the zero chunks must be what the writer wrote: with
        the payload intact, the digest (from the chain, when the previous
        digest and the key are known) and the body crc are predictable, so a
        flipped bit elsewhere is caught even when a zero chunk is present.
        """
        buf, layout = self.buf, self.layout
        body = a + layout.header_size
        payload_end = body + length
        lost = _clip(_zero_chunks(buf, self.base, a, end), body, end)
        if not lost:
            return "body fails its crc and no lost sector covers it"
        if lost[0][0] < payload_end:
            return None  # the payload itself was lost in part: nothing to predict
        payload = buf[body:payload_end]
        stored = buf[payload_end:end]
        if chain is not None and self.key is not None:
            h = hashlib.blake2b(digest_size=DIGEST_SIZE, key=self.key)
            h.update(chain + buf[a : a + layout.signed_size] + payload)
            digest = h.digest()
        elif lost[0][0] < payload_end + DIGEST_SIZE:
            return None  # digest partly lost and not predictable without the chain
        else:
            digest = stored[:DIGEST_SIZE]
        expected = bytearray(digest + _U32.pack(zlib.crc32(payload + digest)))
        for x, y in lost:
            expected[x - payload_end : y - payload_end] = bytes(y - x)
        if stored != expected:
            return "body differs from what its chain predicts outside the zeroed sectors"
        return None


def judge(
    buf: bytes,
    base: int,
    offset: int,
    *,
    layout: RecordLayout,
    seq: int,
    prev: bytes,
    key: bytes | None,
    limit: int,
) -> tuple[bool, str]:
    """Torn or corrupt, for a version 2 record ``seq`` failing at absolute ``offset``.

    ``buf`` holds the segment from absolute offset ``base`` (sector-aligned)
    to EOF; ``prev`` is the chain digest before the record, ``key`` the
    chain key (None when it cannot be checked). Returns ``(True, reason)``
    for a torn tail and ``(False, reason)`` for corruption.
    """
    rel = offset - base
    found = find_intact(buf, rel + 1, seq, layout, limit)
    if found:
        proof = max(found, key=lambda f: f.durable_seq)
        if proof.durable_seq >= seq:
            return False, (
                f"record {seq} is proven durable: record {proof.seq} at offset "
                f"{base + proof.offset} was written after an fsync that covered seqs up to "
                f"{proof.durable_seq}"
            )
    span = _Span(buf, base, layout, key, limit)
    a, expect, chain = rel, seq, prev
    for rec in [*found, None]:
        b = len(buf) if rec is None else rec.offset
        why = span.explain(a, b, expect, chain)
        if why is not None:
            return False, f"unproven tail, but not what a crash leaves: {why}"
        if rec is None:
            break
        a, expect, chain = rec.end, rec.seq + 1, bytes(rec.digest)
    later = f"; {len(found)} intact unproven record(s) after it" if found else ""
    return True, _torn_kind(buf, rel, layout, limit) + later


def _torn_kind(buf: bytes, rel: int, layout: RecordLayout, limit: int) -> str:
    """How the unproven tail at ``buf[rel]`` looks, for the repair message."""
    left = len(buf) - rel
    if left < layout.header_size:
        return f"torn record header ({left} bytes at end of file)"
    if is_all_zero(buf[rel:]):
        return f"zero-filled tail ({left} bytes)"
    length, _seq, _t, _left, _d, crc = layout.unpack(buf, rel)
    need = layout.overhead + length
    if zlib.crc32(buf[rel : rel + layout.signed_size]) == crc and length <= limit and need > left:
        return f"record extends past end of file (needs {need}, has {left})"
    return "torn write (lost sectors of an unsynced write, in the unproven tail)"


def judge_v1(
    buf: bytes | memoryview, base: int, offset: int, *, header_ok: bool, record_end: int | None
) -> str | None:
    """The version 1 rule (no proof): the torn-tail reason, or None if corruption.

    Fewer than 28 bytes left, an all-zero rest, a short record, or a crc
    failure with only zeros after the record and an all-zero sector chunk
    of at least 8 bytes (or the file's last partial sector) in it.
    """
    eof = base + len(buf)
    view = memoryview(buf)
    if eof - offset < 28:
        return f"torn record header ({eof - offset} bytes at end of file)"
    if is_all_zero(view[offset - base :]):
        return f"zero-filled tail ({eof - offset} bytes)"
    if header_ok and record_end is not None and record_end > eof:
        return f"record extends past end of file (needs {record_end - offset}, has {eof - offset})"
    end = record_end if header_ok and record_end is not None else eof
    if is_all_zero(view[end - base :]) and _has_zero_chunk_v1(view, base, offset, eof):
        return "torn write (zeroed sector in the last record)"
    return None


def _has_zero_chunk_v1(view: memoryview, base: int, start: int, end: int) -> bool:
    pos = start
    while pos < end:
        stop = min(end, (pos // SECTOR_SIZE + 1) * SECTOR_SIZE)
        n = stop - pos
        whole = n >= MIN_ZERO_CHUNK or (pos % SECTOR_SIZE == 0 and stop == base + len(view))
        if whole and view[pos - base : stop - base] == _ZEROS[:n]:
            return True
        pos = stop
    return False
