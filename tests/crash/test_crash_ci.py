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
import re
import time
import warnings

import pytest

from replay.crash import checks, harness

NORMAL_RUNS = 300
POWER_LOSS_RUNS = 200
JOBS = 2


DEFAULT_SEED = 20240607


def _seed() -> int:
    return int(os.environ.get("SANDBOX_CRASHTEST_SEED") or DEFAULT_SEED)


_ZEROED = re.compile(r"zeroed \S+ bytes (\d+)\.\.(\d+) ")


def known_eventlog_partial_sector_bug(result: harness.RunResult) -> bool:
    """The one open finding (tests/crash/test_crash_findings.py): power loss
    zeroed only the file's last partial sector, holding the last 1-7 bytes of
    an unacknowledged record, and eventlog calls that corruption. Matched
    narrowly - the cut, and nothing but that CorruptLogError - so that any
    other violation still fails CI. Delete this when eventlog is fixed."""
    m = _ZEROED.match(result.power_loss_actions[0]) if result.power_loss_actions else None
    if m is None:
        return False
    start, end = int(m.group(1)), int(m.group(2))
    if start % 512 or not 0 < end - start < 8:
        return False
    return all(
        v.check in (checks.REOPEN, checks.VERIFY) and "record body crc mismatch" in v.message
        for v in result.violations
    )


@pytest.mark.crashtest_ci
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
    failed = [r for r in report.results if not r.ok]
    known = [r for r in failed if known_eventlog_partial_sector_bug(r)]
    assert len(failed) == len(known), report.to_table()
    if known:
        warnings.warn(
            f"{len(known)} run(s) hit the open eventlog partial-sector finding: "
            + "; ".join(r.spec.repro() for r in known),
            stacklevel=1,
        )
    # Every point must actually have been reached in many of its runs, or the
    # "no violations" above would be about nothing (reconcile.mid needs two
    # pending actions in one reconcile, so it fires in about half its runs).
    for row in report.by_point():
        assert row["fired"] >= row["runs"] // 3, row
