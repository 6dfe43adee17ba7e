"""The fuzz targets: one function per target, each taking the fuzzer's bytes.

A target returns normally when the code under test behaved as its contract
says - including raising one of the errors it documents - and raises
otherwise: either the undocumented exception itself (``IndexError``,
``struct.error``, ``MemoryError``, ``RecursionError``, a raw ``ValueError``,
...) or ``FuzzFinding`` when an oracle finds two parts of the system
disagreeing. The contracts are DESIGN.md's and FORMAT.md's:

``fuzz_log``
    ``eventlog.read`` to exhaustion, ``eventlog.verify`` and writer-open
    recovery (``EventLog.open(..., durability="none")`` on a copy) on a
    directory made from the input (``logcase``). Allowed: ``EventLogError``
    and its subclasses from ``read`` and ``open``; ``verify`` never raises
    on a directory that has segments (it returns a report). Agreement:
    a log ``verify`` calls clean reads without error to the same last seq
    and head, opens for writing at that seq, and still verifies clean with
    the same history after the writer's recovery; a log the writer refuses
    as corrupt fails ``verify``; a read from a later ``from_seq`` is the
    suffix of the full read; readers and ``verify`` change no file.
``fuzz_snapshot``
    ``sandbox.snapshot.decode_info`` on the bytes, and on the bytes with
    their checksum recomputed (so the fuzzer gets past the checksum into
    the header and body). Allowed: ``SnapshotError``. A snapshot it accepts
    must be usable (its sandboxes build, it re-encodes to the same
    projection) and, installed next to the real log it claims to belong to,
    ``snapshot.load`` must not raise and must give the true state when the
    snapshot's content is the log's (whatever its recorded position says),
    or skip it when it is from another history.
``fuzz_metadata``
    ``Metadata.from_json`` on the bytes (and on their text, when they are
    UTF-8). Allowed: ``StoreError`` and its subclasses (``InvalidMetadataError``,
    ``UnsupportedVersionError``, ``InvalidIDError``, ``InvalidConfigError``;
    those that are ValueErrors are documented as such). Metadata it accepts
    must be writable: ``to_json`` and the event form round-trip to an equal
    value, and the event form packs as msgpack the log accepts.

Scratch files go to a private directory on tmpfs (``/dev/shm``) when there
is one: a torn tail makes writer-open recovery fsync, which is free there.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import msgpack

import eventlog
from replay.fuzz import logcase
from replay.fuzz.fixture import SnapshotFixture
from sandbox import Metadata, SnapshotError, StoreError
from sandbox import snapshot as snap

__all__ = [
    "FIXTURE_ENV",
    "SCRATCH_ENV",
    "TARGETS",
    "FuzzFinding",
    "fixture",
    "fuzz_log",
    "fuzz_metadata",
    "fuzz_snapshot",
    "reseal",
    "scratch_parent",
]

#: Set by the runner: the root of a ``SnapshotFixture`` the seed corpus was made from.
FIXTURE_ENV = "SBX_FUZZ_FIXTURE"
#: Where scratch directories go (default: /dev/shm if usable, else the temp dir).
SCRATCH_ENV = "SBX_FUZZ_TMP"

# DESIGN.md: segment files are ``<first-seq, 20 digits>.log``.
_SEGMENT_NAME = re.compile(r"^\d{20}\.log$")


class FuzzFinding(AssertionError):
    """An oracle caught the code under test breaking its contract (not just raising)."""


# -- scratch space ------------------------------------------------------------


def scratch_parent() -> str | None:
    """Where scratch directories are made: ``SBX_FUZZ_TMP``, else /dev/shm, else the
    system temp dir (None)."""
    configured = os.environ.get(SCRATCH_ENV)
    if configured:
        return configured
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


_scratch: str | None = None


def _scratch_dir() -> str:
    """This process's scratch directory, removed at exit."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="sbx-fuzz-", dir=scratch_parent())
        # libFuzzer ends the process with C exit(), which skips this: the runner
        # points SBX_FUZZ_TMP at a directory of its own and removes that.
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


def _fresh(name: str) -> str:
    """A path in the scratch dir that does not exist (whatever the last input left)."""
    path = os.path.join(_scratch_dir(), name)
    if os.path.lexists(path):
        shutil.rmtree(path)
    return path


# -- the log target -------------------------------------------------------------


def _has_segments(directory: str) -> bool:
    return any(_SEGMENT_NAME.match(name) for name in os.listdir(directory))


def _files(directory: str) -> dict[str, bytes]:
    return dict(logcase.read_dir(directory))


