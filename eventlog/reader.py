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

import attrs

from .errors import CorruptLogError, EventLogError
from .format import DEFAULT_MAX_RECORD_BYTES, SEGMENT_HEADER_SIZE, Record
from .scanner import STOPPED, TAIL, TORN, ScanState, check_segment_header, scan_records
from .segments import SegmentFile, check_first_segment, list_segments, read_file

__all__ = ["SegmentWalk", "read"]


@attrs.define
class TornTail:
    """Where a walk found the log's torn end (the last segment's bytes past it)."""

    segment: str
    offset: int
    size: int
    reason: str


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
    ):
        if from_seq < 1:
            raise ValueError(f"from_seq must be >= 1, got {from_seq}")
        self.directory = directory
        self.key = key
        self.lenient = lenient
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.max_record_bytes = max_record_bytes
        self.segments: list[SegmentFile] = list_segments(directory)
        if not self.segments:
            raise EventLogError(f"no event log in {directory} (no segment files)")
        check_first_segment(directory, self.segments)
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

    def records(self) -> Iterator[Record]:
        """Every record of the walk, in seq order (see the class docstring).

        The records come straight from each segment's scanner generator,
        chained in C: no generator of ours sits between the scanner and the
        caller, so a record costs no extra frame switch. Between segments
        ``chain`` pulls the next scanner from ``_scans``, which first checks
        how the previous one ended.
        """
        return chain.from_iterable(self._scans())

    def _scans(self) -> Iterator[Iterator[Record]]:
        segments = self.segments
        last_index = len(segments) - 1
        expect_seq: int | None = None
        expect_digest: bytes | None = None
        for index in range(self.start, len(segments)):
            seg = segments[index]
            is_last = index == last_index
            try:
                data = read_file(seg.path)
            except FileNotFoundError:
                if is_last:
                    # Writer-open recovery is moving a torn segment aside.
                    return
                raise CorruptLogError(seg.path, 0, seg.first_seq, "segment vanished") from None
            header = check_segment_header(data, seg.path, seg.first_seq, is_last=is_last)
            self.segments_read += 1
            if header is None:
                self.torn = TornTail(seg.path, 0, len(data), "segment header not written")
                return
            if expect_seq is not None and expect_digest is not None:
                if header.first_seq != expect_seq:
                    raise CorruptLogError(
                        seg.path,
                        16,
                        expect_seq,
                        f"missing segment: previous segment ends at seq {expect_seq - 1}, "
                        f"this one starts at {header.first_seq}",
                    )
                if header.prev_digest != expect_digest:
                    raise CorruptLogError(
                        seg.path,
                        24,
                        expect_seq,
                        "digest discontinuity: prev_digest differs from the previous "
                        "segment's last digest",
                    )
            if self.keyed is None:
                self.keyed = header.keyed
            elif self.keyed != header.keyed:
                raise CorruptLogError(
                    seg.path, 10, header.first_seq, "keyed flag differs from the previous segment"
                )
            if header.keyed:
                chain_key = self.key
                if chain_key is None:
                    self.chain_checked = False
            else:
                if self.key is not None:
                    raise CorruptLogError(
                        seg.path,
                        10,
                        header.first_seq,
                        "a key was given but the log is not keyed (its chain is not a MAC)",
                    )
                chain_key = b""
            state = ScanState(SEGMENT_HEADER_SIZE, header.first_seq, header.prev_digest)
            self.state = state
            yield scan_records(
                data,
                0,
                SEGMENT_HEADER_SIZE,
                state,
                path=seg.path,
                name=seg.name,
                key=chain_key,
                is_last=is_last,
                lenient=self.lenient,
                max_record_bytes=self.max_record_bytes,
                from_seq=self.from_seq,
                to_seq=self.to_seq,
            )
            if state.end == STOPPED:
                return
            if state.end in (TORN, TAIL):
                self.torn = TornTail(seg.path, state.offset, state.eof - state.offset, state.reason)
                return
            expect_seq = state.seq
            expect_digest = state.digest


def read(
    directory: str | os.PathLike[str],
    from_seq: int = 1,
    to_seq: int | None = None,
    *,
    key: bytes | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Record]:
    """Yield the records with ``from_seq <= seq <= to_seq`` (to the end when None).

    Checks happen eagerly for a missing directory or an empty one
    (EventLogError); corruption surfaces as CorruptLogError while iterating,
    after every good record before it was yielded. ``max_record_bytes`` must
    be at least the writer's.
    """
    walk = SegmentWalk(
        os.fspath(directory),
        key=key,
        lenient=True,
        from_seq=from_seq,
        to_seq=to_seq,
        max_record_bytes=max_record_bytes,
    )
    if to_seq is not None and to_seq < from_seq:
        return iter(())
    return walk.records()
