"""The one-writer-per-directory lock (``LOCK`` in the log directory).

Why POSIX record locks (``fcntl.lockf``) and not ``flock``: a ``flock`` lock
belongs to the open file description, which a forked child shares; if the
writer forks a helper (pyroute2 does) and is then killed, the orphaned
helper keeps the lock and no writer can ever open the log again. A POSIX
record lock belongs to the process: a child never inherits it, and the
kernel drops it the moment the holder dies (SIGKILL included).

Their two traps, and what this module does about them:

- POSIX locks never conflict within one process, so a second writer in the
  same process would "get" the lock. An in-process registry keyed by the
  directory's ``(st_dev, st_ino)`` refuses it first.
- Closing *any* descriptor of the locked file drops the process's lock.
  This module is the only code that opens ``LOCK``, and it never opens it
  again while the registry says this process holds it.

The holder writes its pid into ``LOCK`` so that ``LogLockedError`` can name
it. The pid is advisory text; the lock itself is the kernel's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading

from .errors import LogLockedError
from .segments import fsync_dir

LOCK_NAME = "LOCK"

_registry_lock = threading.Lock()
_registry: set[tuple[int, int]] = set()


def _clear_registry_in_child() -> None:
    # A forked child holds no POSIX lock, so it must not believe it does.
    _registry.clear()


os.register_at_fork(after_in_child=_clear_registry_in_child)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class WriterLock:
    """The held lock of one directory; ``release()`` (or process death) frees it."""

    def __init__(self, directory: str, key: tuple[int, int], fd: int):
        self.directory = directory
        self._key = key
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: str) -> WriterLock:
        """Take the lock or raise LogLockedError at once (never waits)."""
        st = os.stat(directory)
        key = (st.st_dev, st.st_ino)
        with _registry_lock:
            if key in _registry:
                raise LogLockedError(directory, os.getpid())
            _registry.add(key)
        try:
            return cls._acquire_os(directory, key)
        except BaseException:
            with _registry_lock:
                _registry.discard(key)
            raise

    @classmethod
    def _acquire_os(cls, directory: str, key: tuple[int, int]) -> WriterLock:
        path = os.path.join(directory, LOCK_NAME)
        created = False
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            created = True
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    raise LogLockedError(directory, _read_pid(fd)) from None
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            if created:
                fsync_dir(directory)
        except BaseException:
            os.close(fd)
            raise
        return cls(directory, key, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The pid is cleared so it cannot mislead."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the POSIX lock
        finally:
            with _registry_lock:
                _registry.discard(self._key)
