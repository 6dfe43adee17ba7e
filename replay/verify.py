"""``verify``: is this log a history the store could really have written?

``eventlog.verify`` proves the *bytes* are intact: checksums, the chain
digest (a MAC with a key), gapless seqs, and with ``head`` that today's log
still extends a chain head recorded earlier (which catches a consistent
rewrite of history, not only an edit). That is not enough for an auditor: a
writer with a bug, or someone who re-chains a forged log, can produce intact
bytes that say impossible things. So this module also folds every event
with the state machine the command side enforces and reports any event the
store would have refused:

* an event that does not decode, has an unknown type or a newer schema
  version, or whose payload is malformed;
* an add of an invalid id or name, of a duplicate id, or of a name held by
  another sandbox (containerd's registrar);
* a status change the state machine forbids (NOTREADY -> READY, ...), and a
  status update or delete of an id that is not there (never added, or
  deleted);
* a network-namespace event out of the order intent -> effect (a
  "created" for a path never assigned, a "removed" without a removal
  request, ...).

And it checks every snapshot file against the log: the projection it holds
must equal the replay at its seq, and the chain digest it recorded must be
the log's digest there - otherwise opening the store would resurrect a
different history.

The report lists the problems in log order; ``first`` is the one to act on.
Each problem names where it is: segment file, byte offset, seq (snapshot
problems name the snapshot file).
"""

from __future__ import annotations

import os
from typing import Any

import attrs

import eventlog
from eventlog.format import Record
from replay.progress import LogProgress, Progress
from replay.view import check_state_dir, has_log
from sandbox import events as ev
from sandbox import snapshot as snap
from sandbox.errors import StoreError
from sandbox.ids import validate_id, validate_name
from sandbox.metadata import Metadata
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.ownership import NetNSState
from sandbox.projection import Projection
from sandbox.status import Status, check_transition

__all__ = ["Problem", "SnapshotCheck", "VerifyResult", "check_event", "verify"]

#: Enough to show a pattern; a log with more problems than this is simply bad.
MAX_PROBLEMS = 100


@attrs.frozen
class Problem:
    """One thing wrong, and where.

    ``kind``: ``log`` (bytes, chain, seqs - from eventlog.verify), ``head``
    (the recorded head is not in the log), ``event`` (cannot be decoded),
    ``transition`` (the store would have refused it), ``snapshot``.
    """

    kind: str
    reason: str
    seq: int | None = None
    segment: str | None = None
    offset: int | None = None
    sandbox_id: str | None = None

    def __str__(self) -> str:
        where = []
        if self.segment is not None:
            where.append(os.path.basename(self.segment))
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        loc = f" at {', '.join(where)}" if where else ""
        return f"{self.kind} problem{loc}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class SnapshotCheck:
    """One snapshot file and whether it matches the log."""

    path: str
    seq: int
    ok: bool
    reason: str = ""


@attrs.frozen
class VerifyResult:
    """What ``verify`` found. ``ok`` is True only for a clean log."""

    state_dir: str
    ok: bool
    problems: tuple[Problem, ...]
    records: int
    events_checked: int
    last_seq: int
    head: str
    chain_checked: bool
    head_checked: bool
    snapshots: tuple[SnapshotCheck, ...]
    torn_tail: int = 0
    notes: tuple[str, ...] = ()

    @property
    def first(self) -> Problem | None:
        """The earliest problem in the log (the one to look at first)."""
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "state_dir": self.state_dir,
            "ok": self.ok,
            "first_problem": first.to_dict() if first is not None else None,
            "problems": [p.to_dict() for p in self.problems],
            "records": self.records,
            "events_checked": self.events_checked,
            "last_seq": self.last_seq,
            "head": self.head,
            "chain_checked": self.chain_checked,
            "head_checked": self.head_checked,
            "snapshots": [attrs.asdict(s) for s in self.snapshots],
            "torn_tail_bytes": self.torn_tail,
            "notes": list(self.notes),
        }


