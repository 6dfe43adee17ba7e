"""``sandboxctl compact``'s body for a store's state dir whose store is not open.

The rule (which snapshots are kept, where the log is cut, which snapshots
go) is ``sandbox.retention``'s, and compaction is always ``Store.compact``:
before any segment goes it carries the proof of ownership of every pending
namespace forward in the log, which only the store's writer can append. So
this opens the store as its writer (which also reconciles, as every writer
open does) and compacts through it.
"""

from __future__ import annotations

import logging
import os

import eventlog
from sandbox import Store
from sandbox.retention import CompactReport, check_keep

__all__ = ["CompactReport", "compact_store", "local_start"]

log = logging.getLogger("replay")


def compact_store(
    state_dir: str | os.PathLike[str],
    *,
    keep_snapshots: int,
    netns_dir: str | os.PathLike[str] | None = None,
    archive: str | None = None,
    key: bytes | None = None,
    force: bool = False,
    actor: str | None = None,
) -> CompactReport:
    """Open the store in ``state_dir`` as its writer and compact it (``Store.compact``).

    ``netns_dir``: None means the one the log recorded (``Store.open``).
    ValueError when ``keep_snapshots`` < 1 or no snapshot reads back intact
    (``sandbox.retention.NoSnapshotError``, also a ValueError): without one,
    compaction would leave a store that cannot be rebuilt. ``LogLockedError``
    when another writer holds the store (the CLI waits, ``--lock-timeout``).
    """
    check_keep(keep_snapshots, "--keep-snapshots")
    with Store.open(state_dir, netns_dir=netns_dir, key=key, actor=actor) as store:
        return store.compact(keep_snapshots=keep_snapshots, archive_dir=archive, force=force)


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
