"""The Store: commands -> events -> log -> projection, and the reconciler wiring.

Every command follows one path: validate against the projection, write the
event(s) to the log (durable before the command returns, with the default
``durability="always"``), then apply them to the projection. Nothing is
mutated that was not first written, so reopening - replay of the newest
valid snapshot plus the log's tail - rebuilds exactly the state callers saw.

Kernel side effects (network namespaces) are never done by a command
directly: the command logs the *intent* (NetNSAssigned, SandboxDeleted,
NetNSRemoveRequested) and then runs the reconciler, which makes the kernel
match the log and records each *effect* (NetNSCreated, NetNSRemoved,
NetNSClosed). A crash anywhere in between is repaired by the reconcile that
``open`` runs (containerd/cri #568, #948).

Concurrency (any method from any thread):

* ``_cmd`` (a lock) serialises commands: validate + append + apply. It is
  held across the append, i.e. across the fsync.
* ``_read`` (a short lock) guards the projection: held by ``apply`` while it
  changes the projection (microseconds) and by readers while they look.
  Readers never take ``_cmd``, so a ``get`` never waits behind an fsync, and
  it sees the state before or after an event, never half of one.
* ``_reconcile_lock`` serialises reconcile runs (two runs creating the same
  path would collide). Lock order: reconcile -> cmd -> read; commands
  release ``_cmd`` before they reconcile.

``update_status``'s ``fn`` runs while ``_cmd`` is held (so the status it sees
is the one the change is checked against); calling a store *command* from it
raises ``StoreError`` rather than deadlocking. Reads from it are fine.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

import eventlog
from eventlog import Durability, EventLog, crashpoints
from eventlog.closing import Closing
from eventlog.format import pack_payload, unpack_payload
from sandbox import events as ev
from sandbox import reconciler, snapshot
from sandbox.errors import (
    AlreadyExistsError,
    NetNSSetupError,
    NotFoundError,
    StoreClosedError,
    StoreError,
)
from sandbox.ids import validate_id, validate_name
from sandbox.netns import DEFAULT_NETNS_DIR, NetNS, is_live_netns
from sandbox.ownership import NetNSState
from sandbox.projection import Projection
from sandbox.reads import Reads
from sandbox.reconciler import ReconcileReport
from sandbox.sandbox import Sandbox
from sandbox.status import Status, check_transition

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


class Store(Reads, Closing):
    """containerd's sandbox store, event-sourced. Use ``Store.open``."""

    def __init__(
        self,
        log_: EventLog,
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
        self._local = threading.local()
        self._closed = False
        self._broken: BaseException | None = None
        self._watcher: Watcher | None = None
        #: How this store was loaded (snapshot used, snapshots skipped, events replayed).
        self.load_result = load_result
        #: The report of the last full reconcile (``open``, ``reconcile()``, the watcher).
        self.last_reconcile_report = ReconcileReport()

    # -- opening and closing ----------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: StrPath,
        *,
        netns_dir: StrPath = DEFAULT_NETNS_DIR,
        durability: Durability = "always",
        actor: str | None = None,
        key: bytes | None = None,
        segment_bytes: int | None = None,
    ) -> Store:
        """Open (or create) the store in ``state_dir``: take the writer lock, replay
        (newest valid snapshot + tail), reconcile namespaces, return.

        The event log's segments, its ``LOCK`` and the ``*.snap`` files all live
        in ``state_dir`` itself. Reconcile errors never abort the open: they are
        logged and kept in ``last_reconcile_report``. ``segment_bytes`` is passed
        to ``EventLog.open`` (None: the event log's default).
        """
        sdir = os.path.abspath(os.fspath(state_dir))
        ndir = os.path.abspath(os.fspath(netns_dir))
        envelope = ev.Envelope(actor)
        if segment_bytes is None:
            log_ = EventLog.open(sdir, durability=durability, key=key)
        else:
            log_ = EventLog.open(sdir, durability=durability, key=key, segment_bytes=segment_bytes)
        try:
            result = snapshot.load(sdir, to_seq=log_.last_seq, netns_dir=ndir, key=key)
            if result.projection.last_seq != log_.last_seq:
                raise StoreError(
                    f"{sdir}: replay stopped at seq {result.projection.last_seq}, the log's "
                    f"last seq is {log_.last_seq}"
                )
            store = cls(
                log_,
                result.projection,
                state_dir=sdir,
                netns_dir=ndir,
                envelope=envelope,
                key=key,
                load_result=result,
            )
        except BaseException:
            log_.close()
            raise
        try:
            store.reconcile()
        except crashpoints.CrashPointHit:
            store.close()
            raise
        except Exception as exc:  # never abort recovery (cri #1014, containerd #6095)
            log.error("reconcile on open of %s failed: %s", sdir, exc)
            store.last_reconcile_report = ReconcileReport(
                errors=((ndir, f"reconcile failed: {type(exc).__name__}: {exc}"),)
            )
        return store

    def close(self) -> None:
        """Stop watching, close the log, release the writer lock. Idempotent."""
        self._no_command_in_fn("close")
        self.stop_watching()
        with self._reconcile_lock, self._cmd:
            if self._closed:
                return
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
        if self._broken is not None:
            raise StoreError(
                f"store {self.state_dir} is unusable after an internal error "
                f"({self._broken!r}); close and reopen it"
            )

    def _commit(self, events: list[dict[str, Any]]) -> list[int]:
        """Append then apply. Called with ``_cmd`` held and the store writable."""
        log_ = self._log
        # Apply the events as a replay will read them back, not the Python
        # objects they were built from: a str subclass (a str Enum as a name),
        # a tuple for a list, would otherwise make the live projection differ
        # from the replayed one - or refuse an event the log already holds.
        as_read = [unpack_payload(pack_payload(event)) for event in events]
        seqs = [log_.append(events[0])] if len(events) == 1 else log_.append_batch(events)
        try:
            with self._read:
                for seq, event in zip(seqs, as_read, strict=True):
                    self._proj.apply(seq, event)
        except BaseException as exc:
            # The log has it, the projection does not: only a reopen can resync.
            self._broken = exc
            raise
        return seqs

    def add(self, sandbox: Sandbox, *, create_netns: bool = False) -> Sandbox:
        """Add a sandbox. ``AlreadyExistsError`` for a duplicate id or name,
        ``InvalidIDError`` for a bad one; nothing is written then.

        With ``create_netns`` the store picks ``<netns_dir>/cni-<uuid4>``, logs
        that path (SandboxAdded + NetNSAssigned, one atomic batch) *before* any
        file exists, then has the reconciler create the namespace; the returned
        Sandbox's netns is live (``NetNSSetupError`` if it could not be made).
        """
        self._no_command_in_fn("add")
        if not isinstance(sandbox, Sandbox):
            raise TypeError(f"add() expects a Sandbox, got {type(sandbox).__name__}")
        md = sandbox.metadata
        validate_id(md.id)
        validate_name(md.name)
        if sandbox.netns is not None:
            given = sandbox.netns.get_path()
            if md.netns_path and md.netns_path != given:
                raise ValueError(
                    f"sandbox {md.id}: metadata.netns_path {md.netns_path!r} and netns "
                    f"{given!r} differ; expected one path"
                )
            md = attrs.evolve(md, netns_path=given)
        path = ""
        if create_netns:
            if md.netns_path:
                raise ValueError(
                    f"sandbox {md.id}: create_netns=True but a netns path "
                    f"({md.netns_path!r}) was given; expected one or the other"
                )
            path = os.path.join(self.netns_dir, f"cni-{uuid.uuid4()}")
            md = attrs.evolve(md, netns_path=path)
        with self._cmd:
            self._check_writable()
            with self._read:
                if md.id in self._proj:
                    raise AlreadyExistsError(f"sandbox {md.id} already exists")
                holder = self._proj.name_holder(md.name)
            if holder is not None:
                raise AlreadyExistsError(
                    f"name {md.name!r} is already reserved for sandbox {holder}; cannot add {md.id}"
                )
            env = self._env()
            batch = [ev.sandbox_added(env, md, sandbox.status)]
            if create_netns:
                batch.append(ev.netns_assigned(env, md.id, path))
            self._commit(batch)
            with self._read:
                self._proj.prime(md.id, md)
        if create_netns:
            if crashpoints.ARMED:
                crashpoints.hit(AFTER_INTENT)
            report = self._reconcile(md.id)
            if not is_live_netns(path):
                why = "; ".join(m for _p, m in report.errors) or "not live after reconcile"
                raise NetNSSetupError(
                    f"sandbox {md.id} was added but its network namespace {path} could not "
                    f"be created: {why}; call reconcile() to retry or delete() the sandbox"
                )
            result = self.get(md.id)
            if result is None:  # deleted by another thread meanwhile
                raise NotFoundError(f"sandbox {md.id} was deleted while it was being added")
            return result
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
                sandbox_id = self._resolve(id_or_prefix)
            except NotFoundError:
                return
            self._commit([ev.sandbox_deleted(self._env(), sandbox_id)])
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
            sandbox_id = self._resolve(id_or_prefix)
            with self._read:
                old = self._proj.status_of(sandbox_id)
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
            check_transition(old.state, new.state, sandbox_id)
            if new == old:
                return old
            self._commit([ev.status_updated(self._env(), sandbox_id, new)])
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
            sandbox_id = self._resolve(id_or_prefix)
            with self._read:
                path = self._proj.owned_path_of(sandbox_id)
                state = self._proj.owned_state(path) if path is not None else None
            if path is None or state is None or state.terminal:
                return
            if state is not NetNSState.REMOVING:
                self._commit([ev.netns_remove_requested(self._env(), sandbox_id, path)])
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
            report = reconciler.reconcile(pending, self.netns_dir, self._record)
        if sandbox_id is not None:
            # A run scoped to one sandbox sees the others' paths as "foreign".
            report = attrs.evolve(report, foreign=())
        return report

    def _record(self, kind: str, sandbox_id: str, path: str, reason: str) -> None:
        """The reconciler's callback: log the effect it just made, then apply it."""
        env = self._env()
        if kind == "created":
            event = ev.netns_created(env, sandbox_id, path)
        elif kind == "removed":
            event = ev.netns_removed(env, sandbox_id, path)
        elif kind == "closed":
            event = ev.netns_closed(env, sandbox_id, path, reason)
        else:
            raise ValueError(f"unknown reconcile record kind {kind!r}")
        with self._cmd:
            self._check_writable()
            self._commit([event])

    # -- snapshots --------------------------------------------------------------

    def snapshot(self) -> str:
        """Write the projection at ``last_seq`` to ``<state_dir>/<seq>.snap``; its path.

        The projection is encoded under the command lock (so it matches the
        log head it records); the file is written and fsynced after, without
        holding up commands.
        """
        self._no_command_in_fn("snapshot")
        with self._cmd:
            self._check_writable()
            # No append is in flight (commands hold _cmd): the log ends at last_seq,
            # so the snapshot can record where (load then reads the tail from there).
            head = self._log.head
            seq = self._proj.last_seq
            position = eventlog.end_position(self.state_dir, seq, head)
            with self._read:
                data = snapshot.encode(self._proj, head, position)
        return snapshot.write_snapshot(self.state_dir, seq, data)

    # -- watching ---------------------------------------------------------------

    def watch(self, resync_interval: float = 10.0, *, debounce: float = 0.05) -> None:
        """Reconcile on changes in netns_dir (watchdog, debounced) and every
        ``resync_interval`` seconds (an external umount sends no inotify event)."""
        from sandbox.watch import Watcher

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
