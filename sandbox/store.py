"""The Store: commands -> events -> log -> projection, and the reconciler wiring.

Every command follows one path: validate, write the event(s) to the log
(durable before the command returns, with ``durability="always"``), then apply
them to the projection readers see. Nothing was not first written, so a reopen
(newest valid snapshot + the log's tail) rebuilds exactly the state callers saw.

Kernel side effects (network namespaces) are never done by a command
directly: the command logs the *intent* (NetNSAssigned, SandboxDeleted,
NetNSRemoveRequested) and then runs the reconciler, which makes the kernel
match the log and records each *effect* (NetNSCreated, NetNSRemoved,
NetNSClosed). A crash anywhere in between is repaired by the reconcile that
``open`` runs (containerd/cri #568, #948).

Concurrency (any method from any thread):

* ``_cmd`` (a lock) serialises validation against the command view (the
  durable projection plus the commands in flight) and reservation, in seq
  order. It is not held across the append: commands then share store-level
  group commit (sandbox/store_commit.py: one write + one fsync per group,
  applied to the durable projection in seq order) and return once durable.
  Snapshot, close and ``head`` drain the queue while holding ``_cmd``.
* ``_read`` (a short lock) guards the durable projection: held by the group
  leader while it applies and by readers while they look. Readers never take
  ``_cmd`` (a ``get`` never waits behind an fsync) and see the state before or
  after an event, never half of one, never one that is not durable.
* ``_reconcile_lock`` serialises reconcile runs (two runs creating the same
  path would collide). ``_retention_lock`` serialises compactions; one holds
  the log's own compaction lock while it writes through ``_cmd``, so close
  waits for it first. Lock order: retention -> reconcile -> cmd -> read;
  commands release ``_cmd`` before they reconcile.

``update_status``'s ``fn`` runs while ``_cmd`` is held (so the status it sees
is the one the change is checked against); calling a store *command* from it
raises ``StoreError`` rather than deadlocking. Reads from it are fine.

Opening (``open``/``from_log``'s bodies) is in sandbox/store_open.py, the namespace
side of commands and the reconciler's records in sandbox/store_netns.py, retention
(``compact``) in sandbox/store_retention.py; all keep these locks and this order.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs

import eventlog
from eventlog import Durability, EventLogStats, Timings, crashpoints
from eventlog.closing import Closing
from sandbox import events as ev
from sandbox import reconciler, rules, snapshot, store_netns, store_open
from sandbox.errors import NetNSSetupError, NotFoundError, StoreClosedError, StoreError
from sandbox.logport import LogPort
from sandbox.netns import NetNS
from sandbox.observe import StoreObserver
from sandbox.ownership import NetNSState
from sandbox.projection import Projection
from sandbox.reads import Reads, check_id_type
from sandbox.reconciler import ReconcileReport
from sandbox.retention import CompactReport, Retention
from sandbox.sandbox import Sandbox
from sandbox.status import Status
from sandbox.store_commit import Pipeline
from sandbox.store_retention import Retaining

if TYPE_CHECKING:
    from sandbox.watch import Watcher

__all__ = ["AFTER_INTENT", "NetNSSetupError", "Store", "StoreClosedError"]

log = logging.getLogger(__name__)

AFTER_INTENT = crashpoints.register(
    "store.after_intent",
    "sandbox.store.Store.add(create_netns=True): SandboxAdded + NetNSAssigned are durable, "
    "the reconciler has not created the namespace yet",
)

StrPath = str | os.PathLike[str]


class Store(Reads, Retaining, Closing):
    """containerd's sandbox store, event-sourced. Use ``Store.open``."""

    def __init__(
        self,
        log_: LogPort,
        projection: Projection,
        *,
        state_dir: str,
        netns_dir: str,
        envelope: ev.Envelope,
        key: bytes | None,
        load_result: snapshot.LoadResult | None = None,
    ) -> None:
        self._log = log_
        self._proj = projection
        self.state_dir = state_dir
        self.netns_dir = netns_dir
        self._env = envelope
        self._key = key
        self._cmd = threading.Lock()
        self._read = threading.Lock()
        self._reconcile_lock = threading.Lock()
        self._retention_lock = threading.Lock()  # sandbox/store_retention.py
        self.retention: Retention | None = None
        self.last_compaction: CompactReport | None = None
        # The write side: the command view and store-level group commit.
        self._pipe = Pipeline(log_, projection, self._read)
        self._local = threading.local()
        self._closed = False
        self._broken: BaseException | None = None
        self._watcher: Watcher | None = None
        #: How this store was loaded (snapshot used, snapshots skipped, events replayed).
        self.load_result = load_result
        # Ownership entries up to this seq came from a snapshot without a valid MAC
        # (an unkeyed log's is a cache, not proof): each removal of such a path is
        # first confirmed against its NetNSAssigned record (``_confirm_removal``).
        unproven = load_result is not None and not load_result.authenticated
        self._unproven_upto = load_result.snapshot_seq if unproven and load_result else 0
        self._confirmed: set[str] = set()
        #: The report of the last full reconcile (``open``, ``reconcile()``, the watcher).
        self.last_reconcile_report = ReconcileReport()
        #: Told of replay, snapshots and reconciles (``open(metrics=...)``); None: nobody.
        self._metrics: StoreObserver | None = None
        #: The log's raw timings, kept only for an observer (``eventlog.observe``).
        self.log_timings: Timings | None = None

    # -- opening and closing ----------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: StrPath,
        *,
        netns_dir: StrPath | None = None,
        durability: Durability = "always",
        actor: str | None = None,
        key: bytes | None = None,
        segment_bytes: int | None = None,
        metrics: object | None = None,
        retention: Retention | None = None,
    ) -> Store:
        """Open (or create) the store in ``state_dir``: take the writer lock, replay
        (newest valid snapshot + tail), reconcile namespaces, return.

        The event log's segments, its ``LOCK`` and the ``*.snap`` files all live
        in ``state_dir`` itself. Reconcile errors never abort the open: they are
        logged and kept in ``last_reconcile_report``. ``segment_bytes`` is passed
        to ``EventLog.open`` (None: the event log's default). ``metrics``: a
        ``sandbox.observe.StoreObserver``, or a Prometheus ``CollectorRegistry``
        to register a ``sandbox.metrics.StoreMetrics`` in (docs/METRICS.md);
        None observes nothing and loads no metrics library.

        ``netns_dir``: None means the one the log recorded (sandbox/netnsdir.py),
        else ``/var/run/netns``; a new log records it. Naming a dir other than the
        recorded one raises ``NetNSDirMismatchError`` (a StoreError) naming it.
        ``retention`` (``sandbox.retention.Retention``): each ``snapshot()`` then compacts.
        """
        store = store_open.open_store(
            cls,
            state_dir,
            netns_dir=netns_dir,
            durability=durability,
            actor=actor,
            key=key,
            segment_bytes=segment_bytes,
            metrics=metrics,
        )
        store.retention = retention
        return store

    @classmethod
    def from_log(
        cls,
        log_: LogPort,
        history: Iterable[tuple[int, dict[str, Any]]] = (),
        *,
        netns_dir: StrPath | None = None,
        actor: str | None = None,
        state_dir: str = "<memory>",
    ) -> Store:
        """A store over any ``LogPort`` (e.g. ``logport.MemoryLog``): for unit tests of
        the command rules without a disk. ``history``: the log's ``(seq, payload)``
        records so far, folded in order (they must reach ``log_.last_seq``). No
        snapshot, no reconcile on open; ``snapshot()`` needs a real state dir.
        """
        return store_open.from_log(
            cls, log_, history, netns_dir=netns_dir, actor=actor, state_dir=state_dir
        )

    def close(self) -> None:
        """Stop watching, close the log, release the writer lock. Idempotent."""
        self._no_command_in_fn("close")
        self.stop_watching()
        with self._retention_lock, self._reconcile_lock, self._cmd:
            if self._closed:
                return
            self._pipe.seq.drain()  # commands reserved before close are still written
            self._closed = True
            self._log.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"seq {self.last_seq}"
        return f"<Store {self.state_dir} ({state}, {len(self)} sandboxes)>"

    # -- the write path ---------------------------------------------------------

    def _no_command_in_fn(self, what: str) -> None:
        if getattr(self._local, "in_fn", False):
            raise StoreError(
                f"{what}() called from inside an update_status fn; expected fn to only "
                "compute the new Status"
            )

    def _check_writable(self) -> None:
        # Called with _cmd held.
        if self._closed:
            raise StoreClosedError(f"store {self.state_dir} is closed; open it again")
        if self._broken is None:
            self._broken = self._pipe.broken
        if self._broken is not None:
            raise StoreError(
                f"store {self.state_dir} is unusable after an internal error "
                f"({self._broken!r}); close and reopen it"
            )

    def _resolve_cmd(self, id_or_prefix: object) -> str:
        """``_resolve`` against the command view (``_cmd`` held)."""
        return self._pipe.view().resolve(check_id_type(id_or_prefix))

    def add(self, sandbox: Sandbox, *, create_netns: bool = False) -> Sandbox:
        """Add a sandbox. ``AlreadyExistsError`` for a duplicate id or name,
        ``InvalidIDError`` for a bad one; nothing is written then.

        With ``create_netns`` the store picks ``<netns_dir>/cni-<uuid4>``, logs
        that path (SandboxAdded + NetNSAssigned, one atomic batch) *before* any
        file exists, then has the reconciler create the namespace; the returned
        Sandbox's netns is live. All or nothing: if it could not be made, the failure
        (NetNSCreateFailed) and a SandboxDeleted are logged and ``NetNSSetupError``
        raised - the sandbox is not in the store, the audit keeps the attempt.
        """
        self._no_command_in_fn("add")
        if not isinstance(sandbox, Sandbox):
            raise TypeError(f"add() expects a Sandbox, got {type(sandbox).__name__}")
        md, path = store_netns.netns_metadata(sandbox, create_netns, self.netns_dir)
        with self._cmd:
            self._check_writable()
            rules.check_add(self._pipe.view(), md.id, md.name)
            env = self._env.stamp()
            added = ev.SandboxAdded(md.id, env, ev.AddedMetadata.from_metadata(md), sandbox.status)
            batch: list[ev.Event] = [added]
            if create_netns:
                # Checked as if the add were already applied: the two go in one batch.
                batch.append(ev.NetNSAssigned(md.id, env, path))
            ticket = self._pipe.reserve(batch, md)
        self._pipe.wait(ticket)
        if create_netns:
            if crashpoints.ARMED:
                crashpoints.hit(AFTER_INTENT)
            return store_netns.finish_add(self, md.id, path)
        with self._read:
            present = md.id in self._proj
        if not present:  # deleted by another thread meanwhile
            raise NotFoundError(f"sandbox {md.id} was deleted while it was being added")
        # Built once, from what add already holds, rather than rebuilt from the event
        # (what ``get`` would return: this metadata, an equal status, and for a sandbox
        # without an owned namespace the caller's path as the handle, if any).
        netns = NetNS(md.netns_path, self.netns_dir) if md.netns_path else None
        if md is sandbox.metadata and netns == sandbox.netns:
            return sandbox
        return Sandbox(md, sandbox.status, netns)

    def delete(self, id_or_prefix: str) -> None:
        """Delete a sandbox and (through the reconciler) its owned namespace.

        A missing id is a no-op and writes nothing (containerd's Delete); an
        ambiguous prefix or an invalid id raise.
        """
        self._no_command_in_fn("delete")
        with self._cmd:
            self._check_writable()
            try:
                sandbox_id = self._resolve_cmd(id_or_prefix)
            except NotFoundError:
                return
            rules.check_delete(self._pipe.view(), sandbox_id)
            ticket = self._pipe.reserve([ev.SandboxDeleted(sandbox_id, self._env.stamp())])
        self._pipe.wait(ticket)
        with self._read:
            pending = bool(self._proj.pending(sandbox_id))
        if pending:
            try:
                report = self._reconcile(sandbox_id)
            except StoreClosedError:
                return  # closed meanwhile: the delete is logged, the next open removes it
            for path, message in report.errors:
                log.warning(
                    "delete %s: namespace %s not removed yet: %s", sandbox_id, path, message
                )

    def update_status(self, id_or_prefix: str, fn: Callable[[Status], Status]) -> Status:
        """Replace a sandbox's status with ``fn(old)`` and return the new one.

        ``fn`` raising: the exception reaches the caller unchanged and nothing is
        written. ``fn`` returning something that is not a Status: TypeError. An
        illegal transition: InvalidTransitionError, nothing written. A result
        equal to the old status writes nothing either.
        """
        self._no_command_in_fn("update_status")
        with self._cmd:
            self._check_writable()
            sandbox_id = self._resolve_cmd(id_or_prefix)
            old = self._pipe.view().status_of(sandbox_id)
            self._local.in_fn = True
            try:
                new = fn(old)
            finally:
                self._local.in_fn = False
            if not isinstance(new, Status):
                raise TypeError(
                    f"update_status fn for sandbox {sandbox_id} returned "
                    f"{type(new).__name__}; expected a Status"
                )
            rules.check_status(self._pipe.view(), sandbox_id, new.state)
            if new == old:
                return old
            ticket = self._pipe.reserve([ev.StatusUpdated(sandbox_id, self._env.stamp(), new)])
        self._pipe.wait(ticket)
        return new

    def remove_netns(self, id_or_prefix: str) -> None:
        """Remove the sandbox's own network namespace now; idempotent.

        A namespace the caller gave (not created by the store), one already
        removed, or one found closed is left alone. ``NotFoundError`` if there
        is no such sandbox; ``StoreError`` if the removal failed (it stays
        requested: a later reconcile retries).
        """
        self._no_command_in_fn("remove_netns")
        with self._cmd:
            self._check_writable()
            sandbox_id = self._resolve_cmd(id_or_prefix)
            view = self._pipe.view()
            path = view.owned_path_of(sandbox_id)
            state = view.owned_state(path) if path is not None else None
            if path is None or state is None or state.terminal:
                return
            ticket = None
            if state is not NetNSState.REMOVING:  # else already requested: just reconcile
                rules.check_netns(view, ev.NetNSRemoveRequested, sandbox_id, path)
                event = ev.NetNSRemoveRequested(sandbox_id, self._env.stamp(), path)
                ticket = self._pipe.reserve([event])
        if ticket is not None:
            self._pipe.wait(ticket)
        report = self._reconcile(sandbox_id)
        with self._read:
            still = self._proj.owned_state(path)
        if still is not None and not still.terminal:
            why = "; ".join(m for _p, m in report.errors) or "still owned after reconcile"
            raise StoreError(
                f"sandbox {sandbox_id}: network namespace {path} was not removed: {why}"
            )

    # -- reconcile --------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Make netns_dir match the log (create / remove / record closed); idempotent.

        Kept in ``last_reconcile_report``. Only namespaces this log assigned are
        ever touched; anything else in netns_dir is reported as foreign.
        """
        self._no_command_in_fn("reconcile")
        report = self._reconcile(None)
        self.last_reconcile_report = report
        for path, message in report.errors:
            log.warning("reconcile %s: %s: %s", self.netns_dir, path, message)
        return report

    def _reconcile(self, sandbox_id: str | None) -> ReconcileReport:
        with self._reconcile_lock:
            if self._closed:
                raise StoreClosedError(f"store {self.state_dir} is closed; open it again")
            with self._read:
                pending = self._proj.pending(sandbox_id)
            if sandbox_id is not None and not pending:
                return ReconcileReport()
            record = partial(store_netns.record, self)
            confirm = partial(store_netns.confirm_removal, self) if self._unproven_upto else None
            began = time.perf_counter()
            report = reconciler.reconcile(pending, self.netns_dir, record, confirm_removal=confirm)
            if self._metrics is not None:
                self._metrics.on_reconcile(report, time.perf_counter() - began)
        if sandbox_id is not None:
            # A run scoped to one sandbox sees the others' paths as "foreign".
            report = attrs.evolve(report, foreign=())
        return report

    # -- snapshots --------------------------------------------------------------

    def snapshot(self) -> str:
        """Write the projection at ``last_seq`` to ``<state_dir>/<seq>.snap``; its path.

        The projection is encoded under the command lock (so it matches the
        log head it records); the file is written and fsynced after, without
        holding up commands.
        """
        self._no_command_in_fn("snapshot")
        began = time.perf_counter()
        with self._cmd:
            self._check_writable()
            # Nothing reserved is left in flight (drained, _cmd held): the log ends at
            # last_seq, so the snapshot can record where (load reads the tail from there).
            self._pipe.seq.drain()
            self._check_writable()
            if self._log.last_seq != self._proj.last_seq:
                raise StoreError(f"store {self.state_dir}: a failed append; reopen it")
            head = self._log.head
            seq = self._proj.last_seq
            position = eventlog.end_position(self.state_dir, seq, head)
            with self._read:
                data = snapshot.encode(self._proj, head, position, key=self._key)
        keep = self._snapshots_to_keep(snapshot.KEEP)
        path = snapshot.write_snapshot(self.state_dir, seq, data, keep=keep)
        if self._metrics is not None:
            self._metrics.on_snapshot(time.perf_counter() - began)
        self._retain_after_snapshot()  # with open(retention=...): compact
        return path

    # -- watching ---------------------------------------------------------------

    def watch(self, resync_interval: float = 10.0, *, debounce: float = 0.05) -> None:
        """Reconcile on changes in netns_dir (watchdog, debounced) and every
        ``resync_interval`` seconds (an external umount sends no inotify event)."""
        from sandbox.watch import Watcher  # not a circle: watchdog costs ~30 ms to import

        with self._cmd:
            self._check_writable()
            if self._watcher is not None:
                return
            self._watcher = Watcher(self, resync_interval=resync_interval, debounce=debounce)
        self._watcher.start()

    def stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    # -- reads ------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._proj.last_seq

    @property
    def synced_offset(self) -> tuple[str, int]:
        """The event log's ``(current segment path, bytes of it known durable)``.

        Bytes past it may vanish in a power loss (earlier segments were synced
        at rotation; with durability ``none`` nothing ever is). Read-only.
        """
        return self._log.synced_offset

    @property
    def head(self) -> bytes:
        """The log's chain digest after ``last_seq``."""
        with self._cmd:
            self._pipe.seq.drain()
            head: bytes = self._log.head
            return head

    def _read_projection(self) -> Projection:
        return self._proj

    def _read_guard(self) -> threading.Lock:
        """Reads take only the short read lock: never one that waits behind an fsync."""
        return self._read

    def projection(self) -> Projection:
        """A copy of the projection as it is now (for tests, tooling and comparisons)."""
        with self._read:
            return Projection.from_snapshot(self._proj.to_snapshot(), self.netns_dir)

    def log_stats(self) -> EventLogStats | None:
        """The log's counters since open (records, bytes, syncs, rotations); None if
        the store's log keeps none (an in-memory log)."""
        stats = getattr(self._log, "stats", None)
        return stats if isinstance(stats, EventLogStats) else None
