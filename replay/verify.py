"""``verify``: is this log a history the store could really have written?

``eventlog.verify`` proves the *bytes* are intact: checksums, the chain
digest (a MAC with a key), gapless seqs, and with ``head`` that today's log
still extends a chain head recorded earlier (which catches a consistent
rewrite of history, not only an edit). That is not enough for an auditor: a
writer with a bug, or someone who re-chains a forged log, can produce intact
bytes that say impossible things. So this module also folds every event
and asks the rule book the command side uses (sandbox/rules.py) of each
one, reporting any event the store would have refused:

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
from collections.abc import Callable
from typing import Any

import attrs

import eventlog
from eventlog.format import DecodedRecord
from replay.progress import LogProgress
from replay.view import check_state_dir, has_log
from sandbox import events as ev
from sandbox import rules
from sandbox import snapshot as snap
from sandbox.errors import StoreError
from sandbox.event_fastdecode import decode_payload
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection

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


def check_event(projection: Projection, event: ev.Event | dict[str, Any]) -> str | None:
    """Why the store would have refused ``event`` in state ``projection`` (None: fine).

    The answer is the rule book's (sandbox/rules.py: the checks the Store
    makes before it writes), asked of the typed event; a payload map is
    decoded first. A SandboxAdded's config must also decode as the store's
    Metadata would (a shape check the fold defers to the first read).
    """
    try:
        typed = event if isinstance(event, ev.Event) else ev.decode(event)
        if isinstance(typed, ev.SandboxAdded):
            typed.metadata.check()
        rules.check(projection, typed)
    except (StoreError, ValueError, TypeError) as exc:
        kind = event.TYPE if isinstance(event, ev.Event) else event.get("type")
        sandbox_id = event.id if isinstance(event, ev.Event) else event.get("id")
        return f"{kind} of {sandbox_id!r}: {_err(exc)}"
    return None


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

    One pass: ``eventlog.verify`` checks the bytes and hands each whole record,
    decoded straight into its typed event (``sandbox.event_fastdecode``; the
    reference decode where that declines), to the fold (``_Fold``), which asks
    the rule book of it - reading the log a second time would cost as much.
    """
    d = check_state_dir(state_dir)
    head_bytes = _head_bytes(head)
    snapshots = {seq: path for seq, path in snap.list_snapshots(d)}
    if not has_log(d):
        return _verify_without_log(d, snapshots, head_bytes)

    found = _Findings(max_problems, snapshots)
    fold = _Fold(found, _read_snapshots(netns_dir, found, key), Projection(netns_dir))
    # The collector is paused as for a replay (snapshot.gc_paused): the fold keeps
    # every live sandbox's objects, which each collection would walk again.
    with LogProgress(d, _PROGRESS_LABEL, enabled=progress) as bar, snap.gc_paused():
        fold.bar = bar if bar.enabled else None
        report = _check_log(d, key, head_bytes, found, fold.visit)
    fold.finish(report.last_seq)
    _unchecked_snapshots(fold.snaps, found)
    return _result(d, report, head_bytes, fold.start, found)


#: What the bar says while the one pass runs (both checks at once).
_PROGRESS_LABEL = "verifying checksums and chain, checking events"


@attrs.define
class _Findings:
    """What one ``verify`` run has found so far; the steps below add to it."""

    max_problems: int
    snapshots: dict[int, str]
    problems: list[Problem] = attrs.field(factory=list)
    checks: dict[int, SnapshotCheck] = attrs.field(factory=dict)
    events: int = 0
    unlisted: int = 0  # fold problems beyond max_problems: counted, not kept
    fold_stopped: bool = False


def _head_bytes(head: bytes | str | None) -> bytes | None:
    """``head`` as 32 bytes (or None); ValueError for anything else."""
    if isinstance(head, str):
        try:
            head_bytes: bytes | None = bytes.fromhex(head.strip())
        except ValueError:
            raise ValueError(f"head is not a hex digest: {head!r}") from None
    else:
        head_bytes = head
    if head_bytes is not None and len(head_bytes) != 32:
        raise ValueError(f"a chain head is 32 bytes (64 hex digits), got {len(head_bytes)} bytes")
    return head_bytes


