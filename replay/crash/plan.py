"""Planning a crashtest: which runs, with which seeds, killed where.

Why a module of its own: a violation is only useful if it can be replayed
alone, so everything a run does is derived here, purely, from (run seed,
point, power loss) - see ``replay.crash.harness`` for the derivation rule.
Nothing here starts a process or touches a file; ``plan_runs`` with equal
arguments gives equal runs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import attrs

from replay.crash import powerloss

#: The pseudo crash point "killed by the parent at a random moment".
SIGKILL_POINT = "sigkill"
#: Operations per child; the hit counts below are tuned against it.
DEFAULT_MAX_OPS = 80
#: The environment variable crash points are armed by (eventlog.crashpoints.ENV).
ENV = "SANDBOX_CRASHPOINT"

#: Upper bound of the seeded hit count per point: about the fewest hits an
#: 80-op workload makes there (measured over 8 seeds: append.* 70-88 per
#: run, batch/netns/intent 11-14, rotate.* 6-8, snapshot.* 1-8,
#: reconcile.mid 0-2); scaled with ``--ops``. A point not reached by then is
#: recorded as "not fired" - the run still ends in a kill and is still checked.
HIT_CAPS: dict[str, int] = {
    "append.before_write": 70,
    "append.after_write": 70,
    "append.after_fsync": 70,
    "batch.mid_write": 11,
    "rotate.after_sync_old": 6,
    "rotate.after_create": 6,
    "rotate.after_header": 6,
    "snapshot.after_temp_write": 4,
    "snapshot.after_temp_fsync": 4,
    "snapshot.after_rename": 4,
    "store.after_intent": 11,
    "netns.after_placeholder": 11,
    "netns.after_mount_before_record": 11,
    "reconcile.mid": 1,
}
DEFAULT_HIT_CAP = 4


#: Crash points the store workload never reaches: its commands never compact
#: (``Store.compact``, ``sandboxctl compact``), so these points are crash-tested
#: by tests/eventlog/test_eventlog_compact.py and the retention tests of
#: tests/sandbox (SIGKILL at each), not here.
NOT_IN_STORE_WORKLOAD = ("compact.",)


def known_points() -> dict[str, str]:
    """Every registered crash point the store workload can reach (name -> where),
    importing the modules that register them, plus the ``sigkill`` pseudo point."""
    import sandbox.store  # noqa: F401  (imports eventlog.writer, netns, snapshot, reconciler)
    from eventlog import crashpoints

    points = {
        name: where
        for name, where in sorted(crashpoints.POINTS.items())
        if not name.startswith(NOT_IN_STORE_WORKLOAD)
    }
    points[SIGKILL_POINT] = "the parent sends SIGKILL a seeded moment after the k-th ack"
    return points


def resolve_points(spec: str | Sequence[str]) -> list[str]:
    """``all`` or a comma list of names -> the point list; ValueError for an unknown one."""
    names = [spec] if isinstance(spec, str) else list(spec)
    parts = [p.strip() for name in names for p in name.split(",") if p.strip()]
    known = known_points()
    if not parts or parts == ["all"]:
        return list(known)
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise ValueError(
            f"unknown crash point(s) {', '.join(unknown)}; expected all or some of: "
            + ", ".join(known)
        )
    return list(dict.fromkeys(parts))


def run_seed(master: int, index: int) -> int:
    """Run ``index``'s seed: the master seed itself for run 0, a hash otherwise."""
    if index == 0:
        return master
    digest = hashlib.sha256(f"crashtest:{master}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@attrs.frozen
class RunSpec:
    """Everything that defines one run; derived from (run seed, point, power loss)."""

    index: int
    seed: int
    point: str
    power_loss: bool
    max_ops: int
    hit: int
    kill_after: int
    kill_delay: float
    plan: powerloss.PowerLossPlan | None

    @classmethod
    def derive(
        cls, index: int, seed: int, point: str, power_loss: bool, max_ops: int = DEFAULT_MAX_OPS
    ) -> RunSpec:
        rng = random.Random(f"crashrun:{seed}:{point}")
        cap = HIT_CAPS.get(point, DEFAULT_HIT_CAP) * max_ops // DEFAULT_MAX_OPS
        hit = rng.randint(1, max(1, cap))
        kill_after = rng.randint(0, max(0, max_ops * 9 // 10))
        kill_delay = rng.uniform(0.0, 0.004)
        plan = powerloss.PowerLossPlan.draw(rng) if power_loss else None
        return cls(index, seed, point, power_loss, max_ops, hit, kill_after, kill_delay, plan)

    @property
    def armed(self) -> str | None:
        """The SANDBOX_CRASHPOINT value for the child (None for ``sigkill``)."""
        return None if self.point == SIGKILL_POINT else f"{self.point}:kill:{self.hit}"

    def repro(self, max_ops: int = DEFAULT_MAX_OPS) -> str:
        cmd = f"sandboxctl crashtest --runs 1 --seed {self.seed} --points {self.point}"
        if self.power_loss:
            cmd += " --power-loss"
        if self.max_ops != max_ops:
            cmd += f" --ops {self.max_ops}"
        return cmd

    def describe_kill(self) -> str:
        if self.armed is None:
            return f"SIGKILL {self.kill_delay * 1000:.2f} ms after ack {self.kill_after}"
        return f"{ENV}={self.armed}"


def plan_runs(
    runs: int,
    seed: int,
    points: str | Sequence[str] = "all",
    power_loss: bool = False,
    *,
    max_ops: int = DEFAULT_MAX_OPS,
) -> list[RunSpec]:
    """The specs of a crashtest: pure, so equal arguments give equal runs."""
    names = resolve_points(points)
    return [
        RunSpec.derive(i, run_seed(seed, i), names[i % len(names)], power_loss, max_ops)
        for i in range(runs)
    ]
