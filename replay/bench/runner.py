"""``sandboxctl bench``: every benchmark of the project in one process tree and one run.

Why one runner: a ratio is only meaningful when its figure and its
reference were measured on the same machine in the same state, and two
ratios are only comparable when they come from the same run. So this
module runs the per-area benchmark modules (``replay.bench.log``,
``.store``, ``.netns``, ``.fleet``) and the ones it owns (``.openscale``,
``.verify``) one after the other, in this process, with one scratch
directory, repeats each row function, takes the medians (with their
min..max spread: ``replay.bench.rows.aggregate``), and hands one
``SuiteResult`` per suite, in a ``Report`` under the machine's facts, to
``replay.bench.render``.

A suite that cannot run here is never silently left out: its rows appear
with the reason (``skipped: needs root``, ``skipped: pip install .[bench]``,
``skipped: nats-server not installed (pip install ".[fleet]")``), and one
that fails shows
``error: ...`` in its rows, the others still run, and the exit status is 1.
A figure that misses its target does NOT change the exit status: CI runs
``--quick`` to print the figures, never to judge them (noisy 2-core VMs).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

import attrs

from . import log as log_bench
from . import machine
from . import store as store_bench
from .openlive import bench_open_live
from .openlive import row_name as open_live_name
from .openscale import History, OpenPoint, bench_open_scale
from .plan import Plan
from .render import Report
from .rows import Row, SuiteResult, aggregate
from .verify import bench_verify, bench_verify_history

__all__ = [
    "GROUPS",
    "BenchResult",
    "Plan",
    "expected_names",
    "run",
]

Progress = Callable[[str], None]

#: Suites in the order they run and print.
GROUPS = ("log", "store", "open", "verify", "netns", "eventsourcing", "fleet")

NEEDS_BENCH_EXTRA = "skipped: pip install .[bench]"
NEEDS_ROOT = "skipped: needs root (creates network namespaces)"
NEEDS_NATS = 'skipped: nats-server not installed (pip install ".[fleet]")'


@attrs.define
class _Context:
    """What the suites of one run share."""

    plan: Plan
    parent: str
    progress: Progress
    groups: Sequence[str] = GROUPS
    open_points: list[OpenPoint] = attrs.field(factory=list)
    verify_rows: list[Row] | None = None
    verify_error: Exception | None = None
    replay_rate: float | None = None


@attrs.frozen
class BenchResult:
    """One run: the report to render, each suite's result, the open-scale points for the plot."""

    report: Report
    suites: Sequence[SuiteResult]
    open_points: list[OpenPoint]

    @property
    def errors(self) -> list[str]:
        """``group: error: ...`` for each suite that failed (the exit status is then 1)."""
        return [f"{s.group}: {s.error}" for s in self.suites if s.error is not None]


def _repeat(
    ctx: _Context, label: str, group: str, reps: int, fn: Callable[[], list[Row]]
) -> list[Row]:
    """Call a module's row function ``reps`` times; medians and spreads per row."""
    samples: list[list[Row]] = []
    for i in range(reps):
        ctx.progress(f"{label} ({i + 1}/{reps})")
        samples.append(fn())
    return aggregate(samples, group)


# -- the suites ------------------------------------------------------------------------------


def _log_rows(ctx: _Context) -> list[Row]:
    p, d = ctx.plan, ctx.parent
    # rounds=1: the module's own best-of-rounds would hide the spread; the runner
    # takes the median (and min..max) over its repetitions instead.
    rows = _repeat(
        ctx,
        "log: append always, 1 thread",
        "log",
        p.reps,
        lambda: log_bench.bench_always_one_thread(d, p.append_one, rounds=1),
    )
    # single=None: each repetition measures its own 1-thread reference back to back.
    rows += _repeat(
        ctx,
        f"log: append always, {p.threads} threads",
        "log",
        p.reps,
        lambda: log_bench.bench_always_threads(d, p.append_threads, threads=p.threads, rounds=1),
    )
    rows += _repeat(
        ctx,
        f"log: append none + read {p.read:,}",
        "log",
        p.reps_for(p.read),
        lambda: log_bench.bench_none_and_read(d, p.read, rounds=1),
    )
    return rows


