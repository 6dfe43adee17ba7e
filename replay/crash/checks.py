"""The five checks a crash-test run makes after the child died.

Why these five: they are what "nothing lost, leaked or corrupted" means for
an event-sourced store with kernel side effects.

1. ``acked`` - every event the child saw acknowledged is in the log with the
   same seq, time, payload and chain digest; the records after the last
   acknowledged one were written by the child's in-flight command (and fit
   it) or by the recovery itself (reconcile effects only); every acknowledged
   command wrote exactly the events the contract says; the reopened store
   shows every acknowledged change.
2. ``projection`` - the projection from a full replay equals the one from
   every snapshot on disk plus the tail, equals the store's own, and no
   snapshot was skipped on open (a snapshot is fsynced before it is renamed
   into place: a crash may lose it, never damage it).
3-5. ``netns``, ``verify``, ``accepts`` - the recovered store, live: see
   ``live_checks`` (re-exported here).

Each check returns ``Violation`` values and never raises for a finding; an
exception inside a check is itself reported as a violation of that check.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from replay.crash import storeio
from replay.crash import workload as wl
from replay.crash.check_types import (
    ACCEPTS,
    ACKED,
    CHECKS,
    CHILD,
    COMMAND,
    EFFECTS,
    NETNS,
    PROJECTION,
    REOPEN,
    VERIFY,
    Ack,
    AckedRecord,
    Observation,
    Violation,
    first_difference,
    summarize,
)
from replay.crash.check_types import etype as _etype
from replay.crash.check_types import summ as _summ
from replay.crash.live_checks import check_accepts, check_netns, check_verify
from sandbox.events import (
    NETNS_ASSIGNED,
    NETNS_CREATED,
    NETNS_DIR_RECORDED,
    NETNS_REMOVE_REQUESTED,
    NETNS_REMOVED,
    SANDBOX_ADDED,
    SANDBOX_DELETED,
    STATUS_UPDATED,
)

__all__ = [
    "ACCEPTS",
    "ACKED",
    "CHECKS",
    "CHILD",
    "COMMAND",
    "EFFECTS",
    "NETNS",
    "PROJECTION",
    "REOPEN",
    "VERIFY",
    "Ack",
    "AckedRecord",
    "Observation",
    "Violation",
    "allowed_event",
    "check_accepts",
    "check_commands",
    "check_log",
    "check_netns",
    "check_projection",
    "check_store_state",
    "check_verify",
    "expected_shapes",
    "expected_states",
    "run_checks",
    "summarize",
]


def _guard(check: str, fn: Callable[[], list[Violation]]) -> list[Violation]:
    """Run one check; a crash of the check itself is reported, not raised."""
    try:
        return fn()
    except Exception:
        return [Violation(check, "check raised:\n" + traceback.format_exc(limit=6))]


# -- 1: acknowledged events --------------------------------------------------


def allowed_event(op: wl.Op, payload: dict[str, Any]) -> bool:
    """May ``op`` have written this event (whatever the order and count)?"""
    t = _etype(payload)
    same = payload.get("id") == op.sandbox_id
    if op.kind == wl.ADD:
        return same and op.expect == wl.OK and t in (SANDBOX_ADDED, NETNS_ASSIGNED, NETNS_CREATED)
    if op.kind == wl.DELETE:
        return same and op.expect == wl.OK and t in (SANDBOX_DELETED, NETNS_REMOVED)
    if op.kind == wl.UPDATE_STATUS:
        return same and op.expect == wl.OK and t == STATUS_UPDATED
    if op.kind == wl.REMOVE_NETNS:
        return same and t in (NETNS_REMOVE_REQUESTED, NETNS_REMOVED)
    if op.kind == wl.RECONCILE:
        return t in EFFECTS
    return False  # snapshot, external umount: no events


def expected_shapes(op: wl.Op) -> list[list[str]]:
    """Every event-type sequence the contract allows an acknowledged ``op`` to write."""
    if op.expect != wl.OK:
        return [[]]
    if op.kind == wl.ADD:
        if op.create_netns:
            return [[SANDBOX_ADDED, NETNS_ASSIGNED, NETNS_CREATED]]
        return [[SANDBOX_ADDED]]
    if op.kind == wl.DELETE:
        return [[SANDBOX_DELETED], [SANDBOX_DELETED, NETNS_REMOVED]]
    if op.kind == wl.UPDATE_STATUS:
        return [[], [STATUS_UPDATED]]  # an unchanged status writes nothing
    if op.kind == wl.REMOVE_NETNS:
        return [[], [NETNS_REMOVED], [NETNS_REMOVE_REQUESTED, NETNS_REMOVED]]
    return [[]]


def check_commands(obs: Observation) -> list[Violation]:
    """Each acknowledged command did what the contract says, and nothing else."""
    out: list[Violation] = []
    prev_after = obs.open_seq
    for a in obs.acks:
        op = a.op
        where = f"op {op.index} [{op.describe()}]"
        if a.before != prev_after:
            out.append(
                Violation(
                    COMMAND,
                    f"{where}: log was at seq {a.before} before it, the previous command "
                    f"left it at {prev_after} (events written outside any command)",
                )
            )
        prev_after = a.after
        seqs = [r.seq for r in a.records]
        if seqs != list(range(a.before + 1, a.after + 1)):
            out.append(
                Violation(
                    COMMAND, f"{where}: read back seqs {seqs}, expected {a.before + 1}..{a.after}"
                )
            )
        got_error = a.error or ""
        want_error = op.expect if op.expect in storeio.EXPECTED_ERRORS else ""
        if got_error != want_error:
            detail = a.message.strip().splitlines()[-1] if a.message.strip() else ""
            out.append(
                Violation(
                    COMMAND,
                    f"{where}: expected {want_error or 'success'}, got "
                    f"{got_error or 'success'}" + (f": {detail}" if detail else ""),
                )
            )
            continue
        types = [_etype(r.payload) for r in a.records]
        if types not in expected_shapes(op) and op.kind != wl.RECONCILE:
            out.append(
                Violation(
                    COMMAND,
                    f"{where}: wrote {types or 'nothing'}, expected one of "
                    f"{[s or 'nothing' for s in expected_shapes(op)]}",
                )
            )
        for r in a.records:
            if not allowed_event(op, r.payload) and (types or op.kind == wl.RECONCILE):
                out.append(
                    Violation(
                        COMMAND,
                        f"{where}: wrote seq {r.seq} {_summ(r.payload)}, "
                        "which this command has no business writing",
                    )
                )
    return out


def check_log(records: Sequence[Any], obs: Observation, recovery_pid: int) -> list[Violation]:
    """Check 1 on the log: acked records intact, the rest explained."""
    tail = [r for r in records if r.seq > obs.last_acked_seq]
    return (
        _check_acked(records, obs)
        + _check_tail(tail, obs, recovery_pid)
        + _check_in_flight_batch(tail, obs)
    )


def _check_acked(records: Sequence[Any], obs: Observation) -> list[Violation]:
    """Every acknowledged record is still there, byte for byte (payload, digest, time)."""
    out: list[Violation] = []
    by_seq = {r.seq: r for r in records}
    acked = obs.acked_records
    lost: list[int] = []
    changed: list[str] = []
    for seq in sorted(acked):
        want = acked[seq]
        got = by_seq.get(seq)
        if got is None:
            lost.append(seq)
            continue
        diffs = []
        if got.payload != want.payload:
            diffs.append("payload")
        if got.digest != want.digest:
            diffs.append("digest")
        if got.time_ns != want.time_ns:
            diffs.append("time")
        if diffs:
            changed.append(
                f"seq {seq} {_summ(want.payload)} ({', '.join(diffs)} differ; "
                f"now {_summ(got.payload)})"
            )
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        out.append(
            Violation(
                ACKED,
                f"{len(changed)} acknowledged event(s) changed after recovery: "
                + "; ".join(changed[:3])
                + more,
            )
        )
    if lost:
        shown = ", ".join(str(s) for s in lost[:8]) + (" ..." if len(lost) > 8 else "")
        out.append(
            Violation(
                ACKED,
                f"{len(lost)} acknowledged event(s) lost: seq {shown} "
                f"(log now ends at seq {max(by_seq, default=0)}, "
                f"last acknowledged {obs.last_acked_seq})",
            )
        )
    return out


def _check_tail(tail: Sequence[Any], obs: Observation, recovery_pid: int) -> list[Violation]:
    """Everything past the last acknowledged seq must be explained: the in-flight
    command's own events, then only the recovering process's reconcile effects."""
    out: list[Violation] = []
    child_part = True
    for r in tail:
        env = r.payload.get("env")
        pid = env.get("pid") if isinstance(env, dict) else None
        if _first_open_record(r, obs) and pid in (obs.child_pid, recovery_pid):
            # The child died in its first open, before reporting it (or before
            # writing this): that open, or the recovering one, recorded the netns dir.
            child_part = child_part and pid == obs.child_pid
            continue
        if pid == obs.child_pid and child_part:
            op = obs.in_flight
            if op is None:
                out.append(
                    Violation(
                        ACKED,
                        f"seq {r.seq} {_summ(r.payload)} was written by the child but no "
                        "command was in flight (never acknowledged, never asked for)",
                    )
                )
            elif not allowed_event(op, r.payload):
                out.append(
                    Violation(
                        ACKED,
                        f"seq {r.seq} {_summ(r.payload)} was written by the child while op "
                        f"{op.index} [{op.describe()}] was in flight, which does not write it",
                    )
                )
            continue
        child_part = False
        if pid != recovery_pid:
            out.append(
                Violation(
                    ACKED,
                    f"seq {r.seq} {_summ(r.payload)} has writer pid {pid}: neither the child "
                    f"({obs.child_pid}) nor the recovering process ({recovery_pid})",
                )
            )
        elif _etype(r.payload) not in EFFECTS:
            out.append(
                Violation(
                    ACKED,
                    f"recovery wrote seq {r.seq} {_summ(r.payload)}; expected only reconcile "
                    "effects (NetNSCreated/Removed/Closed)",
                )
            )
    return out


def _first_open_record(r: Any, obs: Observation) -> bool:
    """Seq 1 of a new store is the NetNSDirRecorded its first open writes before any
    command (sandbox/netnsdir.py)."""
    return r.seq == 1 and obs.in_flight is None and _etype(r.payload) == NETNS_DIR_RECORDED


def _check_in_flight_batch(tail: Sequence[Any], obs: Observation) -> list[Violation]:
    """An add in flight with a namespace wrote one batch: recovered whole or not at all."""
    out: list[Violation] = []
    if obs.in_flight is not None and obs.in_flight.kind == wl.ADD and obs.in_flight.create_netns:
        # SandboxAdded + NetNSAssigned are one batch: all or nothing.
        mine = [_etype(r.payload) for r in tail if r.payload.get("id") == obs.in_flight.sandbox_id]
        if (SANDBOX_ADDED in mine) != (NETNS_ASSIGNED in mine):
            out.append(
                Violation(
                    ACKED,
                    f"in-flight add {obs.in_flight.sandbox_id[:12]}: batch SandboxAdded + "
                    f"NetNSAssigned only partly recovered ({mine})",
                )
            )
    return out


def expected_states(obs: Observation) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """The sandboxes (id -> (name, state)) every acknowledged command implies,
    and the ids the in-flight command makes uncertain."""
    live: dict[str, tuple[str, str]] = {}
    for a in obs.acks:
        op = a.op
        if a.error:
            continue
        if op.kind == wl.ADD:
            live[op.sandbox_id] = (op.name, op.state)
        elif op.kind == wl.DELETE and op.expect == wl.OK:
            live.pop(op.sandbox_id, None)
        elif op.kind == wl.UPDATE_STATUS and op.sandbox_id in live:
            live[op.sandbox_id] = (live[op.sandbox_id][0], op.state)
    uncertain: set[str] = set()
    if obs.in_flight is not None and obs.in_flight.sandbox_id:
        uncertain.add(obs.in_flight.sandbox_id)
    return live, uncertain


def check_store_state(store: Any, obs: Observation) -> list[Violation]:
    """Check 1 on the store: every acknowledged change is visible after reopen."""
    out: list[Violation] = []
    want, uncertain = expected_states(obs)
    have = {sb.id: (sb.name, sb.status.state.value) for sb in store.list()}
    op = obs.in_flight
    for sid, (name, state) in want.items():
        got = have.get(sid)
        if sid in uncertain and op is not None:
            if op.kind == wl.DELETE and got is None:
                continue
            if op.kind == wl.UPDATE_STATUS and got is not None and got[1] in (state, op.state):
                continue
        if got is None:
            out.append(
                Violation(
                    ACKED,
                    f"sandbox {sid[:12]} ({name}) was acknowledged as "
                    "added and not deleted, but is missing after recovery",
                )
            )
        elif got != (name, state):
            out.append(
                Violation(
                    ACKED,
                    f"sandbox {sid[:12]}: expected {name} {state} after "
                    f"recovery, found {got[0]} {got[1]}",
                )
            )
    for sid, got in have.items():
        if sid in want:
            continue
        if sid in uncertain and op is not None and op.kind == wl.ADD and got == (op.name, op.state):
            continue
        out.append(
            Violation(
                ACKED,
                f"sandbox {sid[:12]} ({got[0]}) is in the recovered store "
                "but no acknowledged or in-flight command added it",
            )
        )
    return out


# -- 2: projection -------------------------------------------------------------


def check_projection(
    state_dir: str, netns_dir: str, store: Any, records: Sequence[Any]
) -> list[Violation]:
    """Check 2: full replay == every snapshot + tail == the store's projection."""
    from sandbox import snapshot
    from sandbox.projection import Projection

    out: list[Violation] = []
    full = Projection(netns_dir)
    snapshot.replay(records, full)
    want = full.to_snapshot()
    mine = store.projection().to_snapshot()
    if mine != want:
        out.append(
            Violation(
                PROJECTION,
                "the reopened store's projection differs from a full "
                "replay: " + first_difference(mine, want),
            )
        )
    by_seq = {r.seq: r for r in records}
    for _seq, path in snapshot.list_snapshots(state_dir):
        name = os.path.basename(path)
        try:
            snap_seq, digest, proj = snapshot.read_snapshot(path, netns_dir)
        except Exception as exc:
            out.append(
                Violation(
                    PROJECTION,
                    f"snapshot {name} is unreadable after the crash "
                    f"(written temp+fsync+rename, so it must be whole): {exc}",
                )
            )
            continue
        rec = by_seq.get(snap_seq)
        if snap_seq and (rec is None or rec.digest != digest):
            out.append(
                Violation(
                    PROJECTION,
                    f"snapshot {name} at seq {snap_seq} does not match "
                    "the log's chain digest there (or the log lost that seq)",
                )
            )
            continue
        snapshot.replay((r for r in records if r.seq > snap_seq), proj)
        got = proj.to_snapshot()
        if got != want:
            out.append(
                Violation(
                    PROJECTION,
                    f"snapshot {name} + tail differs from a full "
                    "replay: " + first_difference(got, want),
                )
            )
    load = getattr(store, "load_result", None)
    for path, why in getattr(load, "skipped", ()) or ():
        out.append(Violation(PROJECTION, f"open skipped snapshot {os.path.basename(path)}: {why}"))
    return out


