"""Crash-test runs: spawn a child, kill it, reopen, check, report.

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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from replay.crash import checks, mounts, powerloss, protocol, storeio
from replay.crash import workload as wl

#: The pseudo crash point "killed by the parent at a random moment".
SIGKILL_POINT = "sigkill"
#: Operations per child; the hit counts below are tuned against it.
DEFAULT_MAX_OPS = 80
#: Seconds a child may run before it counts as hung.
CHILD_TIMEOUT = 60.0
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


def known_points() -> dict[str, str]:
    """Every registered crash point (name -> where), importing the modules that
    register them, plus the ``sigkill`` pseudo point."""
    import sandbox.store  # noqa: F401  (imports eventlog.writer, netns, snapshot, reconciler)
    from eventlog import crashpoints

    points = dict(sorted(crashpoints.POINTS.items()))
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


@attrs.frozen
class RunResult:
    """What one run did and found."""

    spec: RunSpec
    #: True when the child died where the spec says (the armed point, or the
    #: parent's random kill before the workload ended).
    fired: bool
    how: str
    acked_ops: int
    acked_events: int
    in_flight: str
    power_loss_actions: tuple[str, ...]
    violations: tuple[checks.Violation, ...]
    seconds: float
    #: Hash of (op index, event types) of every acknowledged command: equal
    #: for equal seeds (the determinism test compares it).
    fingerprint: str
    kept: str = ""
    stderr_tail: str = ""
    #: What the recovering store logged (torn tail cut, snapshot skipped, ...).
    recovery_log: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.spec.index,
            "seed": self.spec.seed,
            "point": self.spec.point,
            "power_loss": self.spec.power_loss,
            "kill": self.spec.describe_kill(),
            "fired": self.fired,
            "how": self.how,
            "acked_ops": self.acked_ops,
            "acked_events": self.acked_events,
            "in_flight": self.in_flight,
            "power_loss_actions": list(self.power_loss_actions),
            "violations": [v.to_dict() for v in self.violations],
            "repro": self.spec.repro(),
            "seconds": round(self.seconds, 3),
            "fingerprint": self.fingerprint,
            "kept": self.kept,
            "recovery_log": list(self.recovery_log),
            "child_stderr": self.stderr_tail,
        }


@attrs.define
class ChildRun:
    """The parent's side of one child: what arrived on the pipe."""

    pid: int = 0
    open_seq: int = 0
    durable: Any = None
    acks: list[checks.Ack] = attrs.field(factory=list)
    in_flight: wl.Op | None = None
    done: bool = False
    fatal: str = ""
    #: Why the parent killed the child first: "ack" (the spec's random
    #: moment), "done", "fatal", "timeout"; "" if it died on its own.
    kill_reason: str = ""
    returncode: int = 0

    def observation(self) -> checks.Observation:
        """What the checks need to know about this child."""
        return checks.Observation(
            child_pid=self.pid,
            open_seq=self.open_seq,
            acks=tuple(self.acks),
            in_flight=self.in_flight,
        )


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _child_env(spec: RunSpec) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(ENV, None)
    if spec.armed is not None:
        env[ENV] = spec.armed
    root = _project_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


@attrs.define
class _Child:
    """A running child, however it was started: its pid and the write end of its stdin."""

    pid: int
    stdin: int
    returncode: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def poll(self) -> int | None:
        if self.popen is not None:
            self.returncode = self.popen.poll()
        elif self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.popen is not None:
            self.returncode = self.popen.wait()
        elif self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _exec_child(spec: RunSpec, state_dir: str, netns_dir: str, err_path: str, w: int) -> _Child:
    """``python -m replay.crash.child`` with the point armed from the environment."""
    cmd = [
        sys.executable,
        "-m",
        "replay.crash.child",
        "--state-dir",
        state_dir,
        "--netns-dir",
        netns_dir,
        "--seed",
        str(spec.seed),
        "--max-ops",
        str(spec.max_ops),
        "--report-fd",
        str(w),
    ]
    stdin_r, stdin_w = os.pipe()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=stdin_r,
            stdout=subprocess.DEVNULL,
            stderr=err,
            pass_fds=(w,),
            env=_child_env(spec),
            cwd=_project_root(),
        )
    os.close(stdin_r)
    return _Child(proc.pid, stdin_w, popen=proc)


