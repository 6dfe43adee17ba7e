"""``sandboxctl demo``: the whole idea of the project in one minute, end to end.

Why a demo command and not a script in the README: the claims this project
makes - nothing acknowledged is lost to ``kill -9``, a namespace interrupted
between intent and effect is made exactly once, one that vanished out of
band is recorded rather than silently recreated, history is tamper-evident
and can be replayed to any point - are only believable when they are shown
on real processes, real files and real kernel namespaces, with each claim
checked and a non-zero exit if one fails. That is what this runs:

 1. three pods, each with a real network namespace (in DIR/netns, so
    nothing appears in /var/run/netns), and a snapshot;
 2. one pod stopped (READY -> NOTREADY, its namespace removed);
 3. a writer CHILD PROCESS adds pods and updates status, reporting each
    acknowledged seq through a pipe; one add is interrupted right after its
    namespace intent was made durable, the stream goes on, and the parent
    kills the child with SIGKILL mid-stream;
 4. a namespace unmounted out of band (``umount -l``, as an operator or a
    reboot would);
 5. recovery: replay, then reconcile - the interrupted namespace created
    exactly once, the unmounted one recorded as closed; every acknowledged
    event present;
 6. verify (and verify against the chain head kept before the crash), the
    audit trail of one pod, time travel to before the crash;
 7. every pod deleted, so every namespace the demo made is gone; only the
    state dir (the log, to explore with sandboxctl) is left.

As root it uses real namespaces. As another user it re-executes itself under
``unshare -Urm`` (a user + mount namespace, in which it may mount on paths
it owns); if that is impossible it says so and runs without namespaces,
marking those checks skipped.

The writer child is this module run as ``python -m replay.demo child ...``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, TextIO

import attrs

import eventlog
from eventlog import crashpoints
from replay import cli
from replay.audit import audit
from replay.verify import verify
from replay.view import load
from sandbox import netns as nsmod
from sandbox.config import PodSandboxConfig, PodSandboxMetadata
from sandbox.metadata import Metadata
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status
from sandbox.store import AFTER_INTENT, Store

__all__ = ["DEFAULT_STATE_DIR", "MARKER", "main"]

DEFAULT_STATE_DIR = "./demo-state"
#: A file that marks a directory as made by the demo: only such a directory
#: is ever wiped by ``--force``.
MARKER = ".sandboxctl-demo"
#: Set in the environment of the re-executed demo under ``unshare -Urm``.
UNSHARED_ENV = "SANDBOXCTL_DEMO_UNSHARED"
ACTOR = "sandboxctl-demo"
CHILD_ACTOR = "demo-writer"
#: Acks the parent waits for after the interrupted intent before it kills.
ACKS_AFTER_INTENT = 6
#: Acks it waits for when running without namespaces (no intent to wait for).
ACKS_WITHOUT_NETNS = 10
CHILD_TIMEOUT_S = 60.0


class DemoError(Exception):
    """The demo cannot run here (state dir in use, ...): one line, exit 7."""


@attrs.define
class Check:
    name: str
    status: str = "passed"  # passed | failed | skipped
    detail: str = ""


class Narrator:
    """Prints what happens, for people; in ``-o json`` mode to stderr."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        enc = getattr(stream, "encoding", None) or "ascii"
        try:
            "✓✗".encode(enc)
            self.marks = {"passed": "✓", "failed": "✗", "skipped": "-"}
        except (UnicodeEncodeError, LookupError):
            self.marks = {"passed": "OK", "failed": "FAIL", "skipped": "skip"}
        self.step_no = 0

    def say(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say()
        self.say(f"{self.step_no}. {title}")

    def detail(self, text: str) -> None:
        for line in text.rstrip("\n").split("\n"):
            self.say("   " + line)


class Demo:
    def __init__(self, state_dir: str, *, use_netns: bool, narrator: Narrator, why_not: str = ""):
        self.d = os.path.abspath(state_dir)
        self.shown = state_dir
        self.netns_dir = os.path.join(self.d, "netns")
        self.use_netns = use_netns
        self.why_not = why_not
        self.n = narrator
        self.checks: list[Check] = []
        self.child: subprocess.Popen[bytes] | None = None

    # -- bookkeeping ----------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, "passed" if ok else "failed", "" if ok else detail))
        mark = self.n.marks["passed" if ok else "failed"]
        self.n.detail(f"{mark} {name}" + (f" ({detail})" if detail and not ok else ""))
        return ok

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "skipped", why))
        self.n.detail(f"{self.n.marks['skipped']} {name}: skipped ({why})")

    def cli(self, *argv: str) -> int:
        """Run a sandboxctl command in-process, showing it as typed."""
        self.n.detail(f"$ sandboxctl {' '.join(argv)}")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = cli.main(["--state-dir", self.d, "--netns-dir", self.netns_dir, *argv])
        self.n.detail(out.getvalue())
        return code

    def store(self) -> Store:
        return Store.open(self.d, netns_dir=self.netns_dir, actor=ACTOR)

    # -- the scenario -----------------------------------------------------------------

    def run(self) -> None:
        n = self.n
        n.say(f"sandboxctl demo: state dir {self.shown}, network namespaces in {self.shown}/netns")
        if not self.use_netns:
            n.say(f"(running WITHOUT network namespaces: {self.why_not})")
        elif os.environ.get(UNSHARED_ENV):
            n.say(
                "(not root: re-executed under 'unshare -Urm'; the namespaces live in a "
                "private mount namespace that vanishes with the demo)"
            )

        n.step(
            "Run three pods" + (", each with its own network namespace" if self.use_netns else "")
        )
        pods = [("nginx", "default"), ("redis", "default"), ("coredns", "kube-system")]
        ids: dict[str, str] = {}
        with self.store() as store:
            for pod, ns in pods:
                sb = store.add(_sandbox(pod, ns), create_netns=self.use_netns)
                ids[pod] = sb.id
                where = f" in netns {os.path.basename(sb.netns.get_path())}" if sb.netns else ""
                n.detail(f"+ {sb.name}  {sb.id[:13]}{where}")
            if self.use_netns:
                live = [s for s in store.list() if s.netns is not None and not s.netns.closed()]
                self.check("three pods run, each in a live network namespace", len(live) == 3)
            else:
                self.skip("three pods run, each in a live network namespace", self.why_not)

            n.step("Stop redis: READY -> NOTREADY, its namespace removed (as containerd does)")
            redis_ns = store[ids["redis"]].netns
            store.update_status(
                ids["redis"],
                lambda old: attrs.evolve(old, state=State.NOTREADY, exited_at=time.time_ns()),
            )
            store.remove_netns(ids["redis"])
            st = store[ids["redis"]]
            gone = redis_ns is None or redis_ns.closed()
            self.check(
                "redis is NOTREADY and its namespace is gone",
                st.status.state is State.NOTREADY and gone,
            )
            snap_path = store.snapshot()
            before_seq = store.last_seq
            before_head = store.head.hex()
            before_state = _state_of(store.list())
        self.cli("pods")
        n.detail(f"snapshot {os.path.basename(snap_path)}; chain head at seq {before_seq}:")
        n.detail(f"  {before_head}  (kept to prove later that history was not rewritten)")

        n.step("A writer child process adds pods and updates status; SIGKILL mid-stream")
        acks, intent, status = self.crash_child()
        ack_seqs = [a["seq"] for a in acks]
        if ack_seqs:
            n.detail(
                f"child acknowledged {len(acks)} commands (seq {min(ack_seqs)}..{max(ack_seqs)})"
            )
        if intent is not None:
            n.detail(
                f"api-0's namespace intent durable at seq {intent['seq']} "
                f"({os.path.basename(intent['path'])}); the child never created it"
            )
        self.check(
            "writer child was killed by SIGKILL mid-stream",
            status == -signal.SIGKILL,
            f"exit status {status}",
        )

        nginx_path = ""
        if self.use_netns:
            n.step("Out of band: umount nginx's namespace (as an operator or a reboot would)")
            view = load(self.d, netns_dir=self.netns_dir)
            nginx = view.get(ids["nginx"])
            nginx_path = nginx.netns.get_path() if nginx and nginx.netns else ""
            how = _umount(nginx_path)
            n.detail(f"$ {how}")

        n.step("Recovery: replay the log, then reconcile the namespaces")
        records = list(eventlog.read(self.d))
        by_seq = {r.seq: r for r in records}
        missing = [
            a
            for a in acks
            if a["seq"] not in by_seq
            or by_seq[a["seq"]].payload.get("type") != a["type"]
            or by_seq[a["seq"]].payload.get("id") != a["id"]
        ]
        in_flight = (records[-1].seq if records else 0) - (max(ack_seqs) if ack_seqs else 0)
        with self.store() as store:
            report = store.last_reconcile_report
            loaded = store.load_result
            if loaded is not None:
                n.detail(
                    f"replayed {loaded.replayed} events after snapshot seq {loaded.snapshot_seq}"
                )
            n.detail(
                f"log ends at seq {store.last_seq}; {in_flight} event(s) in flight "
                "at the kill, not acknowledged"
            )
            self.check(
                "every acknowledged event is in the log after the crash",
                not missing and bool(acks),
                f"{len(missing)} of {len(acks)} missing",
            )
            full = load(self.d, netns_dir=self.netns_dir)
            self.check(
                "the reopened store equals a full replay of the log",
                full.projection == store.projection(),
            )
            for path in report.created:
                n.detail(f"reconcile: created {os.path.basename(path)}")
            for path in report.closed:
                n.detail(f"reconcile: recorded {os.path.basename(path)} as closed (not recreated)")
            for path, msg in report.errors:
                n.detail(f"reconcile: error {path}: {msg}")
            if self.use_netns and intent is not None:
                path = intent["path"]
                creates = [
                    r
                    for r in eventlog.read(self.d)
                    if r.payload.get("type") == "NetNSCreated" and r.payload.get("path") == path
                ]
                mounts = _nsfs_mounts(path)
                self.check(
                    "the interrupted intent's namespace was created exactly once",
                    path in report.created and len(creates) == 1 and mounts == 1,
                    f"{len(creates)} NetNSCreated events, {mounts} mounts",
                )
                self.check(
                    "the namespace unmounted out of band was recorded as closed, not recreated",
                    nginx_path in report.closed and _nsfs_mounts(nginx_path) == 0,
                )
            else:
                why = self.why_not or "the child did not report an interrupted intent"
                self.skip("the interrupted intent's namespace was created exactly once", why)
                self.skip("the namespace unmounted out of band was recorded as closed", why)
            again = store.reconcile()
            self.check(
                "a second reconcile does nothing (idempotent)",
                not again.changed,
                str(again.to_dict()),
            )
        self.cli("pods")

        n.step("Verify the log: checksums, chain, seqs, every transition, snapshots")
        res = verify(self.d, netns_dir=self.netns_dir)
        n.detail(
            f"{res.records} records, {len(res.snapshots)} snapshot(s), head {res.head[:16]}..."
        )
        self.check("verify: the log is clean", res.ok, str(res.first))
        res2 = verify(self.d, head=before_head, netns_dir=self.netns_dir)
        self.check(
            "verify --head (kept before the crash): history was not rewritten",
            res2.ok,
            str(res2.first),
        )

        n.step("The audit trail of api-0 (the pod whose add the crash interrupted)")
        api = [sb for sb in load(self.d).list() if sb.name.startswith("api-0_")]
        if api:
            trail = audit(self.d, sandbox=api[0].id)
            self.cli("audit", "--sandbox", api[0].id[:8])
            types = [e.type for e in trail]
            actors = {e.actor for e in trail}
            if self.use_netns:
                netns_types = [t for t in types if t != "StatusUpdated"]
                ok = netns_types[:3] == ["SandboxAdded", "NetNSAssigned", "NetNSCreated"]
                self.check(
                    "audit: api-0 added by the child, namespace created by the recovery",
                    ok and {CHILD_ACTOR, ACTOR} <= actors,
                    f"types {types}, actors {sorted(a or '-' for a in actors)}",
                )
            else:
                self.check("audit: api-0's add is in the trail", types[:1] == ["SandboxAdded"])
        else:
            self.check("audit: api-0 is in the store", False, "the child never added api-0")

        n.step(f"Time travel: the pods as they were at seq {before_seq}, before the crash")
        self.cli("history", "--upto", str(before_seq))
        then = load(self.d, upto_seq=before_seq)
        self.check(
            f"history at seq {before_seq} equals the state captured then",
            _state_of(then.list()) == before_state,
        )

        self.cleanup_pods()

    def crash_child(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int | None]:
        """Run the writer child, kill it mid-stream; (acks, intent message, exit status)."""
        cmd = [sys.executable, "-m", "replay.demo", "child", self.d, self.netns_dir]
        if not self.use_netns:
            cmd.append("--no-netns")
        # The child's stderr (the crash point's own note, any error) is kept
        # aside and shown only if the child did not do its job.
        with tempfile.TemporaryFile() as errors:
            acks, intent, status = self._run_child(cmd, errors)
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip()
        if status != -signal.SIGKILL or not acks:
            self.n.detail("the writer child said:\n" + (said or "(nothing)"))
        return acks, intent, status

    def _run_child(
        self, cmd: list[str], errors: IO[bytes]
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int | None]:
        read_fd, write_fd = os.pipe()
        self.child = subprocess.Popen(
            [*cmd, str(write_fd)], pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stderr=errors
        )
        os.close(write_fd)
        acks: list[dict[str, Any]] = []
        intent: dict[str, Any] | None = None
        buf = b""

        def take(lines: list[bytes]) -> None:
            nonlocal intent
            for line in lines:
                msg = json.loads(line)
                if msg["k"] in ("ack", "intent"):
                    acks.append(msg)
                if msg["k"] == "intent":
                    intent = msg

        wanted = ACKS_AFTER_INTENT if self.use_netns else ACKS_WITHOUT_NETNS
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        try:
            while time.monotonic() < deadline and self.child.poll() is None:
                ready, _, _ = select.select([read_fd], [], [], 0.5)
                chunk = os.read(read_fd, 65536) if ready else b""
                if ready and not chunk:
                    break  # the child closed the pipe: it died
                *lines, buf = (buf + chunk).split(b"\n")
                take(lines)
                since = acks[acks.index(intent) + 1 :] if intent is not None else acks
                if len(since) >= wanted and (intent is not None or not self.use_netns):
                    self.child.send_signal(signal.SIGKILL)  # mid-stream: it is still writing
                    break
        finally:
            if self.child.poll() is None:
                self.child.send_signal(signal.SIGKILL)
            status = self.child.wait()
            self.child = None
            # Acks written just before the kill are still in the pipe.
            with contextlib.suppress(OSError):
                while select.select([read_fd], [], [], 0)[0]:
                    chunk = os.read(read_fd, 65536)
                    if not chunk:
                        break
                    buf += chunk
            os.close(read_fd)
        # A line cut by the kill was never a whole acknowledgement.
        take(buf.split(b"\n")[:-1])
        return acks, intent, status

    def cleanup_pods(self) -> None:
        self.n.step("Clean up: delete every pod, which removes every namespace the demo made")
        with self.store() as store:
            for sb in store.list():
                store.delete(sb.id)
            left = len(store)
        leftovers = [e.path for e in _scan(self.netns_dir) if e.kind == "netns"]
        self.check(
            "no pod and no namespace left (only the log remains)",
            left == 0 and not leftovers and _nsfs_mounts_under(self.d) == 0,
            f"{left} pods, namespaces {leftovers}",
        )

    def emergency_cleanup(self) -> None:
        """After a failure: kill the child, unmount anything left in DIR/netns."""
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGKILL)
            self.child.wait()
        sweep_netns(self.netns_dir)