def run_checks(
    state_dir: str,
    netns_dir: str,
    obs: Observation,
    seed: int,
    *,
    open_store: Callable[[], Any],
) -> list[Violation]:
    """Reopen the store and run all five checks, in an order where each one
    sees the state the previous left (check 5 changes the store, so it is last)."""
    out: list[Violation] = []
    try:
        store = open_store()
    except Exception as exc:
        out.append(
            Violation(REOPEN, f"Store.open failed after the crash: {type(exc).__name__}: {exc}")
        )
        out += _guard(VERIFY, lambda: check_verify(state_dir, netns_dir, obs))
        return out
    try:
        import eventlog

        records: list[Any] = []
        try:
            records = list(eventlog.read(storeio.log_dir(state_dir)))
        except Exception as exc:
            out.append(
                Violation(ACKED, f"eventlog.read after recovery: {type(exc).__name__}: {exc}")
            )
        out += _guard(COMMAND, lambda: check_commands(obs))
        out += _guard(ACKED, lambda: check_log(records, obs, os.getpid()))
        out += _guard(ACKED, lambda: check_store_state(store, obs))
        out += _guard(PROJECTION, lambda: check_projection(state_dir, netns_dir, store, records))
        out += _guard(NETNS, lambda: check_netns(store, netns_dir))
        out += _guard(VERIFY, lambda: check_verify(state_dir, netns_dir, obs))
        out += _guard(ACCEPTS, lambda: check_accepts(store, state_dir, netns_dir, seed))
    finally:
        store.close()  # idempotent; check_accepts closed it already when it ran
    return out
