"""What is at a netns path, asked of the kernel: classification, never a cache.

Read-only: nothing here creates, mounts, unmounts or unlinks (that is
sandbox/netns_create.py and sandbox/netns.py). ``sandbox.netns`` re-exports
every public name; callers import them from there.

Why liveness is never cached (``is_live_netns``, ``NetNS.closed``)
    Anyone with root can ``umount`` or ``ip netns delete`` a namespace, and
    an external umount sends no inotify event. containerd/cri cached a
    ``closed`` flag and reported stale state after such an unmount (cri
    #950). Here every answer is read from the kernel on the call: the file
    is opened ``O_NOFOLLOW`` and must sit on nsfs (``fstatfs`` magic
    0x6e736673) and answer the ``NS_GET_NSTYPE`` ioctl with CLONE_NEWNET.
    A directory listing proves nothing (after an umount the placeholder
    stays; ``ip netns list`` still shows it).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import Literal

import attrs

from sandbox import _linux
from sandbox.errors import UnsafePathError

__all__ = [
    "PROBE_FLAGS",
    "Entry",
    "EntryKind",
    "PathKind",
    "check_in_dir",
    "is_live_netns",
    "probe",
    "probe_fd",
    "scan",
]

StrPath = str | os.PathLike[str]

#: What a directory entry is, as the kernel says: a live network namespace
#: (nsfs mount of a net namespace), an empty regular file (a placeholder), a
#: regular file with content, a directory, a symlink, or anything else (a
#: FIFO, a device, a mount of another filesystem or of another namespace type).
EntryKind = Literal["netns", "empty-file", "file", "dir", "symlink", "other"]
#: ``EntryKind`` plus "missing", for a single path that may not exist.
PathKind = Literal["netns", "empty-file", "file", "dir", "symlink", "other", "missing"]

#: Flags for peeking at an entry: never follow a symlink, never block on a
#: FIFO, never acquire a controlling terminal, never leak into a child.
PROBE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


@attrs.frozen
class Entry:
    """One entry of a netns directory, classified by the kernel at scan time.

    ``mounted`` is true when something is mounted on the path (nsfs for a
    live namespace); ``nsfs`` when what is visible there is an nsfs file
    (of any namespace type); ``detail`` says more for ``other``.
    """

    path: str
    kind: PathKind
    mounted: bool = False
    nsfs: bool = False
    size: int = 0
    detail: str = ""

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def describe(self) -> str:
        """A phrase for messages: what is at the path."""
        if self.kind == "netns":
            return "a live network namespace (nsfs mount)"
        if self.kind == "empty-file":
            return "an empty placeholder file"
        if self.kind == "file":
            return f"a regular file with content ({self.size} bytes)"
        if self.kind == "dir":
            return "a directory"
        if self.kind == "symlink":
            return "a symlink"
        if self.kind == "missing":
            return "nothing"
        return self.detail or "a file that is not a regular file"


def probe(path: StrPath) -> Entry:
    """Classify what is at ``path`` right now, asking the kernel (never a cache).

    The path is first ``lstat``-ed so that symlinks, directories and special
    files (FIFOs, devices - opening a device can have side effects) are never
    opened; a regular file is then opened ``O_NOFOLLOW|O_NONBLOCK`` and
    examined through that one descriptor: its filesystem (``fstatfs``), its
    namespace type (``NS_GET_NSTYPE``), whether it is a mount root (``statx``).
    """
    p = os.fspath(path)
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return Entry(p, "missing")
    if stat.S_ISLNK(st.st_mode):
        return Entry(p, "symlink")
    if stat.S_ISDIR(st.st_mode):
        return Entry(p, "dir")
    if not stat.S_ISREG(st.st_mode):
        return Entry(p, "other", detail=f"a special file (mode {stat.filemode(st.st_mode)})")
    try:
        fd = os.open(p, PROBE_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return Entry(p, "missing")
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a symlink since the lstat
            return Entry(p, "symlink")
        return Entry(p, "other", detail=f"a file that cannot be opened ({e.strerror})")
    try:
        return probe_fd(p, fd)
    finally:
        os.close(fd)


def probe_fd(p: str, fd: int) -> Entry:
    """``probe`` of the file open as ``fd`` (shown as ``p``): the one classifier."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return Entry(p, "other", detail=f"a special file (mode {stat.filemode(st.st_mode)})")
    fstype = _linux.fstatfs_type(fd)
    if fstype == _linux.NSFS_MAGIC:
        try:
            nstype = fcntl.ioctl(fd, _linux.NS_GET_NSTYPE)
        except OSError:
            nstype = -1
        if nstype == _linux.CLONE_NEWNET:
            return Entry(p, "netns", mounted=True, nsfs=True)
        return Entry(
            p,
            "other",
            mounted=True,
            nsfs=True,
            detail=f"an nsfs mount of a namespace that is not a network namespace "
            f"(type {nstype:#x})",
        )
    if _linux.is_mount_root(fd):
        return Entry(
            p,
            "other",
            mounted=True,
            size=st.st_size,
            detail=f"a mount point of a filesystem other than nsfs (type {fstype:#x})",
        )
    if st.st_size == 0:
        return Entry(p, "empty-file")
    return Entry(p, "file", size=st.st_size)