def _err(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def check_event(projection: Projection, event: dict[str, Any]) -> str | None:
    """Why the store would have refused ``event`` in state ``projection`` (None: fine).

    ``event`` must already be upcast. This mirrors the checks of the command
    side (sandbox/store.py) and the intent -> effect order of the reconciler
    (sandbox/reconciler.py), reading only the projection.
    """
    kind = event["type"]
    sandbox_id = event.get("id")
    try:
        if kind == ev.LOG_REPAIRED:
            return None  # a person's cut, recorded: nothing the state machine refuses
        if kind == ev.SANDBOX_ADDED:
            validate_id(sandbox_id)
            md = Metadata.from_event_dict(event["metadata"])
            validate_name(md.name)
            Status.from_event_dict(event["status"])
            if sandbox_id in projection:
                return f"add of sandbox {sandbox_id}, which already exists"
            holder = projection.name_holder(md.name)
            if holder is not None:
                return f"add of sandbox {sandbox_id} with name {md.name!r}, held by {holder}"
            return None
        if not isinstance(sandbox_id, str):
            return f"{kind} without a sandbox id"
        exists = sandbox_id in projection
        if kind == ev.SANDBOX_DELETED:
            return None if exists else f"delete of sandbox {sandbox_id}, which does not exist"
        if kind == ev.STATUS_UPDATED:
            if not exists:
                return f"status update of sandbox {sandbox_id}, which does not exist"
            new = Status.from_event_dict(event["status"])
            check_transition(projection.status_of(sandbox_id).state, new.state, sandbox_id)
            return None
        path = event["path"]
        if not isinstance(path, str):
            return f"{kind} of sandbox {sandbox_id} without a path"
        state = projection.owned_state(path)
        shown = state.value if state is not None else "not owned"
        if kind == ev.NETNS_ASSIGNED:
            if not exists:
                return f"netns {path} assigned to sandbox {sandbox_id}, which does not exist"
            if state is not None:
                return f"netns {path} assigned to {sandbox_id} but already owned ({shown})"
            return None
        if kind == ev.NETNS_CREATED:
            if state is not NetNSState.ASSIGNED or projection.owned_path_of(sandbox_id) != path:
                return (
                    f"netns {path} recorded created for {sandbox_id}; "
                    f"it was {shown}, expected assigned"
                )
            return None
        if kind == ev.NETNS_REMOVE_REQUESTED:
            if state not in (NetNSState.ASSIGNED, NetNSState.CREATED):
                return (
                    f"removal of netns {path} requested; "
                    f"it was {shown}, expected assigned or created"
                )
            return None
        if kind == ev.NETNS_REMOVED:
            if state is not NetNSState.REMOVING:
                return f"netns {path} recorded removed; it was {shown}, expected removing"
            return None
        if kind == ev.NETNS_CLOSED:
            if state is not NetNSState.CREATED:
                return f"netns {path} recorded closed; it was {shown}, expected created"
            return None
    except (StoreError, ValueError, TypeError, KeyError) as exc:
        return f"{kind} of {sandbox_id!r}: {_err(exc)}"
    return f"unknown event type {kind!r}"  # pragma: no cover - upcast refuses it first


def verify(
    state_dir: str | os.PathLike[str],
    head: bytes | str | None = None,
    key: bytes | None = None,
    *,
    netns_dir: str = DEFAULT_NETNS_DIR,
    progress: bool | None = False,
    max_problems: int = MAX_PROBLEMS,
) -> VerifyResult:
    """Check the log in ``state_dir`` byte by byte and event by event; never raises
    on bad data (only ``StateDirMissingError``, or ValueError for a bad ``head``).

    ``head``: a chain head (hex or bytes, from ``sandboxctl head``) recorded
    earlier; the log must still contain it. ``key``: the log's MAC key, for a
    keyed log (without it a keyed log's chain cannot be checked, and the
    report says so in ``notes``). ``progress``: as in ``load``.
    """
    d = check_state_dir(state_dir)
    if isinstance(head, str):
        try:
            head_bytes: bytes | None = bytes.fromhex(head.strip())
        except ValueError:
            raise ValueError(f"head is not a hex digest: {head!r}") from None
    else:
        head_bytes = head
    if head_bytes is not None and len(head_bytes) != 32:
        raise ValueError(f"a chain head is 32 bytes (64 hex digits), got {len(head_bytes)} bytes")

    problems: list[Problem] = []
    snapshots = {seq: path for seq, path in snap.list_snapshots(d)}
    checks: dict[int, SnapshotCheck] = {}

    if not has_log(d):
        for seq, path in snapshots.items():
            checks[seq] = SnapshotCheck(path, seq, False, "there is no log to check it against")
        problems += [Problem("snapshot", c.reason, c.seq, c.path) for c in checks.values()]
        if head_bytes is not None and any(head_bytes):
            problems.append(Problem("head", f"head {head_bytes.hex()} not found: the log is empty"))
        return VerifyResult(
            d,
            not problems,
            tuple(problems),
            0,
            0,
            0,
            "00" * 32,
            True,
            head_bytes is not None,
            tuple(checks.values()),
        )

    enabled = None if progress is None else progress
    # eventlog.verify offers no progress callback: a static line says what runs.
    with Progress(0, "verifying checksums and chain...", enabled=enabled) as bar:
        bar.update(0)
        report = eventlog.verify(d, key=key, head=head_bytes)
    if report.problem is not None:
        p = report.problem
        kind = "head" if p.seq is None and "head" in p.reason else "log"
        problems.append(Problem(kind, p.reason, p.seq, p.segment, p.offset))

    # Fold the part of the log that eventlog.verify found intact.
    projection = Projection(netns_dir)
    events = 0
    unlisted = 0  # fold problems beyond max_problems: counted, not kept
    snap_projections: dict[int, tuple[bytes, Projection]] = {}
    for seq in sorted(snapshots):
        path = snapshots[seq]
        if seq == 0:
            continue
        try:
            _s, digest, proj = snap.read_snapshot(path, netns_dir)
        except snap.SnapshotError as exc:
            checks[seq] = SnapshotCheck(path, seq, False, _err(exc))
            continue
        if seq > report.last_seq:
            checks[seq] = SnapshotCheck(
                path, seq, False, f"it is at seq {seq}, beyond the log's last seq {report.last_seq}"
            )
            continue
        snap_projections[seq] = (digest, proj)

    fold_stopped = False
    if report.last_seq:
        with LogProgress(d, "checking events", enabled=enabled) as bar:
            records = iter(eventlog.read(d, to_seq=report.last_seq, key=key))
            try:
                for rec in records:
                    bar.at(rec.segment, rec.offset)
                    problem, stop = _check_record(rec, projection)
                    if problem is not None:
                        if len(problems) < max_problems:
                            problems.append(problem)
                        else:
                            unlisted += 1
                    if stop:
                        fold_stopped = True
                        break
                    events += 1
                    if rec.seq in snap_projections:
                        digest, proj = snap_projections.pop(rec.seq)
                        checks[rec.seq] = _compare_snapshot(
                            snapshots[rec.seq], rec, digest, proj, projection
                        )
            except eventlog.CorruptLogError as exc:
                # eventlog.verify reported it already unless the log changed meanwhile.
                if not any(p.kind == "log" for p in problems):
                    problems.append(Problem("log", exc.reason, exc.seq, exc.segment, exc.offset))
                fold_stopped = True
            finally:
                close = getattr(records, "close", None)
                if close is not None:
                    close()
    for seq, (_digest, _proj) in snap_projections.items():
        reason = (
            "not checked: the events before it could not be folded"
            if fold_stopped
            else "not checked: the log ended before its seq"
        )
        checks[seq] = SnapshotCheck(snapshots[seq], seq, False, reason)

    for check in checks.values():
        if not check.ok:
            problems.append(Problem("snapshot", check.reason, check.seq, check.path))

    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    notes = list(report.notes)
    broken = sorted(n for n in os.listdir(d) if ".broken" in n)
    if broken:
        notes.append(
            "torn tails cut by crash recovery were kept as " + ", ".join(broken) + " (evidence)"
        )
    unlisted += max(0, len(problems) - max_problems)
    problems = problems[:max_problems]
    if unlisted:
        notes.append(f"{unlisted} more problems not listed")
    return VerifyResult(
        d,
        not problems,
        tuple(problems),
        report.records,
        events,
        report.last_seq,
        report.head,
        report.chain_checked,
        head_bytes is not None,
        tuple(sorted(checks.values(), key=lambda c: c.seq)),
        report.torn_tail,
        tuple(notes),
    )


def _check_record(rec: Record, projection: Projection) -> tuple[Problem | None, bool]:
    """Check and fold one record: (its problem if any, whether folding must stop).

    A refused transition is folded anyway (the projection ignores nonsense
    deterministically, as replay does) so later problems are still found; an
    event that cannot be decoded stops the fold - the projection cannot
    skip a seq.
    """
    sandbox_id = rec.payload.get("id")
    sid = sandbox_id if isinstance(sandbox_id, str) else None

    def problem(kind: str, why: str) -> Problem:
        return Problem(kind, why, rec.seq, rec.segment, rec.offset, sid)

    try:
        event = ev.upcast(rec.payload)
    except (StoreError, ValueError, TypeError, KeyError) as exc:
        return problem("event", _err(exc)), True
    why = check_event(projection, event)
    try:
        projection.apply(rec.seq, event)
    except (StoreError, ValueError, TypeError, KeyError) as exc:
        return problem("event", _err(exc)), True
    return (problem("transition", why) if why is not None else None), False


def _compare_snapshot(
    path: str, rec: Record, digest: bytes, snapped: Projection, replayed: Projection
) -> SnapshotCheck:
    if digest != rec.digest:
        return SnapshotCheck(
            path,
            rec.seq,
            False,
            f"its chain digest {digest.hex()[:16]}... differs from the log's "
            f"{rec.digest.hex()[:16]}... at seq {rec.seq}: taken from another history",
        )
    if snapped.to_snapshot() != replayed.to_snapshot():
        return SnapshotCheck(
            path, rec.seq, False, f"its state differs from the replay of the log to seq {rec.seq}"
        )
    return SnapshotCheck(path, rec.seq, True)