def _log_names(p: Plan) -> list[str]:
    return [
        "append always, 1 thread",
        f"append always, {p.threads} threads",
        "append none, 1 thread",
        f"read {p.read:,} records",
    ]


def _open_rows(ctx: _Context) -> list[Row]:
    p = ctx.plan
    largest = max(p.open_sizes)

    def also_verify(history: History) -> None:
        # The verify suite's figures, on this 1M-event log rather than a second one.
        # A failure here belongs to the verify rows, not to the open rows.
        if history.events == largest and "verify" in ctx.groups:
            try:
                ctx.verify_rows = bench_verify_history(
                    history, p.reps_for(largest), audit=p.verify_audit, progress=ctx.progress
                )
            except Exception as exc:
                ctx.verify_error = exc

    result = bench_open_scale(
        ctx.parent,
        p.open_sizes,
        p.reps,
        reps_big=p.reps_big,
        big=p.big,
        progress=ctx.progress,
        with_history=also_verify,
    )
    ctx.open_points = result.points
    live = bench_open_live(ctx.parent, p.open_live, p.reps, progress=ctx.progress)
    return result.rows + live


def _open_names(p: Plan) -> list[str]:
    names = []
    for n in p.open_sizes:
        names += [
            f"open {n:,} events, snapshot at 99%",
            f"open {n:,} events, snapshot at last event",
        ]
    if len(p.open_sizes) >= 2:
        a, b = p.open_sizes[0], p.open_sizes[-1]
        for what in ("snapshot at last event", "snapshot at 99%", "full replay"):
            names.append(f"open growth {a:,} -> {b:,} events, {what}")
    return names + [open_live_name(n) for n in p.open_live]


def _verify_rows(ctx: _Context) -> list[Row]:
    if ctx.verify_error is not None:
        raise ctx.verify_error
    if ctx.verify_rows is not None:  # measured on the open suite's largest history
        return ctx.verify_rows
    p = ctx.plan
    n = max(p.open_sizes)
    return bench_verify(ctx.parent, n, p.reps_for(n), audit=p.verify_audit, progress=ctx.progress)


def _verify_names(p: Plan) -> list[str]:
    n = max(p.open_sizes)
    names = [f"verify {n:,} records (checksums + chain)"]
    if p.verify_audit:
        names.append(f"sandboxctl verify {n:,} records (full audit)")
    return names


def _store_rows(ctx: _Context) -> list[Row]:
    """Durable add, and replay into the projection (one log, written once, reused).

    ``store.bench_open_snapshot`` is not called: the open suite measures the
    same figure (snapshot at 99% vs full replay) at three sizes, with more
    repetitions, on one history per size instead of a copy per call.
    """
    p, d = ctx.plan, ctx.parent
    rows = _repeat(
        ctx,
        "store: durable add",
        "store",
        p.reps,
        lambda: store_bench.bench_durable_add(d, p.store_add),
    )
    # Store-level group commit: each repetition measures its 1-thread reference too.
    rows += _repeat(
        ctx,
        f"store: durable add, {p.threads} threads",
        "store",
        p.reps,
        lambda: store_bench.bench_threaded_add(d, p.store_add, p.threads),
    )
    rows += _repeat(
        ctx,
        f"store: durable add, {p.threads} threads, fdatasync +2 ms (strace)",
        "store",
        p.reps,
        lambda: store_bench.bench_threaded_add_slow_disk(d, p.store_add, p.threads),
    )
    logdir = os.path.join(d, "store-replay-log")
    ctx.progress(f"store: writing a {p.store_replay:,}-event workload log")
    store_bench.write_workload(logdir, p.store_replay)
    try:
        replay = _repeat(
            ctx,
            f"store: replay {p.store_replay:,} events",
            "store",
            p.reps_for(p.store_replay),
            lambda: store_bench.bench_replay(d, p.store_replay, logdir=logdir),
        )
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    if replay and replay[0].value is not None:
        ctx.replay_rate = replay[0].value
    return rows + replay


