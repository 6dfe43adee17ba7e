"""Retention: ``compact(directory, before_seq=...)`` lets the oldest segments go.

Why: the log only grows, and on a long-lived node whose live set is small
the history that a snapshot already folded is dead weight. Compaction
removes (or moves to an archive directory) every segment wholly before
``before_seq`` - never the last one - and records where the local history
now starts in ``HISTORY`` (``eventlog.history``; FORMAT.md, "Compaction"),
so that a removed head is told apart from an attacker's deletion.

Two ways in, one body (``_compact_locked``): ``compact()`` takes the writer
lock itself (``sandboxctl compact``, a stopped store); ``EventLog.compact``
(the ``Compaction`` mixin) runs under the lock an open writer already holds,
so a node agent that keeps its store open can compact too (``Store.compact``).

Order of operations (crash safety), holding the writer lock:

1. check the segments to remove: they must chain, record by record, into
   the kept first segment's ``prev_digest`` (evidence of tampering is never
   thrown away unread), and - when the node ships (a ``SHIPPED`` record) -
   hold no record above the shipped seq unless ``force``;
2. write the new ``HISTORY`` (temp, fsync, rename, directory fsync);
3. remove the segments, oldest first (or move them: rename within a
   filesystem, else copy to a temp name, fsync, rename, fsync), then fsync
   the directories.

A crash after 2 leaves segments before the recorded start: they are not
part of the history (readers skip them, ``verify`` notes them) and the next
compaction removes them. A crash before 2 leaves the log as it was.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from . import crashpoints
from .errors import CompactionRefusedError, EventLogError, KeyRequiredError
from .files import read_file, reading, replace_file_durably, write_file_durably
from .format import SEGMENT_HEADER_SIZE, SegmentHeader
from .history import (
    HISTORY_NAME,
    SHIPPED_NAME,
    History,
    Shipped,
    encode_history,
    encode_shipped,
    history_mac,
    load_shipped,
)
from .lock import WriterLock
from .reader import read
from .scanner import check_segment_header
from .segments import SegmentFile, check_first_segment, fsync_dir, list_segments, make_directory

__all__ = ["CompactResult", "Compaction", "compact", "write_shipped"]

AFTER_HISTORY = crashpoints.register(
    "compact.after_history", "eventlog/compact.py: HISTORY written, no segment removed yet"
)
AFTER_FIRST_REMOVE = crashpoints.register(
    "compact.after_first_remove", "eventlog/compact.py: the first old segment removed or moved"
)


@attrs.frozen
class CompactResult:
    """What ``compact`` did: the segments removed (or archived), their bytes, the new start."""

    removed: tuple[str, ...]
    bytes_removed: int
    first_seq: int
    archive: str
    history: History | None


def write_shipped(directory: str | os.PathLike[str], seq: int, digest: bytes) -> None:
    """Record durably that a remote store acknowledged the log up to ``seq`` (``SHIPPED``)."""
    d = os.fspath(directory)
    replace_file_durably(os.path.join(d, SHIPPED_NAME), encode_shipped(Shipped(seq, digest)))
    fsync_dir(d)


def compact(
    directory: str | os.PathLike[str],
    *,
    before_seq: int,
    archive_dir: str | os.PathLike[str] | None = None,
    key: bytes | None = None,
    force: bool = False,
) -> CompactResult:
    """Remove (or archive) every segment whose last record is below ``before_seq``.

    Takes the writer lock (LogLockedError at once if a writer holds it). The
    last segment always stays. Raises CompactionRefusedError when the
    segments would take records a ``SHIPPED`` record does not cover (unless
    ``force``) or do not chain into what is kept; KeyRequiredError on a keyed
    log without its key (the ``HISTORY`` record of a keyed log carries a MAC).
    """
    d = os.fspath(directory)
    archive = _archive_path(archive_dir)
    lock = WriterLock.acquire(d)
    try:
        return _compact_locked(d, before_seq, archive, key, force)
    finally:
        lock.release()


class Compaction:
    """Mixin of ``EventLog``: compaction by the open writer, under the lock it holds."""

    # Set by EventLog.__init__ (see there for what each is).
    directory: str
    _key: bytes | None
    _last_seq: int
    #: Held while compacting; ``close`` takes it before it releases the writer lock.
    _compacting: threading.Lock

    if TYPE_CHECKING:
        # Provided by EventLog (writer): LogClosedError / LogPoisonedError.
        def _check_usable(self) -> None: ...

    def compact(
        self,
        *,
        before_seq: int,
        archive_dir: str | os.PathLike[str] | None = None,
        force: bool = False,
        prepare: Callable[[int], None] | None = None,
    ) -> CompactResult:
        """``compact`` (same rules, same errors, same ``HISTORY``) by this writer.

        ``prepare(first_seq)``: called once the compaction is known to go ahead
        (every check passed, nothing changed yet) with the seq the log will
        start at, so the caller can carry into the log what the records before
        it prove (the store's netns ownership); it may append. Not called when
        nothing would be removed or the compaction is refused.

        Appends and rotations go on meanwhile; they are not blocked behind the
        reads and fsyncs a compaction does. That is safe because a rotation
        only ever adds a segment after every listed one and the last listed
        segment always stays, so the segment the writer appends to is never
        removed. ``before_seq`` is capped at ``last_seq``: a segment a
        rotation has just created (its header maybe not yet written) starts
        after ``last_seq`` and so can never become the kept first segment.
        Two compactions of one writer run one after the other; ``close``
        waits for one in flight (the lock must not be free while segments
        are being removed). LogClosedError after ``close``.
        """
        archive = _archive_path(archive_dir)
        with self._compacting:
            self._check_usable()
            before = min(before_seq, self._last_seq)
            return _compact_locked(self.directory, before, archive, self._key, force, prepare)


def _archive_path(archive_dir: str | os.PathLike[str] | None) -> str:
    return "" if archive_dir is None else os.path.abspath(os.fspath(archive_dir))


def _compact_locked(
    d: str,
    before_seq: int,
    archive: str,
    key: bytes | None,
    force: bool,
    prepare: Callable[[int], None] | None = None,
) -> CompactResult:
    every = list_segments(d)
    segments, history = check_first_segment(d, every)
    leftovers = every[: len(every) - len(segments)]
    if not segments:
        raise EventLogError(f"no event log in {d} (no segment files)")
    n = 0
    while n < len(segments) - 1 and segments[n + 1].first_seq <= before_seq:
        n += 1
    if n == 0:
        removed = _remove(d, leftovers, archive)
        first = segments[0].first_seq
        return CompactResult(removed[0], removed[1], first, archive, history)
    kept = segments[n]
    header = _kept_header(kept, key)
    shipped = load_shipped(d)
    _check_removable(d, segments[0].first_seq, kept, header, key, shipped, force)
    if prepare is not None:
        prepare(kept.first_seq)
    new = History(
        first_seq=kept.first_seq,
        prev_digest=header.prev_digest,
        archive=archive,
        shipped_seq=0 if shipped is None else shipped.seq,
    )
    if header.keyed:
        assert key is not None
        new = attrs.evolve(new, mac=history_mac(new, key))
    replace_file_durably(os.path.join(d, HISTORY_NAME), encode_history(new))
    fsync_dir(d)
    if crashpoints.ARMED:
        crashpoints.hit(AFTER_HISTORY)
    names, size = _remove(d, leftovers + segments[:n], archive)
    return CompactResult(names, size, kept.first_seq, archive, new)


def _kept_header(kept: SegmentFile, key: bytes | None) -> SegmentHeader:
    """The kept first segment's header: its ``prev_digest`` becomes the record's digest."""
    with reading(kept.path) as f:
        data = f.read(SEGMENT_HEADER_SIZE)
    header = check_segment_header(data, kept.path, kept.first_seq, is_last=False)
    assert header is not None  # is_last=False: a short or zero header raises
    if header.keyed and key is None:
        raise KeyRequiredError(f"event log {kept.path} is keyed: compaction needs its key")
    if not header.keyed and key is not None:
        raise EventLogError(f"a key was given but the event log of {kept.path} is not keyed")
    return header


def _check_removable(
    d: str,
    first_local: int,
    kept: SegmentFile,
    header: SegmentHeader,
    key: bytes | None,
    shipped: Shipped | None,
    force: bool,
) -> None:
    """Refuse unless the history to remove is shipped (or forced) and chains into ``kept``."""
    last_gone = kept.first_seq - 1
    if shipped is not None and shipped.seq < last_gone and not force:
        raise CompactionRefusedError(
            f"event log {d}: compaction would remove seqs {shipped.seq + 1}..{last_gone}, "
            f"which were never shipped (SHIPPED says seq {shipped.seq}); ship them first "
            "or force it"
        )
    last = None
    shipped_ok = shipped is None or shipped.seq < first_local
    to_seq = last_gone if shipped is None else max(last_gone, shipped.seq)
    for record in read(d, from_seq=first_local, to_seq=to_seq, key=key):
        if record.seq <= last_gone:
            last = record
        if shipped is not None and record.seq == shipped.seq:
            shipped_ok = record.digest == shipped.digest
    if not shipped_ok:
        raise CompactionRefusedError(
            f"event log {d}: SHIPPED names seq {shipped.seq if shipped else 0} with a digest "
            "this log does not have (another history was shipped)"
        )
    if last is None or last.seq != last_gone or last.digest != header.prev_digest:
        raise CompactionRefusedError(
            f"event log {d}: the segments before seq {kept.first_seq} do not chain into "
            f"{kept.name}; run verify"
        )


def _remove(d: str, segments: list[SegmentFile], archive: str) -> tuple[tuple[str, ...], int]:
    """Delete or archive ``segments`` oldest first; fsync the directories. Names and bytes."""
    if not segments:
        return (), 0
    if archive:
        make_directory(archive)
    size = 0
    for i, seg in enumerate(segments):
        size += os.lstat(seg.path).st_size
        if archive:
            _archive_one(seg, archive)
        else:
            os.unlink(seg.path)
        if i == 0 and crashpoints.ARMED:
            crashpoints.hit(AFTER_FIRST_REMOVE)
    if archive:
        fsync_dir(archive)
    fsync_dir(d)
    return tuple(s.name for s in segments), size


def _archive_one(seg: SegmentFile, archive: str) -> None:
    """Move one segment into ``archive``; never over a different file of that name."""
    target = os.path.join(archive, seg.name)
    if os.path.lexists(target):
        # An interrupted earlier run copied it already: same bytes, or refuse.
        if read_file(target) != read_file(seg.path):
            raise CompactionRefusedError(
                f"archive {archive} already holds a different {seg.name}; not overwriting it"
            )
        os.unlink(seg.path)
        return
    try:
        os.rename(seg.path, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    data = read_file(seg.path)
    temp = f"{target}.tmp-{os.getpid()}"
    write_file_durably(temp, data)
    os.rename(temp, target)
    fsync_dir(archive)
    os.unlink(seg.path)