def _read_all(directory: str, from_seq: int = 1) -> list[tuple[int, bytes]]:
    return [(r.seq, bytes(r.digest)) for r in eventlog.read(directory, from_seq=from_seq)]


def fuzz_log(data: bytes) -> None:
    """Read, verify and writer-open a log directory made from ``data``; see the module doc."""
    case = logcase.decode(data)
    readers_dir = _fresh("read")
    writer_dir = _fresh("open")
    logcase.write_dir(readers_dir, case.files)
    logcase.write_dir(writer_dir, case.files)
    before = _files(readers_dir)

    read_error: eventlog.EventLogError | None = None
    records: list[tuple[int, bytes]] = []
    try:
        records = _read_all(readers_dir)
    except eventlog.EventLogError as exc:
        read_error = exc

    report: eventlog.VerifyReport | None = None
    try:
        report = eventlog.verify(readers_dir)
    except eventlog.EventLogError as exc:
        if _has_segments(readers_dir):
            raise FuzzFinding(f"verify raised on a directory with segments: {exc!r}") from exc

    if _files(readers_dir) != before:
        raise FuzzFinding("a reader or verify changed the log directory's files")

    open_error: eventlog.EventLogError | None = None
    opened_at = -1
    try:
        with eventlog.EventLog.open(writer_dir, durability="none") as log:
            opened_at = log.last_seq
    except eventlog.EventLogError as exc:
        open_error = exc

    if report is None:
        return
    if isinstance(open_error, eventlog.CorruptLogError) and report.ok:
        raise FuzzFinding(
            f"verify calls the log clean ({report.records} records) but the writer "
            f"refuses it: {open_error}"
        ) from open_error
    if not report.ok:
        return
    _check_clean_log(report, records, read_error, readers_dir, case.control)
    if isinstance(open_error, eventlog.KeyRequiredError) and not report.chain_checked:
        return  # a keyed log: a writer needs the key, verify without it checks crcs only
    if open_error is not None:
        raise FuzzFinding(
            f"verify calls the log clean but the writer cannot open it: {open_error!r}"
        ) from open_error
    if opened_at != report.last_seq:
        raise FuzzFinding(
            f"verify ends the log at seq {report.last_seq}, the writer at seq {opened_at}"
        )
    after = eventlog.verify(writer_dir)
    if not (after.ok and after.last_seq == report.last_seq and after.head == report.head):
        raise FuzzFinding(
            f"after writer-open recovery the log no longer verifies the same: before "
            f"{report.last_seq}/{report.head[:16]}, after ok={after.ok} "
            f"{after.last_seq}/{after.head[:16]} problem={after.problem}"
        )
    if after.torn_tail:
        raise FuzzFinding(f"writer-open recovery left a torn tail of {after.torn_tail} bytes")


def _check_clean_log(
    report: eventlog.VerifyReport,
    records: list[tuple[int, bytes]],
    read_error: eventlog.EventLogError | None,
    directory: str,
    control: int,
) -> None:
    """What readers must say about a log that ``verify`` calls clean."""
    if read_error is not None:
        raise FuzzFinding(
            f"verify calls the log clean but read raises: {read_error!r}"
        ) from read_error
    seqs = [seq for seq, _digest in records]
    if seqs != list(range(1, report.last_seq + 1)) or len(records) != report.records:
        raise FuzzFinding(
            f"read yields seqs {seqs[:3]}..{seqs[-3:]} ({len(records)} records), "
            f"verify counts {report.records} up to seq {report.last_seq}"
        )
    if records and records[-1][1].hex() != report.head:
        raise FuzzFinding("read's last digest differs from verify's head")
    if records:
        from_seq = 1 + control % (report.last_seq + 1)
        try:
            tail = _read_all(directory, from_seq)
        except eventlog.EventLogError as exc:
            raise FuzzFinding(f"read from seq {from_seq} of a clean log raises: {exc!r}") from exc
        if tail != records[from_seq - 1 :]:
            raise FuzzFinding(f"read from seq {from_seq} is not the suffix of the full read")


# -- the snapshot target --------------------------------------------------------

#: Bytes of the whole-file checksum at the end of a snapshot (sandbox/snapshot.py).
_SEAL_BYTES = 32
_fixture: SnapshotFixture | None = None


def fixture() -> SnapshotFixture:
    """The snapshot fixture: the runner's (``SBX_FUZZ_FIXTURE``) or one made here once."""
    global _fixture
    if _fixture is None:
        root = os.environ.get(FIXTURE_ENV)
        _fixture = SnapshotFixture.load(root) if root else SnapshotFixture.build(_fresh("fixture"))
    return _fixture


