"""What crash runs found, and how it is shown: a table for people, a dict for JSON.

Why apart from the runs: rendering changes for readers (columns, the repro
line) and must not touch how a run is carried out; the harness fills
``RunResult`` and ``CrashReport``, the CLI prints them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import attrs

from replay.crash import checks
from replay.crash.plan import RunSpec


@attrs.frozen
class RunResult:
    """What one run did and found."""

    spec: RunSpec
    #: True when the child died where the spec says (the armed point, or the
    #: parent's random kill before the workload ended).
    fired: bool
    how: str
    acked_ops: int
    acked_events: int
    in_flight: str
    power_loss_actions: tuple[str, ...]
    violations: tuple[checks.Violation, ...]
    seconds: float
    #: Hash of (op index, event types) of every acknowledged command: equal
    #: for equal seeds (the determinism test compares it).
    fingerprint: str
    kept: str = ""
    stderr_tail: str = ""
    #: What the recovering store logged (torn tail cut, snapshot skipped, ...).
    recovery_log: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.spec.index,
            "seed": self.spec.seed,
            "point": self.spec.point,
            "power_loss": self.spec.power_loss,
            "kill": self.spec.describe_kill(),
            "fired": self.fired,
            "how": self.how,
            "acked_ops": self.acked_ops,
            "acked_events": self.acked_events,
            "in_flight": self.in_flight,
            "power_loss_actions": list(self.power_loss_actions),
            "violations": [v.to_dict() for v in self.violations],
            "repro": self.spec.repro(),
            "seconds": round(self.seconds, 3),
            "fingerprint": self.fingerprint,
            "kept": self.kept,
            "recovery_log": list(self.recovery_log),
            "child_stderr": self.stderr_tail,
        }


def fingerprint(acks: Sequence[checks.Ack]) -> str:
    """A short hash of (op index, error, record seqs and types) of every ack:
    equal seeds must give equal fingerprints, which is what determinism means."""
    h = hashlib.sha256()
    for a in acks:
        h.update(f"{a.op.index}:{a.error}:".encode())
        for r in a.records:
            h.update(f"{r.seq}/{r.payload.get('type')},".encode())
    return h.hexdigest()[:16]


@attrs.frozen
class CrashReport:
    """All runs of one ``run_crashtest`` call, and how to render them."""

    seed: int
    runs: int
    points: tuple[str, ...]
    power_loss: bool
    results: tuple[RunResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def violations(self) -> list[tuple[RunResult, checks.Violation]]:
        return [(r, v) for r in self.results for v in r.violations]

    def by_point(self) -> list[dict[str, Any]]:
        rows = []
        for point in self.points:
            mine = [r for r in self.results if r.spec.point == point]
            if not mine:
                continue
            rows.append(
                {
                    "point": point,
                    "runs": len(mine),
                    "fired": sum(1 for r in mine if r.fired),
                    "acked_events": sum(r.acked_events for r in mine),
                    "violations": sum(len(r.violations) for r in mine),
                    "failed_runs": sum(1 for r in mine if not r.ok),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "runs": self.runs,
            "points": list(self.points),
            "power_loss": self.power_loss,
            "ok": self.ok,
            "violations": len(self.violations),
            "seconds": round(self.seconds, 2),
            "by_point": self.by_point(),
            "results": [r.to_dict() for r in self.results],
        }

    def to_table(self) -> str:
        from replay import output

        rows = [
            [r["point"], r["runs"], r["fired"], r["acked_events"], r["violations"]]
            for r in self.by_point()
        ]
        rows.append(
            [
                "TOTAL",
                len(self.results),
                sum(1 for r in self.results if r.fired),
                sum(r.acked_events for r in self.results),
                len(self.violations),
            ]
        )
        text = output.table(["CRASH POINT", "RUNS", "FIRED", "ACKED EVENTS", "VIOLATIONS"], rows)
        text += (
            f"\nseed {self.seed}, {len(self.results)} runs"
            f"{', power loss' if self.power_loss else ''}, {self.seconds:.1f} s: "
            + ("no violations\n" if self.ok else f"{len(self.violations)} violation(s)\n")
        )
        for r in self.results:
            if r.ok:
                continue
            text += (
                f"\nrun {r.spec.index} (seed {r.spec.seed}, {r.spec.point}, "
                f"{r.spec.describe_kill()}): {r.how}; {r.acked_ops} commands acked"
                + (f", in flight: {r.in_flight}" if r.in_flight else "")
                + "\n"
            )
            for a in r.power_loss_actions:
                text += f"  power loss: {a}\n"
            for line in r.recovery_log:
                text += f"  recovery {line}\n"
            for v in r.violations:
                body = v.message.replace("\n", "\n      ")
                text += f"  [{v.check}] {body}\n"
            text += f"  repro: {r.spec.repro()}\n"
            if r.kept:
                text += f"  kept: {r.kept}\n"
        return text
