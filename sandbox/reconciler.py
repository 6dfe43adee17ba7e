"""Make the kernel match the log: the idempotent network-namespace reconciler.

Desired state is the projection's non-terminal ``OwnedNetNS`` entries; actual
state is what the kernel says is in netns_dir right now (``netns.scan``:
nsfs magic and NS_GET_NSTYPE per entry, never the listing alone). After each
effect the reconciler calls ``record(kind, sandbox_id, path, reason)`` and
the store appends the matching event, so the log always says intent first,
effect second, and every crash point in between is recoverable:

    state      what is at the path          action                       record
    ---------  ---------------------------  ---------------------------  --------
    ASSIGNED   live netns                   adopt (no second namespace)  created
    ASSIGNED   nothing / empty placeholder  create_at                    created
    ASSIGNED   file, dir, symlink, mount    error entry, not touched     -
    CREATED    live netns                   nothing                      -
    CREATED    nothing                      nothing (never recreated)    closed
    CREATED    empty placeholder            unlink it (it is ours)       closed
    CREATED    file, dir, symlink           nothing (not ours now)       closed
    CREATED    a mount that is not ours     error entry, not touched     -
    REMOVING   anything safe / nothing      NetNS.remove (idempotent)    removed
    REMOVING   file, dir, symlink, mount    error entry, not touched     -

The containerd bugs each rule prevents:

- netns leaked by a crash between creating it and saving metadata (cri #568):
  the path is logged (ASSIGNED) before any file exists, and an ASSIGNED path
  found live is adopted, not created again, so no namespace is ever made
  that the log cannot name.
- stale state after an external umount (cri #950): liveness is read from
  the kernel on every run; nothing is cached.
- teardown skipped after a reboot (cri #948): a CREATED namespace that is
  gone is recorded as closed (with the leftover placeholder removed) rather
  than silently recreated - an empty namespace would hide the loss of the
  sandbox's network.
- recovery aborted by one bad sandbox (cri #1014, containerd #6095): every
  entry is handled on its own; an exception (even one from ``record``, such
  as a poisoned log) becomes an ``errors`` entry and the loop goes on.
- removing what is not ours: ownership is proven by the log, never by a
  name. /var/run/netns is shared with containerd (also ``cni-...`` names),
  CNI and ``ip netns``; an entry the log does not own is listed in
  ``foreign`` and never touched.

Running it twice in a row does nothing the second time (and never calls
``record``), provided the store applied the first run's records.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs

from eventlog import crashpoints
from sandbox import netns
from sandbox.errors import UnsafePathError
from sandbox.ownership import NetNSState, OwnedNetNS

__all__ = ["MID", "ConfirmRemoval", "ReconcileReport", "Record", "reconcile"]

MID = crashpoints.register(
    "reconcile.mid",
    "sandbox.reconciler.reconcile: after the first action (effect and record) of a run "
    "with two or more actions",
)

#: record(kind, sandbox_id, path, reason); kind is "created", "removed" or "closed".
Record = Callable[[str, str, str, str], None]
#: confirm_removal(owned) -> None if the log confirms the path is ours to remove, else why not.
ConfirmRemoval = Callable[[OwnedNetNS], str | None]


def _unique(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


@attrs.frozen
class ReconcileReport:
    """What one reconcile run did.

    Only effects that were also recorded are listed under created / removed /
    closed; an effect whose ``record`` call failed is in ``errors`` (the next
    run finds it done and records it: adopt, or remove-already-gone).
    """

    #: paths newly created, or adopted (already live at an ASSIGNED path)
    created: tuple[str, ...] = ()
    #: the subset of ``created`` that was already live (crash after effect, before record)
    adopted: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: found gone out of band, recorded as closed, NOT recreated
    closed: tuple[str, ...] = ()
    #: entries in netns_dir the log never assigned: listed, never touched
    foreign: tuple[str, ...] = ()
    #: (path, message); one bad entry never stops the others
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def changed(self) -> bool:
        """Anything created, removed, closed, or any error (foreign entries are not a change)."""
        return bool(self.created or self.removed or self.closed or self.errors)

    def merge(self, other: ReconcileReport) -> ReconcileReport:
        """Combine partial runs: fields concatenated in order, duplicates dropped."""
        return ReconcileReport(
            created=_unique(self.created + other.created),
            adopted=_unique(self.adopted + other.adopted),
            removed=_unique(self.removed + other.removed),
            closed=_unique(self.closed + other.closed),
            foreign=_unique(self.foreign + other.foreign),
            errors=_unique(self.errors + other.errors),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": list(self.created),
            "adopted": list(self.adopted),
            "removed": list(self.removed),
            "closed": list(self.closed),
            "foreign": list(self.foreign),
            "errors": [{"path": p, "message": m} for p, m in self.errors],
            "changed": self.changed,
        }


_Action = Literal["adopt", "create", "close", "close-unlink", "remove", "error"]


@attrs.frozen
class _Plan:
    owned: OwnedNetNS
    resolved: str
    action: _Action
    reason: str


def _decide(owned: OwnedNetNS, resolved: str, entry: netns.Entry) -> _Plan | None:
    """What to do for one owned path given what the kernel shows there (None: nothing)."""
    state, kind = owned.state, entry.kind
    if state is NetNSState.ASSIGNED:
        if kind == "netns":
            return _Plan(owned, resolved, "adopt", "adopted: already live at the assigned path")
        if kind in ("missing", "empty-file"):
            return _Plan(owned, resolved, "create", "created")
        return _Plan(
            owned,
            resolved,
            "error",
            f"assigned path holds {entry.describe()}; expected nothing, an empty placeholder "
            f"file or a live network namespace; not touched",
        )
    if state is NetNSState.CREATED:
        if kind == "netns":
            return None
        if kind == "missing":
            return _Plan(owned, resolved, "close", "path missing")
        if kind == "empty-file":
            return _Plan(owned, resolved, "close-unlink", "unmounted out of band: placeholder left")
        if entry.mounted:
            # Something is mounted on our path and it is not our namespace:
            # it could be stacked on top of it. Say so, touch nothing.
            return _Plan(
                owned,
                resolved,
                "error",
                f"created namespace's path holds {entry.describe()}; expected a live network "
                f"namespace; not touched",
            )
        return _Plan(
            owned,
            resolved,
            "close",
            f"replaced out of band by {entry.describe()}: left untouched",
        )
    if state is NetNSState.REMOVING:
        return _Plan(owned, resolved, "remove", "removal requested")
    return None  # terminal states are not the reconciler's business


def reconcile(
    owned: Iterable[OwnedNetNS],
    netns_dir: str | os.PathLike[str],
    record: Record,
    *,
    scan_foreign: bool = True,
    confirm_removal: ConfirmRemoval | None = None,
) -> ReconcileReport:
    """Bring netns_dir in line with the owned namespaces; see the module docstring.

    ``owned`` are the projection's non-terminal entries (terminal ones are
    ignored). Each effect is followed at once by ``record``; each owned
    entry's failure is caught into ``errors`` and the others proceed.

    With ``scan_foreign=False`` only the owned paths are examined (no
    directory scan, ``foreign`` stays empty): a run scoped to one sandbox
    then costs O(1), not O(entries in netns_dir).

    ``confirm_removal``, when given, is asked before each removal; a removal
    it does not confirm becomes an ``errors`` entry and the path is not
    touched (the store passes one while its ownership entries came from an
    unauthenticated snapshot: a claim only such a snapshot makes never
    removes anything - DESIGN.md).
    """
    shown_dir = os.fspath(netns_dir)
    real_dir = os.path.realpath(shown_dir)
    entries: dict[str, netns.Entry] = {}
    if scan_foreign:
        try:
            entries = {e.name: e for e in netns.scan(shown_dir)}
        except OSError as e:
            return ReconcileReport(errors=((shown_dir, f"cannot scan the netns directory: {e}"),))

    errors: list[tuple[str, str]] = []
    plans, mine = _plan_all(
        owned, shown_dir, real_dir, entries, scan_foreign, confirm_removal, errors
    )
    foreign = tuple(e.path for name, e in entries.items() if name not in mine)

    if any(p.action == "create" for p in plans):
        try:
            _ensure_dir(shown_dir)
        except OSError as e:
            errors.append((shown_dir, f"cannot create the netns directory: {e}"))

    done = _carry_out(plans, shown_dir, record, errors)
    return ReconcileReport(
        created=tuple(done["created"]),
        adopted=tuple(done["adopted"]),
        removed=tuple(done["removed"]),
        closed=tuple(done["closed"]),
        foreign=foreign,
        errors=tuple(errors),
    )


def _plan_all(
    owned: Iterable[OwnedNetNS],
    shown_dir: str,
    real_dir: str,
    entries: dict[str, netns.Entry],
    scan_foreign: bool,
    confirm_removal: ConfirmRemoval | None,
    errors: list[tuple[str, str]],
) -> tuple[list[_Plan], set[str]]:
    """One plan per non-terminal owned path, in ``owned``'s order, and the names
    owned (whatever else is in ``entries`` is foreign). Paths that cannot be
    planned - unsafe, owned twice, not examinable, or planned as "error" - go
    to ``errors`` instead."""
    plans: list[_Plan] = []
    mine: set[str] = set()
    for o in owned:
        if o.state.terminal:
            continue
        try:
            resolved = _check_owned_path(o.path, shown_dir, real_dir)
        except UnsafePathError as e:
            errors.append((o.path, f"{o.state.value} for sandbox {o.sandbox_id}: {e}"))
            continue
        name = os.path.basename(resolved)
        if name in mine:
            errors.append(
                (o.path, f"owned twice (sandbox {o.sandbox_id}); expected one entry per path")
            )
            continue
        mine.add(name)
        try:
            if scan_foreign:
                entry = entries.get(name) or netns.Entry(resolved, "missing")
            else:
                entry = netns.probe(resolved)
            plan = _decide(o, resolved, entry)
            if plan is not None and plan.action == "remove" and confirm_removal is not None:
                why = confirm_removal(o)
                if why is not None:
                    plan = attrs.evolve(plan, action="error", reason=why)
        except Exception as e:
            errors.append((o.path, f"examining for sandbox {o.sandbox_id}: {e}"))
            continue
        if plan is None:
            continue
        if plan.action == "error":
            errors.append((o.path, f"{o.state.value} for sandbox {o.sandbox_id}: {plan.reason}"))
        else:
            plans.append(plan)
    return plans, mine


def _carry_out(
    plans: list[_Plan], shown_dir: str, record: Record, errors: list[tuple[str, str]]
) -> dict[str, list[str]]:
    """Apply the plans in order; the paths done, by report bucket ("created",
    "adopted", "removed", "closed"). A failure goes to ``errors`` and the next
    plan runs; a simulated crash (crash point ``reconcile.mid`` after the
    first of two or more) propagates."""
    done: dict[str, list[str]] = {"created": [], "adopted": [], "removed": [], "closed": []}
    for i, plan in enumerate(plans):
        o = plan.owned
        try:
            kind = _apply(plan, shown_dir, record)
        except crashpoints.CrashPointHit:
            raise  # a simulated crash must stay a crash
        except Exception as e:
            errors.append(
                (o.path, f"{plan.action} for sandbox {o.sandbox_id}: {type(e).__name__}: {e}")
            )
        else:
            if kind == "adopted":
                done["created"].append(o.path)
                done["adopted"].append(o.path)
            elif kind in ("created", "removed", "closed"):
                done[kind].append(o.path)
        if i == 0 and len(plans) >= 2 and crashpoints.ARMED:
            crashpoints.hit(MID)
    return done


def _check_owned_path(path: str, shown_dir: str, real_dir: str) -> str:
    # The common case - the path is spelled <netns_dir>/<name> - needs no
    # realpath per entry; anything else goes through the full check.
    parent, name = os.path.split(path)
    if parent in (shown_dir, real_dir) and name not in ("", ".", ".."):
        return os.path.join(real_dir, name)
    return netns.check_in_dir(path, shown_dir)


def _ensure_dir(d: str) -> None:
    if not os.path.isdir(d):
        os.makedirs(d, mode=0o755, exist_ok=True)
        os.chmod(d, 0o755)


def _apply(plan: _Plan, shown_dir: str, record: Record) -> str:
    """Carry out one plan: effect first, then record. Returns the report bucket."""
    o = plan.owned
    if plan.action == "adopt":
        record("created", o.sandbox_id, o.path, plan.reason)
        return "adopted"
    if plan.action == "create":
        return _apply_create(plan, shown_dir, record)
    if plan.action in ("close", "close-unlink"):
        return _apply_close(plan, shown_dir, record)
    if plan.action == "remove":
        return _apply_remove(plan, shown_dir, record)
    raise AssertionError(f"unknown plan action {plan.action!r}")


def _apply_create(plan: _Plan, shown_dir: str, record: Record) -> str:
    """Create the namespace, then record it; "created", or "adopted" if one
    appeared at the path meanwhile."""
    o = plan.owned
    # create_at re-checks the path with O_EXCL and reuses only an empty
    # placeholder, so a change since the scan cannot make it clobber
    # anything; a namespace that appeared meanwhile is adopted.
    try:
        netns.create_at(plan.resolved, shown_dir)
    except UnsafePathError:
        if netns.probe(plan.resolved).kind != "netns":
            raise
        record("created", o.sandbox_id, o.path, "adopted: already live at the assigned path")
        return "adopted"
    record("created", o.sandbox_id, o.path, plan.reason)
    return "created"


def _apply_close(plan: _Plan, shown_dir: str, record: Record) -> str:
    """Record a created namespace found gone (unlinking a placeholder left of it);
    "closed", or "none" if it is live again."""
    o = plan.owned
    # Look again right before recording: closed is terminal, so be sure.
    entry = netns.probe(plan.resolved)
    if entry.kind == "netns":
        return "none"
    if entry.kind == "empty-file":
        netns.remove_at(plan.resolved, shown_dir)
        reason = "unmounted out of band: placeholder left"
    elif entry.kind == "missing":
        reason = plan.reason if plan.action == "close" else "path missing"
    elif entry.mounted:
        raise UnsafePathError(
            f"{o.path}: now holds {entry.describe()}; expected a live network namespace; "
            f"not touched"
        )
    else:
        reason = f"replaced out of band by {entry.describe()}: left untouched"
    record("closed", o.sandbox_id, o.path, reason)
    return "closed"


def _apply_remove(plan: _Plan, shown_dir: str, record: Record) -> str:
    """Remove the namespace (idempotent), then record it: "removed"."""
    o = plan.owned
    outcome = netns.remove_at(plan.resolved, shown_dir)
    record("removed", o.sandbox_id, o.path, outcome)
    return "removed"
