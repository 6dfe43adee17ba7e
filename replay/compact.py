"""``sandboxctl compact``: retention for a store's state dir.

Why here and not in eventlog: which history may go is the store's
decision. A store rebuilds its state from its newest valid snapshot plus
the log after it, so once segments are compacted the snapshots are what
makes the state recoverable. The rule: keep the newest ``keep`` snapshots
that read back intact, drop the older ones, and compact the segments wholly
before the oldest kept snapshot (``eventlog.compact``: it also refuses to
drop records a shipper has not had acknowledged, unless forced).
"""

from __future__ import annotations

import logging

import attrs

import eventlog
from sandbox.snapshot import SnapshotError, list_snapshots, prune, read_snapshot_info

__all__ = ["CompactReport", "compact_store", "local_start"]

log = logging.getLogger("replay")


@attrs.frozen
class CompactReport:
    """What ``compact_store`` did, for the CLI's table or JSON."""

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


def compact_store(
    state_dir: str,
    *,
    keep_snapshots: int,
    netns_dir: str,
    archive: str | None = None,
    key: bytes | None = None,
    force: bool = False,
) -> CompactReport:
    """Compact ``state_dir`` before its oldest kept snapshot (module docstring).

    ValueError when ``keep_snapshots`` < 1 or no snapshot reads back intact:
    without one, compaction would leave a store that cannot be rebuilt.
    """
    if keep_snapshots < 1:
        raise ValueError("--keep-snapshots must be at least 1: a compacted store opens from one")
    kept: list[int] = []
    for seq, path in list_snapshots(state_dir):
        if len(kept) == keep_snapshots:
            break
        try:
            read_snapshot_info(path, netns_dir, key=key)
        except (SnapshotError, OSError):
            continue
        kept.append(seq)
    if not kept or min(kept) == 0:
        raise ValueError(
            f"no intact snapshot in {state_dir} to compact before: run `sandboxctl snapshot` first"
        )
    before = min(kept)
    result = eventlog.compact(
        state_dir, before_seq=before, archive_dir=archive, key=key, force=force
    )
    # Snapshots older than the oldest kept one point into history that is gone:
    # prune keeps the newer ones (regular files of snapshot magic only; dir fsynced).
    newer = sum(1 for seq, _ in list_snapshots(state_dir) if seq >= before)
    removed = prune(state_dir, keep=newer)
    history = result.history
    return CompactReport(
        snapshots_kept=tuple(kept),
        snapshots_removed=tuple(removed),
        before_seq=before,
        segments_removed=result.removed,
        bytes_removed=result.bytes_removed,
        first_seq=result.first_seq,
        archive=result.archive,
        note=history.note() if history is not None else "history is local from seq 1",
    )


def local_start(state_dir: str) -> int:
    """The first seq a tool reading "the whole log" can read here (1 unless compacted).

    On a compacted log it says once, as a warning (stderr in the CLI), which
    history is no longer local and where it went.
    """
    history = eventlog.local_history(state_dir)
    if history is None:
        return 1
    log.warning("%s", history.note())
    return history.first_seq
