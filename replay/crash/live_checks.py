"""Checks 3-5 of a crash-test run: the recovered store, live.

3. ``netns`` - after reconcile, the nsfs mounts under netns_dir (from
   /proc/self/mountinfo, not from the code under test) are exactly the
   namespaces the projection says are live: no leak, no duplicate (stacked)
   mount, no stray placeholder, nothing left half-done; and a second
   reconcile does nothing.
4. ``verify`` - ``eventlog.verify`` is clean, finds the last acknowledged
   head (history not rewritten), reports no torn tail after the writer's
   recovery; ``replay.verify`` (transition re-check) is clean when present.
5. ``accepts`` - the recovered store takes new commands: add with a
   namespace, delete, and a reopen sees the result.

``checks`` holds checks 1-2, runs all five and re-exports these; each
returns ``Violation`` values and never raises for a finding.
"""

from __future__ import annotations

import collections
import os
import random
from typing import Any

from replay.crash import storeio
from replay.crash import workload as wl
from replay.crash.check_types import ACCEPTS, NETNS, VERIFY, Observation, Violation
from sandbox import mounts

# -- 3: namespaces ---------------------------------------------------------------


def _real(path: str) -> str:
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def check_netns(store: Any, netns_dir: str) -> list[Violation]:
    """Check 3: after reconcile, the kernel's namespaces == the projection's live ones."""
    from sandbox.ownership import NetNSState

    out: list[Violation] = []
    first = store.last_reconcile_report
    for path, message in first.errors:
        out.append(Violation(NETNS, f"reconcile on open failed for {path}: {message}"))
    second = store.reconcile()
    if second.changed:
        out.append(
            Violation(
                NETNS,
                f"reconcile is not idempotent: the run after open still did {second.to_dict()}",
            )
        )
    proj = store.projection()
    live: set[str] = set()
    for o in proj.owned():
        if o.state is NetNSState.CREATED:
            live.add(_real(o.path))
        elif not o.state.terminal:
            out.append(
                Violation(
                    NETNS,
                    f"after reconcile, {o.path} (sandbox {o.sandbox_id[:12]}) "
                    f"is still {o.state.value}",
                )
            )
    counts = collections.Counter(
        m.mount_point for m in mounts.mounts_under(netns_dir, fstype="nsfs")
    )
    others = [m for m in mounts.mounts_under(netns_dir) if m.fstype != "nsfs"]
    for m in others:
        out.append(
            Violation(NETNS, f"non-nsfs mount {m.fstype} at {m.mount_point} under netns_dir")
        )
    for point, n in sorted(counts.items()):
        if point not in live:
            out.append(
                Violation(
                    NETNS,
                    f"leaked namespace: {point} is mounted "
                    f"({n}x) but the projection has no live namespace there",
                )
            )
        elif n > 1:
            out.append(Violation(NETNS, f"duplicate namespace: {n} nsfs mounts stacked at {point}"))
    for path in sorted(live - set(counts)):
        out.append(
            Violation(
                NETNS,
                f"missing namespace: the projection says {path} is live, nothing is mounted there",
            )
        )
    real_dir = os.path.realpath(netns_dir)
    if os.path.isdir(real_dir):
        for entry in sorted(os.listdir(real_dir)):
            p = os.path.join(real_dir, entry)
            if p not in counts:
                out.append(Violation(NETNS, f"stray file {p} left in netns_dir (not a namespace)"))
    # The store's own view of each sandbox's namespace agrees with the kernel.
    for sb in store.list():
        ns = sb.netns
        if ns is None:
            continue
        path = _real(ns.get_path())
        if (path in live) == ns.closed():
            out.append(
                Violation(
                    NETNS,
                    f"sandbox {sb.id[:12]}: netns {path} closed()="
                    f"{ns.closed()} but the projection says "
                    f"{'live' if path in live else 'not live'}",
                )
            )
    return out


# -- 4: verify -----------------------------------------------------------------


def check_verify(state_dir: str, netns_dir: str, obs: Observation) -> list[Violation]:
    """Check 4: the log verifies whole, keeps the acknowledged head, and (if the
    replay package offers it) every transition re-checks."""
    import eventlog

    out: list[Violation] = []
    head = obs.last_acked_digest
    report = eventlog.verify(storeio.log_dir(state_dir), head=head)
    if not report.ok:
        out.append(Violation(VERIFY, f"eventlog.verify: {report.problem}"))
    if report.torn_tail:
        out.append(
            Violation(
                VERIFY,
                f"eventlog.verify: {report.torn_tail} torn bytes remain "
                f"after the writer's recovery ({report.torn_reason})",
            )
        )
    ok, problems = storeio.replay_verify(state_dir, netns_dir, head)
    if not ok:
        out.append(Violation(VERIFY, "replay.verify: " + "; ".join(problems[:5])))
    return out


# -- 5: accepts new commands ----------------------------------------------------------


def check_accepts(store: Any, state_dir: str, netns_dir: str, seed: int) -> list[Violation]:
    """Check 5: add (with a namespace) + delete on the recovered store, then reopen.

    Closes ``store``.
    """
    from sandbox.netns import is_live_netns

    out: list[Violation] = []
    rng = random.Random(f"accepts:{seed}")
    sid = f"{rng.getrandbits(256):064x}"
    op = wl.Op(
        index=10_000,
        kind=wl.ADD,
        target=sid,
        sandbox_id=sid,
        name=f"aftercrash_crash_{rng.getrandbits(64):016x}_0",
        create_netns=True,
        state=wl.READY,
        pid=4242,
    )
    path = ""
    try:
        sb = store.add(storeio.make_sandbox(op), create_netns=True)
        path = sb.netns.get_path() if sb.netns is not None else ""
        if not path or not is_live_netns(path):
            out.append(Violation(ACCEPTS, f"add after recovery: namespace {path!r} is not live"))
        store.delete(sid)
        if store.get(sid) is not None:
            out.append(Violation(ACCEPTS, "delete after recovery: the sandbox is still there"))
        if path and os.path.lexists(path):
            out.append(Violation(ACCEPTS, f"delete after recovery: {path} still exists"))
        seq = store.last_seq
    finally:
        store.close()
    again = storeio.open_store(state_dir, netns_dir)
    try:
        if again.get(sid) is not None:
            out.append(Violation(ACCEPTS, "after reopen the deleted sandbox is back"))
        if again.last_seq != seq:
            out.append(
                Violation(ACCEPTS, f"after reopen last_seq is {again.last_seq}, expected {seq}")
            )
    finally:
        again.close()
    return out
