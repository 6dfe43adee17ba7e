"""The checks on one crash state of the reorder model, through the public API.

A state is a directory a crash could leave (``states``); what must hold
(DESIGN.md, "eventlog: the contract"):

``open``     ``EventLog.open`` succeeds: every crash state reopens, no
             ``CorruptLogError``;
``agree``    ``verify`` on the crashed bytes and writer-open agree: a log
             verify calls clean opens (the converse is not asked: open checks
             only the last segment, by design);
``read``     the reopened log reads without error;
``acked``    every record whose append was acknowledged before the crash (and
             that the workload's durability guarantees) is there with its
             seq and exact payload;
``issued``   every record read is one that some append issued, with the
             same seq: nothing invented, nothing shifted;
``append``   one more append succeeds, gets the next seq and reads back;
``verify``   after that, ``verify`` reports the log ok.

Every check runs against the real files (no mock), in this process; the
broken builds exist only in the traced child.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

import eventlog

__all__ = ["CHECKS", "StateResult", "check_state"]

CHECKS = ("open", "agree", "read", "acked", "issued", "append", "verify")
PROBE = {"check": "one more append after the crash"}


@attrs.frozen
class StateResult:
    """What checking one state found: violations as (check, message), what
    writer-open repaired ("" for nothing), and how many records it read."""

    violations: tuple[tuple[str, str], ...]
    repaired: str = ""
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _verify_before(log_dir: str) -> eventlog.VerifyReport | None:
    """verify on the crashed bytes; None when there is no log to verify yet."""
    if not os.path.isdir(log_dir):
        return None
    try:
        return eventlog.verify(log_dir)
    except eventlog.EventLogError:
        return None  # no segment at all: nothing to agree about


def _listing(log_dir: str) -> dict[str, int]:
    """Name -> size of the log's files but LOCK: what writer-open may repair."""
    try:
        with os.scandir(log_dir) as it:
            return {e.name: e.stat().st_size for e in it if e.name != "LOCK"}
    except FileNotFoundError:
        return {}


def _changed(before: dict[str, int], after: dict[str, int]) -> str:
    diff = sorted(set(before.items()) ^ set(after.items()))
    return f"open changed {', '.join(name for name, _ in diff)}" if diff else ""


def _compare(
    records: list[eventlog.Record],
    required: Mapping[int, dict[str, Any]],
    issued: Mapping[int, dict[str, Any]],
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    by_seq = {r.seq: r for r in records}
    end = records[-1].seq if records else 0
    for seq, payload in sorted(required.items()):
        rec = by_seq.get(seq)
        if rec is None:
            found.append(("acked", f"acknowledged seq {seq} lost (log ends at seq {end})"))
        elif rec.payload != payload:
            found.append(("acked", f"acknowledged seq {seq} changed: {rec.payload!r:.120}"))
    for rec in records:
        want = issued.get(rec.seq)
        if want is None or want != rec.payload:
            found.append(("issued", f"seq {rec.seq} holds a record never issued with that seq"))
    return found


def check_state(
    log_dir: str,
    required: Mapping[int, dict[str, Any]],
    issued: Mapping[int, dict[str, Any]],
    *,
    segment_bytes: int,
) -> StateResult:
    """Run every check on the crash state whose log is at ``log_dir`` (changes it)."""
    before = _verify_before(log_dir)
    listing = _listing(log_dir)
    found: list[tuple[str, str]] = []
    try:
        log = eventlog.EventLog.open(log_dir, durability="always", segment_bytes=segment_bytes)
    except Exception as exc:
        found.append(("open", _error(exc)))
        if before is not None and before.ok:
            found.append(("agree", "verify called the crashed log clean but open refused it"))
        return StateResult(tuple(found))
    repaired = getattr(log, "recovery", "") or _changed(listing, _listing(log_dir))
    records: list[eventlog.Record] = []
    try:
        try:
            records = list(eventlog.read(log_dir))
        except Exception as exc:
            found.append(("read", _error(exc)))
        found.extend(_compare(records, required, issued))
        last = records[-1].seq if records else 0
        try:
            seq = log.append(PROBE)
            back = list(eventlog.read(log_dir, from_seq=seq))
            if seq != last + 1 or [(r.seq, r.payload) for r in back] != [(seq, PROBE)]:
                text = f"appended seq {seq} after {last}; read back {back!r:.120}"
                found.append(("append", text))
        except Exception as exc:
            found.append(("append", _error(exc)))
    finally:
        log.close()
    try:
        after = eventlog.verify(log_dir)
        if not after.ok:
            found.append(("verify", f"after reopen and append: {after.problem}"))
    except Exception as exc:
        found.append(("verify", _error(exc)))
    return StateResult(tuple(found), repaired, len(records))
