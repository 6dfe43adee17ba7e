"""What a run of the reorder model found, as a table for people and a dict for scripts.

Why violations are also grouped: a defect in the log's recovery rule fails
every crash state of its shape - hundreds of states with one cause. The
table prints one line per cause (workload, check, the reason with numbers
and paths blanked) with a count and one example state, then the first
violations in full; ``-o json`` has every violation.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import attrs

from replay import output
from replay.crash.states import KINDS

__all__ = ["ReorderReport", "Violation", "WorkloadResult", "cause"]

#: Violations printed in full by the table (json has all).
SHOWN = 8


@attrs.frozen
class Violation:
    """One failed check of one crash state, with what it takes to find it again."""

    workload: str
    kind: str
    check: str
    message: str
    state: str
    seed: int
    states: int
    kept: str = ""

    @property
    def repro(self) -> str:
        return (
            f"sandboxctl crashtest --model reorder --workload {self.workload} "
            f"--seed {self.seed} --states {self.states}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "kind": self.kind,
            "check": self.check,
            "message": self.message,
            "state": self.state,
            "cause": cause(self),
            "repro": self.repro,
            "kept": self.kept,
        }


_PATH = re.compile(r"/\S+/")
_NUM = re.compile(r"\d+")


def cause(v: Violation) -> str:
    """The violation's reason with paths, offsets and seqs blanked: one per defect."""
    text = v.message.split(": ", 2)[-1] if v.check == "open" else v.message
    text = _PATH.sub(".../", text)
    return f"{v.check}: {_NUM.sub('N', text)}"


@attrs.define
class WorkloadResult:
    """One workload's trace and the states checked from it."""

    name: str
    events: int = 0
    points: int = 0
    acks: int = 0
    by_kind: Counter[str] = attrs.field(factory=Counter)
    failed_by_kind: Counter[str] = attrs.field(factory=Counter)
    recovery_runs: int = 0
    #: Every generator ran dry: each state (up to the per-point caps) was checked.
    exhausted: bool = False
    violations: list[Violation] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    #: Hash of the checked states' descriptions, in order: equal seeds and
    #: traces give equal fingerprints (the determinism test compares them).
    fingerprint: str = ""

    @property
    def states(self) -> int:
        return sum(self.by_kind.values())

    @property
    def failed_states(self) -> int:
        return sum(self.failed_by_kind.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.name,
            "trace_events": self.events,
            "crash_points": self.points,
            "acks": self.acks,
            "states": self.states,
            "states_by_kind": {k: self.by_kind.get(k, 0) for k in KINDS},
            "failed_states": self.failed_states,
            "failed_states_by_kind": {k: self.failed_by_kind.get(k, 0) for k in KINDS},
            "recovery_runs": self.recovery_runs,
            "exhausted": self.exhausted,
            "fingerprint": self.fingerprint,
            "notes": list(self.notes),
            "violations": [v.to_dict() for v in self.violations],
        }


@attrs.frozen
class ReorderReport:
    """The whole run: its seed, its bound, the build, one result per workload."""

    seed: int
    states: int
    fault: str
    results: tuple[WorkloadResult, ...]

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.violations]

    @property
    def ok(self) -> bool:
        return not self.violations

    def causes(self) -> list[tuple[str, str, int, int, Violation]]:
        """(workload, cause, violations, distinct states, an example) per cause."""
        counts: Counter[tuple[str, str]] = Counter()
        states: dict[tuple[str, str], set[str]] = {}
        first: dict[tuple[str, str], Violation] = {}
        for v in self.violations:
            key = (v.workload, cause(v))
            counts[key] += 1
            states.setdefault(key, set()).add(v.state)
            first.setdefault(key, v)
        return [(w, c, n, len(states[(w, c)]), first[(w, c)]) for (w, c), n in counts.items()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "reorder",
            "seed": self.seed,
            "states_bound": self.states,
            "build": self.fault or "real",
            "ok": self.ok,
            "states": sum(r.states for r in self.results),
            "failed_states": sum(r.failed_states for r in self.results),
            "causes": [
                {"workload": w, "cause": c, "violations": n, "states": s, "example": v.state}
                for w, c, n, s, v in self.causes()
            ],
            "workloads": [r.to_dict() for r in self.results],
        }

    def to_table(self) -> str:
        head = [
            f"reorder model: seed {self.seed}, up to {self.states} states, "
            f"build: {self.fault or 'real'}\n"
        ]
        cols = ["WORKLOAD", "EVENTS", "POINTS", "ACKS", "STATES"]
        cols += [k.upper() for k in KINDS] + ["FAILED", "EXHAUSTED"]
        rows: list[list[object]] = []
        for r in self.results:
            rows.append(
                [r.name, r.events, r.points, r.acks, r.states]
                + [r.by_kind.get(k, 0) for k in KINDS]
                + [r.failed_states, "yes" if r.exhausted else "no"]
            )
        total = [sum(r.by_kind.get(k, 0) for r in self.results) for k in KINDS]
        states = sum(r.states for r in self.results)
        failed = sum(r.failed_states for r in self.results)
        rows.append(["total", "", "", "", states, *total, failed, ""])
        parts = [*head, output.table(cols, rows)]
        for r in self.results:
            parts.extend(f"note ({r.name}): {n}\n" for n in r.notes)
        if self.ok:
            parts.append("no violation\n")
            return "".join(parts)
        parts.append("\nCAUSES (workload, check: reason - violations / states, an example):\n")
        for w, c, n, s, v in self.causes():
            parts.append(f"  {w}  {c}  - {n} / {s}\n    e.g. {v.state}\n")
        parts.append(f"\nVIOLATIONS (first {SHOWN} of {len(self.violations)}):\n")
        for v in self.violations[:SHOWN]:
            parts.append(f"  [{v.workload}, {v.kind}] {v.check}: {v.message}\n")
            parts.append(f"    state: {v.state}\n    repro: {v.repro}\n")
            if v.kept:
                parts.append(f"    kept: {v.kept}\n")
        return "".join(parts)
