"""The file operations a traced run performed, and directory trees as data.

``trace`` turns an strace log into these; ``states`` builds crash states
from them. Files and directories are named by an id (``fid``) that survives
renames; the root of the traced tree is fid 0.

    Write(fid, offset, data)      write/pwrite64/writev/pwritev[2]
    Truncate(fid, size)           ftruncate/truncate, O_TRUNC
    Link(parent, name, fid)       a create (O_CREAT), mkdir, link
    Unlink(parent, name)          unlink/unlinkat/rmdir
    Rename(parent, src, dst)      rename/renameat/renameat2 inside one directory
    Sync(fid)                     fsync/fdatasync of a file or a directory
    SyncAll()                     sync/syncfs
    Ack(seqs, payloads)           a line the workload wrote to its ack file

An :class:`Image` is a tree as a disk holds it (names per directory, bytes
per file): what ``states`` builds and what a check materialises.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import attrs

__all__ = [
    "ROOT_FID",
    "Ack",
    "DirOp",
    "Event",
    "Image",
    "Link",
    "Op",
    "Rename",
    "Sync",
    "SyncAll",
    "Trace",
    "Truncate",
    "Unlink",
    "Write",
    "load_image",
]

ROOT_FID = 0


@attrs.frozen
class Write:
    fid: int
    offset: int
    data: bytes


@attrs.frozen
class Truncate:
    fid: int
    size: int


@attrs.frozen
class Link:
    """A new name in directory ``parent`` for ``fid`` (create, mkdir or link)."""

    parent: int
    name: str
    fid: int


@attrs.frozen
class Unlink:
    parent: int
    name: str


@attrs.frozen
class Rename:
    parent: int
    src: str
    dst: str


@attrs.frozen
class Sync:
    fid: int


@attrs.frozen
class SyncAll:
    pass


@attrs.frozen(eq=False)
class Ack:
    """One acknowledgement line: the seqs an append returned and their payloads."""

    seqs: tuple[int, ...]
    payloads: tuple[dict[str, Any], ...]


Op = Write | Truncate | Link | Unlink | Rename | Sync | SyncAll | Ack
DirOp = Link | Unlink | Rename


@attrs.frozen
class Event:
    """One completed operation: ``start``/``end`` are trace line numbers."""

    start: int
    end: int
    op: Op
    call: str


@attrs.frozen
class Image:
    """A directory tree as files on a disk: names per directory, bytes per file.

    ``entries`` maps a directory's fid to its names; a fid that is a key of
    ``entries`` is a directory, any other is a regular file with ``data``.
    """

    entries: dict[int, dict[str, int]]
    data: dict[int, bytes]

    @classmethod
    def empty(cls) -> Image:
        return cls({ROOT_FID: {}}, {})

    def files(self) -> Iterator[tuple[str, int]]:
        """(relative path, fid) of everything reachable from the root, dirs first."""
        stack: list[tuple[str, int]] = [("", ROOT_FID)]
        while stack:
            prefix, dfid = stack.pop()
            for name in sorted(self.entries.get(dfid, {})):
                fid = self.entries[dfid][name]
                path = f"{prefix}{name}"
                yield path, fid
                if fid in self.entries:
                    stack.append((path + "/", fid))

    def materialize(self, target: str) -> None:
        """Write the tree under ``target`` (which must not exist)."""
        os.mkdir(target)
        for path, fid in self.files():
            full = os.path.join(target, path)
            if fid in self.entries:
                os.mkdir(full)
            else:
                with open(full, "xb") as f:
                    f.write(self.data.get(fid, b""))


def load_image(root: str) -> tuple[Image, dict[str, int]]:
    """The tree under ``root`` as an Image, and each relative path's fid."""
    image = Image.empty()
    paths: dict[str, int] = {"": ROOT_FID}
    next_fid = 1
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dfid = paths["" if rel == "." else rel]
        for name in sorted(dirnames) + sorted(filenames):
            relpath = name if rel == "." else f"{rel}/{name}"
            fid = next_fid
            next_fid += 1
            paths[relpath] = fid
            image.entries[dfid][name] = fid
            full = os.path.join(dirpath, name)
            if name in dirnames:
                image.entries[fid] = {}
            else:
                with open(full, "rb") as f:
                    image.data[fid] = f.read()
    return image, paths


@attrs.frozen
class Trace:
    """The operations of one traced run under ``root``, in completion order."""

    root: str
    events: tuple[Event, ...]
    initial: Image
    #: fid -> the relative path it last had (for descriptions).
    names: dict[int, str]
    #: Every fid that is (or was) a directory.
    dirs: frozenset[int]
    #: Things the parser noticed but could model (e.g. overlapping writes).
    notes: tuple[str, ...] = ()

    def is_dir(self, fid: int) -> bool:
        return fid in self.dirs

    def acks(self) -> list[tuple[int, Ack]]:
        return [(i, e.op) for i, e in enumerate(self.events) if isinstance(e.op, Ack)]
