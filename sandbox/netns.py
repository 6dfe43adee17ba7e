"""Network namespaces in the kernel: the only module that unshares or mounts.

A named network namespace is an nsfs bind mount of a namespace file onto an
empty placeholder file, by default ``/var/run/netns/cni-<uuid>``. The bind
mount is what keeps the namespace alive once no process is inside it.

How a namespace is made (``create_at``)
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

Why liveness is never cached (``is_live_netns``, ``NetNS.closed``)
    Anyone with root can ``umount`` or ``ip netns delete`` a namespace, and
    an external umount sends no inotify event. containerd/cri cached a
    ``closed`` flag and reported stale state after such an unmount (cri
    #950). Here every answer is read from the kernel on the call: the file
    is opened ``O_NOFOLLOW`` and must sit on nsfs (``fstatfs`` magic
    0x6e736673) and answer the ``NS_GET_NSTYPE`` ioctl with CLONE_NEWNET.
    A directory listing proves nothing (after an umount the placeholder
    stays; ``ip netns list`` still shows it).

What may be removed (``NetNS.remove``)
    containerd's LoadNetNS/remove would delete whatever path it was handed.
    Here removal refuses, touching nothing, any path whose directory is not
    the handle's netns_dir, a symlink, a directory, a mount of anything but
    nsfs, and a regular file with content. It only ever unmounts nsfs mounts
    at the path (all stacked layers, detached so a busy namespace never
    fails) and unlinks the empty placeholder under them. Unmounting before
    unlinking is what avoids containerd's ``unlinkat ... device or resource
    busy`` (#3667): the kernel refuses to unlink a mount point in the
    caller's own mount namespace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import uuid
from typing import Literal

import attrs

from eventlog import crashpoints
from sandbox import _linux
from sandbox.errors import ClosedNetNSError, StoreError, UnsafePathError

__all__ = [
    "AFTER_MOUNT_BEFORE_RECORD",
    "AFTER_PLACEHOLDER",
    "DEFAULT_NETNS_DIR",
    "Entry",
    "EntryKind",
    "NetNS",
    "PathKind",
    "check_in_dir",
    "create_at",
    "is_live_netns",
    "probe",
    "remove_at",
    "scan",
]

DEFAULT_NETNS_DIR = "/var/run/netns"

AFTER_PLACEHOLDER = crashpoints.register(
    "netns.after_placeholder",
    "sandbox.netns.create_at: the placeholder file exists, nothing is mounted on it yet",
)
AFTER_MOUNT_BEFORE_RECORD = crashpoints.register(
    "netns.after_mount_before_record",
    "sandbox.netns.create_at: the namespace is mounted, the caller has not recorded it yet",
)

StrPath = str | os.PathLike[str]

#: What a directory entry is, as the kernel says: a live network namespace
#: (nsfs mount of a net namespace), an empty regular file (a placeholder), a
#: regular file with content, a directory, a symlink, or anything else (a
#: FIFO, a device, a mount of another filesystem or of another namespace type).
EntryKind = Literal["netns", "empty-file", "file", "dir", "symlink", "other"]
#: ``EntryKind`` plus "missing", for a single path that may not exist.
PathKind = Literal["netns", "empty-file", "file", "dir", "symlink", "other", "missing"]

# Flags for peeking at an entry: never follow a symlink, never block on a
# FIFO, never acquire a controlling terminal, never leak into a child.
_PROBE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
# Placeholder creation: fail if anything at all is there already.
_CREATE_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
# Stacked nsfs mounts at one path are unmounted one by one; more than this
# many is not something this module made.
_MAX_STACKED_MOUNTS = 64


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
        fd = os.open(p, _PROBE_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return Entry(p, "missing")
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a symlink since the lstat
            return Entry(p, "symlink")
        return Entry(p, "other", detail=f"a file that cannot be opened ({e.strerror})")
    try:
        return _probe_fd(p, fd)
    finally:
        os.close(fd)


def _probe_fd(p: str, fd: int) -> Entry:
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


def create_at(
    path: StrPath, netns_dir: StrPath = DEFAULT_NETNS_DIR, *, reuse_placeholder: bool = True
) -> NetNS:
    """Create a new network namespace bind-mounted at ``path`` (inside netns_dir).

    Used by the reconciler for a path the log has already assigned (intent
    before effect, so a crash at any point leaves a path the log owns).
    The placeholder is made with ``O_CREAT|O_EXCL``; if an EMPTY placeholder
    is already there (crash between placeholder and mount) it is reused when
    ``reuse_placeholder`` is true. Anything else at the path (a live
    namespace, a file with content, a directory, a symlink) raises
    UnsafePathError and is not touched. If the mount fails, a placeholder
    made by this call is unlinked again and StoreError is raised.

    Crash points: ``netns.after_placeholder`` (placeholder made, nothing
    mounted) and ``netns.after_mount_before_record`` (mounted, the caller
    has not recorded it).

    netns_dir must exist (``NetNS.new`` and the reconciler create it).
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
    return NetNS(path, netns_dir)


