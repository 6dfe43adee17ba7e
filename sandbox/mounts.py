"""What is mounted where, from the kernel's own table, and how to detach a mount.

Why one module: ``/proc/self/mountinfo`` escapes a space, tab, newline or
backslash in a path as ``\\NNN`` octal, and a parser that undoes only
``\\040`` (as an earlier copy did) misses a namespace whose path holds any
other one - a leak nobody sees. Every user (the demo's checks, the netns
code's callers) reads the table here, and detaches through the one
``umount2`` wrapper (``sandbox._linux``).
"""

from __future__ import annotations

import os

import attrs

from sandbox._linux import umount_detach

__all__ = ["MOUNTINFO", "Mount", "mounts", "mounts_under", "umount_detach", "unescape"]

MOUNTINFO = "/proc/self/mountinfo"


@attrs.frozen
class Mount:
    """One line of mountinfo (the fields its users need), paths unescaped."""

    mount_id: int
    mount_point: str
    fstype: str
    source: str


def unescape(field: str) -> str:
    """Undo mountinfo's ``\\NNN`` octal escapes (any byte, not only ``\\040``)."""
    if "\\" not in field:
        return field
    raw = field.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        octal = raw[i + 1 : i + 4]
        if raw[i] == 0x5C and len(octal) == 3 and all(0x30 <= b <= 0x37 for b in octal):
            out.append(int(octal, 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _parse(line: str) -> Mount | None:
    left, sep, right = line.partition(" - ")
    if not sep:
        return None
    fields = left.split()
    tail = right.split()
    if len(fields) < 5 or len(tail) < 2 or not fields[0].isdigit():
        return None
    return Mount(int(fields[0]), unescape(fields[4]), tail[0], unescape(tail[1]))


def mounts(path: str = MOUNTINFO) -> list[Mount]:
    """Every mount this process sees, in mountinfo order (stacked ones each once)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return [m for m in map(_parse, f) if m is not None]


def mounts_under(directory: str | os.PathLike[str], *, fstype: str | None = None) -> list[Mount]:
    """Mounts on ``directory`` or below it (its realpath), of ``fstype`` if given."""
    base = os.path.realpath(directory)
    prefix = base.rstrip("/") + "/"
    return [
        m
        for m in mounts()
        if (m.mount_point == base or m.mount_point.startswith(prefix))
        and (fstype is None or m.fstype == fstype)
    ]
