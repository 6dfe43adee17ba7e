"""Projection snapshots: ``<state_dir>/<seq, 20 digits>.snap``, written atomically.

A snapshot is the projection at one log position, so that opening a store
replays only the tail of the log. It is an optimisation, never the truth:
a snapshot that is unreadable, corrupt, ahead of the log, or taken from a
*different history* (its recorded chain digest differs from the log's digest
at that seq - a restored backup, a log replaced under it) is skipped with a
logged warning, and the next older one is tried, then a full replay.

File layout (all integers big-endian)::

    offset  size  field
    0       8     magic  b"SBXSNAP\\0"
    8       2     format version (1)
    10      2     flags (0)
    12      8     seq: the log position the projection is at
    20      8     body length in bytes
    28      2     digest length in bytes
    30      d     chain digest of the log after record ``seq`` (eventlog's ``head``)
    30+d    n     body: msgpack of ``Projection.to_snapshot()``
    30+d+n  32    blake2b-256 of every byte before it

Writing: temp file in the same directory, write, fsync, rename onto the final
name, fsync the directory - a crash at any point leaves either no snapshot
or a whole one (crash points ``snapshot.after_temp_write``,
``snapshot.after_temp_fsync``, ``snapshot.after_rename``). Only the newest
``KEEP`` snapshots are kept; leftover temp files are removed.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import attrs
import msgpack

import eventlog
from eventlog import crashpoints
from sandbox.errors import StoreError
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection

__all__ = [
    "AFTER_RENAME",
    "AFTER_TEMP_FSYNC",
    "AFTER_TEMP_WRITE",
    "KEEP",
    "LoadResult",
    "SnapshotError",
    "list_snapshots",
    "load",
    "read_snapshot",
    "replay",
    "snapshot_path",
    "write_snapshot",
]

log = logging.getLogger(__name__)

AFTER_TEMP_WRITE = crashpoints.register(
    "snapshot.after_temp_write",
    "sandbox.snapshot.write_snapshot: temp file written, not yet fsynced",
)
AFTER_TEMP_FSYNC = crashpoints.register(
    "snapshot.after_temp_fsync",
    "sandbox.snapshot.write_snapshot: temp file fsynced, not yet renamed",
)
AFTER_RENAME = crashpoints.register(
    "snapshot.after_rename",
    "sandbox.snapshot.write_snapshot: renamed to *.snap, directory not yet fsynced",
)

MAGIC = b"SBXSNAP\x00"
FORMAT_VERSION = 1
#: How many snapshots are kept (newest first); older ones are deleted.
KEEP = 3
SUFFIX = ".snap"
TEMP_SUFFIX = ".snap.tmp"
_HEADER = struct.Struct(">8sHHQQH")
_CHECKSUM_BYTES = 32


class SnapshotError(StoreError):
    """A snapshot file is unreadable, corrupt, or not of this format."""


class _RecordLike(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def payload(self) -> dict[str, Any]: ...


def snapshot_path(directory: str | os.PathLike[str], seq: int) -> str:
    return os.path.join(os.fspath(directory), f"{seq:020d}{SUFFIX}")


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode(projection: Projection, digest: bytes) -> bytes:
    """The bytes of a snapshot file for ``projection`` whose log head is ``digest``."""
    body: bytes = msgpack.packb(projection.to_snapshot(), use_bin_type=True)
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, projection.last_seq, len(body), len(digest))
    data = head + digest + body
    return data + hashlib.blake2b(data, digest_size=_CHECKSUM_BYTES).digest()


def write_snapshot(
    directory: str | os.PathLike[str], seq: int, data: bytes, *, keep: int = KEEP
) -> str:
    """Atomically install ``data`` (from ``encode``) as the snapshot at ``seq``."""
    d = os.fspath(directory)
    final = snapshot_path(d, seq)
    temp = os.path.join(d, f"{seq:020d}.{os.getpid()}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if crashpoints.ARMED:
            crashpoints.hit(AFTER_TEMP_WRITE)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    os.close(fd)
    if crashpoints.ARMED:
        crashpoints.hit(AFTER_TEMP_FSYNC)
    os.rename(temp, final)
    if crashpoints.ARMED:
        crashpoints.hit(AFTER_RENAME)
    _fsync_dir(d)
    prune(d, keep=keep)
    return final


def list_snapshots(directory: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """``(seq, path)`` of every ``*.snap`` file, newest (highest seq) first."""
    d = os.fspath(directory)
    out: list[tuple[int, str]] = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in names:
        stem = name[: -len(SUFFIX)]
        if name.endswith(SUFFIX) and len(stem) == 20 and stem.isdigit():
            out.append((int(stem), os.path.join(d, name)))
    out.sort(reverse=True)
    return out


def prune(directory: str | os.PathLike[str], *, keep: int = KEEP) -> list[str]:
    """Delete all but the newest ``keep`` snapshots and any leftover temp files."""
    d = os.fspath(directory)
    removed: list[str] = []
    for _seq, path in list_snapshots(d)[keep:]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    for name in os.listdir(d):
        if name.endswith(TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(d, name))
                removed.append(os.path.join(d, name))
    if removed:
        _fsync_dir(d)
    return removed


def decode(data: bytes, netns_dir: str = DEFAULT_NETNS_DIR) -> tuple[int, bytes, Projection]:
    """``(seq, digest, projection)`` from snapshot bytes; any defect is SnapshotError."""
    if len(data) < _HEADER.size + _CHECKSUM_BYTES:
        raise SnapshotError(f"too short ({len(data)} bytes) to be a snapshot")
    magic, version, _flags, seq, body_len, digest_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError(f"bad magic {magic!r}; expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {version}; expected {FORMAT_VERSION}")
    expected = _HEADER.size + digest_len + body_len + _CHECKSUM_BYTES
    if len(data) != expected:
        raise SnapshotError(f"size {len(data)} bytes; the header says {expected}")
    end = len(data) - _CHECKSUM_BYTES
    if hashlib.blake2b(data[:end], digest_size=_CHECKSUM_BYTES).digest() != data[end:]:
        raise SnapshotError("checksum mismatch: the file is damaged")
    digest = data[_HEADER.size : _HEADER.size + digest_len]
    try:
        body = msgpack.unpackb(
            data[_HEADER.size + digest_len : end], raw=False, strict_map_key=True
        )
        projection = Projection.from_snapshot(body, netns_dir)
    except Exception as exc:  # msgpack's and from_snapshot's errors alike
        raise SnapshotError(f"unreadable body: {exc}") from None
    if projection.last_seq != seq:
        raise SnapshotError(f"body is at seq {projection.last_seq}, header says {seq}")
    return seq, digest, projection


def read_snapshot(
    path: str | os.PathLike[str], netns_dir: str = DEFAULT_NETNS_DIR
) -> tuple[int, bytes, Projection]:
    """Read and check one snapshot file (SnapshotError if it is bad)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SnapshotError(f"{os.fspath(path)}: cannot read: {exc}") from None
    try:
        return decode(data, netns_dir)
    except SnapshotError as exc:
        raise SnapshotError(f"{os.fspath(path)}: {exc}") from None


