"""The Store's namespace-side commands: what the reconciler's effects write.

Kernel side effects are never done by a command directly (sandbox/store.py):
a command logs the *intent*, the reconciler makes the kernel match, and each
*effect* is written back here - ``record`` is the reconciler's callback. The
other helpers finish what the reconciler could not: ``undo_add`` when
``add(create_netns=True)``'s namespace could not be made, ``confirm_removal``
before a removal whose ownership rests only on an unauthenticated snapshot,
and ``carry_ownership`` before a compaction removes the records that prove
ownership (sandbox/store_retention.py).

Locks (the store's, in its order reconcile -> cmd -> read): ``record`` and
``undo_add`` take ``_cmd`` (serialising them with every command) while they
check the rules against the command view and reserve their events, then wait
for the store's group commit without it; ``record`` runs inside a reconcile,
i.e. with ``_reconcile_lock`` held. ``confirm_removal`` takes only ``_read``, for
one lookup, and reads the log without any store lock (readers need none).
``carry_ownership`` confirms without a lock, then reserves under ``_cmd`` as
``record`` does.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING, NoReturn

import attrs

import eventlog
from sandbox import events as ev
from sandbox import netnsfail, rules
from sandbox.errors import InvalidTransitionError, NetNSSetupError, NotFoundError
from sandbox.metadata import Metadata
from sandbox.netns import is_live_netns
from sandbox.ownership import OwnedNetNS
from sandbox.reconciler import ReconcileReport
from sandbox.sandbox import Sandbox

if TYPE_CHECKING:
    from sandbox.store import Store

__all__ = [
    "carry_ownership",
    "confirm_removal",
    "finish_add",
    "netns_metadata",
    "record",
    "undo_add",
]

#: The records that may prove a path owned: its assignment, or a carry of that proof.
_PROOFS = (ev.NETNS_ASSIGNED, ev.NetNSOwnershipCarried.TYPE)

# The store's logger: these messages are the store's, wherever the code lives.
log = logging.getLogger("sandbox.store")


def netns_metadata(sandbox: Sandbox, create_netns: bool, netns_dir: str) -> tuple[Metadata, str]:
    """``add``'s metadata with its netns path settled, and the path to create ("" if
    none): the handle's path if one was given (it must agree with the metadata's),
    else with ``create_netns`` a fresh ``<netns_dir>/cni-<uuid4>`` (then no path may
    have been given). ValueError otherwise; nothing is written."""
    md = sandbox.metadata
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
        path = os.path.join(netns_dir, f"cni-{uuid.uuid4()}")
        md = attrs.evolve(md, netns_path=path)
    return md, path


def finish_add(store: Store, sandbox_id: str, path: str) -> Sandbox:
    """``add(create_netns=True)`` after its intent is logged: have the reconciler
    create the namespace (no store lock held here); if it is not live, ``undo_add``.
    Returns the sandbox as ``get`` sees it; NotFoundError if another thread deleted
    it meanwhile."""
    report = store._reconcile(sandbox_id)
    if not is_live_netns(path):
        undo_add(store, sandbox_id, path, report)
    result = store.get(sandbox_id)
    if result is None:  # deleted by another thread meanwhile
        raise NotFoundError(f"sandbox {sandbox_id} was deleted while it was being added")
    return result


def record(store: Store, kind: str, sandbox_id: str, path: str, reason: str) -> None:
    """The reconciler's callback: log the effect it just made, then apply it.

    An effect the rules refuse in the state now (a command changed the path
    while the reconciler worked, e.g. a delete during a create) is not
    logged: the log keeps only steps the store could have taken, and the
    path's current state tells the next reconcile what to do.
    """
    env = store._env.stamp()
    event: ev.NetNSEvent
    if kind == "created":
        event = ev.NetNSCreated(sandbox_id, env, path)
    elif kind == "removed":
        event = ev.NetNSRemoved(sandbox_id, env, path)
    elif kind == "closed":
        event = ev.NetNSClosed(sandbox_id, env, path, reason)
    else:
        raise ValueError(f"unknown reconcile record kind {kind!r}")
    with store._cmd:
        store._check_writable()
        try:
            rules.check_netns(store._pipe.view(), type(event), sandbox_id, path)
        except InvalidTransitionError as why:
            log.info("reconcile: not recording %s: %s", event.TYPE, why)
            return
        ticket = store._pipe.reserve([event])
    store._pipe.wait(ticket)


def confirm_removal(store: Store, owned: OwnedNetNS) -> str | None:
    """None if the log itself says ``owned.path`` is the store's; else why not.

    Only paths whose ownership came from an unauthenticated snapshot are
    checked: the record at the snapshot's recorded assigning seq must be a
    NetNSAssigned of that path for that sandbox, or a NetNSOwnershipCarried
    of it (compaction carried the proof forward before the assignment went).
    One record read per path, not a replay of the log; a confirmed path is
    remembered. A record that is no longer local raises HistoryNotLocalError.
    """
    with store._read:
        seq = store._proj.assigned_seq(owned.path)
    if seq is None:
        return f"{owned.path} is no longer owned; not touched"
    if seq > store._unproven_upto or owned.path in store._confirmed:
        return None  # assigned by a record this store read from the log itself
    rec = eventlog.read_record(store.state_dir, seq, key=store._key)
    event = rec.payload if rec is not None else {}
    if (
        event.get("type") in _PROOFS
        and event.get("path") == owned.path
        and event.get("id") == owned.sandbox_id
    ):
        store._confirmed.add(owned.path)
        return None
    return (
        f"removal of {owned.path} for sandbox {owned.sandbox_id} rests only on an "
        f"unauthenticated snapshot: log record {seq} is not its NetNSAssigned (nor a carry "
        "of it); not touched"
    )


def carry_ownership(store: Store, before: int) -> list[str]:
    """Before the log is compacted at ``before``: carry the proof of every pending
    path assigned before it into one durable batch of NetNSOwnershipCarried records
    (sandbox/retention.py says why). Returns the carried paths.

    A claim that rests on an unauthenticated snapshot is proven first
    (``confirm_removal``) from its still-local record; one that cannot be
    (its record is already gone, or is not its proof) is not carried, with a
    warning: the reconciler refuses to act on it either way. A path whose
    state changed meanwhile is left to the rules (not carried if refused).
    """
    with store._read:
        proj = store._proj
        old = [(o, proj.assigned_seq(o.path)) for o in proj.pending()]
    proven: list[tuple[OwnedNetNS, int]] = []
    for owned, seq in old:
        if seq is None or seq >= before:
            continue
        try:
            why = confirm_removal(store, owned)
        except eventlog.HistoryNotLocalError as exc:
            why = str(exc)
        if why is not None:
            log.warning("compaction: ownership of %s not carried: %s", owned.path, why)
            continue
        proven.append((owned, seq))
    if not proven:
        return []
    with store._cmd:
        store._check_writable()
        view = store._pipe.view()
        env = store._env.stamp()
        batch: list[ev.Event] = []
        for owned, seq in proven:
            try:
                rules.check_carry(view, owned.sandbox_id, owned.path, seq)
            except InvalidTransitionError as why:
                log.info("compaction: not carrying: %s", why)
                continue
            batch.append(ev.NetNSOwnershipCarried(owned.sandbox_id, env, owned.path, seq))
        ticket = store._pipe.reserve(batch) if batch else None
    if ticket is not None:
        store._pipe.wait(ticket)
    return [e.path for e in batch if isinstance(e, ev.NetNSOwnershipCarried)]


def undo_add(store: Store, sandbox_id: str, path: str, report: ReconcileReport) -> NoReturn:
    """``add``'s namespace could not be made: log why and delete the sandbox (one
    batch, the rule book permitting), raise. The failure ends the path's ownership:
    nothing of the store's is left there (sandbox/netns.py unlinks its placeholder)."""
    why = netnsfail.reason(report.errors)
    detail = "; ".join(m for _p, m in report.errors) or "not live after reconcile"
    ticket = None
    with store._cmd:
        store._check_writable()
        batch: list[ev.Event] = []
        env = store._env.stamp()
        view = store._pipe.view()
        try:
            rules.check_netns(view, ev.NetNSCreateFailed, sandbox_id, path)
            batch.append(ev.NetNSCreateFailed(sandbox_id, env, path, detail))
        except InvalidTransitionError:
            pass  # changed meanwhile (created by a racing reconcile, or deleted)
        if sandbox_id in view:
            batch.append(ev.SandboxDeleted(sandbox_id, env))
        if batch:
            ticket = store._pipe.reserve(batch)
    if ticket is not None:
        store._pipe.wait(ticket)
    raise NetNSSetupError(f"sandbox {sandbox_id} not added: {why}")