def is_live_netns(path: StrPath) -> bool:
    """True if ``path`` is, right now, an nsfs mount of a network namespace.

    Read from the kernel on every call and never cached: an external umount
    or ``ip netns delete`` must be seen at once (cri #950). A symlink is
    never followed, so a link to ``/proc/1/ns/net`` is not "live".
    """
    return probe(path).kind == "netns"


def check_in_dir(path: StrPath, netns_dir: StrPath) -> str:
    """Return ``path`` spelled from netns_dir's real path, or raise UnsafePathError.

    The store only ever touches direct children of its netns_dir: the
    directory part of ``path`` must resolve (symlinks followed, ``..``
    resolved by the kernel's rules) to the same directory as netns_dir, and
    the last component must be a plain name. Callers then act on the
    returned spelling, the one that was checked. The last component itself
    is not resolved here: whether it is a symlink is the caller's business
    (all refuse one).
    """
    raw = os.fspath(path)
    if not raw:
        raise UnsafePathError(f"empty netns path: expected a file inside {os.fspath(netns_dir)}")
    absolute = raw if os.path.isabs(raw) else os.path.join(os.getcwd(), raw)
    parent, name = os.path.split(absolute)
    if name in ("", ".", ".."):
        raise UnsafePathError(
            f"{raw}: not a file name inside the netns directory {os.fspath(netns_dir)}; not touched"
        )
    real_dir = os.path.realpath(os.fspath(netns_dir))
    real_parent = os.path.realpath(parent)
    if real_parent != real_dir:
        raise UnsafePathError(
            f"{raw}: outside the netns directory {os.fspath(netns_dir)} (its directory is "
            f"{real_parent}, expected {real_dir}); not touched"
        )
    return os.path.join(real_dir, name)


def scan(netns_dir: StrPath) -> list[Entry]:
    """Every entry of netns_dir, sorted by name, each classified by ``probe``.

    A missing directory has no entries. An entry that vanishes while being
    looked at is left out (it is gone); one that cannot be examined is
    "other", and the rest are still classified.
    """
    d = os.fspath(netns_dir)
    try:
        with os.scandir(d) as it:
            names = sorted(de.name for de in it)
    except FileNotFoundError:
        return []
    out: list[Entry] = []
    for name in names:
        path = os.path.join(d, name)
        try:
            entry = probe(path)
        except OSError as e:  # one odd entry must not hide the others
            entry = Entry(path, "other", detail=f"an entry that cannot be examined ({e})")
        if entry.kind != "missing":
            out.append(entry)
    return out
