"""Snapshot files on disk: naming, listing, opening safely, pruning.

The state dir may hold things this code did not make under a snapshot's
name: a directory, a FIFO, a symlink to somewhere else (a mistake, another
tool, an attacker). Nothing here follows a symlink or waits on a FIFO: files
are opened by ``eventlog.files`` (O_NOFOLLOW | O_NONBLOCK, then ``fstat``:
a regular file with one link, else refused), and
``prune`` deletes only regular files that start with the snapshot magic.
Anything else is skipped with a warning, never an exception that would stop
a snapshot or an open.
"""

from __future__ import annotations

import contextlib
import logging
import os

from eventlog import files
from eventlog.errors import UnsafeFileError
from eventlog.segments import fsync_dir as _fsync_dir
from sandbox.errors import SnapshotError

__all__ = [
    "KEEP",
    "MAGIC",
    "SUFFIX",
    "TEMP_SUFFIX",
    "list_snapshots",
    "open_regular",
    "prune",
    "read_file",
    "snapshot_path",
]

log = logging.getLogger(__name__)

MAGIC = b"SBXSNAP\x00"
SUFFIX = ".snap"
TEMP_SUFFIX = ".snap.tmp"
#: How many snapshots are kept (newest first); older ones are deleted.
KEEP = 3
#: Largest snapshot file read (a hostile size must not exhaust memory).
MAX_SNAPSHOT_BYTES = 1 << 34


def snapshot_path(directory: str | os.PathLike[str], seq: int) -> str:
    return os.path.join(os.fspath(directory), f"{seq:020d}{SUFFIX}")


def list_snapshots(directory: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """``(seq, path)`` of every name ``<20 digits>.snap``, newest (highest seq) first.

    Names only: what each one is (a file this code wrote, a directory, a FIFO,
    a link) is checked where it is opened (``read_snapshot_info``) or deleted
    (``prune``).
    """
    d = os.fspath(directory)
    out: list[tuple[int, str]] = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in names:
        stem = name[: -len(SUFFIX)]
        if name.endswith(SUFFIX) and len(stem) == 20 and stem.isdigit():
            out.append((int(stem), os.path.join(d, name)))
    out.sort(reverse=True)
    return out


def open_regular(path: str) -> int:
    """An fd on ``path`` if it is a regular file with one link (``eventlog.files``:
    never follows a symlink, never blocks on a FIFO); else SnapshotError."""
    try:
        return files.open_existing(path)
    except UnsafeFileError as exc:
        raise SnapshotError(f"{path}: {exc.found}, not a snapshot file") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read: {exc}") from None


def read_file(path: str) -> bytearray:
    """The whole file, read into one buffer of its size: a snapshot of 100,000
    sandboxes is ~70 MB, and reading it in chunks and joining them copied it twice."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(f"{path}: {size} bytes; at most {MAX_SNAPSHOT_BYTES} expected")
        data = bytearray(size)
        got = 0
        with memoryview(data) as view:
            while got < size and (n := os.readv(fd, [view[got:]])):
                got += n
        del data[got:]  # shorter than fstat said: the checks of its content will tell
        while chunk := os.read(fd, 1 << 20):  # longer: the same
            if len(data) + len(chunk) > MAX_SNAPSHOT_BYTES:
                raise SnapshotError(f"{path}: more than {MAX_SNAPSHOT_BYTES} bytes")
            data += chunk
        return data
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read: {exc}") from None
    finally:
        os.close(fd)


def _not_ours(path: str, *, check_magic: bool) -> str | None:
    """Why ``path`` must not be deleted by ``prune`` (None: a file this code wrote)."""
    try:
        found = files.describe(os.lstat(path))
    except FileNotFoundError:
        return None
    if found is not None:
        return f"{found}, not a snapshot file"
    if not check_magic:
        return None
    try:
        fd = open_regular(path)
    except SnapshotError as exc:
        return str(exc)
    try:
        head = os.read(fd, len(MAGIC))
    finally:
        os.close(fd)
    return None if head == MAGIC else "it does not start with the snapshot magic"


def _unlink(path: str, removed: list[str], *, check_magic: bool) -> None:
    why = _not_ours(path, check_magic=check_magic)
    if why is not None:
        log.warning("not pruning %s: %s", path, why)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        removed.append(path)


def prune(directory: str | os.PathLike[str], *, keep: int = KEEP) -> list[str]:
    """Delete all but the newest ``keep`` snapshots and temp files left by other
    (dead) processes; this process's own may be writes in flight.

    Only regular files are deleted (snapshots: only those starting with the
    snapshot magic); anything else of that name is left, with a warning.
    """
    d = os.fspath(directory)
    removed: list[str] = []
    for _seq, path in list_snapshots(d)[keep:]:
        _unlink(path, removed, check_magic=True)
    mine = f".{os.getpid()}."
    for name in os.listdir(d):
        if name.endswith(TEMP_SUFFIX) and mine not in name:
            _unlink(os.path.join(d, name), removed, check_magic=False)
    if removed:
        _fsync_dir(d)
    return removed
