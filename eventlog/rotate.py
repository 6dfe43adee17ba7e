"""Segment rotation and the format upgrade of a version 1 log (a mixin of ``EventLog``).

Rotation happens between appends: when the current segment holds at least
one record and has reached ``segment_bytes``, the writer fsyncs it, creates
``<next seq>.log`` with O_EXCL, writes and fsyncs its 64-byte header, and
fsyncs the directory. A batch never straddles segments, so a batch bigger
than ``segment_bytes`` makes one big segment.

The upgrade of an empty v1 tail writes ``<segment>.v2tmp`` and renames it
over the segment. A crash before the rename leaves that file behind, and
``create_new`` (O_EXCL) would then refuse every later upgrade. The writer
removes such a leftover only once it has proved it is its own
(``_clear_leftover``): a regular file with one link, at exactly that name,
holding a prefix of the very header the upgrade writes - or zeros where
those bytes were not persisted. Anything else is refused, naming the file:
the store never deletes a file it did not create.

``Rotation`` is a mixin rather than a helper object for the reason given in
``commit``: it works on the writer's own state (set by ``EventLog.__init__``,
declared below for the type checker), under the writer's write lock.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from . import crashpoints
from .errors import EventLogError
from .files import create_new, open_existing, reading, write_file_durably
from .format import encode_segment_header, segment_name
from .segments import fsync_dir

if TYPE_CHECKING:
    from .errors import LogPoisonedError

__all__ = ["UPGRADE_TEMP_SUFFIX", "Rotation"]

#: ``<segment>.v2tmp``: the temp file of the upgrade of an empty v1 tail.
UPGRADE_TEMP_SUFFIX = ".v2tmp"

ROTATE_AFTER_SYNC_OLD = crashpoints.register(
    "rotate.after_sync_old", "eventlog.writer: old segment fsynced, new segment not created"
)
ROTATE_AFTER_CREATE = crashpoints.register(
    "rotate.after_create", "eventlog.writer: new segment file exists, header not written"
)
ROTATE_AFTER_HEADER = crashpoints.register(
    "rotate.after_header",
    "eventlog.writer: new segment header written and fsynced, directory not fsynced",
)


class Rotation:
    """Mixin of ``EventLog``: start the next segment; continue a v1 log in v2."""

    # Set by EventLog.__init__ (see there for what each is).
    directory: str
    _key: bytes | None
    _sync: bool
    _wlock: threading.Lock
    _mutex: threading.Lock
    _fd: int
    _seg_path: str
    _seg_size: int
    _seg_records: int
    _last_seq: int
    _head: bytes
    _synced_offset: tuple[str, int]
    _rotations: int

    if TYPE_CHECKING:
        # Provided by EventLog (writer) and GroupCommit (commit).
        def _poisoned(self, exc: BaseException) -> LogPoisonedError: ...
        def _synced_all(self, began: float) -> None: ...

    def _rotate(self) -> None:
        """Start the next segment (write lock held, so no append or sync races it)."""
        armed = crashpoints.ARMED
        old_fd = self._fd
        try:
            if self._sync:
                began = _perf_counter()
                os.fdatasync(old_fd)
                self._synced_all(began)
            if armed:
                crashpoints.hit(ROTATE_AFTER_SYNC_OLD)
            first = self._last_seq + 1
            path = os.path.join(self.directory, segment_name(first))
            fd = create_new(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise self._poisoned(exc) from exc
        try:
            if armed:
                crashpoints.hit(ROTATE_AFTER_CREATE)
            header = encode_segment_header(first, self._head, keyed=self._key is not None)
            if os.write(fd, header) != len(header):
                raise OSError("short write of a segment header")
            if self._sync:
                os.fsync(fd)
            if armed:
                crashpoints.hit(ROTATE_AFTER_HEADER)
            if self._sync:
                fsync_dir(self.directory)
        except OSError as exc:
            os.close(fd)
            raise self._poisoned(exc) from exc
        self._fd = fd
        self._seg_path = path
        self._seg_size = len(header)
        self._seg_records = 0
        with self._mutex:
            self._rotations += 1
            self._synced_offset = (path, self._seg_size if self._sync else 0)
        os.close(old_fd)

    # -- format upgrade --------------------------------------------------------

    def _upgrade(self) -> None:
        """Continue a version 1 log in version 2 segments (a segment has one version).

        With records in the v1 tail, rotate now; an empty v1 tail (header
        only) is replaced by a v2 header for the same seq, through a
        fsynced temp file renamed over it.
        """
        with self._wlock:
            if self._seg_records > 0:
                self._rotate()
                return
            header = encode_segment_header(
                self._last_seq + 1, self._head, keyed=self._key is not None
            )
            tmp = self._seg_path + UPGRADE_TEMP_SUFFIX
            _clear_leftover(tmp, header)
            write_file_durably(tmp, header)
            os.rename(tmp, self._seg_path)
            fsync_dir(self.directory)
            fd = open_existing(self._seg_path, os.O_WRONLY | os.O_APPEND)
            os.close(self._fd)
            self._fd = fd
            self._seg_size = len(header)
            with self._mutex:
                self._synced_offset = (self._seg_path, self._seg_size if self._sync else 0)


def _clear_leftover(tmp: str, header: bytes) -> None:
    """Remove ``tmp`` if an interrupted upgrade of this segment left it; else refuse.

    Ours means: a regular file with one link (``open_existing``: anything
    else is an UnsafeFileError naming it), no longer than ``header``, each
    byte either ``header``'s or zero (a crash can persist the size without
    the data). The header holds this segment's first seq and the chain
    digest before it, so a file of another log or another segment does not
    pass. Missing: nothing to do.
    """
    try:
        with reading(tmp) as f:
            data = f.read(len(header) + 1)
    except FileNotFoundError:
        return
    ours = len(data) <= len(header) and all(
        b in (want, 0) for b, want in zip(data, header, strict=False)
    )
    if not ours:
        raise EventLogError(
            f"{tmp}: not the temp file this log's format upgrade writes (it does not "
            "hold this segment's version 2 header); not removing it. Move it away if "
            "it is not needed, then open the log again"
        )
    os.unlink(tmp)


_perf_counter = time.perf_counter
