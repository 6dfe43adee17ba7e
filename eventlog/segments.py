"""Segment files: naming, listing, and the fsync helpers every writer path uses.

A segment is named by the seq of its first record, zero-padded to 20 digits
(``00000000000000000001.log``) so a plain sort is a numeric sort and the name
alone tells which segment holds a given seq. Other files in the directory
(``LOCK``, ``*.broken``, ``*.snap``, temporary files) are not segments and are
ignored here.

Durability rules (Linux): a new, renamed or removed file is only durable
once its directory is fsynced, which is why creating the directory, a
segment or a ``.broken`` copy always ends with :func:`fsync_dir`.
"""

from __future__ import annotations

import os
import re

import attrs

from .errors import CorruptLogError, EventLogError
from .format import SegmentHeader, segment_name
from .history import History, load_history

__all__ = [
    "SegmentFile",
    "broken_path",
    "check_first_segment",
    "fsync_dir",
    "list_segments",
    "make_directory",
    "open_segments",
    "segment_chain_key",
    "segment_file",
    "segment_name",
]

_SEGMENT_RE = re.compile(r"^(\d{20})\.log$")


@attrs.frozen(slots=True)
class SegmentFile:
    """A segment as found in a directory listing."""

    first_seq: int
    name: str
    path: str


def list_segments(directory: str) -> list[SegmentFile]:
    """The segments of ``directory`` in seq order.

    Raises EventLogError when the directory does not exist: a reader must
    not mistake a wrong path for an empty log.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise EventLogError(f"event log directory {directory} does not exist") from None
    except NotADirectoryError:
        raise EventLogError(f"event log path {directory} is not a directory") from None
    found: list[SegmentFile] = []
    for name in names:
        m = _SEGMENT_RE.match(name)
        if m is None:
            continue
        first = int(m.group(1))
        if first == 0:
            raise CorruptLogError(os.path.join(directory, name), 0, None, "segment named seq 0")
        found.append(SegmentFile(first, name, os.path.join(directory, name)))
    found.sort(key=lambda s: s.first_seq)
    return found


def segment_file(directory: str, first_seq: int) -> SegmentFile | None:
    """The segment starting at ``first_seq`` if its file exists (found by name, not listing)."""
    name = segment_name(first_seq)
    path = os.path.join(directory, name)
    return SegmentFile(first_seq, name, path) if os.path.lexists(path) else None


def check_first_segment(
    directory: str, segments: list[SegmentFile]
) -> tuple[list[SegmentFile], History | None]:
    """Where the local history starts: the segments from there, and the ``HISTORY`` record.

    Without a ``HISTORY`` record history must start at seq 1: a missing
    first segment is a removed head (an attacker deleting segments is
    caught). With one (a compacted log, FORMAT.md "Compaction") the segment
    named for its ``first_seq`` must exist; segments wholly before it are
    what an interrupted compaction had not removed yet, and are not part of
    the local history (the next compaction removes them). The caller checks
    that the kept first segment's ``prev_digest`` is the record's digest.
    """
    history = load_history(directory)
    if history is None:
        if segments and segments[0].first_seq != 1:
            raise CorruptLogError(
                segments[0].path,
                0,
                1,
                f"history head removed: first segment starts at seq {segments[0].first_seq}, "
                "not 1, and there is no HISTORY record of a compaction",
            )
        return segments, None
    firsts = [s.first_seq for s in segments]
    if history.first_seq not in firsts:
        raise CorruptLogError(
            os.path.join(directory, segment_name(history.first_seq)),
            0,
            history.first_seq,
            f"history head removed: HISTORY says the log starts at seq {history.first_seq}, "
            "but no segment starts there",
        )
    return segments[firsts.index(history.first_seq) :], history


def fsync_dir(directory: str) -> None:
    """fsync a directory so that entries created, renamed or removed in it persist."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory(directory: str) -> None:
    """Create ``directory`` (and missing parents), fsyncing each parent that gained an entry."""
    directory = os.path.abspath(directory)
    if os.path.isdir(directory):
        return
    missing: list[str] = []
    path = directory
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    os.makedirs(directory, exist_ok=True)
    # Innermost first: each created directory's entry lives in its parent.
    for created in missing:
        fsync_dir(os.path.dirname(created))


def broken_path(path: str) -> str:
    """A free name for the ``.broken`` copy of ``path``.

    ``<segment>.broken`` normally; if an earlier repair already left one,
    ``.broken.1``, ``.broken.2``, ... so no evidence is ever overwritten.
    """
    candidate = path + ".broken"
    n = 0
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}.broken.{n}"
    return candidate


def segment_chain_key(
    seg: SegmentFile,
    header: SegmentHeader,
    keyed: bool,
    key: bytes | None,
    messages: tuple[str, str],
) -> bytes | None:
    """The scanner's chain key for ``seg``, in a log whose first segment's
    keyed flag is ``keyed``; None for a keyed log read without its key (crcs
    only). ``messages``: the reader's words for a keyed flag that changed and
    for a key given for a log that is not keyed (both CorruptLogError)."""
    if keyed != header.keyed:
        raise CorruptLogError(seg.path, 10, header.first_seq, messages[0])
    if header.keyed:
        return key
    if key is not None:
        raise CorruptLogError(seg.path, 10, header.first_seq, messages[1])
    return b""


def open_segments(directory: str) -> tuple[list[SegmentFile], History | None]:
    """A log's local segments and ``HISTORY`` record (``check_first_segment``);
    EventLogError when the directory holds no segment file."""
    segments = list_segments(directory)
    if not segments:
        raise EventLogError(f"no event log in {directory} (no segment files)")
    return check_first_segment(directory, segments)
