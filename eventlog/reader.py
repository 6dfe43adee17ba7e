"""Lock-free readers: ``read(directory, from_seq, to_seq)``.

A reader never takes the writer lock and may run while a writer appends.
It lists the segments once, then reads each one whole (one ``read`` call)
and hands its bytes to the shared scanner. What it yields is always a
gapless prefix of the log as it stood, in seq order, each record's crcs and
chain checked:

- every segment but the last must be perfect; any defect, a seq gap
  between segments, a missing segment or a digest discontinuity between a
  segment's last record and the next segment's ``prev_digest`` raises
  CorruptLogError;
- at the end of the LAST segment, what a writer in the middle of an append
  (or a crash) leaves - a torn-looking record, a record whose body fails
  with nothing after it, an incomplete batch, a segment whose header is not
  written yet - ends iteration quietly. A bad record with more data after
  it raises.

The chain is checked from the start of the first segment read: with
``from_seq`` inside a later segment, the reader starts at that segment's
header (whose ``prev_digest`` it then trusts) and checks, without decoding,
the records before ``from_seq``. ``verify`` checks the whole history.

Starting at a known position (``start=Position(segment, offset, seq,
digest)``, e.g. the one a snapshot recorded): the reader reads that
segment from ``offset`` (plus the header and the 36 bytes before it)
instead of scanning it from its header, once it has checked that the
position is plausible:

- the segment exists, its header is good, ``offset`` is within it, and
  ``seq`` lies in it (``first_seq - 1 <= seq``, below the next segment);
- at ``offset`` the record before ends with the digest ``digest`` (or, at
  offset 64, ``seq`` is ``first_seq - 1`` and the header's ``prev_digest`` is
  ``digest``);
- the record at ``offset`` (if any) is whole, both its crcs hold, its seq
  is ``seq + 1`` and it chains from ``digest``; with no record there, the
  next segment (if any) starts at ``seq + 1`` with ``prev_digest == digest``.

If any check fails, the position is not used: the reader falls back to a
scan from the header of the segment holding ``seq`` (exactly what it does
without a position) and checks there that the log's digest after ``seq``
is ``digest``; if it is not - the position belongs to another history, or
the log now ends before ``seq`` - it raises ``PositionMismatchError``
before yielding anything. So a position never makes the reader accept a
record it would otherwise refuse, and the records yielded always chain
from ``digest`` at ``seq``. What a good position skips is the checking of
the records before it in its segment (like the segments before it,
``verify`` checks those).

A keyed log read without its key still has every crc checked, but its
chain cannot be (that is what a MAC is); a key given for a log that is not
keyed is an error, because someone may have stripped the keying to rewrite
history.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from itertools import chain
from typing import Literal, overload

import attrs

from .ends import end_position, local_history  # re-exported: where a log starts and ends
from .errors import CorruptLogError, HistoryNotLocalError, PositionMismatchError
from .files import read_file
from .format import (
    DEFAULT_MAX_RECORD_BYTES,
    SEGMENT_HEADER_SIZE,
    ZERO_DIGEST,
    DecodedRecord,
    PayloadDecoder,
    Position,
    Record,
    SegmentHeader,
)
from .history import History, history_mac
from .position import Resume, check_position
from .scanner import (
    STOPPED,
    TAIL,
    TORN,
    ScanState,
    check_segment_header,
    scan_records,
)
from .segments import (
    SegmentFile,
    list_segments,
    open_segments,
    segment_chain_key,
)

__all__ = [
    "PositionMismatchError",
    "SegmentWalk",
    "end_position",
    "local_history",
    "read",
    "read_record",
]


@attrs.define
class TornTail:
    """Where a walk found the log's torn end (the last segment's bytes past it)."""

    segment: str
    offset: int
    size: int
    reason: str


#: What ``segment_chain_key`` says when reading: the keyed flag changed; a key for an unkeyed log.
_KEYED_MESSAGES = (
    "keyed flag differs from the previous segment",
    "a key was given but the log is not keyed (its chain is not a MAC)",
)


class SegmentWalk:
    """One pass over a log's segments with the shared scanner (read and verify).

    After ``records()`` is exhausted: ``state`` is the scan state after the
    last whole batch, ``torn`` says what was cut off at the tail (None when
    the log ends cleanly), ``chain_checked`` whether the chain could be
    checked, ``segments_read`` how many segments were walked.
    """

    def __init__(
        self,
        directory: str,
        *,
        key: bytes | None,
        lenient: bool,
        from_seq: int = 1,
        to_seq: int | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        whole_history: bool = False,
        position: Position | None = None,
        raw: bool = False,
        decode: PayloadDecoder | None = None,
    ):
        if from_seq < 1:
            raise ValueError(f"from_seq must be >= 1, got {from_seq}")
        if position is not None and not position.seq < from_seq:
            raise ValueError(
                f"a start position at seq {position.seq} needs from_seq > {position.seq}, "
                f"got {from_seq}"
            )
        if raw and decode is not None:
            raise ValueError("raw records carry the reference map: no decode hook with raw")
        self.directory = directory
        self.key = key
        self.raw = raw
        self.decode = decode
        self.lenient = lenient
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.max_record_bytes = max_record_bytes
        self.segments: list[SegmentFile]
        self.segments, self.history = open_segments(directory)
        #: The first seq this directory holds (1 unless compacted).
        self.first_local_seq = 1 if self.history is None else self.history.first_seq
        if from_seq < self.first_local_seq and not whole_history:
            assert self.history is not None
            raise HistoryNotLocalError(
                directory, from_seq, self.first_local_seq, self.history.where()
            )
        if whole_history:
            self.start = 0
        else:
            firsts = [s.first_seq for s in self.segments]
            self.start = max(0, bisect.bisect_right(firsts, from_seq) - 1)
        self.state: ScanState | None = None
        self.torn: TornTail | None = None
        self.chain_checked = True
        self.keyed: bool | None = None
        self.segments_read = 0
        self.position = position
        #: How a ``position`` was used: "" (none given), "used", or "fallback: <why>".
        self.position_use = ""

    def records(self) -> Iterator[Record]:
        """Every record of the walk, in seq order (see the class docstring).

        The records come straight from each segment's scanner generator,
        chained in C: no generator of ours sits between the scanner and the
        caller, so a record costs no extra frame switch. Between segments
        ``chain`` pulls the next scanner from ``_scans``, which first checks
        how the previous one ended.
        """
        if self.position is not None:
            return chain.from_iterable(self._scans_from_position(self.position))
        return chain.from_iterable(self._scans())

    def _scan(
        self,
        seg: SegmentFile,
        buf: bytes,
        base: int,
        state: ScanState,
        key: bytes | None,
        is_last: bool,
        version: int,
    ) -> Iterator[Record]:
        """The scanner over one segment's bytes, from ``state.offset`` on."""
        return scan_records(
            buf,
            base,
            state.offset,
            state,
            path=seg.path,
            name=seg.name,
            key=key,
            is_last=is_last,
            lenient=self.lenient,
            max_record_bytes=self.max_record_bytes,
            from_seq=self.from_seq,
            to_seq=self.to_seq,
            version=version,
            raw=self.raw,
            decode=self.decode,
        )

    def _ended(self, seg: SegmentFile, state: ScanState) -> bool:
        """After a segment's scan: must iteration stop here (the caller asked
        for no more, or the last segment ends in a torn tail)?"""
        if state.end == STOPPED:
            return True
        if state.end in (TORN, TAIL):
            self.torn = TornTail(seg.path, state.offset, state.eof - state.offset, state.reason)
            return True
        return False

    def _chain_key(self, seg: SegmentFile, header: SegmentHeader) -> bytes | None:
        """The scanner's chain key for a segment (keyed flag checks included)."""
        if self.keyed is None:
            self.keyed = header.keyed
        chain_key = segment_chain_key(seg, header, self.keyed, self.key, _KEYED_MESSAGES)
        if chain_key is None:
            self.chain_checked = False
        return chain_key

    def _scans_from_position(self, pos: Position) -> Iterator[Iterator[Record]]:
        """``_scans`` resumed at a checked position, or the checked fallback."""
        resume = self._check_position(pos)
        if resume is None:
            yield self._fallback(pos)
            return
        self.position_use = "used"
        if self.to_seq is not None and self.to_seq < self.from_seq:
            return  # the position checked out; nothing to yield
        yield from self._scans(resume)

    def _check_position(self, pos: Position) -> Resume | None:
        """The position's segment bytes and scan state if the position checks out.

        None (and ``position_use`` says why) otherwise: the caller falls back
        to a full scan, which decides what the log really holds. The rule
        itself lives in ``eventlog.position`` (writer-open recovery uses it too).
        """
        checked = check_position(
            self.segments, pos, chain_key=self._chain_key, max_record_bytes=self.max_record_bytes
        )
        if isinstance(checked, str):
            self.position_use = f"fallback: {checked}"
            return None
        self.segments_read += 1
        return checked

    def _fallback(self, pos: Position) -> Iterator[Record]:
        """A scan from the header of the segment holding ``pos.seq``, checking its digest."""
        from_seq, to_seq = self.from_seq, self.to_seq
        if pos.seq == 0:
            if pos.digest != ZERO_DIGEST:
                raise PositionMismatchError(pos, "the digest at seq 0 is 32 zero bytes")
            self.position_use += "; checked: genesis"
            if to_seq is None or to_seq >= from_seq:
                yield from chain.from_iterable(self._scans())
            return
        firsts = [s.first_seq for s in self.segments]
        self.start = max(0, bisect.bisect_right(firsts, pos.seq) - 1)
        self.from_seq = pos.seq
        self.to_seq = None if to_seq is None else max(to_seq, pos.seq)
        records = chain.from_iterable(self._scans())
        first = next(records, None)
        if first is None or first.seq != pos.seq:
            raise PositionMismatchError(pos, f"the log has no record {pos.seq}")
        if first.digest != pos.digest:
            raise PositionMismatchError(
                pos, f"the log's digest after seq {pos.seq} differs (another history)"
            )
        self.position_use += "; checked: the log's digest matches"
        last = 2**64 if to_seq is None else to_seq
        for record in records:
            if record.seq > last:
                return
            if record.seq >= from_seq:
                yield record

    def _scans(self, resume: Resume | None = None) -> Iterator[Iterator[Record]]:
        segments = self.segments
        expect_seq: int | None = None
        expect_digest: bytes | None = None
        index = self.start
        if resume is not None:
            state = resume.state
            self.state = state
            seg = segments[resume.index]
            is_last = resume.index == len(segments) - 1
            yield self._scan(
                seg, resume.data, resume.base, state, resume.key, is_last, resume.header.version
            )
            if self._ended(seg, state):
                return
            expect_seq = state.seq
            expect_digest = state.digest
            index = resume.index + 1
        while index < len(segments):
            seg = segments[index]
            is_last = index == len(segments) - 1
            try:
                data = read_file(seg.path)
            except FileNotFoundError:
                if is_last:
                    # Writer-open recovery is moving a torn segment aside.
                    return
                raise CorruptLogError(seg.path, 0, seg.first_seq, "segment vanished") from None
            header = check_segment_header(data, seg.path, seg.first_seq, is_last=is_last)
            if expect_seq is not None and seg.first_seq != expect_seq:
                segments = self._relist(index, expect_seq)
                continue

            self.segments_read += 1
            if header is None:
                self.torn = TornTail(seg.path, 0, len(data), "segment header not written")
                return
            if expect_digest is None and self.history is not None and index == 0:
                self._check_history(seg, header, self.history)
            if expect_digest is not None and header.prev_digest != expect_digest:
                raise CorruptLogError(
                    seg.path,
                    24,
                    expect_seq,
                    "digest discontinuity: prev_digest differs from the previous "
                    "segment's last digest",
                )
            chain_key = self._chain_key(seg, header)
            state = ScanState(SEGMENT_HEADER_SIZE, header.first_seq, header.prev_digest)
            self.state = state
            yield self._scan(seg, data, 0, state, chain_key, is_last, header.version)
            if self._ended(seg, state):
                return
            expect_seq = state.seq
            expect_digest = state.digest
            index += 1

    def _check_history(self, seg: SegmentFile, header: SegmentHeader, history: History) -> None:
        """The kept first segment of a compacted log must continue the ``HISTORY`` record.

        Its ``prev_digest`` must be the record's digest (a forged record does
        not chain), and on a keyed log the record's MAC must hold under the key
        (without the key it cannot be checked, like the chain).
        """
        if header.prev_digest != history.prev_digest:
            raise CorruptLogError(
                seg.path,
                24,
                history.first_seq,
                "digest discontinuity: prev_digest differs from the HISTORY record's digest",
            )
        if header.keyed != bool(history.mac):
            raise CorruptLogError(
                seg.path, 10, history.first_seq, "HISTORY record's MAC does not match the keying"
            )
        if header.keyed and self.key is not None and history_mac(history, self.key) != history.mac:
            raise CorruptLogError(
                seg.path, 0, history.first_seq, "HISTORY record's MAC does not hold under the key"
            )

    def _relist(self, index: int, expect_seq: int) -> list[SegmentFile]:
        """The segments again, when the next one listed is not the one expected.

        A directory listing taken while the writer creates segments can miss
        one (readdir of a directory being modified is not a snapshot), so a
        healthy log may look gapped. Segments are only ever added at the end
        while a log is live: list again and use the segment named for the
        expected seq if it is there; only a listing that still lacks it is a
        missing segment.
        """
        fresh = list_segments(self.directory)
        firsts = [s.first_seq for s in fresh]
        at = bisect.bisect_left(firsts, expect_seq)
        newer = index == 0 or self.segments[index - 1].first_seq < expect_seq
        if newer and at < len(fresh) and fresh[at].first_seq == expect_seq:
            segments = self.segments[:index] + fresh[at:]
            self.segments = segments
            return segments
        seg = self.segments[index]
        raise CorruptLogError(
            seg.path,
            16,
            expect_seq,
            f"missing segment: previous segment ends at seq {expect_seq - 1}, "
            f"this one starts at {seg.first_seq}",
        )


