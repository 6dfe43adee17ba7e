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
    8       2     format version (1 or 2)
    10      2     flags (0)
    12      8     seq: the log position the projection is at
    20      8     body length in bytes
    28      2     digest length in bytes
    30      d     chain digest of the log after record ``seq`` (eventlog's ``head``)
    version 2 only (p = 32 + s):
    30+d    2     s: length of the segment file name
    32+d    s     the segment file name (ASCII) holding record ``seq``
    32+d+s  8     byte offset just after record ``seq`` in that segment
    30+d+p  n     body: msgpack of ``Projection.to_snapshot()`` (p = 0 in version 1)
    30+d+p+n 32   blake2b-256 of every byte before it

Version 2 records the log position of ``seq`` (an ``eventlog.Position``), so
that ``load`` reads the tail from there instead of re-scanning the segment
from its header; the reader checks that position before using it (a wrong,
stale or foreign one costs a scan, never a wrong state; see
``eventlog.reader``). Version 1 files (no position) are still read; code
that knows only version 1 skips a version 2 file (a full replay, safe).

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
import itertools
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import attrs
import msgpack

import eventlog
from eventlog import crashpoints
from eventlog.segments import fsync_dir as _fsync_dir
from sandbox.errors import SnapshotError
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection

__all__ = [
    "AFTER_RENAME",
    "AFTER_TEMP_FSYNC",
    "AFTER_TEMP_WRITE",
    "KEEP",
    "LoadResult",
    "SnapshotError",
    "SnapshotInfo",
    "decode_info",
    "list_snapshots",
    "load",
    "read_snapshot",
    "read_snapshot_info",
    "replay",
    "snapshot_path",
    "tail_records",
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
#: Version written when the log position is known; ``_V1`` (no position) otherwise.
FORMAT_VERSION = 2
_V1 = 1
#: How many snapshots are kept (newest first); older ones are deleted.
KEEP = 3
SUFFIX = ".snap"
TEMP_SUFFIX = ".snap.tmp"
_HEADER = struct.Struct(">8sHHQQH")
_NAME_LEN = struct.Struct(">H")
_OFFSET = struct.Struct(">Q")
_CHECKSUM_BYTES = 32


class _RecordLike(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def payload(self) -> dict[str, Any]: ...


def snapshot_path(directory: str | os.PathLike[str], seq: int) -> str:
    return os.path.join(os.fspath(directory), f"{seq:020d}{SUFFIX}")


@attrs.frozen
class SnapshotInfo:
    """A decoded snapshot: its seq, the log digest and position there, the projection."""

    seq: int
    digest: bytes
    position: eventlog.Position | None
    projection: Projection


def _position_bytes(position: eventlog.Position) -> bytes:
    name = position.segment.encode("ascii")
    return _NAME_LEN.pack(len(name)) + name + _OFFSET.pack(position.offset)


def _assemble(seq: int, digest: bytes, position: eventlog.Position | None, body: bytes) -> bytes:
    version = _V1 if position is None else FORMAT_VERSION
    where = b"" if position is None else _position_bytes(position)
    data = _HEADER.pack(MAGIC, version, 0, seq, len(body), len(digest)) + digest + where + body
    return data + hashlib.blake2b(data, digest_size=_CHECKSUM_BYTES).digest()


def encode(
    projection: Projection, digest: bytes, position: eventlog.Position | None = None
) -> bytes:
    """The bytes of a snapshot file for ``projection`` whose log head is ``digest``.

    ``position`` is where record ``projection.last_seq`` ends in the log
    (``eventlog.end_position``; its seq and digest must be the snapshot's).
    Without one, ``write_snapshot`` records the log's end position if the
    log still ends at that digest.
    """
    if position is not None and (position.seq != projection.last_seq or position.digest != digest):
        raise ValueError(
            f"position is at seq {position.seq}, the projection at seq {projection.last_seq} "
            "(or their digests differ)"
        )
    body: bytes = msgpack.packb(projection.to_snapshot(), use_bin_type=True)
    return _assemble(projection.last_seq, digest, position, body)


def _with_log_position(directory: str, data: bytes) -> bytes:
    """``data`` (version 1) with the log's end position added, when the log ends at it."""
    try:
        magic, version, _flags, seq, body_len, digest_len = _HEADER.unpack_from(data)
    except struct.error:
        return data
    if magic != MAGIC or version != _V1:
        return data
    digest = data[_HEADER.size : _HEADER.size + digest_len]
    end = len(data) - _CHECKSUM_BYTES
    body = data[_HEADER.size + digest_len : end]
    if len(body) != body_len:
        return data
    position = eventlog.end_position(directory, seq, digest)
    if position is None:
        return data
    return _assemble(seq, digest, position, body)


_temp_ids = itertools.count()


def write_snapshot(
    directory: str | os.PathLike[str], seq: int, data: bytes, *, keep: int = KEEP
) -> str:
    """Atomically install ``data`` (from ``encode``) as the snapshot at ``seq``.

    ``directory`` is the log's directory. If ``data`` records no log
    position and the log there still ends at the snapshot's digest, that
    position is recorded (``eventlog.end_position``).
    """
    d = os.fspath(directory)
    data = _with_log_position(d, data)
    final = snapshot_path(d, seq)
    # Unique per call: two threads snapshotting the same seq must not share
    # (and truncate) one temp file. The pid prefix lets prune tell leftovers
    # of a dead writer from a write in flight in this process.
    temp = os.path.join(d, f"{seq:020d}.{os.getpid()}.{next(_temp_ids)}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
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
    """Delete all but the newest ``keep`` snapshots and temp files left by other
    (dead) processes; this process's own may be writes in flight."""
    d = os.fspath(directory)
    removed: list[str] = []
    for _seq, path in list_snapshots(d)[keep:]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    mine = f".{os.getpid()}."
    for name in os.listdir(d):
        if name.endswith(TEMP_SUFFIX) and mine not in name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(d, name))
                removed.append(os.path.join(d, name))
    if removed:
        _fsync_dir(d)
    return removed


def decode_info(data: bytes, netns_dir: str = DEFAULT_NETNS_DIR) -> SnapshotInfo:
    """Everything in snapshot bytes; any defect is SnapshotError."""
    if len(data) < _HEADER.size + _CHECKSUM_BYTES:
        raise SnapshotError(f"too short ({len(data)} bytes) to be a snapshot")
    magic, version, _flags, seq, body_len, digest_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError(f"bad magic {magic!r}; expected {MAGIC!r}")
    if version not in (_V1, FORMAT_VERSION):
        raise SnapshotError(f"snapshot format {version}; expected {_V1} or {FORMAT_VERSION}")
    end = len(data) - _CHECKSUM_BYTES
    if hashlib.blake2b(data[:end], digest_size=_CHECKSUM_BYTES).digest() != data[end:]:
        raise SnapshotError("checksum mismatch: the file is damaged")
    pos = _HEADER.size + digest_len
    digest = data[_HEADER.size : pos]
    position: eventlog.Position | None = None
    if version == FORMAT_VERSION:
        try:
            (name_len,) = _NAME_LEN.unpack_from(data, pos)
            name = data[pos + 2 : pos + 2 + name_len].decode("ascii")
            (offset,) = _OFFSET.unpack_from(data, pos + 2 + name_len)
        except (struct.error, UnicodeDecodeError) as exc:
            raise SnapshotError(f"unreadable log position: {exc}") from None
        pos += 2 + name_len + _OFFSET.size
        position = eventlog.Position(name, offset, seq, bytes(digest))
    if pos + body_len != end:
        expected = pos + body_len + _CHECKSUM_BYTES
        raise SnapshotError(f"size {len(data)} bytes; the header says {expected}")
    try:
        body = msgpack.unpackb(data[pos:end], raw=False, strict_map_key=True)
        projection = Projection.from_snapshot(body, netns_dir)
        # The content must validate as events do (DESIGN.md): every sandbox must
        # build - id, name, config, status, netns - or the store would fail on its
        # first read. The built values are cached, so a good snapshot pays nothing extra.
        projection.sandboxes()
    except Exception as exc:  # msgpack's, from_snapshot's and the validators' errors alike
        raise SnapshotError(f"unreadable body: {exc}") from None
    if projection.last_seq != seq:
        raise SnapshotError(f"body is at seq {projection.last_seq}, header says {seq}")
    return SnapshotInfo(seq, digest, position, projection)


def decode(data: bytes, netns_dir: str = DEFAULT_NETNS_DIR) -> tuple[int, bytes, Projection]:
    """``(seq, digest, projection)`` from snapshot bytes; any defect is SnapshotError."""
    info = decode_info(data, netns_dir)
    return info.seq, info.digest, info.projection


def read_snapshot_info(
    path: str | os.PathLike[str], netns_dir: str = DEFAULT_NETNS_DIR
) -> SnapshotInfo:
    """Read and check one snapshot file, log position included (SnapshotError if bad)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SnapshotError(f"{os.fspath(path)}: cannot read: {exc}") from None
    try:
        return decode_info(data, netns_dir)
    except SnapshotError as exc:
        raise SnapshotError(f"{os.fspath(path)}: {exc}") from None


def read_snapshot(
    path: str | os.PathLike[str], netns_dir: str = DEFAULT_NETNS_DIR
) -> tuple[int, bytes, Projection]:
    """Read and check one snapshot file (SnapshotError if it is bad)."""
    info = read_snapshot_info(path, netns_dir)
    return info.seq, info.digest, info.projection


def tail_records(
    directory: str,
    info: SnapshotInfo,
    *,
    to_seq: int | None,
    key: bytes | None,
) -> Iterator[Any]:
    """The log's records after the snapshot, up to ``to_seq``, checked to follow it.

    With a recorded position the reader starts there (checking it first, and
    falling back to a scan if it does not hold); without one it scans from
    the header of the segment holding the snapshot's seq. Either way the
    log's digest at the snapshot's seq must be the snapshot's, else
    ``eventlog.PositionMismatchError`` is raised before any record.
    """
    position = info.position
    if position is None:
        position = eventlog.Position("", 0, info.seq, info.digest)  # no such segment: a scan
    return iter(eventlog.read(directory, to_seq=to_seq, key=key, start=position))


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
            info = read_snapshot_info(path, netns_dir)
        except SnapshotError as exc:
            skip(path, str(exc))
            continue
        records = tail_records(d, info, to_seq=to_seq, key=key)
        try:
            n = replay(records, info.projection)
        except eventlog.PositionMismatchError as exc:
            skip(path, f"it was taken from a different history: {exc.reason}")
            continue
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
        return LoadResult(info.projection, path, seq, n, tuple(skipped))
    projection = Projection(netns_dir)
    n = replay(eventlog.read(d, from_seq=1, to_seq=to_seq, key=key), projection) if to_seq else 0
    return LoadResult(projection, None, 0, n, tuple(skipped))
