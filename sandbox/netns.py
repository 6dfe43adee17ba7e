"""Network namespaces in the kernel: the NetNS handle, creation and removal.

A named network namespace is an nsfs bind mount of a namespace file onto an
empty placeholder file, by default ``/var/run/netns/cni-<uuid>``. The bind
mount is what keeps the namespace alive once no process is inside it.

This module is the public face: every name callers use is importable from
here. Two helpers do the rest, each with its rules in its docstring:
sandbox/netns_probe.py classifies what is at a path, asking the kernel on
every call (why liveness is never cached); sandbox/netns_create.py makes a
namespace (``create_at``: placeholder, flock claim, unshare + bind mount in
a helper thread, never a fork). This module and netns_create are the only
ones that unshare or mount.

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
import os
import uuid

import attrs

from sandbox import _linux
from sandbox.errors import ClosedNetNSError, StoreError, UnsafePathError
from sandbox.netns_create import AFTER_MOUNT_BEFORE_RECORD, AFTER_PLACEHOLDER, create_namespace
from sandbox.netns_probe import (
    Entry,
    EntryKind,
    PathKind,
    check_in_dir,
    is_live_netns,
    probe,
    scan,
)

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

StrPath = str | os.PathLike[str]

# Stacked nsfs mounts at one path are unmounted one by one; more than this
# many is not something this module made.
_MAX_STACKED_MOUNTS = 64


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

    netns_dir must exist (``NetNS.new`` and the reconciler create it). How it
    is made: sandbox/netns_create.py.
    """
    create_namespace(path, netns_dir, reuse_placeholder=reuse_placeholder)
    return NetNS(path, netns_dir)


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
