"""``verify(directory)``: check a whole log and report, never raise on bad data.

verify walks every segment from seq 1 with the same scanner as readers and
writer-open recovery, decoding every payload, and checks:

- framing, both crcs and the chain digest of every record (the chain only
  when it can be checked: a keyed log needs its key);
- gapless seqs from 1 (from the ``HISTORY`` record's first seq on a
  compacted log, whose digest the kept first segment must continue; a note
  says where the older history went), segment names against headers, continuity of seq and
  digest across segments, a consistent keyed flag, batches whole;
- with ``head`` (a digest an auditor recorded earlier): that some record's
  digest equals it, i.e. today's log still extends the history that was
  seen then. If not, history was rewritten (or cut back past it).

A torn tail in the last segment - what a crash leaves, and what the next
writer-open will cut - is reported as ``torn_tail`` (bytes) with ``ok`` still
True. Unlike a reader, verify treats a failing last record that has no
zeroed sector as corruption, exactly as writer-open recovery does.

A caller that also checks what the records *say* (``sandboxctl verify`` folds
every event through the store's rules) passes ``visit``: it is called with
each whole record as the check reaches it, in seq order, so the log is read
and checked once for both (a second read costs as much as the first). With
``decode`` (a typed-decode hook, ``eventlog.scanner``) those records carry
what the hook built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs

from .errors import CorruptLogError
from .format import DEFAULT_MAX_RECORD_BYTES, ZERO_DIGEST, PayloadDecoder
from .reader import SegmentWalk
from .segments import list_segments

__all__ = ["Problem", "VerifyReport", "verify"]

NOT_CHECKED_NOTE = "chain not checked: keyed log, no key"


@attrs.frozen
class Problem:
    """What is wrong and where: the fields of a CorruptLogError."""

    segment: str
    offset: int
    seq: int | None
    reason: str

    @classmethod
    def from_error(cls, err: CorruptLogError) -> Problem:
        return cls(err.segment, err.offset, err.seq, err.reason)

    def __str__(self) -> str:
        return str(CorruptLogError(self.segment, self.offset, self.seq, self.reason))


@attrs.frozen
class VerifyReport:
    """The result of ``verify``.

    ``ok`` is False exactly when ``problem`` is set. ``records`` counts the
    whole records checked (up to the problem, if any), ``first_seq`` and
    ``last_seq`` bound them (None and 0 for an empty log), ``head`` is the
    hex chain digest after ``last_seq``. ``torn_tail`` is the number of bytes
    at the end of the last segment that a crash left (not a problem).
    ``chain_checked`` is False for a keyed log verified without its key
    (``notes`` then says so).
    """

    ok: bool
    records: int
    segments: int
    first_seq: int | None
    last_seq: int
    head: str
    problem: Problem | None
    chain_checked: bool
    torn_tail: int = 0
    torn_reason: str = ""
    notes: tuple[str, ...] = ()


def verify(
    directory: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    head: bytes | str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    decode: PayloadDecoder | None = None,
    visit: Callable[[Any], object] | None = None,
) -> VerifyReport:
    """Check every byte of the log at ``directory``; see the module docstring.

    Raises EventLogError only when there is no log to check (missing
    directory, no segment files); corrupt data always yields a report.
    ``head`` may be the 32 digest bytes or their hex. ``visit(record)`` is
    called with every whole record checked (a ``Record``, or with ``decode``
    a ``DecodedRecord``), in seq order, before the next is read; what it
    raises propagates.
    """
    wanted = _wanted_head(head)
    try:
        walk = SegmentWalk(
            os.fspath(directory),
            key=key,
            lenient=False,
            max_record_bytes=max_record_bytes,
            whole_history=True,
            decode=decode,
        )
    except CorruptLogError as err:
        return VerifyReport(
            ok=False,
            records=0,
            segments=0,
            first_seq=None,
            last_seq=0,
            head=ZERO_DIGEST.hex(),
            problem=Problem.from_error(err),
            chain_checked=False,
        )
    history = walk.history
    scan = _scan(walk, wanted, visit)
    problem = scan.problem
    if problem is None and wanted is not None and not scan.found:
        problem = Problem(
            walk.directory,
            0,
            None,
            f"history rewritten: head {wanted.hex()} not found in the log"
            + ("" if history is None else f" ({history.note()}: check it there)"),
        )
    torn = walk.torn
    return VerifyReport(
        ok=problem is None,
        records=scan.records,
        segments=len(walk.segments),
        first_seq=walk.first_local_seq if scan.records else None,
        last_seq=scan.last_seq,
        head=(scan.last_digest if scan.records or history is None else history.prev_digest).hex(),
        problem=problem,
        chain_checked=walk.chain_checked,
        torn_tail=torn.size if torn is not None and problem is None else 0,
        torn_reason=torn.reason if torn is not None and problem is None else "",
        notes=_notes(walk),
    )


def _wanted_head(head: bytes | str | None) -> bytes | None:
    """``verify``'s ``head`` as digest bytes (None: no head to look for)."""
    if isinstance(head, str):
        try:
            return bytes.fromhex(head)
        except ValueError:
            raise ValueError(f"head is not a hex digest: {head!r}") from None
    return head


@attrs.define
class _Scan:
    """What ``_scan`` saw: whole records up to the problem (if any), and the last of them."""

    records: int = 0
    last_seq: int = 0
    last_digest: bytes = ZERO_DIGEST
    found: bool = False  # ``wanted`` was seen (some record's digest, or where history starts)
    problem: Problem | None = None


def _scan(walk: SegmentWalk, wanted: bytes | None, visit: Callable[[Any], object] | None) -> _Scan:
    """Read every record of ``walk``, looking for the digest ``wanted``."""
    scan = _Scan(found=wanted is not None and wanted == ZERO_DIGEST)
    history = walk.history
    if history is not None and wanted is not None and wanted == history.prev_digest:
        scan.found = True
    # Locals, not the attrs fields, in the loop (it runs once per record); the
    # record last seen carries the count (seqs are gapless from the first).
    found = scan.found
    first = last = None
    try:
        for record in walk.records():
            if first is None:
                first = record
            last = record
            if not found and record.digest == wanted:
                found = True
            if visit is not None:
                visit(record)
    except CorruptLogError as err:
        scan.problem = Problem.from_error(err)
    scan.found = found
    if last is not None:
        assert first is not None
        scan.records = last.seq - first.seq + 1
        scan.last_seq = last.seq
        scan.last_digest = last.digest
    return scan


def _notes(walk: SegmentWalk) -> tuple[str, ...]:
    """The report's notes: where compacted history went, leftovers, an unchecked chain."""
    history = walk.history
    notes: list[str] = []
    if history is not None:
        notes.append(history.note())
    leftovers = len(list_segments(walk.directory)) - len(walk.segments)
    if history is not None and leftovers > 0:
        notes.append(
            f"{leftovers} segment(s) before seq {history.first_seq} left by an interrupted "
            "compaction (not part of the history; the next compact removes them)"
        )
    if not walk.chain_checked:
        notes.append(NOT_CHECKED_NOTE)
    return tuple(notes)
