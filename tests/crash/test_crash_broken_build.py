"""A deliberately broken build IS caught: the harness can fail.

Why this test exists: a crash harness that cannot fail is worthless, and a
harness bug that makes every check vacuous would look exactly like a
healthy store. So we break the store on purpose with the test-only fault
``SANDBOX_TEST_FAULT=ack-before-fsync``, read only by the crash child
(replay/crash/faults.py: the child's fsync wrapper skips the real sync of
segment files and records nothing durable for them, while the writer
believes it synced and acknowledges the append), and demand that ``crashtest
--power-loss`` reports acknowledged events lost - and that the same runs on
the real build report nothing. The durable offsets the power-loss cut keeps
are measured by that wrapper, not taken from the writer's own claim.

The children are started with ``--launch exec`` (``python -m
replay.crash.child``), which inherit the variable from this process; this
(checking) process never installs the wrapper, so it is not broken.
"""

from __future__ import annotations

import pytest

from replay.crash import checks, harness

POINTS = ["sigkill", "append.after_write", "store.after_intent", "snapshot.after_rename"]
RUNS = 8
SEED = 4711


@pytest.mark.slow
def test_ack_before_fsync_is_caught_with_power_loss(
    crash_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TEST_FAULT", "ack-before-fsync")
    report = harness.run_crashtest(
        RUNS, SEED, POINTS, power_loss=True, launch="exec", workdir=crash_dir
    )
    assert not report.ok, report.to_table()
    lost = [
        (r, v)
        for r, v in report.violations
        if v.check == checks.ACKED and ("lost" in v.message or "changed" in v.message)
    ]
    # Nearly every run loses acknowledged events (a zero-fill that happens to
    # keep the whole file is the only way out).
    assert len({r.spec.index for r, _ in lost}) >= RUNS // 2, report.to_table()
    text = report.to_table()
    assert "repro: sandboxctl crashtest --runs 1 --seed" in text and "--power-loss" in text


@pytest.mark.slow
def test_same_runs_on_the_real_build_are_clean(crash_dir: str) -> None:
    report = harness.run_crashtest(
        RUNS, SEED, POINTS, power_loss=True, launch="exec", workdir=crash_dir
    )
    assert report.ok, report.to_table()


def test_without_power_loss_the_broken_build_is_invisible(
    crash_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill keeps the page cache: only the power-loss mode can see a missing
    fsync. (Documents why CI runs both modes.)"""
    monkeypatch.setenv("SANDBOX_TEST_FAULT", "ack-before-fsync")
    report = harness.run_crashtest(4, SEED, POINTS, launch="exec", workdir=crash_dir)
    assert report.ok, report.to_table()
