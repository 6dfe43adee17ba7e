"""Retention: which snapshots a store keeps, and how much of its log may go.

Why here and not in eventlog: which history may go is the store's decision.
A store rebuilds its state from its newest valid snapshot plus the log after
it, so once segments are compacted the snapshots are what makes the state
recoverable. The rule, written once for ``Store.compact`` (which
``sandboxctl compact``, ``replay.compact`` and ``Store.open(retention=...)``
use):

- keep the newest ``keep_snapshots`` snapshots that read back intact (on a
  keyed log: with a valid MAC under its key) and belong to this log's
  history (the log's chain digest at their seq is the one they recorded -
  what ``snapshot.load`` checks before it uses one; a snapshot it would skip
  must not be what the compacted store depends on);
- compact the log before the oldest kept one (``eventlog``: the segments
  wholly before it go, never the last one, and never records a shipper has
  not had acknowledged unless forced);
- delete the snapshots older than it: they point into history that is gone.

The log is always compacted through an open store (``Store.compact``:
``EventLog.compact`` under the writer lock the store holds; ``sandboxctl
compact`` opens the store as its writer), because compaction must first
write to the log:

- carry ownership forward. A snapshot of an unkeyed log is a cache, not
  proof, so before the reconciler removes a namespace whose ownership it
  has only from such a snapshot it reads the record that assigned it
  (sandbox/store_netns.py ``confirm_removal``). Compaction removes that
  record; so, before any segment goes, the store writes one durable batch
  of NetNSOwnershipCarried records - one per pending path whose proof is
  older than the compaction point, each proven first if its claim rests
  on an unauthenticated snapshot - and the proof stays in the local log.

It carries on keyed logs too, although their snapshots are MAC-authenticated
and need no confirmation: one behaviour is simpler to audit and to test
(the local log of any store proves every pending path it owns, for verify,
audit and a person reading it without the snapshots), and the cost is one
small record per live namespace assigned before the compaction point, per
compaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import attrs

import eventlog
from sandbox.errors import SnapshotError, StoreError
from sandbox.snapshot import list_snapshots, prune, read_snapshot_info, tail_records

__all__ = [
    "CompactLog",
    "CompactReport",
    "NoSnapshotError",
    "Retention",
    "apply_retention",
    "check_keep",
    "kept_snapshots",
]

#: Compacts the log before the seq it is given (the store's writer; archive dir and
#: force bound), after carrying ownership forward (module docstring).
CompactLog = Callable[[int], eventlog.CompactResult]


class NoSnapshotError(StoreError, ValueError):
    """No snapshot reads back intact: compaction would leave a store that cannot be rebuilt.

    Also a ValueError: for the CLI it is wrong input (exit 7), as before.
    """


def check_keep(keep_snapshots: int, name: str = "keep_snapshots") -> None:
    """ValueError unless ``keep_snapshots`` >= 1 (a compacted store opens from a snapshot);
    ``name``: what the caller calls it (the CLI: ``--keep-snapshots``)."""
    if keep_snapshots < 1:
        raise ValueError(f"{name} must be at least 1: a compacted store opens from one")


def _keep_validator(_instance: object, _attribute: object, value: int) -> None:
    check_keep(value)


def _abspath(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.path.abspath(os.fspath(path))


@attrs.frozen
class Retention:
    """``Store.open(retention=...)``: compact after every ``Store.snapshot()``.

    ``archive_dir``: move the compacted segments there (None: delete them).
    There is no standing ``force``: a policy that drops unshipped records on
    every snapshot would defeat ``SHIPPED``; ``Store.compact(force=True)`` is
    the explicit, one-off way.
    """

    keep_snapshots: int = attrs.field(default=2, validator=_keep_validator)
    archive_dir: str | None = attrs.field(default=None, converter=_abspath)


@attrs.frozen
class CompactReport:
    """What a compaction did, for the CLI's table or JSON and for ``Store.compact``."""

    snapshots_kept: tuple[int, ...]
    snapshots_removed: tuple[str, ...]
    before_seq: int
    segments_removed: tuple[str, ...]
    bytes_removed: int
    first_seq: int
    archive: str
    note: str

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def _usable(state_dir: str, path: str, netns_dir: str, key: bytes | None) -> bool:
    """Whether the snapshot at ``path`` is one ``snapshot.load`` would use (module docstring)."""
    try:
        info = read_snapshot_info(path, netns_dir, key=key)
    except (SnapshotError, OSError):
        return False
    records: Iterator[object] = iter(())
    try:
        records = tail_records(state_dir, info, to_seq=info.seq, key=key)
        for _ in records:  # to_seq is its own seq: only the digest check runs
            pass
    except (eventlog.PositionMismatchError, eventlog.HistoryNotLocalError):
        return False  # another history's, or from before the local history's start
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
    return True


def kept_snapshots(
    state_dir: str, keep_snapshots: int, *, netns_dir: str, key: bytes | None
) -> tuple[int, ...]:
    """The seqs of the snapshots retention keeps, newest first (module docstring).

    ValueError when ``keep_snapshots`` < 1; NoSnapshotError when none is usable.
    """
    check_keep(keep_snapshots)
    kept: list[int] = []
    for seq, path in list_snapshots(state_dir):
        if len(kept) == keep_snapshots:
            break
        if _usable(state_dir, path, netns_dir, key):
            kept.append(seq)
    if not kept or min(kept) == 0:
        raise NoSnapshotError(
            f"no intact snapshot in {state_dir} to compact before: run `sandboxctl snapshot` "
            "(Store.snapshot()) first"
        )
    return tuple(kept)


def apply_retention(
    state_dir: str,
    compact_log: CompactLog,
    *,
    keep_snapshots: int,
    netns_dir: str,
    key: bytes | None,
) -> CompactReport:
    """Keep the newest usable snapshots, compact before the oldest kept, prune older ones."""
    kept = kept_snapshots(state_dir, keep_snapshots, netns_dir=netns_dir, key=key)
    before = min(kept)
    result = compact_log(before)
    # Snapshots older than the oldest kept one point into history that is gone:
    # prune keeps the newer ones (regular files of snapshot magic only; dir fsynced).
    newer = sum(1 for seq, _ in list_snapshots(state_dir) if seq >= before)
    removed = prune(state_dir, keep=newer)
    history = result.history
    return CompactReport(
        snapshots_kept=kept,
        snapshots_removed=tuple(removed),
        before_seq=before,
        segments_removed=result.removed,
        bytes_removed=result.bytes_removed,
        first_seq=result.first_seq,
        archive=result.archive,
        note=history.note() if history is not None else "history is local from seq 1",
    )