def reseal(data: bytes) -> bytes | None:
    """``data`` with its trailing checksum recomputed; None if too short to have one.

    Without it almost every mutation dies at the checksum and the header
    and body parsers are never fuzzed. ``resealing_works`` checks against
    the fixture's real snapshots that this still matches how they are sealed.
    """
    if len(data) < _SEAL_BYTES:
        return None
    body = data[:-_SEAL_BYTES]
    return body + hashlib.blake2b(body, digest_size=_SEAL_BYTES).digest()


def resealing_works() -> bool:
    """Does ``reseal`` leave every real snapshot unchanged (the seal layout is current)?"""
    return all(reseal(s) == s for s in fixture().snapshots)


def fuzz_snapshot(data: bytes) -> None:
    """Decode snapshot bytes as they are and resealed, then load them; see the module doc."""
    _check_snapshot(data)
    sealed = reseal(data)
    if sealed is not None and sealed != data:
        _check_snapshot(sealed)


def _check_snapshot(data: bytes) -> None:
    fx = fixture()
    try:
        info = snap.decode_info(data, fx.netns_dir)
    except SnapshotError:
        return
    _check_usable(info)
    if 1 <= info.seq <= fx.last_seq:
        _check_load(data, info, fx)


def _check_usable(info: snap.SnapshotInfo) -> None:
    """A snapshot decode_info accepts must hold a projection the store can use."""
    projection = info.projection
    try:
        projection.sandboxes()
        projection.owned()
        body = projection.to_snapshot()
        again = snap.decode_info(snap.encode(projection, info.digest, info.position))
    except Exception as exc:
        raise FuzzFinding(
            f"decode_info accepted a snapshot whose content does not validate: {exc!r}"
        ) from exc
    if again.projection.to_snapshot() != body or again.seq != info.seq:
        raise FuzzFinding("an accepted snapshot does not re-encode to the same projection")


def _check_load(data: bytes, info: snap.SnapshotInfo, fx: SnapshotFixture) -> None:
    """Installed next to the fixture's log, the snapshot must load safely."""
    path = snap.snapshot_path(fx.state_dir, info.seq)
    with open(path, "wb") as f:
        f.write(data)
    try:
        result = snap.load(fx.state_dir, to_seq=fx.last_seq, netns_dir=fx.netns_dir)
    except Exception as exc:
        raise FuzzFinding(
            f"snapshot.load raised on a healthy log because of a snapshot: {exc!r}"
        ) from exc
    finally:
        os.unlink(path)
    got = result.projection.to_snapshot()
    true_end = fx.truth[fx.last_seq]
    if info.digest != fx.digests[info.seq]:
        if result.snapshot is not None:
            raise FuzzFinding(
                f"load used a snapshot from another history (digest at seq {info.seq} differs)"
            )
        if got != true_end:
            raise FuzzFinding("load without a usable snapshot is not the full replay")
    elif info.projection.to_snapshot() == fx.truth[info.seq] and got != true_end:
        raise FuzzFinding(
            f"a true snapshot at seq {info.seq} (position {info.position}) loads to a "
            f"wrong state (used: {result.snapshot}, skipped: {result.skipped})"
        )


# -- the metadata target --------------------------------------------------------


def fuzz_metadata(data: bytes) -> None:
    """Decode a metadata blob as bytes and as text; see the module doc."""
    _check_metadata(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    _check_metadata(text)


def _check_metadata(blob: bytes | str) -> None:
    try:
        metadata = Metadata.from_json(blob)
    except StoreError:
        return
    try:
        written = metadata.to_json()
        again = Metadata.from_json(written)
        event_form = metadata.to_event_dict()
        from_event = Metadata.from_event_dict(event_form)
        packed = msgpack.packb(event_form, use_bin_type=True)
        unpacked: Any = msgpack.unpackb(packed, raw=False, strict_map_key=True)
    except Exception as exc:
        raise FuzzFinding(
            f"Metadata.from_json accepted a blob that cannot be written back: {exc!r}"
        ) from exc
    if again != metadata:
        raise FuzzFinding(f"to_json does not round-trip: {metadata!r} -> {again!r}")
    if again.to_json() != written:
        raise FuzzFinding("to_json of the re-read metadata differs from the first to_json")
    if from_event != metadata:
        raise FuzzFinding(f"the event form does not round-trip: {metadata!r}")
    if unpacked != event_form:
        raise FuzzFinding("the event form does not survive msgpack")


#: Target name -> function, for the runner and the tests.
TARGETS: dict[str, Callable[[bytes], None]] = {
    "log": fuzz_log,
    "snapshot": fuzz_snapshot,
    "metadata": fuzz_metadata,
}