def _fork_child(spec: RunSpec, state_dir: str, netns_dir: str, err_path: str, w: int) -> _Child:
    """Fork this (already imported) process and run the child's work in it.

    Start-up is then a fork (~ms) instead of an interpreter plus imports
    (~0.3 s). The crash point is armed with ``crashpoints.arm`` - the same
    state ``SANDBOX_CRASHPOINT`` sets at import. Forking is safe here: the
    harness holds no store, lock or thread while it starts a child.
    """
    stdin_r, stdin_w = os.pipe()
    errfd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's stack
        code = 70
        try:
            os.dup2(stdin_r, 0)
            os.dup2(errfd, 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            from eventlog import crashpoints
            from replay.crash import child

            if spec.armed is not None:
                crashpoints.arm(spec.point, "kill", spec.hit)
            else:
                crashpoints.disarm()
            code = child.run(state_dir, netns_dir, spec.seed, spec.max_ops, protocol.Sender(w))
        except BaseException:
            with contextlib.suppress(BaseException):
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(stdin_r)
    os.close(errfd)
    return _Child(pid, stdin_w)


def run_child(
    spec: RunSpec, state_dir: str, netns_dir: str, err_path: str, launch: str
) -> ChildRun:
    """Start the child, collect its reports, kill it per the spec; return what arrived."""
    ops = wl.take(spec.seed, spec.max_ops)
    r, w = os.pipe()
    start = _fork_child if launch == "fork" else _exec_child
    try:
        proc = start(spec, state_dir, netns_dir, err_path, w)
    finally:
        os.close(w)
    seen = ChildRun()
    receiver = protocol.Receiver()
    deadline = time.monotonic() + CHILD_TIMEOUT

    def kill(reason: str) -> None:
        if proc.poll() is None:
            seen.kill_reason = seen.kill_reason or reason
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                seen.fatal = f"child hung: no end after {CHILD_TIMEOUT:.0f} s"
                kill("timeout")
                deadline = time.monotonic() + 10
            ready, _, _ = select.select([r], [], [], max(0.0, min(left, 1.0)))
            if not ready:
                continue
            data = os.read(r, 1 << 16)
            if not data:
                break  # every write end is closed: the child is dead
            for msg in receiver.feed(data):
                kind = msg.get("k")
                if kind == protocol.HELLO:
                    seen.pid = int(msg["pid"])
                elif kind == protocol.OPEN:
                    seen.open_seq = int(msg["last_seq"])
                    seen.durable = msg.get("durable")
                    if spec.armed is None and spec.kill_after == 0:
                        time.sleep(spec.kill_delay)
                        kill("ack")
                elif kind == protocol.BEGIN:
                    seen.in_flight = ops[int(msg["i"])]
                elif kind == protocol.ACK:
                    i = int(msg["i"])
                    seen.acks.append(
                        checks.Ack(
                            op=ops[i],
                            ok=bool(msg["ok"]),
                            error=str(msg.get("error") or ""),
                            message=str(msg.get("message") or ""),
                            before=int(msg["before"]),
                            after=int(msg["after"]),
                            records=tuple(
                                checks.AckedRecord(int(s), int(t), bytes(d), p)
                                for s, t, d, p in msg["records"]
                            ),
                            result=msg.get("result"),
                        )
                    )
                    seen.durable = msg.get("durable")
                    seen.in_flight = None
                    if spec.armed is None and len(seen.acks) == spec.kill_after:
                        time.sleep(spec.kill_delay)
                        kill("ack")
                elif kind == protocol.DONE:
                    seen.done = True
                    kill("done")
                elif kind == protocol.FATAL:
                    seen.fatal = str(msg.get("error"))
                    kill("fatal")
    finally:
        os.close(r)
        kill("cleanup")
        os.close(proc.stdin)
        seen.returncode = proc.wait()
    return seen


def _classify(
    spec: RunSpec, seen: ChildRun, returncode: int, stderr: str
) -> tuple[bool, str, list[checks.Violation]]:
    """How did the child die, and is that what the spec asked for?"""
    out: list[checks.Violation] = []
    line = next((ln for ln in stderr.splitlines() if ln.startswith("crashpoint ")), "")
    if seen.fatal:
        out.append(checks.Violation(checks.CHILD, seen.fatal.strip()))
    if returncode != -signal.SIGKILL:
        tail = "\n".join(stderr.strip().splitlines()[-12:])
        out.append(
            checks.Violation(
                checks.CHILD,
                f"child ended with code {returncode}, expected death by SIGKILL"
                + (f":\n{tail}" if tail else ""),
            )
        )
    if line:
        expected = f"crashpoint {spec.point} hit {spec.hit}"
        if spec.armed is None or line.strip() != expected:
            out.append(
                checks.Violation(
                    checks.CHILD,
                    f"child printed {line.strip()!r}, "
                    f"expected {expected if spec.armed else 'no crash point'}",
                )
            )
        return True, line.strip(), out
    if spec.armed is None:
        if seen.kill_reason == "ack":
            return True, f"SIGKILL after {len(seen.acks)} acked commands", out
        return False, "killed after the workload ended (kill moment not reached)", out
    if seen.done:
        return False, f"{spec.point} not reached {spec.hit}x; killed at workload end", out
    return False, "died before its crash point", out


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


def _fingerprint(acks: Sequence[checks.Ack]) -> str:
    h = hashlib.sha256()
    for a in acks:
        h.update(f"{a.op.index}:{a.error}:".encode())
        for r in a.records:
            h.update(f"{r.seq}/{r.payload.get('type')},".encode())
    return h.hexdigest()[:16]


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
        fired, how, found = _classify(spec, seen, seen.returncode, stderr)
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
            fingerprint=_fingerprint(seen.acks),
            stderr_tail="\n".join(stderr.strip().splitlines()[-20:]) if violations else "",
            recovery_log=tuple(recovery_log),
        )
    finally:
        if keep_failed and violations:
            kept = base
            mounts.clear(netns_dir)  # never keep namespaces alive
        else:
            mounts.clear(base, remove_dir=True)
    if mounts.mounts_under(base):
        raise RuntimeError(f"crash harness could not clear the mounts under {base}")
    return attrs.evolve(result, seconds=time.monotonic() - started, kept=kept)


