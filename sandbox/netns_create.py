"""Making a network namespace at a path: placeholder, claim, unshare + bind mount.

With sandbox/netns.py (which unmounts), the only module that unshares or
mounts. ``sandbox.netns.create_at`` is the public entry; it calls
``create_namespace`` and returns the ``NetNS`` handle.

How a namespace is made (``create_namespace``)
    A short-lived helper *thread* calls ``unshare(CLONE_NEWNET)`` - which
    moves only that thread into a brand-new namespace, because namespaces
    are per task - then bind-mounts ``/proc/thread-self/ns/net`` onto the
    placeholder and exits. The thread's reference to the namespace dies with
    it; the mount keeps the namespace. The calling thread, and every other
    thread of the process, never changes namespace.

    It never forks. A forked child inherits every open file description,
    including the event log's ``flock`` writer lock: if the parent is killed
    while such a helper lives (``pyroute2.netns.create`` forks one), the
    orphan keeps the lock and the store cannot be reopened. A thread shares
    the parent's fate.

    The placeholder is created with ``O_CREAT|O_EXCL``, held under an
    exclusive ``flock`` until mounted over (two racing creators never stack
    two namespaces), and the mount targets that very file through
    ``/proc/self/fd/<fd>``, so a file swapped in at the path meanwhile is
    never mounted over. An EMPTY placeholder already
    there (a crash between placeholder and mount) is reused by the
    reconciler, so such a crash never strands a file or a second namespace.
"""

from __future__ import annotations

import fcntl
import os
import threading

from eventlog import crashpoints
from sandbox import _linux
from sandbox.errors import StoreError, UnsafePathError
from sandbox.netns_probe import PROBE_FLAGS, check_in_dir, probe, probe_fd

__all__ = ["AFTER_MOUNT_BEFORE_RECORD", "AFTER_PLACEHOLDER", "create_namespace"]

AFTER_PLACEHOLDER = crashpoints.register(
    "netns.after_placeholder",
    "sandbox.netns.create_at: the placeholder file exists, nothing is mounted on it yet",
)
AFTER_MOUNT_BEFORE_RECORD = crashpoints.register(
    "netns.after_mount_before_record",
    "sandbox.netns.create_at: the namespace is mounted, the caller has not recorded it yet",
)

StrPath = str | os.PathLike[str]

# Placeholder creation: fail if anything at all is there already.
_CREATE_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def create_namespace(path: StrPath, netns_dir: StrPath, *, reuse_placeholder: bool) -> None:
    """``sandbox.netns.create_at`` without the handle (the contract is in its docstring).

    Makes the namespace at ``path`` (inside netns_dir, which must exist): an
    ``O_CREAT|O_EXCL`` placeholder, or an EMPTY one already there when
    ``reuse_placeholder``; anything else at the path is UnsafePathError, not
    touched. A failed mount unlinks a placeholder this call made and raises
    StoreError. Crash points: ``netns.after_placeholder`` (placeholder made,
    nothing mounted), ``netns.after_mount_before_record`` (mounted, the caller
    has not recorded it).
    """
    resolved = check_in_dir(path, netns_dir)
    made = False
    try:
        fd = os.open(resolved, _CREATE_FLAGS, 0o444)
        made = True
    except FileExistsError:
        fd = _open_placeholder(path, resolved, reuse_placeholder)
    except OSError as e:
        raise StoreError(
            f"{os.fspath(path)}: cannot create the namespace placeholder: {e.strerror}"
        ) from e
    try:
        _claim(path, resolved, fd)
        if crashpoints.ARMED:
            crashpoints.hit(AFTER_PLACEHOLDER)
        try:
            _unshare_and_mount(fd)
        except OSError as e:
            if made:
                _unlink_if_same(resolved, fd)
            raise StoreError(
                f"{os.fspath(path)}: cannot create a network namespace there "
                f"({e.strerror}); expected unshare(CLONE_NEWNET) and a bind mount to succeed "
                f"(root or CAP_SYS_ADMIN needed)"
            ) from e
    finally:
        os.close(fd)
    if crashpoints.ARMED:
        crashpoints.hit(AFTER_MOUNT_BEFORE_RECORD)


def _unshare_and_mount(target_fd: int) -> None:
    """Make a new network namespace and bind-mount it onto the open file target_fd.

    Done in a helper thread that is created for this and exits right after:
    ``unshare(CLONE_NEWNET)`` changes the namespace of the calling thread
    only, so the caller's threads stay where they are; and a thread, unlike
    a forked helper, cannot outlive the process holding the log's writer
    lock. The mount target is ``/proc/self/fd/<fd>`` (the fd table is shared
    by all threads), i.e. exactly the placeholder that was checked, even if
    the path has been swapped since.
    """
    failures: list[BaseException] = []
    target = f"/proc/self/fd/{target_fd}"

    def helper() -> None:
        try:
            _linux.unshare(_linux.CLONE_NEWNET)
            _linux.bind_mount("/proc/thread-self/ns/net", target)
        except BaseException as e:  # handed to the caller below
            failures.append(e)
        # Returning ends the OS thread: its reference to the namespace goes,
        # the bind mount keeps the namespace alive.

    t = threading.Thread(target=helper, name="netns-create", daemon=True)
    t.start()
    t.join()
    if failures:
        raise failures[0]


def _open_placeholder(path: StrPath, resolved: str, reuse: bool) -> int:
    """Open an existing path for reuse as a placeholder, or raise UnsafePathError."""
    entry = probe(resolved)
    if entry.kind != "empty-file" or not reuse:
        raise UnsafePathError(
            f"{os.fspath(path)}: cannot create a namespace here: it holds {entry.describe()}; "
            f"expected nothing{' or an empty placeholder file' if reuse else ''}; not touched"
        )
    fd = os.open(resolved, PROBE_FLAGS)
    try:
        again = probe_fd(resolved, fd)
    except BaseException:
        os.close(fd)
        raise
    if again.kind != "empty-file":  # changed between the two looks
        os.close(fd)
        raise UnsafePathError(
            f"{os.fspath(path)}: cannot create a namespace here: it now holds "
            f"{again.describe()}; expected an empty placeholder file; not touched"
        )
    return fd


def _claim(path: StrPath, resolved: str, fd: int) -> None:
    """Hold an exclusive flock on the placeholder until it is mounted over.

    Two creators racing for one path (say the reconciler and a second
    reconcile started by a watchdog hint) would otherwise both mount, one
    namespace hidden under the other. Whoever holds the lock mounts; the
    other sees the lock, or - once the lock is free - that the path no
    longer names this file (a mount is on it), and refuses. A killed
    creator's lock dies with it, so a placeholder left by a crash is
    reusable at once.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UnsafePathError(
            f"{os.fspath(path)}: another creator is mounting a namespace here right now; "
            f"expected an unclaimed placeholder; not touched"
        ) from None
    mine = os.fstat(fd)
    try:
        there = os.lstat(resolved)
    except FileNotFoundError:
        there = None
    if there is None or (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
        raise UnsafePathError(
            f"{os.fspath(path)}: the placeholder changed while being claimed (now "
            f"{probe(resolved).describe()}); expected the empty placeholder; not touched"
        )


def _unlink_if_same(resolved: str, fd: int) -> None:
    """Unlink the placeholder we made, if the path still names that very file."""
    try:
        mine = os.fstat(fd)
        there = os.lstat(resolved)
        if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
            os.unlink(resolved)
    except OSError:
        pass  # best effort: an empty placeholder is reused or swept later
