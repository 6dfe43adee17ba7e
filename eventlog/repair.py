"""Repair by a person: cut a corrupt log back to its last good record.

Writer-open recovery (``eventlog.recovery``) cuts only what a crash can
leave - a torn tail in the unproven end of the last segment. Every other
defect is a ``CorruptLogError`` and the log does not open for writing, on
purpose: whether to give up the records after the damage is a decision for
a person, not a heuristic. This module is the tool for that decision,
modelled on etcd's ``wal/repair.go``:

- :func:`diagnose` walks the whole log as ``verify`` does and returns the
  first damage (where, why, a hex dump of the bytes around it) together
  with the cut that would fix it: the end of the last whole batch before
  the damage, and exactly which bytes a cut would set aside;
- :func:`cut` does it, under the writer lock: the segment holding the cut
  point keeps ``[0, end)`` and its bytes ``[end, EOF)`` are copied to
  ``<segment>.broken[.N]`` first; every later segment is renamed to
  ``<name>.broken[.N]``. Nothing is deleted: every cut byte stays on disk,
  for a person or a court to look at later.

Why the cut is always at a whole-batch boundary: the walk yields records
only when their batch is whole, so the last record it yielded ends one.

Some damage a cut cannot fix - a missing first segment ("history head
removed"), a defect of the directory itself, a segment of a newer format
(that is not damage: a newer eventlog reads it) - and :func:`cut` refuses
it with :class:`UnrepairableError`. A cut also refuses when the log is not
exactly as it was diagnosed (a writer appended since): the person must see
what they are cutting.
"""

from __future__ import annotations

import os
from typing import cast

import attrs

from .errors import CorruptLogError, EventLogError, UnsupportedFormatError
from .files import open_existing, read_from, reading, write_file_durably
from .format import (
    LAYOUTS,
    RECORD_TRAILER_SIZE,
    SEGMENT_HEADER_SIZE,
    ZERO_DIGEST,
    RawRecord,
    Record,
    encode_segment_header,
)
from .lock import WriterLock
from .reader import SegmentWalk
from .recovery import check_key
from .scanner import check_segment_header
from .segments import SegmentFile, broken_path, fsync_dir

__all__ = [
    "CutPoint",
    "Damage",
    "RepairResult",
    "SetAside",
    "UnrepairableError",
    "cut",
    "diagnose",
    "hex_dump",
]

#: Bytes shown before and after the damaged offset in a diagnosis.
DUMP_CONTEXT = 64
_LINE = 16


class UnrepairableError(CorruptLogError):
    """Corruption that cutting the log cannot fix; a person must restore it otherwise.

    A CorruptLogError (the log is still corrupt, with the damage's segment,
    offset and seq), whose reason also says why no cut helps.
    """


@attrs.frozen
class CutPoint:
    """Where a cut leaves the log: segment ``segment`` keeps its bytes ``[0, offset)``.

    ``seq`` is the last record kept (0: none). ``offset`` is the end of that
    record, 64 for a first segment with a good header and no good record,
    and 0 when even that header is bad: the segment is then set aside whole
    and written anew, header only.
    """

    seq: int
    segment: str
    offset: int


@attrs.frozen
class SetAside:
    """Bytes a cut moves out of the log: file ``name`` from ``offset``, ``size`` bytes."""

    name: str
    offset: int
    size: int


@attrs.frozen
class Damage:
    """The first defect of a log, and the cut that would remove it.

    ``segment``, ``offset``, ``seq`` and ``reason`` are the CorruptLogError's
    (``segment`` is a path). ``dump`` shows the bytes around ``offset``.
    ``cut_point`` is None when no cut can fix the damage; ``unrepairable``
    then says why. ``set_aside`` lists, file by file, the bytes a cut would
    move to ``.broken`` files; ``keyed`` is the log's keying (what a header
    written anew must say).
    """

    directory: str
    segment: str
    offset: int
    seq: int | None
    reason: str
    dump: str
    cut_point: CutPoint | None
    set_aside: tuple[SetAside, ...] = ()
    unrepairable: str = ""
    keyed: bool = False

    @property
    def bytes_set_aside(self) -> int:
        return sum(piece.size for piece in self.set_aside)

    def __str__(self) -> str:
        return str(CorruptLogError(self.segment, self.offset, self.seq, self.reason))