def _verify_without_log(
    d: str, snapshots: dict[int, str], head_bytes: bytes | None
) -> VerifyResult:
    """The result for a state dir with no log: every snapshot and a head are problems."""
    problems: list[Problem] = []
    checks: dict[int, SnapshotCheck] = {}
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


def _check_log(
    d: str,
    key: bytes | None,
    head_bytes: bytes | None,
    found: _Findings,
    visit: Callable[[Any], object],
) -> eventlog.VerifyReport:
    """The byte-level check (eventlog.verify), each record handed to ``visit``;
    its problem, if any, goes to ``found``."""
    report = eventlog.verify(d, key=key, head=head_bytes, decode=decode_payload, visit=visit)
    if report.problem is not None:
        p = report.problem
        kind = "head" if p.seq is None and "head" in p.reason else "log"
        found.problems.append(Problem(kind, p.reason, p.seq, p.segment, p.offset))
    return report


def _read_snapshots(
    netns_dir: str, found: _Findings, key: bytes | None
) -> dict[int, tuple[bytes, Projection]]:
    """Read every snapshot past seq 0: seq -> (digest, projection) for those the
    fold can compare; an unreadable one is a failed check (one beyond the log's
    end is found when the log has been read: ``_Fold.finish``). With the log's
    key, a snapshot without a valid MAC under it is a failed check too: the
    store would skip it, and on a keyed log it is a forgery or a copy."""
    snap_projections: dict[int, tuple[bytes, Projection]] = {}
    for seq in sorted(found.snapshots):
        path = found.snapshots[seq]
        if seq == 0:
            continue
        try:
            _s, digest, proj = snap.read_snapshot(path, netns_dir, key=key)
        except snap.SnapshotError as exc:
            found.checks[seq] = SnapshotCheck(path, seq, False, _err(exc))
            continue
        snap_projections[seq] = (digest, proj)
    return snap_projections


