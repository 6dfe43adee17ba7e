"""The one place that opens files below a log directory: never a link, never a hang.

Why: the state directory sits beside containerd, and whoever can write there
can put anything under a name the log uses. A name is never trusted to be
what it says (docs/SECURITY.md names the attacks):

- the last component is opened with ``O_NOFOLLOW``: a symlink is refused,
  never followed (the directory itself may be reached through links, e.g.
  ``/var/run -> /run``; only what is below it is checked);
- every open has ``O_NONBLOCK``, so a FIFO (or a device) cannot block the
  open itself; ``fstat`` then refuses every kind but a regular file, so
  nothing is ever read from or written to one. The flag stays set: it has no
  effect on a regular file;
- a file must have exactly one link: a hard link to a file elsewhere would
  otherwise be read as ours or, worse, written through;
- ``O_CLOEXEC`` always (a spawned child inherits nothing) and ``O_NOCTTY``
  (a terminal device can never become the controlling one).

What is found instead is one :class:`UnsafeFileError` naming the path and
the kind. A file the log creates is created with ``O_EXCL`` (never over an
existing name) and, if writing it fails, removed again: a failed attempt
leaves no debris that could later pass for evidence.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import stat
from collections.abc import Iterator

from .errors import UnsafeFileError

__all__ = [
    "create_new",
    "describe",
    "open_existing",
    "read_file",
    "read_from",
    "reading",
    "replace_file_durably",
    "write_all",
    "write_file_durably",
]

_COMMON = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY

#: errnos an open can fail with because of what is at the path (ELOOP: a
#: symlink under O_NOFOLLOW; ENXIO: a FIFO without reader or a socket opened
#: for writing; EISDIR: a directory opened for writing; ENODEV/EWOULDBLOCK:
#: devices).
_KIND_ERRNOS = frozenset(
    {errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EWOULDBLOCK, errno.ETXTBSY}
)

_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def describe(st: os.stat_result) -> str | None:
    """What is wrong with a file of this stat, or None for a regular file with one link."""
    for test, kind in _KINDS:
        if test(st.st_mode):
            return kind
    if not stat.S_ISREG(st.st_mode):
        return "a file of unknown kind"
    if st.st_nlink != 1:
        return f"a regular file with {st.st_nlink} hard links"
    return None


def _found_at(path: str) -> str | None:
    """What lstat finds at ``path`` when an open failed because of it."""
    try:
        return describe(os.lstat(path))
    except OSError:
        return None


def _checked(path: str, fd: int) -> int:
    """``fd`` if it is a regular file with one link; else closed, and UnsafeFileError."""
    try:
        found = describe(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    if found is not None:
        os.close(fd)
        raise UnsafeFileError(path, found)
    return fd


def open_existing(path: str, flags: int = os.O_RDONLY) -> int:
    """Open an existing file below a log directory (``flags``: access mode, O_APPEND).

    Raises UnsafeFileError if it is anything but a regular file with one
    link, FileNotFoundError if it is missing; never blocks, never follows.
    """
    try:
        fd = os.open(path, flags | _COMMON)
    except OSError as exc:
        found = _found_at(path) if exc.errno in _KIND_ERRNOS else None
        if found is not None:
            raise UnsafeFileError(path, found) from None
        raise
    return _checked(path, fd)


def create_new(path: str, flags: int = os.O_WRONLY, mode: int = 0o644) -> int:
    """Create ``path``, which must not exist (``O_EXCL``: a link at the name is never used)."""
    return _checked(path, os.open(path, flags | os.O_CREAT | os.O_EXCL | _COMMON, mode))


@contextlib.contextmanager
def reading(path: str) -> Iterator[io.FileIO]:
    """An unbuffered binary file object on ``path``, opened by :func:`open_existing`."""
    with io.FileIO(open_existing(path), "rb", closefd=True) as f:
        yield f


def read_file(path: str) -> bytes:
    """The whole file in one read (the readers' fast path)."""
    with reading(path) as f:
        return f.readall()


def read_from(path: str, offset: int) -> bytes:
    """The bytes of ``path`` from ``offset`` to its current end."""
    with reading(path) as f:
        f.seek(offset)
        return f.readall()


def write_all(fd: int, data: bytes, done: int = 0) -> None:
    """Write ``data[done:]`` to ``fd`` whole: a write may be short (a signal, a full
    disk), and one that writes nothing is an error, never a loop."""
    view = memoryview(data)[done:]
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(f"write returned {n}")
        view = view[n:]


def write_file_durably(path: str, data: bytes) -> None:
    """Create ``path`` (must not exist) holding ``data``, fsynced (dir fsync is the caller's).

    If any step fails (a full disk, say) the file is removed again: an empty
    or partial file must not stay behind to be mistaken for a segment or for
    a ``.broken`` copy of cut bytes.
    """
    fd = create_new(path)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def replace_file_durably(path: str, data: bytes) -> None:
    """Atomically make ``path`` hold ``data``: temp file, fsync, rename (dir fsync: caller's).

    For the log's small records (``HISTORY``, ``SHIPPED``): a reader sees the
    old content or the new, never a mix. The temp name is unique (pid and
    random), so a crash's leftover temp is never reused or truncated; the
    rename replaces whatever entry is at ``path`` and never writes through it.
    """
    temp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    write_file_durably(temp, data)
    try:
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
