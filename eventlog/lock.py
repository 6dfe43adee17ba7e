"""The one-writer-per-directory lock: ``flock`` on the directory, ``lockf`` on ``LOCK``.

Why the directory: a lock on a file can be bypassed by deleting the file (a
second writer creates a new ``LOCK`` and locks that; the log then ends with
a repeated seq). Nothing in the directory can unlink the directory, so the
lock that excludes writers is ``flock(LOCK_EX | LOCK_NB)`` on an
``O_DIRECTORY | O_CLOEXEC`` descriptor of it. (A POSIX record lock cannot be
taken on a directory: it needs a descriptor open for writing.)

``flock``'s trap: the lock belongs to the open file description, which a
forked child shares; if the writer forked a helper and was then killed,
the orphan would keep the log locked for ever. Two rules close it:
the descriptor is close-on-exec, so a spawned program never has it; and an
``os.register_at_fork`` hook closes it in every child forked from Python
(pyroute2's ``netns.create`` forks; sandbox/netns.py creates namespaces from
a helper thread instead), so the parent's description is referenced by the
parent alone. Only a fork from C without exec, which this project never
does, would escape both.

Why ``LOCK`` still has a POSIX record lock (``fcntl.lockf``): a writer of an
earlier version locks only that, so both locks keep mixed versions apart;
and ``LOCK`` carries the holder's pid so that ``LogLockedError`` can name it
(advisory text; the locks are the kernel's). Its traps: POSIX locks never
conflict within one process, so an in-process registry keyed by the
directory's ``(st_dev, st_ino)`` refuses a second writer first; and closing
*any* descriptor of the file drops the process's lock, so this module is the
only code that opens ``LOCK`` and never opens it again while holding it.

``LOCK`` is opened through ``eventlog.files``: a symlink, FIFO, hard link or
anything but our own regular file there is an UnsafeFileError, never
truncated or written through.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading

from .errors import EventLogError, LogLockedError
from .files import create_new, open_existing, read_file
from .segments import fsync_dir

LOCK_NAME = "LOCK"

_registry_lock = threading.Lock()
_registry: dict[tuple[int, int], WriterLock | None] = {}


def _forget_in_child() -> None:
    """A forked child must neither hold the parent's lock nor believe it does.

    Closing the child's copy of the directory descriptor leaves the flock
    with the parent alone (it is dropped only when the last descriptor of
    the open file description closes). No lock is taken here: another thread
    of the parent may have held ``_registry_lock`` at the fork.
    """
    global _registry_lock
    _registry_lock = threading.Lock()
    for held in _registry.values():
        if held is not None:
            held._drop_in_child()
    _registry.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def _read_pid(path: str) -> int | None:
    """The holder's pid as written in ``LOCK`` (a safe open: LOCK may be anything)."""
    try:
        text = read_file(path)[:64].decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError, EventLogError):
        return None


class WriterLock:
    """The held lock of one directory; ``release()`` (or process death) frees it."""

    def __init__(self, directory: str, key: tuple[int, int], dir_fd: int, fd: int):
        self.directory = directory
        self._key = key
        self._dir_fd: int | None = dir_fd
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: str) -> WriterLock:
        """Take the lock or raise LogLockedError at once (never waits).

        UnsafeFileError when ``LOCK`` is not a regular file with one link.
        """
        st = os.stat(directory)
        key = (st.st_dev, st.st_ino)
        with _registry_lock:
            if key in _registry:
                raise LogLockedError(directory, os.getpid())
            _registry[key] = None
        try:
            lock = cls._acquire_os(directory, key)
        except BaseException:
            with _registry_lock:
                _registry.pop(key, None)
            raise
        with _registry_lock:
            _registry[key] = lock
        return lock

    @classmethod
    def _acquire_os(cls, directory: str, key: tuple[int, int]) -> WriterLock:
        path = os.path.join(directory, LOCK_NAME)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LogLockedError(directory, _read_pid(path)) from None
            return cls(directory, key, dir_fd, cls._lock_file(directory, path))
        except BaseException:
            os.close(dir_fd)  # the only descriptor of it: this drops the flock
            raise

    @staticmethod
    def _lock_file(directory: str, path: str) -> int:
        """Open (or create) ``LOCK``, lockf it, write our pid into it; its descriptor."""
        created = False
        try:
            fd = open_existing(path, os.O_RDWR)
        except FileNotFoundError:
            fd = create_new(path, os.O_RDWR)
            created = True
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    raise LogLockedError(directory, _read_pid(path)) from None
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            if created:
                fsync_dir(directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _drop_in_child(self) -> None:
        # In a forked child: close our copies (the parent's locks stay), never truncate.
        for fd in (self._fd, self._dir_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._dir_fd = None

    def release(self) -> None:
        """Drop the lock (idempotent). The pid is cleared so it cannot mislead."""
        fd, self._fd = self._fd, None
        dir_fd, self._dir_fd = self._dir_fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the POSIX lock
            if dir_fd is not None:
                os.close(dir_fd)  # and this the flock
        finally:
            with _registry_lock:
                if _registry.get(self._key) is self:
                    del _registry[self._key]