@overload
def read(
    directory: str | os.PathLike[str],
    from_seq: int | None = None,
    to_seq: int | None = None,
    *,
    key: bytes | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    start: Position | None = None,
    raw: bool = False,
    decode: None = None,
) -> Iterator[Record]: ...


@overload
def read(
    directory: str | os.PathLike[str],
    from_seq: int | None = None,
    to_seq: int | None = None,
    *,
    key: bytes | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    start: Position | None = None,
    raw: Literal[False] = False,
    decode: PayloadDecoder,
) -> Iterator[DecodedRecord]: ...


def read(
    directory: str | os.PathLike[str],
    from_seq: int | None = None,
    to_seq: int | None = None,
    *,
    key: bytes | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    start: Position | None = None,
    raw: bool = False,
    decode: PayloadDecoder | None = None,
) -> Iterator[Record] | Iterator[DecodedRecord]:
    """Yield the records with ``from_seq <= seq <= to_seq`` (to the end when None).

    With ``raw`` the records are ``RawRecord``s (the payload's bytes, batch
    position, proof and version too: for shippers and tools).

    ``decode``: a typed-decode hook (``eventlog.scanner``): the records are then
    ``DecodedRecord``s whose ``payload`` is what the hook built from the
    payload's bytes, or the reference map where it returned None. Every
    check is the same; only the decode of an accepted payload differs.

    Checks happen eagerly for a missing directory or an empty one
    (EventLogError); corruption surfaces as CorruptLogError while iterating,
    after every good record before it was yielded. ``max_record_bytes`` must
    be at least the writer's.

    ``start``: a known position just before ``from_seq`` (``from_seq``
    defaults to 1, or to ``start.seq + 1`` with a start; it must be greater
    than ``start.seq``). The reader checks the position and, if it holds,
    reads from there instead of from the segment's header; otherwise it
    falls back to a full scan (module docstring). Either way the log's digest
    after ``start.seq`` must be ``start.digest``, else ``PositionMismatchError``
    is raised before anything is yielded - also when the range is empty
    (``to_seq == start.seq``: a cheap check that the position is the log's).
    """
    if from_seq is None:
        from_seq = 1 if start is None else start.seq + 1
    walk = SegmentWalk(
        os.fspath(directory),
        key=key,
        lenient=True,
        from_seq=from_seq,
        to_seq=to_seq,
        max_record_bytes=max_record_bytes,
        position=start,
        raw=raw,
        decode=decode,
    )
    if start is None and to_seq is not None and to_seq < from_seq:
        return iter(())
    return walk.records()


def read_record(
    directory: str | os.PathLike[str], seq: int, *, key: bytes | None = None
) -> Record | None:
    """The record at ``seq``, checked as ``read`` checks it (and raising as it does);
    None when the log ends before it. Nothing stays open: segments are read whole."""
    return next(read(directory, seq, seq, key=key), None)
