"""The bounded crashtest CI runs on every change.

Why in the test suite: crash recovery is what this project is for, and a
regression in any package (a missing fsync, a reconcile that leaks, a
snapshot that lies) shows up here first. Size: every crash point and the
random kill, with and without power loss, fitted to about a minute on two
cores (measured and printed; tests never assert on time).

The seed is fixed so that a red CI is about the change, not about the day;
set SANDBOX_CRASHTEST_SEED (e.g. to the date) to explore other runs. A
failure prints the table with the exact ``sandboxctl crashtest --runs 1
--seed S --points P [--power-loss]`` that replays each violating run alone.
"""

from __future__ import annotations

import os
import time

import pytest

from replay.crash import harness

NORMAL_RUNS = 300
POWER_LOSS_RUNS = 200
JOBS = 2


DEFAULT_SEED = 20240607


def _seed() -> int:
    return int(os.environ.get("SANDBOX_CRASHTEST_SEED") or DEFAULT_SEED)


@pytest.mark.crashtest_ci
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("runs", "power_loss"),
    [(NORMAL_RUNS, False), (POWER_LOSS_RUNS, True)],
    ids=["kill", "power-loss"],
)
def test_bounded_crashtest(crash_dir: str, runs: int, power_loss: bool) -> None:
    seed = _seed() + (1 if power_loss else 0)
    started = time.monotonic()
    report = harness.run_crashtest(runs, seed, "all", power_loss, jobs=JOBS, workdir=crash_dir)
    took = time.monotonic() - started
    print(f"\n{report.to_table()}{runs} runs in {took:.1f} s ({JOBS} jobs)")
    assert all(r.ok for r in report.results), report.to_table()
    # Every point must actually have been reached in many of its runs, or the
    # "no violations" above would be about nothing (reconcile.mid needs two
    # pending actions in one reconcile, so it fires in about half its runs).
    for row in report.by_point():
        assert row["fired"] >= row["runs"] // 3, row
