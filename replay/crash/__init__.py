"""Crash-recovery testing: kill a store at its crash points and check what survived.

    from replay.crash import run_crashtest
    report = run_crashtest(runs=100, seed=1, points="all", power_loss=False)
    report.ok, report.to_table(), report.to_dict()

Why the names are loaded lazily: ``python -m replay.crash.child`` (the
process that gets killed) imports this package too, and must start fast
without pulling the harness, the checks and the replay tooling in.
See docs/CRASHTEST.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replay.crash.harness import CrashReport, RunResult, RunSpec, plan_runs, run_crashtest

__all__ = ["CrashReport", "RunResult", "RunSpec", "plan_runs", "run_crashtest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from replay.crash import harness

        return getattr(harness, name)
    raise AttributeError(f"module 'replay.crash' has no attribute {name!r}")
