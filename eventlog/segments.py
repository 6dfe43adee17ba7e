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
from .format import segment_name

__all__ = [
    "SegmentFile",
    "broken_path",
    "check_first_segment",
    "fsync_dir",
    "list_segments",
    "make_directory",
    "read_file",
    "read_from",
    "segment_file",
    "segment_name",
    "write_file_durably",
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


def check_first_segment(directory: str, segments: list[SegmentFile]) -> None:
    """History must start at seq 1: a missing first segment is a removed head."""
    if segments and segments[0].first_seq != 1:
        raise CorruptLogError(
            segments[0].path,
            0,
            1,
            f"history head removed: first segment starts at seq {segments[0].first_seq}, not 1",
        )


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


def write_file_durably(path: str, data: bytes) -> None:
    """Create ``path`` (must not exist) holding ``data``, fsynced (dir fsync is the caller's)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: str) -> bytes:
    """The whole file in one read (the readers' fast path)."""
    with open(path, "rb", buffering=0) as f:
        return f.read()


def read_from(path: str, offset: int) -> bytes:
    """The bytes of ``path`` from ``offset`` to its current end."""
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        return f.read()