def _store_names(p: Plan) -> list[str]:
    return [
        "durable add",  # the event's size is the row's event_bytes field
        f"durable add, {p.threads} threads",
        f"durable add, {p.threads} threads, fdatasync +2 ms",
        f"replay {p.store_replay:,} events (read+apply)",
        f"replay {p.store_replay:,} events (apply only)",
    ]


def _eventsourcing_rows(ctx: _Context) -> list[Row]:
    """The peer library on SQLite: the same appends and a rebuild.

    Our replay rate is the store suite's median (1M events in the full run)
    when it ran, so both sides of "replay >= 10x eventsourcing's rebuild"
    are each side's best-measured figure; otherwise the module measures ours
    on the same events.
    """
    from eventsourcing.utils import clear_topic_cache  # the optional extra: import late

    p, d = ctx.plan, ctx.parent

    def once() -> list[Row]:
        # bench_eventsourcing defines its aggregate class inside the function, and
        # eventsourcing refuses a second class under the same topic: forget the
        # previous repetition's class first (eventsourcing's public reset).
        clear_topic_cache()
        return store_bench.bench_eventsourcing(d, p.es_events, ours_replay=ctx.replay_rate)

    rows = _repeat(
        ctx,
        f"eventsourcing: SQLite append + rebuild of {p.es_events:,} events",
        "eventsourcing",
        p.reps,
        once,
    )
    if ctx.replay_rate is not None:
        ours = f"ours: the store suite's replay median ({p.store_replay:,} events)"
        rows = [attrs.evolve(r, note=ours) if r.name.startswith("replay") else r for r in rows]
    return rows


def _eventsourcing_names(_p: Plan) -> list[str]:
    return ["append, 1 event per durable write", "replay (read + apply)"]


def _netns_skip() -> str | None:
    return NEEDS_ROOT if os.geteuid() != 0 else None


def _netns_rows(ctx: _Context) -> list[Row]:
    from . import netns as netns_bench

    p = ctx.plan
    # rounds=1 per repetition: the runner wants every repetition's figures (median +
    # spread), where netns.bench_reconcile alone keeps only the best of its rounds.
    rows = _repeat(
        ctx,
        f"netns: reconcile creating {p.netns:,} namespaces",
        "netns",
        p.reps,
        lambda: netns_bench.bench_reconcile(p.netns, rounds=1),
    )
    if p.ip_netns > 0:
        raw_ms = rows[0].reference_value
        rows += _repeat(
            ctx,
            f"netns: ip netns add x{p.ip_netns}",
            "netns",
            1,
            lambda: netns_bench.bench_ip_netns(p.ip_netns, reference_ms=raw_ms),
        )
    return rows


def _netns_names(p: Plan) -> list[str]:
    n = p.netns
    names = [
        f"reconcile: create {n} (ASSIGNED)",
        f"reconcile: no-op over {n} live",
        f"reconcile: remove {n} (REMOVING)",
    ]
    if p.ip_netns > 0 and shutil.which("ip") is not None:
        names.append(f"ip netns add x{p.ip_netns}")
    return names


def _fleet_skip() -> str | None:
    from replay.fleet.natsserver import find_nats_server

    return NEEDS_NATS if find_nats_server() is None else None


def _fleet_rows(ctx: _Context) -> list[Row]:
    from . import fleet as fleet_bench

    p = ctx.plan
    return _repeat(
        ctx,
        "fleet: ship + read back over a local nats-server",
        "fleet",
        p.fleet_reps,
        lambda: fleet_bench.run_all(quick=p.fleet_quick, parent=ctx.parent),
    )


