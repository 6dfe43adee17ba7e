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
    flag MAC only:
    62+d+p+n 32   MAC: blake2b-256 keyed with ``mac_key(log key)``, of every byte before it

Version 2 records the log position of ``seq`` (an ``eventlog.Position``), so
that ``load`` reads the tail from there instead of re-scanning the segment
from its header; the reader checks that position before using it (a wrong,
stale or foreign one costs a scan, never a wrong state; see
``eventlog.reader``). Version 1 files (no position) are still read; code
that knows only version 1 skips a version 2 file (a full replay, safe).

The body (body format 4, written since the sandboxes are laid out by column;
formats 2 and 3 are still read) is a msgpack map::

    "format"        4
    "last_seq"      the seq the projection is at (= the header's seq)
    "ids", "names", "configs", "netns_paths", "states", "pids", "created_at",
    "exited_at", "exit_statuses", "owned_paths"
                    one list per field of a sandbox, all of one length, in add
                    order (``projection.SANDBOX_COLUMNS``); a config is msgpack
                    bytes (a bin) of the Go-JSON map the add event carried, a
                    status the five fields of its ``Status``, "owned_paths" a
                    list of paths per sandbox
    "owned"         one row per owned netns path: [path, sandbox id, state, assigned seq]
    "netns_dir"     the netns dir the log recorded (absent if none)

Format 3 had "sandboxes", one row per sandbox, instead of the columns:
``[id, name, config, netns_path, [state, pid, created_at, exited_at,
exit_status], [owned path, ...]]``; format 2 the same with each config the map
itself. By column, the body decodes into one typed list per field (types and
status ranges checked in C, ``snapshot_check``) and builds no row to transpose.

A config is its own bin so that loading a snapshot builds no config map: the
bytes are checked in bulk (``sandbox.config_check`` proves one in the
canonical stored form valid in C; any other is decoded the full way, which
decides) and decoded on the sandbox's first read; the next snapshot writes
the same bytes again. Code that knows only older formats skips a newer body
(a full replay, safe).

The checksum catches damage, not lies: anyone who can write the state dir can
write a checksum. So a snapshot is believed only as far as it is checked
(DESIGN.md: "an optimisation, never an authority"): its content is validated
as strictly as events are (``sandbox.snapshot_check``), and on a keyed log
it must carry a valid MAC under the log's key (flags bit 0) or it is skipped.
An unkeyed log's snapshot is a cache only: ``SnapshotInfo.authenticated`` is
False, and the store confirms against the log any removal whose ownership
rests on it (``Store``; the reconciler's ``confirm_removal``).

Files are opened without following symlinks and without blocking (a FIFO
named ``*.snap`` must not hang an open), and must be regular files; pruning
deletes only regular files that start with the snapshot magic. Anything else
is skipped with a warning.

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
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import attrs

import eventlog
from eventlog import crashpoints, files
from eventlog.segments import fsync_dir as _fsync_dir
from sandbox.errors import SnapshotError
from sandbox.event_fastdecode import decode_payload
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection
from sandbox.snapshot_check import decode_body
from sandbox.snapshot_files import (
    KEEP,
    MAGIC,
    SUFFIX,
    TEMP_SUFFIX,
    list_snapshots,
    prune,
    read_file,
    snapshot_path,
)
from sandbox.snapshot_format import (
    CHECKSUM_BYTES,
    HEADER,
    NAME_LEN,
    OFFSET,
    V1,
    assemble,
    check_mac,
    mac_key,
    with_log_position,
)
from sandbox.snapshot_format import FLAG_MAC as FLAG_MAC
from sandbox.snapshot_format import FORMAT_VERSION as FORMAT_VERSION
from sandbox.snapshot_format import encode as encode

__all__ = [
    "AFTER_RENAME",
    "AFTER_TEMP_FSYNC",
    "AFTER_TEMP_WRITE",
    "KEEP",
    "LoadResult",
    "MAGIC",
    "SnapshotError",
    "SUFFIX",
    "SnapshotInfo",
    "TEMP_SUFFIX",
    "decode_info",
    "list_snapshots",
    "load",
    "mac_key",
    "prune",
    "read_snapshot",
    "read_snapshot_info",
    "replay",
    "snapshot_path",
    "tail_records",
    "write_snapshot",
]

log = logging.getLogger(__name__)

# The layout's names as this module has always had them (sandbox.snapshot_hint, tests).
_HEADER, _NAME_LEN, _OFFSET, _assemble = HEADER, NAME_LEN, OFFSET, assemble

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


class _RecordLike(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def payload(self) -> Any: ...  # a typed event, or the payload map the hook declined


@attrs.frozen
class SnapshotInfo:
    """A decoded snapshot: its seq, the log digest and position there, the projection."""

    seq: int
    digest: bytes
    position: eventlog.Position | None
    projection: Projection
    #: True when a MAC under the log's key was checked; False: a cache, not proof.
    authenticated: bool = False


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
    data = with_log_position(d, data)
    final = snapshot_path(d, seq)
    # Unique per call: two threads snapshotting the same seq must not share
    # (and truncate) one temp file. The pid prefix lets prune tell leftovers
    # of a dead writer from a write in flight in this process.
    temp = os.path.join(d, f"{seq:020d}.{os.getpid()}.{next(_temp_ids)}{TEMP_SUFFIX}")
    fd = files.create_new(temp)  # O_EXCL, no link followed
    try:
        files.write_all(fd, data)
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


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the garbage collector (if it runs) for a bulk build of long-lived objects.

    Decoding a snapshot body or replaying a log allocates millions of objects
    that all stay alive; each generational collection meanwhile walks all of
    them again, which costs more than the work itself (NOTES.md: 2x for a
    replay; 3-4x for a 100,000-sandbox snapshot). Nothing they build has cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _projection(body_bytes: memoryview, netns_dir: str) -> Projection:
    with gc_paused():
        return _checked_projection(body_bytes, netns_dir)


def _checked_projection(body_bytes: memoryview, netns_dir: str) -> Projection:
    body = decode_body(body_bytes)
    try:
        # The content must validate as events do (DESIGN.md): every sandbox must
        # build - id, name, config, status, netns - or the store would fail on its
        # first read. Statuses are checked in bulk (built on first use); ``check`` checks the
        # rest as check_sandboxes does, without building the Sandbox values (they
        # stay lazy, as after a replay), configs, ids, names and paths in bulk.
        projection = Projection.from_snapshot(body, netns_dir, check=True)
    except Exception as exc:  # from_snapshot's and the validators' errors alike
        raise SnapshotError(f"invalid body: {exc}") from None
    return projection


#: Below this many bytes the checksum is computed at once: a thread costs more.
_BESIDE_MIN = 1 << 20


@contextlib.contextmanager
def _checksummed(signed: memoryview, checksum: memoryview) -> Iterator[None]:
    """Check that ``checksum`` is the blake2b-256 of ``signed`` (else SnapshotError: the
    file is damaged), hashing beside the body's decode in the block.

    hashlib lets go of the GIL while it hashes, and for a snapshot of 100,000
    sandboxes the hash is a tenth of the load. The decode already treats the
    body as hostile (a checksum is no proof against a writer who lies), so it
    may run before the checksum is known; the checksum is still checked before
    anything the block found is used or reported: a SnapshotError from the
    block gives way to a checksum mismatch (damage is reported as damage).
    """
    found: list[bytes] = []

    def run() -> None:
        found.append(hashlib.blake2b(signed, digest_size=CHECKSUM_BYTES).digest())

    thread = None
    if len(signed) < _BESIDE_MIN:
        run()
    else:
        thread = threading.Thread(target=run, name="snapshot-checksum", daemon=True)
        thread.start()

    def check() -> None:
        if thread is not None:
            thread.join()
        if found != [checksum.tobytes()]:
            raise SnapshotError("checksum mismatch: the file is damaged") from None

    try:
        yield
    except SnapshotError:
        check()
        raise
    check()


def _position(view: memoryview, pos: int, seq: int, digest: bytes) -> tuple[eventlog.Position, int]:
    """The log position a version 2 header records at ``pos``, and where it ends."""
    try:
        (name_len,) = NAME_LEN.unpack_from(view, pos)
        name = str(view[pos + 2 : pos + 2 + name_len], "ascii")
        (offset,) = OFFSET.unpack_from(view, pos + 2 + name_len)
    except (struct.error, UnicodeDecodeError) as exc:
        raise SnapshotError(f"unreadable log position: {exc}") from None
    return eventlog.Position(name, offset, seq, digest), pos + 2 + name_len + OFFSET.size


def decode_info(
    data: bytes | bytearray, netns_dir: str = DEFAULT_NETNS_DIR, *, key: bytes | None = None
) -> SnapshotInfo:
    """Everything in snapshot bytes; any defect is SnapshotError.

    ``key``: the log's key. With one, a snapshot without a valid MAC under it
    is refused; without one, a MAC is not checked and the result is not
    ``authenticated``.
    """
    if len(data) < HEADER.size + CHECKSUM_BYTES:
        raise SnapshotError(f"too short ({len(data)} bytes) to be a snapshot")
    magic, version, flags, seq, body_len, digest_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError(f"bad magic {magic!r}; expected {MAGIC!r}")
    if version not in (V1, FORMAT_VERSION):
        raise SnapshotError(f"snapshot format {version}; expected {V1} or {FORMAT_VERSION}")
    # A view, not slices: a body of 100,000 sandboxes is tens of MB, copied twice.
    view, authenticated = check_mac(memoryview(data), flags, key)
    end = len(view) - CHECKSUM_BYTES
    with _checksummed(view[:end], view[end:]):
        pos = HEADER.size + digest_len
        digest = view[HEADER.size : pos].tobytes()
        position: eventlog.Position | None = None
        if version == FORMAT_VERSION:
            position, pos = _position(view, pos, seq, digest)
        if pos + body_len != end:
            expected = pos + body_len + CHECKSUM_BYTES
            raise SnapshotError(f"size {len(view)} bytes; the header says {expected}")
        projection = _projection(view[pos:end], netns_dir)
        if projection.last_seq != seq:
            raise SnapshotError(f"body is at seq {projection.last_seq}, header says {seq}")
    return SnapshotInfo(seq, digest, position, projection, authenticated)


def decode(
    data: bytes | bytearray, netns_dir: str = DEFAULT_NETNS_DIR, *, key: bytes | None = None
) -> tuple[int, bytes, Projection]:
    """``(seq, digest, projection)`` from snapshot bytes; any defect is SnapshotError."""
    info = decode_info(data, netns_dir, key=key)
    return info.seq, info.digest, info.projection


def read_snapshot_info(
    path: str | os.PathLike[str], netns_dir: str = DEFAULT_NETNS_DIR, *, key: bytes | None = None
) -> SnapshotInfo:
    """Read and check one snapshot file, log position included (SnapshotError if bad).

    A symlink, directory, FIFO or device of that name is a SnapshotError, never
    followed and never waited on.
    """
    p = os.fspath(path)
    data = read_file(p)
    try:
        return decode_info(data, netns_dir, key=key)
    except SnapshotError as exc:
        raise SnapshotError(f"{p}: {exc}") from None


def read_snapshot(
    path: str | os.PathLike[str], netns_dir: str = DEFAULT_NETNS_DIR, *, key: bytes | None = None
) -> tuple[int, bytes, Projection]:
    """Read and check one snapshot file (SnapshotError if it is bad)."""
    info = read_snapshot_info(path, netns_dir, key=key)
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

    Each record's payload is its typed event where the store's decode hook
    builds one (``sandbox.event_fastdecode``), else the payload map; both fold
    alike, and the hook declines anything the reference decode would judge.
    """
    position = info.position
    if position is None:
        position = eventlog.Position("", 0, info.seq, info.digest)  # no such segment: a scan
    return iter(
        eventlog.read(directory, to_seq=to_seq, key=key, start=position, decode=decode_payload)
    )


def replay(records: Iterable[_RecordLike], projection: Projection) -> int:
    """Apply every record to ``projection``; returns how many were applied.

    The garbage collector is paused meanwhile: replay creates millions of
    long-lived dicts, and generational collections over them cost more than
    half the replay time (NOTES.md).
    """
    apply = projection.apply
    n = 0
    with gc_paused():
        for rec in records:
            apply(rec.seq, rec.payload)
            n += 1
    return n


@attrs.frozen
class LoadResult:
    """What ``load`` did: which snapshot it started from, what it skipped and why."""

    projection: Projection
    snapshot: str | None
    snapshot_seq: int
    replayed: int
    skipped: tuple[tuple[str, str], ...]
    #: the snapshot used carried a valid MAC under the log's key (False: none used,
    #: or an unkeyed log's, which is a cache and proves nothing)
    authenticated: bool = False


def load(
    directory: str | os.PathLike[str],
    *,
    to_seq: int,
    netns_dir: str = DEFAULT_NETNS_DIR,
    key: bytes | None = None,
) -> LoadResult:
    """The projection at ``to_seq``: newest valid snapshot at or before it, plus the tail.

    Every record read is checked by ``eventlog.read`` (checksums, chain). A
    snapshot is used only if its content validates, it carries a valid MAC
    when ``key`` is given (a keyed log), and the log's chain digest at its
    seq equals the digest it recorded (else it belongs to another history);
    otherwise it is skipped with a warning.
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
            info = read_snapshot_info(path, netns_dir, key=key)
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
        return LoadResult(info.projection, path, seq, n, tuple(skipped), info.authenticated)
    projection = Projection(netns_dir)
    n = 0
    if to_seq:
        n = replay(eventlog.read(d, to_seq=to_seq, key=key, decode=decode_payload), projection)
    return LoadResult(projection, None, 0, n, tuple(skipped))
