"""Same seed, same runs: the workload, the crash points, the hit counts, and
what each child got acknowledged before it died."""

from __future__ import annotations

import os

from replay.crash import harness

POINTS = [p for p in harness.HIT_CAPS if p != "reconcile.mid"] + ["sigkill"]


def _summary(report: harness.CrashReport) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for r in report.results:
        if r.spec.point == harness.SIGKILL_POINT:
            # The moment of a random kill races the child: only the plan repeats.
            out.append((r.spec,))
        else:
            out.append((r.spec, r.fired, r.how, r.acked_ops, r.fingerprint))
    return out


def test_same_seed_same_runs(crash_dir: str) -> None:
    a = harness.run_crashtest(len(POINTS), 2024, POINTS, workdir=crash_dir)
    b = harness.run_crashtest(len(POINTS), 2024, POINTS, workdir=crash_dir)
    assert a.ok and b.ok, a.to_table() + b.to_table()
    assert _summary(a) == _summary(b)
    assert sum(r.fired for r in a.results) >= len(POINTS) - 2


def test_repro_command_gives_the_same_run(crash_dir: str) -> None:
    """Byte for byte, power-loss cut included - also from another work dir."""
    deep = os.path.join(crash_dir, "a" * 20, "b" * 20)
    os.makedirs(deep)
    report = harness.run_crashtest(6, 31, "all", power_loss=True, workdir=deep)
    for r in report.results:
        if r.spec.point == harness.SIGKILL_POINT:
            continue
        again = harness.run_crashtest(1, r.spec.seed, r.spec.point, True, workdir=crash_dir)
        one = again.results[0]
        assert (one.spec.hit, one.how, one.acked_ops, one.fingerprint) == (
            r.spec.hit,
            r.how,
            r.acked_ops,
            r.fingerprint,
        )
        assert one.power_loss_actions == r.power_loss_actions


def test_different_seeds_differ(crash_dir: str) -> None:
    a = harness.run_crashtest(3, 1, "append.after_write", workdir=crash_dir)
    b = harness.run_crashtest(3, 2, "append.after_write", workdir=crash_dir)
    assert [r.fingerprint for r in a.results] != [r.fingerprint for r in b.results]
