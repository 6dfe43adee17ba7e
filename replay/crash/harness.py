"""Crash-test runs end to end: plan, child, power loss, checks, report.

Why runs are derived this way: a violation is only useful if it can be
replayed alone. Run ``i`` of master seed ``S`` gets its own seed
(``run_seed(S, i)``, with run 0's seed equal to ``S``) and its crash point
(``points[i % len(points)]``); everything else - the workload, the hit
count at which the armed point kills, the moment of a random kill, the
power-loss cut - is drawn from that run seed and the point. So
``sandboxctl crashtest --runs 1 --seed <run seed> --points <point>
[--power-loss]`` is the same run, and the report prints exactly that
command for every violation.

A run:

1. fresh temp state_dir and netns_dir;
2. ``python -m replay.crash.child`` with ``SANDBOX_CRASHPOINT=<point>:kill:<n>``
   (or no point: the parent SIGKILLs it a seeded moment after its k-th
   acknowledged command - the ``sigkill`` pseudo point); the child reports
   every acknowledged command on a pipe; a child that finishes its workload
   without hitting its point is killed too (every run ends in SIGKILL);
3. with ``--power-loss``, the unsynced part of the log is cut or zeroed and
   maybe the machine "reboots" (``powerloss``);
4. the five checks (``checks``), run in this process: reopen, compare;
5. every namespace mount under the run's directories is detached and the
   directories removed (``keep_failed`` keeps a failing run's state dir).

The parts live apart - ``plan`` (specs and seeds), ``runner`` (the child),
``report`` (results and their rendering), ``cleanup`` (mounts) - and this
module ties them into ``run_one`` and ``run_crashtest``. It re-exports the
names the CLI, the tests and ``replay.crash`` use from here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import attrs

from replay.crash import checks, cleanup, powerloss, storeio
from replay.crash.plan import (
    DEFAULT_HIT_CAP,
    DEFAULT_MAX_OPS,
    ENV,
    HIT_CAPS,
    SIGKILL_POINT,
    RunSpec,
    known_points,
    plan_runs,
    resolve_points,
    run_seed,
)
from replay.crash.report import CrashReport, RunResult, fingerprint
from replay.crash.runner import CHILD_TIMEOUT, ChildRun, classify, run_child
from sandbox import mounts

__all__ = [
    "CHILD_TIMEOUT",
    "DEFAULT_HIT_CAP",
    "DEFAULT_MAX_OPS",
    "ENV",
    "HIT_CAPS",
    "NETNS_PATH_WIDTH",
    "SIGKILL_POINT",
    "ChildRun",
    "CrashReport",
    "RunResult",
    "RunSpec",
    "clear_dir",
    "known_points",
    "plan_runs",
    "resolve_points",
    "run_child",
    "run_crashtest",
    "run_netns_dir",
    "run_one",
    "run_seed",
]


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")


@contextlib.contextmanager
def _captured_logs() -> Iterator[list[str]]:
    """Collect what recovery logs (torn tails cut, snapshots skipped, reconcile
    errors) into the run's result instead of the user's terminal."""
    lines: list[str] = []
    handler = _ListHandler(lines)
    loggers = [logging.getLogger(name) for name in ("eventlog", "sandbox", "replay")]
    saved = [(lg, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield lines
    finally:
        for lg, propagate in saved:
            lg.removeHandler(handler)
            lg.propagate = propagate


#: The absolute length the harness pads each run's netns_dir path to.
NETNS_PATH_WIDTH = 200


def run_netns_dir(base: str) -> str:
    """The run's netns_dir under ``base``, padded to NETNS_PATH_WIDTH characters.

    Why: namespace paths are written into the log (NetNSAssigned...), so their
    length decides every record's size, hence where segments rotate and which
    bytes a power-loss cut hits. Padding makes a run replayed with ``--runs 1
    --seed S`` (another run index, another --workdir) lay out the same bytes
    and take the same cut.
    """
    base = os.path.abspath(base)
    fill = max(1, NETNS_PATH_WIDTH - len(base) - 1)
    return os.path.join(base, "n" * fill)


def run_one(
    spec: RunSpec,
    *,
    workdir: str | None = None,
    keep_failed: bool = False,
    launch: str = "fork",
) -> RunResult:
    """Run one crash test end to end (see the module docstring)."""
    started = time.monotonic()
    base = tempfile.mkdtemp(prefix=f"crashtest-{spec.index}-", dir=workdir)
    state_dir = os.path.join(base, "state")
    netns_dir = run_netns_dir(base)
    os.makedirs(netns_dir)
    err_path = os.path.join(base, "child.stderr")
    violations: list[checks.Violation] = []
    actions: list[str] = []
    kept = ""
    try:
        seen = run_child(spec, state_dir, netns_dir, err_path, launch)
        with open(err_path, encoding="utf-8", errors="replace") as f:
            stderr = f.read()
        fired, how, found = classify(spec, seen, seen.returncode, stderr)
        violations += found
        obs = seen.observation()
        if spec.plan is not None and os.path.isdir(state_dir):
            durable = None
            if seen.durable is not None:
                seg, off, segs, snaps = seen.durable
                durable = powerloss.Durable(str(seg), int(off), tuple(segs), tuple(snaps))
            actions = powerloss.simulate(
                storeio.log_dir(state_dir), durable, spec.plan, netns_dir=netns_dir
            )
        with _captured_logs() as recovery_log:
            violations += checks.run_checks(
                state_dir,
                netns_dir,
                obs,
                spec.seed,
                open_store=lambda: storeio.open_store(state_dir, netns_dir),
            )
        acked_events = sum(len(a.records) for a in seen.acks)
        result = RunResult(
            spec=spec,
            fired=fired,
            how=how,
            acked_ops=len(seen.acks),
            acked_events=acked_events,
            in_flight=seen.in_flight.describe() if seen.in_flight is not None else "",
            power_loss_actions=tuple(actions),
            violations=tuple(violations),
            seconds=0.0,
            fingerprint=fingerprint(seen.acks),
            stderr_tail="\n".join(stderr.strip().splitlines()[-20:]) if violations else "",
            recovery_log=tuple(recovery_log),
        )
    finally:
        if keep_failed and violations:
            kept = base
            cleanup.clear(netns_dir)  # never keep namespaces alive
        else:
            cleanup.clear(base, remove_dir=True)
    if mounts.mounts_under(base):
        raise RuntimeError(f"crash harness could not clear the mounts under {base}")
    return attrs.evolve(result, seconds=time.monotonic() - started, kept=kept)


def _run_in_worker(args: tuple[RunSpec, str | None, bool, str]) -> RunResult:
    spec, workdir, keep_failed, launch = args
    return run_one(spec, workdir=workdir, keep_failed=keep_failed, launch=launch)


def run_crashtest(
    runs: int = 100,
    seed: int | None = None,
    points: str | Sequence[str] = "all",
    power_loss: bool = False,
    *,
    jobs: int = 1,
    max_ops: int = DEFAULT_MAX_OPS,
    keep_failed: bool = False,
    workdir: str | None = None,
    launch: str = "fork",
    progress: Callable[[RunResult], None] | None = None,
) -> CrashReport:
    """Run ``runs`` crash tests and return the report (the Python API of
    ``sandboxctl crashtest``). ``seed`` None draws one (printed in the report).

    ``jobs`` > 1 runs that many worker processes (started with "spawn", so a
    script calling this needs the usual ``if __name__ == "__main__":`` guard).
    """
    from eventlog import crashpoints

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if launch not in ("fork", "exec"):
        raise ValueError(f"launch must be 'fork' or 'exec', got {launch!r}")
    if os.geteuid() != 0:
        raise PermissionError("crashtest needs root: the store creates real network namespaces")
    crashpoints.disarm()  # this process reopens stores: it must never die at a point
    if seed is None:
        seed = random.SystemRandom().getrandbits(32)
    started = time.monotonic()
    specs = plan_runs(runs, seed, points, power_loss, max_ops=max_ops)
    results: list[RunResult] = []
    if jobs == 1:
        for spec in specs:
            res = run_one(spec, workdir=workdir, keep_failed=keep_failed, launch=launch)
            results.append(res)
            if progress is not None:
                progress(res)
    else:
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [
                pool.submit(_run_in_worker, (s, workdir, keep_failed, launch)) for s in specs
            ]
            for fut in concurrent.futures.as_completed(futures):
                res = fut.result()
                results.append(res)
                if progress is not None:
                    progress(res)
        results.sort(key=lambda r: r.spec.index)
    names = tuple(dict.fromkeys(s.point for s in specs))
    return CrashReport(
        seed=seed,
        runs=runs,
        points=names,
        power_loss=power_loss,
        results=tuple(results),
        seconds=time.monotonic() - started,
    )


def clear_dir(path: str) -> None:
    """Detach mounts under ``path`` and remove it (tests' cleanup)."""
    cleanup.clear(path, remove_dir=True)
    shutil.rmtree(path, ignore_errors=True)
