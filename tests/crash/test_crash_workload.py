"""The workload and the run plan are pure functions of the seed.

Why it matters: a violation is reported with a seed, and that seed must
bring back the same commands, the same crash point and the same hit count,
on any machine, in any process.
"""

from __future__ import annotations

import attrs

from replay.crash import harness
from replay.crash import workload as wl


def test_same_seed_same_ops() -> None:
    assert wl.take(1234, 200) == wl.take(1234, 200)


def test_different_seeds_differ() -> None:
    assert wl.take(1, 50) != wl.take(2, 50)


def test_prefix_is_stable() -> None:
    """A run cut short (a kill) saw a prefix of the same stream."""
    assert wl.take(99, 200)[:37] == wl.take(99, 37)


def test_workload_covers_every_kind_and_follows_its_model() -> None:
    ops = wl.take(7, 400)
    assert {op.kind for op in ops} == set(wl.KINDS)
    assert any(op.kind == wl.ADD and op.create_netns for op in ops)
    assert any(op.kind == wl.ADD and not op.create_netns for op in ops)
    assert any(op.expect == wl.ERR_EXISTS for op in ops)
    assert any(op.expect == wl.ERR_TRANSITION for op in ops)
    assert any(op.expect == wl.NOOP for op in ops)
    live: dict[str, str] = {}
    for op in ops:
        if op.kind == wl.ADD and op.expect == wl.OK:
            assert op.sandbox_id not in live
            live[op.sandbox_id] = op.state
        elif op.kind == wl.DELETE and op.expect == wl.OK:
            assert op.sandbox_id in live and op.sandbox_id.startswith(op.target)
            del live[op.sandbox_id]
        elif op.kind == wl.UPDATE_STATUS and op.expect == wl.OK:
            assert op.state in wl.LEGAL[live[op.sandbox_id]]
            live[op.sandbox_id] = op.state
        elif op.kind == wl.UPDATE_STATUS:
            assert op.state not in wl.LEGAL[live[op.sandbox_id]]


def test_run_zero_uses_the_master_seed() -> None:
    assert harness.run_seed(42, 0) == 42
    assert harness.run_seed(42, 1) != 42
    assert harness.run_seed(42, 1) == harness.run_seed(42, 1)


def test_same_seed_same_plan() -> None:
    a = harness.plan_runs(40, 5, "all", power_loss=True)
    b = harness.plan_runs(40, 5, "all", power_loss=True)
    assert a == b
    assert len({s.point for s in a}) == len(harness.known_points())


def test_repro_command_replays_the_same_run() -> None:
    """`--runs 1 --seed <run seed> --points <point>` is exactly run i."""
    for spec in harness.plan_runs(30, 77, "all", power_loss=True):
        again = harness.plan_runs(1, spec.seed, spec.point, power_loss=True)[0]
        assert attrs.evolve(again, index=spec.index) == spec
        assert f"--seed {spec.seed} --points {spec.point} --power-loss" in spec.repro()
