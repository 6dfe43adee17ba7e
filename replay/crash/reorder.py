"""The reorder model of ``sandboxctl crashtest``: crash states beyond prefixes.

    from replay.crash.reorder import run_reorder
    report = run_reorder(states=300, seed=1, workloads=("single", "threads", "batch"))

For each workload (``reorder_child.WORKLOADS``):

1. run it once in a child under strace (``trace``), in a fresh directory:
   the writer's file operations and, among them, the acknowledgements;
2. from that one trace, build crash states (``states``): at each crash
   point, unsynced writes persisted partially and out of order at 512-byte
   and 4 KiB granularity, sizes at any write boundary, unsynced directory
   entries lost; exhaustively up to a cap per point, sampled beyond, in a
   seeded order;
3. write each distinct state (by content digest) into a fresh directory and
   check it (``reorder_checks``);
4. crash recovery itself: for states whose reopen repaired something,
   run writer-open recovery on a copy under strace too and check the crash
   states of THAT trace, against the records the first crash had to keep.

The bound ``states`` is split evenly over the workloads; within one, a
fifth goes to crashes during recovery and the rest round-robin over the
kinds ``prefix``, ``page``, ``sector``, ``dir``, breadth first over the
crash points (one state from every point before a second from any), so a
small bound still spans the whole trace. The same seed and trace give the
same states; the trace of the threaded and batch workloads depends on
thread scheduling, so their states vary between runs (the single-thread
trace does not, apart from timestamps).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from replay.crash import fsops, reorder_child, states, trace
from replay.crash.reorder_checks import check_state
from replay.crash.reorder_report import ReorderReport, Violation, WorkloadResult

__all__ = [
    "WORKLOAD_NAMES",
    "ReorderError",
    "child_argv",
    "default_workdir",
    "issued_records",
    "record_workload",
    "required_records",
    "run_reorder",
    "run_traced",
]

WORKLOAD_NAMES = tuple(reorder_child.WORKLOADS)
#: Choices per crash point and kind enumerated in full; beyond, SAMPLES are drawn.
CAP = 64
SAMPLES = 16
#: Share of each workload's bound spent on crashes during recovery.
RECOVERY_SHARE = 0.2
#: States checked per traced recovery.
PER_RECOVERY = 12
CHILD_TIMEOUT = 300.0
MAIN_KINDS = (states.PREFIX, states.PAGE, states.SECTOR, states.DIR)


class ReorderError(Exception):
    """The model could not run (strace missing, the traced child failed)."""


@attrs.frozen
class _Job:
    """What a checked state needs besides its bytes."""

    spec: reorder_child.WorkloadSpec
    seed: int
    bound: int
    issued: dict[int, dict[str, Any]]
    work: str
    keep_failed: bool


def run_traced(argv: Sequence[str], trace_file: str, cwd: str) -> None:
    """Run ``argv`` under strace; raise ReorderError if it fails."""
    if shutil.which("strace") is None and not os.path.exists("/usr/bin/strace"):
        raise ReorderError("the reorder model needs strace (apt-get install strace)")
    cmd = trace.strace_command(trace_file, argv)
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ReorderError(f"traced child did not finish in {CHILD_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise ReorderError(f"traced child failed ({proc.returncode}): {proc.stderr[-1500:]}")


def child_argv(*args: str) -> list[str]:
    """The traced child, started by file name with -P (no script dir on sys.path).

    Why not ``-m replay.crash.reorder_child``: that imports the ``replay``
    package and with it the sandbox layer - slower under strace, and the
    child needs nothing but eventlog.
    """
    return [sys.executable, "-P", reorder_child.__file__, *args]


def record_workload(spec: reorder_child.WorkloadSpec, seed: int, work: str) -> fsops.Trace:
    """Run the workload under strace in ``work`` (its log: ``work/root/log``); parse it."""
    root = os.path.join(work, "root")
    os.mkdir(root)
    acks = os.path.join(work, "acks.jsonl")
    trace_file = os.path.join(work, "workload.strace")
    argv = child_argv("workload", "--name", spec.name, "--seed", str(seed))
    argv += ["--log-dir", os.path.join(root, "log"), "--ack-file", acks]
    run_traced(argv, trace_file, work)
    tr = trace.parse_trace(trace_file, root, ack_file=acks)
    if not tr.acks():
        raise ReorderError(f"the trace of workload {spec.name} holds no acknowledgement")
    return tr


def issued_records(tr: fsops.Trace) -> dict[int, dict[str, Any]]:
    """seq -> payload of every append the traced workload issued (all returned)."""
    issued: dict[int, dict[str, Any]] = {}
    for _, ack in tr.acks():
        for seq, payload in zip(ack.seqs, ack.payloads, strict=True):
            issued[seq] = payload
    return issued


def required_records(acks: Sequence[fsops.Ack]) -> dict[int, dict[str, Any]]:
    """seq -> payload of the records ``acks`` acknowledged."""
    return {s: p for a in acks for s, p in zip(a.seqs, a.payloads, strict=True)}


class _Stream:
    """The states of one kind, breadth first over the crash points (seeded order)."""

    def __init__(
        self, model: states.Model, kind: str, views: Callable[[int], states.PointView], seed: str
    ) -> None:
        self.rng = random.Random(seed)
        order = model.points()
        self.rng.shuffle(order)
        self.model = model
        self.kind = kind
        self.views = views
        self.pending = deque(order)
        self.live: deque[tuple[states.PointView, Iterator[states.Choice]]] = deque()

    def __iter__(self) -> Iterator[tuple[states.PointView, states.Choice]]:
        while self.pending or self.live:
            if self.pending:
                view = self.views(self.pending.popleft())
                found = self.model.choices(view, self.kind, self.rng, cap=CAP, samples=SAMPLES)
                if found:
                    yield view, found[0]
                    if len(found) > 1:
                        self.live.append((view, iter(found[1:])))
                continue
            view, it = self.live.popleft()
            choice = next(it, None)
            if choice is not None:
                yield view, choice
                self.live.append((view, it))


class _Explorer:
    """Checks distinct states of one workload until its bound is spent."""

    def __init__(self, job: _Job, result: WorkloadResult, progress: Callable[[], None]):
        self.job = job
        self.result = result
        self.progress = progress
        self.seen: set[str] = set()
        self.count = 0
        self._fingerprint = hashlib.sha256()
        #: Checked states whose reopen repaired something: (image, required, description).
        self.repaired: list[tuple[fsops.Image, dict[int, dict[str, Any]], str]] = []

    def check(
        self,
        image: fsops.Image,
        required: dict[int, dict[str, Any]],
        kind: str,
        description: str,
    ) -> bool:
        """Check the state if it is new; returns False for a duplicate."""
        name = states.digest(image)
        if name in self.seen:
            return False
        self.seen.add(name)
        self.count += 1
        self._fingerprint.update(description.encode() + b"\n")
        self.result.fingerprint = self._fingerprint.hexdigest()[:16]
        target = os.path.join(self.job.work, f"state-{self.count}")
        image.materialize(target)
        found = check_state(
            os.path.join(target, "log"),
            required,
            self.job.issued,
            segment_bytes=self.job.spec.segment_bytes,
        )
        self.result.by_kind[kind] += 1
        keep = ""
        if found.ok:
            if found.repaired and kind != states.RECOVERY:
                self.repaired.append((image, required, description))
        else:
            self.result.failed_by_kind[kind] += 1
            keep = target if self.job.keep_failed else ""
            for check, message in found.violations:
                self.result.violations.append(
                    Violation(
                        self.job.spec.name,
                        kind,
                        check,
                        message,
                        description,
                        self.job.seed,
                        self.job.bound,
                        keep,
                    )
                )
        if not keep:
            shutil.rmtree(target, ignore_errors=True)
        self.progress()
        return True


class _TraceStates:
    """The states of one trace, round-robin over the kinds, resumable."""

    def __init__(
        self,
        model: states.Model,
        label: str,
        required_of: Callable[[int], dict[int, dict[str, Any]]],
        prefix: str = "",
    ) -> None:
        self.model = model
        self.required_of = required_of
        self.prefix = prefix
        self._views: dict[int, states.PointView] = {}
        self.streams = {k: iter(_Stream(model, k, self._view, f"{label}:{k}")) for k in MAIN_KINDS}

    def _view(self, point: int) -> states.PointView:
        if point not in self._views:
            self._views[point] = self.model.view(point)
        return self._views[point]

    @property
    def dry(self) -> bool:
        return not self.streams

    def take(self, explorer: _Explorer, budget: int) -> int:
        """Check up to ``budget`` new states; returns how many were checked."""
        done = 0
        while self.streams and done < budget:
            for kind in list(self.streams):
                if done >= budget:
                    break
                if self._next(explorer, kind):
                    done += 1
        return done

    def _next(self, explorer: _Explorer, kind: str) -> bool:
        """Check the next new state of ``kind``; False when the kind ran dry."""
        for view, choice in self.streams[kind]:
            image = self.model.build(view, choice)
            text = self.prefix + self.model.describe(view, choice)
            counted = states.RECOVERY if self.prefix else kind
            if explorer.check(image, self.required_of(choice.point), counted, text):
                return True
        del self.streams[kind]
        return False


def _constant(
    required: dict[int, dict[str, Any]],
) -> Callable[[int], dict[int, dict[str, Any]]]:
    """Crash states of a recovery must keep what the crash before it had to keep."""
    return lambda _point: required


def _recoveries(explorer: _Explorer, budget: int, rng: random.Random) -> bool:
    """Crash writer-open recovery of repaired states; True if every candidate ran."""
    job = explorer.job
    candidates = list(explorer.repaired)
    rng.shuffle(candidates)
    runs = 0
    dry = True
    while candidates and budget > 0:
        share = min(budget, max(PER_RECOVERY, budget // len(candidates)))
        image, required, description = candidates.pop()
        runs += 1
        work = os.path.join(job.work, f"recovery-{runs}")
        os.mkdir(work)
        root = os.path.join(work, "root")
        image.materialize(root)
        initial, paths = fsops.load_image(root)
        trace_file = os.path.join(work, "recover.strace")
        argv = child_argv("recover", "--name", job.spec.name)
        run_traced([*argv, "--log-dir", os.path.join(root, "log")], trace_file, work)
        tr = trace.parse_trace(trace_file, root, initial=initial, paths=paths)
        run = _TraceStates(
            states.Model(tr),
            f"recovery-{runs}:{job.seed}",
            _constant(required),
            prefix=f"recovery of [{description}] -> ",
        )
        failed_before = explorer.result.failed_states
        budget -= max(1, run.take(explorer, share))
        dry = dry and run.dry
        if not (job.keep_failed and explorer.result.failed_states > failed_before):
            shutil.rmtree(work, ignore_errors=True)  # kept: the recovery's trace
    explorer.result.recovery_runs = runs
    return dry and not candidates


def _run_workload(
    spec: reorder_child.WorkloadSpec,
    *,
    seed: int,
    budget: int,
    bound: int,
    base: str,
    keep_failed: bool,
    progress: Callable[[], None],
) -> WorkloadResult:
    # Resolved: strace prints resolved paths, the child is given this one.
    work = os.path.realpath(tempfile.mkdtemp(prefix=f"reorder-{spec.name}-", dir=base))
    result = WorkloadResult(spec.name)
    failed = False
    try:
        tr = record_workload(spec, seed, work)
        model = states.Model(tr)
        result.events = len(tr.events)
        result.points = len(model.points())
        result.acks = len(tr.acks())
        result.notes.extend(dict.fromkeys(tr.notes))
        job = _Job(spec, seed, bound, issued_records(tr), work, keep_failed)
        explorer = _Explorer(job, result, progress)
        main = _TraceStates(
            model,
            f"{spec.name}:{seed}",
            lambda p: required_records(model.required_acks(p, spec.guarantee)),
        )
        main.take(explorer, budget - int(budget * RECOVERY_SHARE))
        rng = random.Random(f"recovery:{seed}:{spec.name}")
        all_ran = _recoveries(explorer, budget - explorer.count, rng)
        # What recovery had no use for (nothing to repair) goes back to the trace.
        main.take(explorer, budget - explorer.count)
        result.exhausted = main.dry and all_ran
        failed = bool(result.violations)
    finally:
        if not (keep_failed and failed):
            shutil.rmtree(work, ignore_errors=True)
    return result


def default_workdir() -> str:
    """Where states are written: tmpfs when there is one, else $TMPDIR.

    Why tmpfs: a state is checked on its bytes, not on how a disk keeps
    them, and each check fsyncs several times; on tmpfs an fsync costs
    nothing, on a busy ext4 several milliseconds.
    """
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


@contextlib.contextmanager
def _quiet_recovery() -> Iterator[None]:
    """Recovery warns on every torn tail it cuts: keep thousands off the terminal."""
    logger = logging.getLogger("eventlog")
    saved = logger.propagate
    handler = logging.NullHandler()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def run_reorder(
    states_bound: int,
    seed: int | None = None,
    workloads: Sequence[str] = WORKLOAD_NAMES,
    *,
    workdir: str | None = None,
    keep_failed: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ReorderReport:
    """Check up to ``states_bound`` distinct crash states over ``workloads``."""
    for name in workloads:
        if name not in reorder_child.WORKLOADS:
            raise ValueError(f"unknown workload {name!r} (known: {', '.join(WORKLOAD_NAMES)})")
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0])

    results = []
    with _quiet_recovery():
        for i, name in enumerate(workloads):
            share = states_bound // len(workloads) + (i < states_bound % len(workloads))
            results.append(
                _run_workload(
                    reorder_child.WORKLOADS[name],
                    seed=seed,
                    budget=share,
                    bound=states_bound,
                    base=workdir or default_workdir(),
                    keep_failed=keep_failed,
                    progress=step,
                )
            )
    fault = os.environ.get(reorder_child.FAULT_ENV, "")
    return ReorderReport(seed, states_bound, fault, tuple(results))