@attrs.define
class _Fold:
    """The transition check, fed each record as ``eventlog.verify`` reaches it.

    ``start`` is the first seq folded: 1, or on a compacted log the seq after
    the oldest snapshot at or after the compaction point (its state is the
    fold's start, as for a store's open); None when no snapshot covers the
    missing history; 0 until the first record says where the log starts.
    ``snaps`` holds the snapshots not compared yet.
    """

    found: _Findings
    snaps: dict[int, tuple[bytes, Projection]]
    projection: Projection
    start: int | None = 0
    base: int = 0  # the snapshot the fold started from (0: none)
    bar: LogProgress | None = None
    stopped: bool = False

    def visit(self, rec: DecodedRecord) -> None:
        """Check and fold one record (or pass it by: before the start, after a stop).

        The record's payload is its typed event, or the payload map where the
        fast decode declined (decoded here the reference way, which decides). A
        refused transition is folded anyway (the projection ignores nonsense
        deterministically, as replay does) so later problems are still found; an
        event that cannot be decoded or folded stops the fold - the projection
        cannot skip a seq.
        """
        if self.bar is not None:
            self.bar.at(rec.segment, rec.offset)
        start = self.start
        if start == 0:
            start = self.start = self._begin(rec.seq)
        if self.stopped or start is None or rec.seq < start:
            return
        event = rec.payload
        if not isinstance(event, ev.Event):
            event = self._decoded(rec)
            if event is None:
                return
        projection = self.projection
        why = check_event(projection, event)
        try:
            projection.apply(rec.seq, event)
        except (StoreError, ValueError, TypeError, KeyError) as exc:
            self._problem(Problem("event", _err(exc), rec.seq, rec.segment, rec.offset, event.id))
            self.stopped = self.found.fold_stopped = True
            return
        if why is not None:
            self._problem(Problem("transition", why, rec.seq, rec.segment, rec.offset, event.id))
        self.found.events += 1
        if rec.seq in self.snaps:
            digest, proj = self.snaps.pop(rec.seq)
            self.found.checks[rec.seq] = _compare_snapshot(
                self.found.snapshots[rec.seq], rec, digest, proj, projection
            )

    def _decoded(self, rec: DecodedRecord) -> ev.Event | None:
        """The reference decode of a payload map; None (and the fold stops) if it fails."""
        payload = rec.payload
        try:
            return ev.decode(payload)
        except (StoreError, ValueError, TypeError, KeyError) as exc:
            sandbox_id = payload.get("id")
            sid = sandbox_id if isinstance(sandbox_id, str) else None
            self._problem(Problem("event", _err(exc), rec.seq, rec.segment, rec.offset, sid))
            self.stopped = self.found.fold_stopped = True
            return None

    def _problem(self, problem: Problem) -> None:
        found = self.found
        if len(found.problems) < found.max_problems:
            found.problems.append(problem)
        else:
            found.unlisted += 1

    def _begin(self, first: int) -> int | None:
        """Where the fold starts, on a log whose first record is ``first``."""
        if first == 1:
            return 1
        checks, snapshots = self.found.checks, self.found.snapshots
        for seq in sorted(self.snaps):
            if seq < first - 1:
                self.snaps.pop(seq)
                checks[seq] = SnapshotCheck(
                    snapshots[seq],
                    seq,
                    True,
                    f"not checked: history before seq {first} is not local",
                )
        if not self.snaps:
            return None
        self.base = min(self.snaps)
        _digest, self.projection = self.snaps.pop(self.base)
        checks[self.base] = SnapshotCheck(
            snapshots[self.base], self.base, True, "the start of the local fold"
        )
        return self.base + 1

    def finish(self, last_seq: int) -> None:
        """After the log's end is known: a snapshot beyond it is a failed check (also
        one chosen as the fold's start: no record followed it, nothing was folded)."""
        if self.start == 0:
            self.start = 1  # no record: nothing to fold, from seq 1
        beyond = [seq for seq in self.snaps if seq > last_seq]
        if self.base > last_seq:
            beyond.append(self.base)
            self.start = None
        for seq in sorted(beyond):
            self.snaps.pop(seq, None)
            self.found.checks[seq] = SnapshotCheck(
                self.found.snapshots[seq],
                seq,
                False,
                f"it is at seq {seq}, beyond the log's last seq {last_seq}",
            )


def _unchecked_snapshots(
    snap_projections: dict[int, tuple[bytes, Projection]], found: _Findings
) -> None:
    """The snapshots the fold never reached are failed checks, saying why."""
    for seq, (_digest, _proj) in snap_projections.items():
        reason = (
            "not checked: the events before it could not be folded"
            if found.fold_stopped
            else "not checked: the log ended before its seq"
        )
        found.checks[seq] = SnapshotCheck(found.snapshots[seq], seq, False, reason)


def _result(
    d: str,
    report: eventlog.VerifyReport,
    head_bytes: bytes | None,
    fold_from: int | None,
    found: _Findings,
) -> VerifyResult:
    """The report: snapshot problems added, all in log order, capped, with notes."""
    problems = found.problems
    for check in found.checks.values():
        if not check.ok:
            problems.append(Problem("snapshot", check.reason, check.seq, check.path))

    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    notes = list(report.notes)
    if fold_from is None and report.last_seq:
        notes.append("transitions not checked: no snapshot at or after the compaction point")
    broken = sorted(n for n in os.listdir(d) if ".broken" in n)
    if broken:
        notes.append(
            "torn tails cut by crash recovery were kept as " + ", ".join(broken) + " (evidence)"
        )
    unlisted = found.unlisted + max(0, len(problems) - found.max_problems)
    problems = problems[: found.max_problems]
    if unlisted:
        notes.append(f"{unlisted} more problems not listed")
    return VerifyResult(
        d,
        not problems,
        tuple(problems),
        report.records,
        found.events,
        report.last_seq,
        report.head,
        report.chain_checked,
        head_bytes is not None,
        tuple(sorted(found.checks.values(), key=lambda c: c.seq)),
        report.torn_tail,
        tuple(notes),
    )


def _compare_snapshot(
    path: str, rec: DecodedRecord, digest: bytes, snapped: Projection, replayed: Projection
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
