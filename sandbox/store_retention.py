"""Retention on an open store: the bodies of ``Store.compact`` and of the
``Store.open(retention=...)`` step after each ``Store.snapshot()``.

Why through the open store: a node agent keeps its store open, so it holds
the writer lock that ``eventlog.compact`` (and ``sandboxctl compact``) would
need - LogLockedError. The store compacts through its own writer instead
(``EventLog.compact``: the same checks and ``HISTORY`` record, under the
lock it holds), while commands go on appending. The rule - which snapshots
are kept, where the log is cut, which snapshots go - is
``sandbox.retention``'s, the one ``sandboxctl compact`` uses.

Before any segment goes, ``store_netns.carry_ownership`` writes one durable
batch of NetNSOwnershipCarried records, one per pending namespace whose
proof of ownership (its NetNSAssigned record) is about to be removed
(sandbox/retention.py says why and on which logs). A crash between that
batch and the compaction (crash point ``compact.after_carry``) is
harmless: the carries are records the rules allow, replay folds them (the
proof simply moves to a record that is still local), nothing was removed,
and the next compaction carries again what it still needs.

Compactions of one store run one at a time (``Store._retention_lock``), so
two of them never prune each other's kept snapshots. A ``snapshot()``
racing one is harmless: it only adds a newer snapshot, and its own pruning
removes old ones, never one newer than the compaction point.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, cast

from eventlog import CompactionRefusedError, CompactResult, EventLog, LogClosedError, crashpoints
from sandbox.errors import StoreClosedError, StoreError
from sandbox.logport import LogPort
from sandbox.retention import CompactReport, NoSnapshotError, Retention, apply_retention
from sandbox.store_netns import carry_ownership

if TYPE_CHECKING:
    from sandbox.store import Store

__all__ = ["AFTER_CARRY", "Retaining"]

log = logging.getLogger("sandbox.store")

AFTER_CARRY = crashpoints.register(
    "compact.after_carry",
    "sandbox/store_retention.py Store.compact: the NetNSOwnershipCarried batch is durable, "
    "no segment removed yet",
)


class Retaining:
    """Mixin of ``Store``: ``compact`` and the retention step of ``snapshot``.

    A mixin for the reason ``Reads`` is one: it works on the store's own state
    (set by ``Store.__init__``, declared here for the type checker) and keeps
    the store's lock order (``_cmd`` only briefly, to check the store is usable).
    """

    state_dir: str
    netns_dir: str
    _log: LogPort
    _key: bytes | None
    _cmd: threading.Lock
    #: One compaction of this store at a time (module docstring).
    _retention_lock: threading.Lock
    #: ``Store.open(retention=...)``: compact after each ``snapshot()`` (None: never).
    retention: Retention | None
    #: What the last compaction of this store did (None: none yet).
    last_compaction: CompactReport | None

    if TYPE_CHECKING:
        # Provided by Store.
        def _check_writable(self) -> None: ...
        def _no_command_in_fn(self, what: str) -> None: ...

    def compact(
        self,
        *,
        keep_snapshots: int = 2,
        archive_dir: str | os.PathLike[str] | None = None,
        force: bool = False,
    ) -> CompactReport:
        """Retention on the open store (``sandboxctl compact``'s rule, sandbox/retention.py).

        Keeps the newest ``keep_snapshots`` usable snapshots, carries the proof
        of every pending namespace assigned before the oldest kept one forward
        (module docstring), removes (or moves to ``archive_dir``) the log
        segments wholly before it, deletes the older snapshots. Commands go on
        meanwhile. ValueError for ``keep_snapshots`` < 1; ``NoSnapshotError``
        (a StoreError) when no snapshot is usable;
        ``eventlog.CompactionRefusedError`` when records a shipper has not had
        acknowledged (``SHIPPED``) would go, unless ``force``, or when the
        segments to remove do not chain into the rest.
        """
        self._no_command_in_fn("compact")
        writer = self._log
        if not isinstance(writer, EventLog):
            raise StoreError(
                f"store {self.state_dir}: compact() needs a store opened on a state dir "
                "(Store.open), not one over an in-memory log"
            )

        def carry(first_seq: int) -> None:
            # Only once the compaction is sure to go ahead, and only for the
            # records it removes: a refused one (unshipped records) carries nothing.
            carry_ownership(cast("Store", self), first_seq)
            if crashpoints.ARMED:
                crashpoints.hit(AFTER_CARRY)

        def compact_log(before: int) -> CompactResult:
            return writer.compact(
                before_seq=before, archive_dir=archive_dir, force=force, prepare=carry
            )

        with self._retention_lock:
            with self._cmd:
                self._check_writable()
            try:
                report = apply_retention(
                    self.state_dir,
                    compact_log,
                    keep_snapshots=keep_snapshots,
                    netns_dir=self.netns_dir,
                    key=self._key,
                )
            except LogClosedError:
                raise StoreClosedError(f"store {self.state_dir} is closed; open it again") from None
            self.last_compaction = report
            return report

    def _snapshots_to_keep(self, default: int) -> int:
        """How many snapshots ``snapshot()`` keeps: never fewer than retention keeps."""
        return max(default, self.retention.keep_snapshots if self.retention else 0)

    def _retain_after_snapshot(self) -> None:
        """The retention step of ``snapshot()`` under ``Store.open(retention=...)``.

        A refusal (records not shipped yet, no usable snapshot) changes nothing
        and is only logged as a warning: the snapshot itself is written, and
        the next snapshot tries again once the shipper has caught up. Any
        other failure is raised.
        """
        policy = self.retention
        if policy is None:
            return
        try:
            self.compact(keep_snapshots=policy.keep_snapshots, archive_dir=policy.archive_dir)
        except (CompactionRefusedError, NoSnapshotError) as exc:
            log.warning("retention after snapshot of %s: not compacted: %s", self.state_dir, exc)