@attrs.frozen
class RepairResult:
    """What :func:`cut` did.

    ``kept_seq`` is the log's last seq now; ``segment`` its last segment
    (name) and ``size`` that segment's size. ``broken_files`` are the names
    the cut bytes now have, in the directory; ``header_rewritten`` says the
    first segment was set aside whole and made anew.
    """

    damage: Damage
    kept_seq: int
    segment: str
    size: int
    bytes_set_aside: int
    broken_files: tuple[str, ...]
    header_rewritten: bool = False


def hex_dump(path: str, offset: int, context: int = DUMP_CONTEXT) -> str:
    """The bytes of ``path`` around ``offset``, 16 a line, ``xxd``-like.

    The line holding ``offset`` is marked with ``>``. Empty when the file
    cannot be read as a regular file (it vanished, or is not one: never
    follow a link or block on a FIFO here).
    """
    try:
        fd = open_existing(path)
    except (OSError, EventLogError):
        return ""
    try:
        st = os.fstat(fd)
        lo = max(0, offset - context) // _LINE * _LINE
        hi = min(st.st_size, -(-(offset + context) // _LINE) * _LINE)
        data = os.pread(fd, max(0, hi - lo), lo)
    except OSError:
        return ""
    finally:
        os.close(fd)
    lines = []
    for i in range(0, len(data), _LINE):
        chunk = data[i : i + _LINE]
        at = lo + i
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        mark = ">" if at <= offset < at + _LINE else " "
        lines.append(f"{mark} {at:08x}  {hexes:<{_LINE * 3 - 1}}  |{text}|")
    return "\n".join(lines) + ("\n" if lines else "")


def _record_end(record: RawRecord) -> int:
    layout = LAYOUTS[record.version]
    return record.offset + layout.header_size + len(record.payload_bytes) + RECORD_TRAILER_SIZE


def _size(path: str) -> int:
    return os.lstat(path).st_size


def _first_header_ok(seg: SegmentFile, key: bytes | None) -> bool:
    """Whether the first segment's header is good; checks the key against it too.

    A wrong key (or a missing one) must never look like damage at seq 1:
    cutting there would set the whole log aside. So the keying is checked
    the way a writer checks it, before anything is walked.
    """
    try:
        with reading(seg.path) as f:
            head = f.read(SEGMENT_HEADER_SIZE)
        header = check_segment_header(head, seg.path, seg.first_seq, is_last=False)
    except (OSError, CorruptLogError):
        return False
    assert header is not None  # is_last=False: a bad header raises
    check_key(header, key, seg.path)
    return True


def diagnose(directory: str | os.PathLike[str], *, key: bytes | None = None) -> Damage | None:
    """The log's first damage and the cut that fixes it; None for a clean log.

    A torn tail is not damage (writer-open recovery cuts it). Raises
    EventLogError when there is no log, ``KeyRequiredError`` for a keyed
    log without its key and EventLogError for a key given to an unkeyed
    log - the chain must be checked before anyone cuts by it.
    """
    d = os.path.abspath(os.fspath(directory))
    try:
        walk = SegmentWalk(d, key=key, lenient=False, whole_history=True, raw=True)
    except CorruptLogError as err:
        # Raised before any record is read: the set of segments itself is wrong.
        why = (
            "the first segment is missing; only a backup brings the head of history back"
            if "history head removed" in err.reason
            else "the directory itself is wrong; a person must move the file named here"
        )
        return _unrepairable(d, err, why, keyed=key is not None)
    first_ok = _first_header_ok(walk.segments[0], key)
    last: Record | None = None
    try:
        for record in walk.records():
            last = record  # the last one yielded ends a whole batch: the cut point
    except CorruptLogError as err:
        damage = err
    else:
        return None
    keyed = walk.keyed if walk.keyed is not None else key is not None
    if isinstance(damage, UnsupportedFormatError):
        why = "not damage: a newer eventlog wrote this segment; upgrade instead of cutting"
        return _unrepairable(d, damage, why, keyed=keyed)
    if not os.path.lexists(damage.segment):
        return _unrepairable(d, damage, "the file vanished while it was read", keyed=keyed)
    segments = walk.segments
    if last is None:
        index = 0
        point = CutPoint(0, segments[0].name, SEGMENT_HEADER_SIZE if first_ok else 0)
    else:
        raw = cast(RawRecord, last)  # raw=True: every record is a RawRecord
        index = next(i for i, s in enumerate(segments) if s.name == raw.segment)
        point = CutPoint(raw.seq, raw.segment, _record_end(raw))
    kept = segments[index]
    pieces: list[SetAside] = []
    tail = _size(kept.path) - point.offset
    if tail > 0:
        pieces.append(SetAside(kept.name, point.offset, tail))
    pieces += [SetAside(s.name, 0, _size(s.path)) for s in segments[index + 1 :]]
    if not any(os.path.join(d, p.name) == damage.segment for p in pieces):
        return _unrepairable(d, damage, "the damage lies before the cut point", keyed=keyed)
    return Damage(
        d,
        damage.segment,
        damage.offset,
        damage.seq,
        damage.reason,
        hex_dump(damage.segment, damage.offset),
        point,
        tuple(pieces),
        keyed=keyed,
    )


def _unrepairable(directory: str, err: CorruptLogError, why: str, *, keyed: bool) -> Damage:
    return Damage(
        directory,
        err.segment,
        err.offset,
        err.seq,
        err.reason,
        hex_dump(err.segment, err.offset),
        None,
        unrepairable=f"a cut cannot fix this: {why}",
        keyed=keyed,
    )


def cut(
    directory: str | os.PathLike[str], damage: Damage, *, key: bytes | None = None
) -> RepairResult:
    """Cut the log at ``damage.cut_point``, keeping every cut byte in ``.broken`` files.

    Takes the writer lock (``LogLockedError`` while a writer holds it) and
    diagnoses the log again under it: if it is not exactly ``damage`` - a
    writer appended, someone repaired it already - nothing is done
    (EventLogError). ``key`` must be the one ``damage`` was diagnosed with.
    Raises :class:`UnrepairableError` for damage no cut can fix.

    Order (each step durable before the next destroys anything): copy the
    cut segment's tail to its ``.broken`` file (fsynced); rename the later
    segments, last first, so that what is left is always a prefix of the
    log; fsync the directory; truncate (or rewrite the header of) the cut
    segment and fsync it; fsync the directory. A crash on the way leaves a
    log that ``diagnose`` judges again, with every byte still on disk.
    """
    if damage.cut_point is None:
        raise UnrepairableError(
            damage.segment, damage.offset, damage.seq, f"{damage.reason}; {damage.unrepairable}"
        )
    d = os.path.abspath(os.fspath(directory))
    lock = WriterLock.acquire(d)
    try:
        now = diagnose(d, key=key)
        if now != damage:
            raise EventLogError(
                f"event log {d} is not as it was diagnosed (a writer appended, or it was "
                "repaired already): diagnose it again before cutting"
            )
        return _cut(d, damage, damage.cut_point)
    finally:
        lock.release()


def _cut(directory: str, damage: Damage, point: CutPoint) -> RepairResult:
    kept_path = os.path.join(directory, point.segment)
    later = [p.name for p in damage.set_aside if p.name != point.segment]
    rewrite = point.offset == 0
    first: list[str] = []  # the cut segment's own .broken file, if any
    if not rewrite and len(later) < len(damage.set_aside):
        moved = broken_path(kept_path)
        write_file_durably(moved, read_from(kept_path, point.offset))
        first.append(os.path.basename(moved))
    renamed: dict[str, str] = {}
    for name in reversed(later):
        path = os.path.join(directory, name)
        moved = broken_path(path)
        os.rename(path, moved)
        renamed[name] = os.path.basename(moved)
    if rewrite:
        moved = broken_path(kept_path)
        os.rename(kept_path, moved)
        first.append(os.path.basename(moved))
    fsync_dir(directory)
    if rewrite:
        write_file_durably(kept_path, encode_segment_header(1, ZERO_DIGEST, keyed=damage.keyed))
        size = SEGMENT_HEADER_SIZE
    else:
        fd = open_existing(kept_path, os.O_RDWR)
        try:
            os.ftruncate(fd, point.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        size = point.offset
    fsync_dir(directory)
    return RepairResult(
        damage,
        point.seq,
        point.segment,
        size,
        damage.bytes_set_aside,
        tuple(first + [renamed[name] for name in later]),
        rewrite,
    )
