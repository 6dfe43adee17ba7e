"""``sandboxctl compact``: retention for a store's state dir whose store is not open.

The rule (which snapshots are kept, where the log is cut, which snapshots
go) is ``sandbox.retention``'s, shared with ``Store.compact``; here the log
is compacted by ``eventlog.compact``, which takes the writer lock itself
(the CLI waits for it, ``--lock-timeout``).
"""

from __future__ import annotations

import logging

import eventlog
from sandbox.retention import CompactReport, apply_retention, check_keep

__all__ = ["CompactReport", "compact_store", "local_start"]

log = logging.getLogger("replay")


def compact_store(
    state_dir: str,
    *,
    keep_snapshots: int,
    netns_dir: str,
    archive: str | None = None,
    key: bytes | None = None,
    force: bool = False,
) -> CompactReport:
    """Compact ``state_dir`` before its oldest kept snapshot (``sandbox.retention``).

    ValueError when ``keep_snapshots`` < 1 or no snapshot reads back intact
    (``sandbox.retention.NoSnapshotError``, also a ValueError): without one,
    compaction would leave a store that cannot be rebuilt.
    """
    check_keep(keep_snapshots, "--keep-snapshots")

    def compact_log(before: int) -> eventlog.CompactResult:
        return eventlog.compact(
            state_dir, before_seq=before, archive_dir=archive, key=key, force=force
        )

    return apply_retention(
        state_dir, compact_log, keep_snapshots=keep_snapshots, netns_dir=netns_dir, key=key
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