@attrs.frozen
class CrashReport:
    """All runs of one ``run_crashtest`` call, and how to render them."""

    seed: int
    runs: int
    points: tuple[str, ...]
    power_loss: bool
    results: tuple[RunResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def violations(self) -> list[tuple[RunResult, checks.Violation]]:
        return [(r, v) for r in self.results for v in r.violations]

    def by_point(self) -> list[dict[str, Any]]:
        rows = []
        for point in self.points:
            mine = [r for r in self.results if r.spec.point == point]
            if not mine:
                continue
            rows.append(
                {
                    "point": point,
                    "runs": len(mine),
                    "fired": sum(1 for r in mine if r.fired),
                    "acked_events": sum(r.acked_events for r in mine),
                    "violations": sum(len(r.violations) for r in mine),
                    "failed_runs": sum(1 for r in mine if not r.ok),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "runs": self.runs,
            "points": list(self.points),
            "power_loss": self.power_loss,
            "ok": self.ok,
            "violations": len(self.violations),
            "seconds": round(self.seconds, 2),
            "by_point": self.by_point(),
            "results": [r.to_dict() for r in self.results],
        }

    def to_table(self) -> str:
        from replay import output

        rows = [
            [r["point"], r["runs"], r["fired"], r["acked_events"], r["violations"]]
            for r in self.by_point()
        ]
        rows.append(
            [
                "TOTAL",
                len(self.results),
                sum(1 for r in self.results if r.fired),
                sum(r.acked_events for r in self.results),
                len(self.violations),
            ]
        )
        text = output.table(["CRASH POINT", "RUNS", "FIRED", "ACKED EVENTS", "VIOLATIONS"], rows)
        text += (
            f"\nseed {self.seed}, {len(self.results)} runs"
            f"{', power loss' if self.power_loss else ''}, {self.seconds:.1f} s: "
            + ("no violations\n" if self.ok else f"{len(self.violations)} violation(s)\n")
        )
        for r in self.results:
            if r.ok:
                continue
            text += (
                f"\nrun {r.spec.index} (seed {r.spec.seed}, {r.spec.point}, "
                f"{r.spec.describe_kill()}): {r.how}; {r.acked_ops} commands acked"
                + (f", in flight: {r.in_flight}" if r.in_flight else "")
                + "\n"
            )
            for a in r.power_loss_actions:
                text += f"  power loss: {a}\n"
            for line in r.recovery_log:
                text += f"  recovery {line}\n"
            for v in r.violations:
                body = v.message.replace("\n", "\n      ")
                text += f"  [{v.check}] {body}\n"
            text += f"  repro: {r.spec.repro()}\n"
            if r.kept:
                text += f"  kept: {r.kept}\n"
        return text


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
    mounts.clear(path, remove_dir=True)
    shutil.rmtree(path, ignore_errors=True)