def _sandbox(pod: str, namespace: str, attempt: int = 0) -> Sandbox:
    uid = str(uuid.uuid4())
    config = PodSandboxConfig(
        metadata=PodSandboxMetadata(name=pod, uid=uid, namespace=namespace, attempt=attempt),
        hostname=pod,
        log_directory=f"/var/log/pods/{namespace}_{pod}_{uid}",
        labels={"app": pod.split("-")[0]},
    )
    name = f"{pod}_{namespace}_{uid}_{attempt}"
    return Sandbox(Metadata(cli.new_sandbox_id(), name, config), Status(State.READY))


def _with_pid(pid: int) -> Callable[[Status], Status]:
    """An update_status fn: the same status with a new pid (READY -> READY)."""
    return lambda old: attrs.evolve(old, pid=pid)


def _state_of(pods: Sequence[Sandbox]) -> list[tuple[str, str, str]]:
    return [(sb.id, sb.name, sb.status.state.value) for sb in pods]


def _scan(netns_dir: str) -> list[nsmod.Entry]:
    try:
        return nsmod.scan(netns_dir)
    except OSError:
        return []


def sweep_netns(netns_dir: str) -> None:
    """Unmount and unlink every namespace in ``netns_dir`` (the demo's own dir only)."""
    for entry in _scan(netns_dir):
        if entry.kind in ("netns", "empty-file"):
            with contextlib.suppress(Exception):
                nsmod.remove_at(entry.path, netns_dir)