def _open_placeholder(path: StrPath, resolved: str, reuse: bool) -> int:
    """Open an existing path for reuse as a placeholder, or raise UnsafePathError."""
    entry = probe(resolved)
    if entry.kind != "empty-file" or not reuse:
        raise UnsafePathError(
            f"{os.fspath(path)}: cannot create a namespace here: it holds {entry.describe()}; "
            f"expected nothing{' or an empty placeholder file' if reuse else ''}; not touched"
        )
    fd = os.open(resolved, _PROBE_FLAGS)
    try:
        again = _probe_fd(resolved, fd)
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


def remove_at(path: StrPath, netns_dir: StrPath = DEFAULT_NETNS_DIR) -> str:
    """``NetNS.remove`` for a bare path; returns what was done, for reports.

    Outcomes: "already gone", "unlinked empty placeholder", "unmounted and
    unlinked", "unmounted, already unlinked" (unlinked from another mount
    namespace meanwhile). See ``NetNS.remove`` for the rules.
    """
    shown = os.fspath(path)
    resolved = check_in_dir(path, netns_dir)
    entry = probe(resolved)
    if entry.kind == "missing":
        return "already gone"
    unmounted = False
    if entry.nsfs:
        entry = _detach_all(shown, resolved)
        unmounted = True
        if entry.kind == "missing":  # unlinked from another mount namespace meanwhile
            return "unmounted, already unlinked"
    if entry.kind != "empty-file":
        if unmounted:
            found = f"unmounted the namespace, then found {entry.describe()} under it"
        else:
            found = f"it holds {entry.describe()}"
        raise UnsafePathError(
            f"{shown}: refusing to remove: {found}; expected an nsfs mount or an empty "
            f"placeholder file; the file is not touched"
        )
    _unlink_placeholder(shown, resolved)
    return "unmounted and unlinked" if unmounted else "unlinked empty placeholder"


def _detach_all(shown: str, resolved: str) -> Entry:
    """Lazily unmount every nsfs mount stacked at ``resolved``; returns what is left.

    MNT_DETACH never fails with EBUSY (a process inside the namespace, or an
    open fd, keeps the namespace itself alive, which is the kernel's
    business); UMOUNT_NOFOLLOW never follows a symlink swapped in. EINVAL
    means nothing is mounted there (any more): done.
    """
    for _ in range(_MAX_STACKED_MOUNTS):
        try:
            _linux.umount_detach(resolved)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return probe(resolved)
            raise StoreError(f"{shown}: cannot unmount the namespace: {e.strerror}") from e
        left = probe(resolved)
        if not left.nsfs:
            return left
    raise StoreError(
        f"{shown}: still an nsfs mount after {_MAX_STACKED_MOUNTS} unmounts; expected at most "
        f"a few stacked mounts"
    )