def _fleet_names(_p: Plan) -> list[str]:
    return ["ship (catch-up)", "read back (fleet_records)", "verify over the stream"]


def _eventsourcing_skip() -> str | None:
    return NEEDS_BENCH_EXTRA if importlib.util.find_spec("eventsourcing") is None else None


@attrs.frozen
class _Suite:
    group: str
    run: Callable[[_Context], list[Row]]
    names: Callable[[Plan], list[str]]
    skip: Callable[[], str | None] = lambda: None


def _suites() -> dict[str, _Suite]:
    return {
        "log": _Suite("log", _log_rows, _log_names),
        "store": _Suite("store", _store_rows, _store_names),
        "open": _Suite("open", _open_rows, _open_names),
        "verify": _Suite("verify", _verify_rows, _verify_names),
        "netns": _Suite("netns", _netns_rows, _netns_names, _netns_skip),
        "eventsourcing": _Suite(
            "eventsourcing",
            _eventsourcing_rows,
            _eventsourcing_names,
            _eventsourcing_skip,
        ),
        "fleet": _Suite("fleet", _fleet_rows, _fleet_names, _fleet_skip),
    }


def expected_names(plan: Plan, groups: Sequence[str] = GROUPS) -> dict[str, list[str]]:
    """The row names each suite produces under ``plan`` (also when it is skipped)."""
    suites = _suites()
    return {g: suites[g].names(plan) for g in groups}


# -- the run --------------------------------------------------------------------------------


def _run_suite(ctx: _Context, suite: _Suite) -> SuiteResult:
    """One suite's rows; its expected rows with the reason when it is skipped or fails."""
    group, names = suite.group, suite.names(ctx.plan)
    why = suite.skip()
    if why is not None:
        ctx.progress(f"{group}: {why}")
        return SuiteResult.not_run(group, names, why, failed=False)
    started = time.perf_counter()
    try:
        result = SuiteResult(group, suite.run(ctx))
    except Exception as exc:  # one broken suite must not lose the others' figures
        reason = f"error: {type(exc).__name__}: {exc}"
        ctx.progress(f"{group}: {reason}")
        result = SuiteResult.not_run(group, names, reason, failed=True)
    ctx.progress(f"{group}: done in {time.perf_counter() - started:.1f} s")
    return result


def run(
    plan: Plan,
    *,
    parent: str | None = None,
    groups: Sequence[str] = GROUPS,
    progress: Progress | None = None,
    command: str = "sandboxctl bench",
) -> BenchResult:
    """Run the suites in ``groups`` (in ``GROUPS`` order) under ``plan``.

    ``parent`` is where scratch directories go (default: the system temp
    dir); its filesystem is reported with the machine facts, because fsync
    figures are the filesystem's.
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown benchmark group(s) {unknown}; expected some of {GROUPS}")
    say = progress if progress is not None else (lambda _msg: None)
    base_parent = parent if parent is not None else tempfile.gettempdir()
    os.makedirs(base_parent, exist_ok=True)
    facts = machine.collect(base_parent)
    scratch = tempfile.mkdtemp(prefix="sandboxctl-bench-", dir=base_parent)
    ctx = _Context(plan, scratch, say, groups=tuple(groups))
    suites = _suites()
    results: list[SuiteResult] = []
    t0 = time.perf_counter()
    try:
        for group in GROUPS:
            if group in groups:
                results.append(_run_suite(ctx, suites[group]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - t0
    report = Report(
        title=f"sandboxctl bench ({plan.name}): medians of repetitions, (min..max) beside each",
        command=command,
        facts=facts.items(),
        rows=[row for result in results for row in result.rows],
        wall_seconds=wall,
        facts_json=facts.to_dict(),
        settings=attrs.asdict(plan),
    )
    return BenchResult(report, results, ctx.open_points)