def replay(records: Iterable[_RecordLike], projection: Projection) -> int:
    """Apply every record to ``projection``; returns how many were applied.

    The garbage collector is paused meanwhile: replay creates millions of
    long-lived dicts, and generational collections over them cost more than
    half the replay time (NOTES.md).
    """
    apply = projection.apply
    n = 0
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rec in records:
            apply(rec.seq, rec.payload)
            n += 1
    finally:
        if was_enabled:
            gc.enable()
    return n


@attrs.frozen
class LoadResult:
    """What ``load`` did: which snapshot it started from, what it skipped and why."""

    projection: Projection
    snapshot: str | None
    snapshot_seq: int
    replayed: int
    skipped: tuple[tuple[str, str], ...]


def load(
    directory: str | os.PathLike[str],
    *,
    to_seq: int,
    netns_dir: str = DEFAULT_NETNS_DIR,
    key: bytes | None = None,
) -> LoadResult:
    """The projection at ``to_seq``: newest valid snapshot at or before it, plus the tail.

    Every record read is checked by ``eventlog.read`` (checksums, chain). A
    snapshot is used only if the log's chain digest at its seq equals the
    digest it recorded; otherwise it belongs to another history and is
    skipped.
    """
    d = os.fspath(directory)
    skipped: list[tuple[str, str]] = []

    def skip(path: str, why: str) -> None:
        log.warning("snapshot %s skipped: %s", path, why)
        skipped.append((path, why))

    for seq, path in list_snapshots(d):
        if seq == 0:
            continue  # nothing to save, nothing to check it against
        if seq > to_seq:
            skip(path, f"it is at seq {seq}, beyond the log's last seq {to_seq}")
            continue
        try:
            _seq, digest, projection = read_snapshot(path, netns_dir)
        except SnapshotError as exc:
            skip(path, str(exc))
            continue
        records: Iterator[Any] = iter(eventlog.read(d, from_seq=seq, to_seq=to_seq, key=key))
        try:
            first = next(records, None)
            if first is None or first.seq != seq:
                skip(path, f"the log has no record {seq} to check it against")
                continue
            if first.digest != digest:
                skip(
                    path,
                    f"its chain digest at seq {seq} differs from the log's: "
                    "it was taken from a different history",
                )
                continue
            n = replay(records, projection)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
        return LoadResult(projection, path, seq, n, tuple(skipped))
    projection = Projection(netns_dir)
    n = replay(eventlog.read(d, from_seq=1, to_seq=to_seq, key=key), projection) if to_seq else 0
    return LoadResult(projection, None, 0, n, tuple(skipped))