def _unlink_placeholder(shown: str, resolved: str) -> None:
    """Unlink the empty placeholder; ENOENT is success, EBUSY gets one more detach."""
    for attempt in (1, 2):
        try:
            os.unlink(resolved)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == 2:
                raise StoreError(
                    f"{shown}: cannot unlink the namespace placeholder: {e.strerror}; "
                    f"expected an unmounted empty file"
                ) from e
        # EBUSY: something was mounted on it after we looked. Only an nsfs
        # mount may be taken off; anything else is not ours to unmount.
        if probe(resolved).nsfs:
            _detach_all(shown, resolved)
        else:
            raise StoreError(
                f"{shown}: cannot unlink the namespace placeholder: busy, and what is mounted "
                f"there is not nsfs; expected an unmounted empty file"
            )


def _as_str(path: StrPath) -> str:
    return os.fspath(path)


@attrs.frozen
class NetNS:
    """A handle on a network namespace path inside ``netns_dir``.

    Constructing one does no I/O (the pure projection builds these from the
    log); every question about the namespace is asked of the kernel when it
    is asked. Paths may be ``str`` or ``os.PathLike``; they are kept as str.
    """

    path: str = attrs.field(converter=_as_str)
    netns_dir: str = attrs.field(default=DEFAULT_NETNS_DIR, converter=_as_str)

    @classmethod
    def new(cls, netns_dir: StrPath = DEFAULT_NETNS_DIR) -> NetNS:
        """Create a fresh namespace at ``<netns_dir>/cni-<uuid4>``.

        netns_dir is created (mode 0755) when missing. A name collision is
        never resolved by reusing what is there (it could be someone else's
        placeholder mid-creation): a new name is drawn instead.
        """
        d = os.fspath(netns_dir)
        if not os.path.isdir(d):
            try:
                os.makedirs(d, mode=0o755, exist_ok=True)
                os.chmod(d, 0o755)
            except OSError as e:
                raise StoreError(f"{d}: cannot create the netns directory: {e.strerror}") from e
        for _ in range(3):
            path = os.path.join(d, f"cni-{uuid.uuid4()}")
            try:
                return create_at(path, d, reuse_placeholder=False)
            except UnsafePathError:
                if os.path.lexists(path):
                    continue  # a uuid4 collision: draw again
                raise
        raise StoreError(f"{d}: could not find a free cni-<uuid> name in 3 tries")

    @classmethod
    def load(cls, path: StrPath, netns_dir: StrPath = DEFAULT_NETNS_DIR) -> NetNS:
        """A handle on an existing live namespace at any path, as the seed's LoadNetNS.

        It only looks: nothing is created, unmounted or deleted, whatever is
        there (containerd's LoadNetNS removed the path on failure). Anything
        but a live network namespace - a missing path, a plain file, a
        directory, a symlink (never followed, as ``closed()`` never follows
        one), an nsfs mount of another namespace type - is ClosedNetNSError.
        ``netns_dir`` is where the handle's ``remove()`` may act: a namespace
        loaded from elsewhere can be used, and ``remove()`` refuses it
        (UnsafePathError), touching nothing.
        """
        shown = os.fspath(path)
        try:
            entry = probe(path)
        except PermissionError:
            raise  # cannot look: not the same as "not a namespace"
        except (OSError, ValueError) as e:  # a name too long, a loop, a NUL byte
            raise ClosedNetNSError(
                f"{shown!r}: not a live network namespace (cannot be looked up: {e}); "
                f"expected an nsfs mount of a network namespace"
            ) from None
        if entry.kind != "netns":
            raise ClosedNetNSError(
                f"{shown}: not a live network namespace (it holds {entry.describe()}); "
                f"expected an nsfs mount of a network namespace"
            )
        return cls(path, netns_dir)

    def get_path(self) -> str:
        return self.path

    def closed(self) -> bool:
        """True unless the path is, right now, a live network namespace (kernel-checked)."""
        return not is_live_netns(self.path)

    def remove(self) -> None:
        """Unmount (detach, every stacked nsfs layer) and unlink; idempotent.

        A missing path is a no-op. Refused with UnsafePathError, touching
        nothing: a path outside netns_dir, a symlink, a directory, a regular
        file with content, a mount of anything but nsfs. EBUSY on unlink
        (something mounted meanwhile) gets one more detach, then StoreError.
        """
        remove_at(self.path, self.netns_dir)
