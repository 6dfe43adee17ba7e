"""The parent's side of one crash child: start it, read its reports, kill it.

Why apart from the plan and the checks: this is the only code that owns a
child process (fork or exec, the report pipe, the SIGKILL), and a run's
verdict on how the child died (``classify``) depends on nothing but what
arrived here. The child's own side is ``replay.crash.child``; the wire
format between them is ``replay.crash.protocol``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

from replay.crash import checks, protocol
from replay.crash import workload as wl
from replay.crash.plan import ENV, RunSpec

#: Seconds a child may run before it counts as hung.
CHILD_TIMEOUT = 60.0


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


def _ack(msg: dict[str, Any], ops: list[wl.Op]) -> checks.Ack:
    """One ACK message from the pipe, as the checks want it."""
    return checks.Ack(
        op=ops[int(msg["i"])],
        ok=bool(msg["ok"]),
        error=str(msg.get("error") or ""),
        message=str(msg.get("message") or ""),
        before=int(msg["before"]),
        after=int(msg["after"]),
        records=tuple(
            checks.AckedRecord(int(s), int(t), bytes(d), p) for s, t, d, p in msg["records"]
        ),
        result=msg.get("result"),
    )


def _take(
    seen: ChildRun,
    msg: dict[str, Any],
    spec: RunSpec,
    ops: list[wl.Op],
    kill: Callable[[str], None],
) -> None:
    """Record one report from the child; kill it when the spec says this is the moment."""
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
        seen.acks.append(_ack(msg, ops))
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
                _take(seen, msg, spec, ops, kill)
    finally:
        os.close(r)
        kill("cleanup")
        os.close(proc.stdin)
        seen.returncode = proc.wait()
    return seen


def classify(
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