def _mountinfo() -> Iterator[tuple[str, str]]:
    """(mount point, fs type) of every mount this process sees."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index("-")
            except ValueError:
                continue
            point = fields[4].replace("\\040", " ")
            yield point, fields[sep + 1]


def _nsfs_mounts(path: str) -> int:
    real = os.path.realpath(path) if path else ""
    return sum(1 for point, fs in _mountinfo() if fs == "nsfs" and point in (path, real))


def _nsfs_mounts_under(directory: str) -> int:
    real = os.path.realpath(directory).rstrip("/") + "/"
    return sum(1 for point, fs in _mountinfo() if fs == "nsfs" and point.startswith(real))


def _umount(path: str) -> str:
    """Unmount ``path`` behind the store's back; returns what was done, as a command."""
    if shutil.which("umount"):
        done = subprocess.run(["umount", "-l", path], capture_output=True, check=False)
        if done.returncode == 0:
            return f"umount -l {path}"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    mnt_detach = 2
    if libc.umount2(os.fsencode(path), mnt_detach) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount2 {path}: {os.strerror(err)}")
    return f"umount2({path}, MNT_DETACH)"


# -- netns capability -------------------------------------------------------------------


def netns_possible() -> str:
    """'' if this process can make network namespaces, else why not."""
    probe_dir = tempfile.mkdtemp(prefix="sandboxctl-demo-probe-")
    try:
        path = os.path.join(probe_dir, "probe")
        try:
            nsmod.create_at(path, probe_dir)
        except Exception as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.strerror:
                return f"unshare/mount: {cause.strerror}"
            return str(exc)
        nsmod.remove_at(path, probe_dir)
        return ""
    finally:
        sweep_netns(probe_dir)
        with contextlib.suppress(OSError):
            os.rmdir(probe_dir)


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        done = subprocess.run(
            ["unshare", "-Urm", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# -- the state dir ----------------------------------------------------------------------


def prepare_state_dir(state_dir: str, *, force: bool) -> None:
    """Make ``state_dir`` a fresh, marked demo dir; refuse anything else.

    A non-empty directory is used only with ``force`` AND the demo's marker
    in it: the demo never wipes a directory it did not make (it could be a
    real node's state dir).
    """
    d = os.path.abspath(state_dir)
    if os.path.lexists(d) and not os.path.isdir(d):
        raise DemoError(f"{state_dir} exists and is not a directory")
    if os.path.isdir(d) and os.listdir(d):
        if not force:
            raise DemoError(
                f"{state_dir} is not empty; the demo needs a fresh state dir: choose "
                "another --state-dir, or pass --force to wipe a previous demo's dir"
            )
        if not os.path.exists(os.path.join(d, MARKER)):
            raise DemoError(
                f"{state_dir} is not empty and was not made by sandboxctl demo "
                f"(no {MARKER} file); refusing to wipe it, even with --force"
            )
        netns_dir = os.path.join(d, "netns")
        sweep_netns(netns_dir)
        if _nsfs_mounts_under(d):
            raise DemoError(
                f"{state_dir} still has namespaces mounted under it; unmount them first"
            )
        shutil.rmtree(d)
    os.makedirs(os.path.join(d, "netns"), exist_ok=True)
    with open(os.path.join(d, MARKER), "w", encoding="utf-8") as f:
        f.write("made by sandboxctl demo; 'sandboxctl demo --force' may wipe this directory\n")


# -- entry points -------------------------------------------------------------------------


def main(
    state_dir: str = DEFAULT_STATE_DIR,
    *,
    force: bool = False,
    use_netns: bool = True,
    json_output: bool = False,
) -> int:
    """Run the demo; 0 if every check passed (or was skipped), 1 if one failed."""
    why_not = "" if use_netns else "--no-netns given"
    if use_netns:
        why_not = netns_possible()
        # Not root (or root without CAP_SYS_ADMIN, as in many containers): a
        # user + mount namespace gives the rights on paths this user owns.
        if why_not and not os.environ.get(UNSHARED_ENV) and _unshare_works():
            argv = [
                "unshare", "-Urm", sys.executable, "-m", "replay", "demo",
                "--state-dir", state_dir,
            ]  # fmt: skip
            if force:
                argv.append("--force")
            if json_output:
                argv += ["-o", "json"]
            sys.stdout.flush()
            sys.stderr.flush()
            os.execvpe("unshare", argv, {**os.environ, UNSHARED_ENV: "1"})
        if why_not:
            use_netns = False
            why_not = f"cannot make network namespaces here ({why_not}) and 'unshare -Urm' fails"
    try:
        prepare_state_dir(state_dir, force=force)
    except (DemoError, OSError) as exc:
        sys.stderr.write(f"sandboxctl: error: {exc}\n")
        return cli.EXIT_INVALID
    narrator = Narrator(sys.stderr if json_output else sys.stdout)
    demo = Demo(state_dir, use_netns=use_netns, narrator=narrator, why_not=why_not)
    try:
        demo.run()
    except Exception as exc:  # a failed step is a failed check, and cleanup still runs
        demo.checks.append(
            Check("the scenario ran to the end", "failed", f"{type(exc).__name__}: {exc}")
        )
        narrator.say(f"\nsandboxctl demo: step failed: {type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            demo.cleanup_pods()
    finally:
        demo.emergency_cleanup()
    failed = [c for c in demo.checks if c.status == "failed"]
    if json_output:
        doc = {
            "ok": not failed,
            "state_dir": state_dir,
            "netns": use_netns,
            "checks": [attrs.asdict(c) for c in demo.checks],
        }
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    narrator.say()
    narrator.say("Checks:")
    for c in demo.checks:
        suffix = f" ({c.detail})" if c.detail and c.status != "passed" else ""
        narrator.say(f"  {narrator.marks[c.status]} {c.name}{suffix}")
    passed = sum(1 for c in demo.checks if c.status == "passed")
    skipped = sum(1 for c in demo.checks if c.status == "skipped")
    narrator.say(
        f"{passed} passed, {len(failed)} failed, {skipped} skipped. "
        f"The log is still there: try  sandboxctl --state-dir {state_dir} audit"
    )
    return 1 if failed else 0


def child_main(argv: Sequence[str]) -> int:
    """The writer child: add pods and update status, acknowledging each command's
    last seq through the pipe, until the parent kills it.

    One add (api-0) is interrupted right after its namespace intent is
    durable: the crash point ``store.after_intent`` is armed to *raise* here,
    so the child reports the intent and carries on writing without ever
    reconciling - the parent's SIGKILL then lands mid-stream with that
    namespace never created.
    """
    state_dir, netns_dir = argv[:2]
    fd_text = argv[-1]
    use_netns = "--no-netns" not in argv
    out = os.fdopen(int(fd_text), "w", buffering=1)

    def send(**msg: Any) -> None:
        out.write(json.dumps(msg) + "\n")

    store = Store.open(state_dir, netns_dir=netns_dir, actor=CHILD_ACTOR)
    send(k="open", last_seq=store.last_seq)

    def ack(sandbox_id: str, last_type: str) -> None:
        # The command has returned: its events are durable. Single-threaded, so
        # the store's last seq is the seq of the command's last event.
        send(k="ack", seq=store.last_seq, type=last_type, id=sandbox_id)

    web = store.add(_sandbox("web-1", "default"), create_netns=use_netns)
    ack(web.id, "NetNSCreated" if use_netns else "SandboxAdded")
    store.update_status(web.id, lambda old: attrs.evolve(old, pid=4242))
    ack(web.id, "StatusUpdated")
    api = _sandbox("api-0", "default")
    if use_netns:
        crashpoints.arm(AFTER_INTENT, "raise")
        with contextlib.suppress(crashpoints.CrashPointHit):
            store.add(api, create_netns=True)
        crashpoints.disarm()
        path = store[api.id].metadata.netns_path
        send(k="intent", seq=store.last_seq, type="NetNSAssigned", id=api.id, path=path)
    else:
        store.add(api)
        ack(api.id, "SandboxAdded")
    i = 0
    while True:  # until SIGKILL
        i += 1
        if i % 3 == 0:
            batch = store.add(_sandbox(f"batch-{i}", "jobs"))
            ack(batch.id, "SandboxAdded")
        else:
            target = web.id if i % 2 else api.id
            store.update_status(target, _with_pid(1000 + i))
            ack(target, "StatusUpdated")
        if i > 100_000:  # the parent is gone: do not write forever
            return 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main(*sys.argv[1:2]))
