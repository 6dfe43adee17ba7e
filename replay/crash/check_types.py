"""The crash checks' result types and names, shared by every check module.

Why a module of its own: the checks (``checks`` for 1-2, ``live_checks`` for
3-5), the runner that builds ``Observation`` values from the child's reports
and the report that prints ``Violation`` values all need these, and none of
them should have to import the checks themselves to get them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import attrs

from replay.crash import workload as wl
from sandbox.events import NETNS_CLOSED, NETNS_CREATED, NETNS_REMOVED

ACKED = "acked"
PROJECTION = "projection"
NETNS = "netns"
VERIFY = "verify"
ACCEPTS = "accepts"
#: Not one of the five: the child (the store, under the workload) did
#: something the contract forbids while it ran, or died in a way no crash
#: explains; or the store could not be reopened at all.
COMMAND = "command"
CHILD = "child"
REOPEN = "reopen"
CHECKS = (ACKED, PROJECTION, NETNS, VERIFY, ACCEPTS)

#: What a reconcile (the store's own, or the one recovery runs) may write.
EFFECTS = frozenset({NETNS_CREATED, NETNS_REMOVED, NETNS_CLOSED})


@attrs.frozen
class Violation:
    """One broken promise, in words a runtime engineer can act on."""

    check: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "message": self.message}


@attrs.frozen
class AckedRecord:
    """A record the child read back right after the command that wrote it."""

    seq: int
    time_ns: int
    digest: bytes
    payload: dict[str, Any]


@attrs.frozen
class Ack:
    """One acknowledged command, as the child reported it."""

    op: wl.Op
    ok: bool
    error: str
    message: str
    before: int
    after: int
    records: tuple[AckedRecord, ...]
    result: Any = None


@attrs.frozen
class Observation:
    """Everything the parent learned from the child before it died."""

    child_pid: int
    open_seq: int
    acks: tuple[Ack, ...]
    in_flight: wl.Op | None

    @property
    def last_acked_seq(self) -> int:
        return max([self.open_seq] + [a.after for a in self.acks])

    @property
    def acked_records(self) -> dict[int, AckedRecord]:
        return {r.seq: r for a in self.acks for r in a.records}

    @property
    def last_acked_digest(self) -> bytes | None:
        recs = self.acked_records
        return recs[max(recs)].digest if recs else None


def etype(payload: dict[str, Any]) -> str:
    """The event type a payload names, ``?`` when it names none."""
    return str(payload.get("type", "?"))


def summ(payload: dict[str, Any]) -> str:
    """``Type(id prefix)``: how a message names one event."""
    sid = str(payload.get("id", ""))
    return f"{etype(payload)}({sid[:12]})"


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Where two snapshot dicts first differ, for a violation message."""
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            va, vb = a.get(key), b.get(key)
            if isinstance(va, list) and isinstance(vb, list):
                for i, (x, y) in enumerate(zip(va, vb, strict=False)):
                    if x != y:
                        return f"{key}[{i}]: {x!r:.200} != {y!r:.200}"
                return f"{key}: {len(va)} entries != {len(vb)}"
            return f"{key}: {va!r:.200} != {vb!r:.200}"
    return "no difference"


def summarize(violations: Iterable[Violation]) -> dict[str, int]:
    """Violations per check, for the table."""
    return dict(collections.Counter(v.check for v in violations))
