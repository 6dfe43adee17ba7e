"""The few Linux syscalls ``sandbox.netns`` needs that Python 3.11's ``os`` lacks.

``unshare(2)``, ``mount(2)``, ``umount2(2)``, ``fstatfs(2)`` and ``statx(2)``
are called through glibc with ctypes (``use_errno=True``) so a failure raises
an ordinary ``OSError`` carrying the real errno and the path. Nothing here
decides anything: policy (which paths may be touched, what counts as live)
lives in ``sandbox.netns``, the only module that uses these.

Constants are the kernel's UAPI values (``include/uapi/linux/sched.h``,
``mount.h``, ``nsfs.h``, ``magic.h``, ``stat.h``, ``fcntl.h``); they are the
same on every 64-bit Linux architecture this project targets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any, Literal

#: unshare(2) flag for a new network namespace (also NS_GET_NSTYPE's answer
#: for a network namespace file).
CLONE_NEWNET = 0x40000000
#: mount(2) flag: bind mount.
MS_BIND = 0x1000
#: umount2(2) flags: lazy detach (never EBUSY), and do not follow a final symlink.
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
#: f_type of a file on nsfs, the filesystem of /proc/<pid>/ns/* and their bind mounts.
NSFS_MAGIC = 0x6E736673
#: ioctl on an nsfs fd: which kind of namespace it is (kernel >= 4.11).
NS_GET_NSTYPE = 0xB703

_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_TYPE = 0x1
_STATX_ATTR_MOUNT_ROOT = 0x2000
# struct statx: __u64 stx_attributes at offset 8, __u64 stx_attributes_mask at 56.
_STATX_SIZE = 256
_STATX_ATTRIBUTES_OFF = 8
_STATX_ATTRIBUTES_MASK_OFF = 56
# struct statfs is at most 120 bytes on 64-bit Linux; f_type (a C long) comes first.
_STATFS_SIZE = 256
_ORDER: Literal["little", "big"] = "little" if sys.byteorder == "little" else "big"


_INT, _STR, _PTR = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
#: The libc calls used here, with their argument types (each returns int).
_SIGNATURES: dict[str, list[Any]] = {
    "unshare": [_INT],
    "mount": [_STR, _STR, _STR, ctypes.c_ulong, _PTR],
    "umount2": [_STR, _INT],
    "fstatfs": [_INT, _PTR],
    "statx": [_INT, _STR, _INT, ctypes.c_uint, _PTR],
}


def _load_libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise OSError(f"network namespaces need Linux, this is {sys.platform}")
    name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(name, use_errno=True)
    for fn, argtypes in _SIGNATURES.items():
        getattr(libc, fn).argtypes = argtypes
        getattr(libc, fn).restype = ctypes.c_int
    return libc


_libc = _load_libc()


def _raise(what: str, path: str | None = None) -> None:
    err = ctypes.get_errno()
    msg = f"{what}: {os.strerror(err)}"
    if path is None:
        raise OSError(err, msg)
    raise OSError(err, msg, path)


def unshare(flags: int) -> None:
    """unshare(2) for the CALLING THREAD only (namespaces are per task)."""
    if _libc.unshare(flags) != 0:
        _raise("unshare")


def bind_mount(source: str, target: str) -> None:
    """mount(source, target, NULL, MS_BIND, NULL)."""
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) != 0:
        _raise(f"bind mount of {source}", target)


def umount_detach(target: str) -> None:
    """umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW); EINVAL means 'not a mount point'."""
    if _libc.umount2(os.fsencode(target), MNT_DETACH | UMOUNT_NOFOLLOW) != 0:
        _raise("umount2", target)


def fstatfs_type(fd: int) -> int:
    """The f_type of the filesystem holding the open file ``fd``."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc.fstatfs(fd, buf) != 0:
        _raise("fstatfs")
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFFFFFFFFFF


def is_mount_root(fd: int) -> bool:
    """True if the open file ``fd`` is the root of a mount (something is mounted there).

    statx's STATX_ATTR_MOUNT_ROOT (kernel >= 5.8) sees bind mounts within one
    filesystem too, which comparing st_dev with the parent's would miss.
    """
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    if _libc.statx(fd, b"", _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW, _STATX_TYPE, buf) != 0:
        _raise("statx")
    raw = buf.raw
    mask = int.from_bytes(raw[_STATX_ATTRIBUTES_MASK_OFF : _STATX_ATTRIBUTES_MASK_OFF + 8], _ORDER)
    attributes = int.from_bytes(raw[_STATX_ATTRIBUTES_OFF : _STATX_ATTRIBUTES_OFF + 8], _ORDER)
    # A kernel older than 5.8 does not know the attribute: answer "no" and let
    # unlink's EBUSY (which netns.remove handles) be the backstop.
    return bool(mask & attributes & _STATX_ATTR_MOUNT_ROOT)
