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

The writer child is this module run as ``python -m replay.demo child ...``
(``replay.demo_child``; the parent's side of it is ``replay.demo_crash``);
the state dir, the namespace probe and the ``unshare`` re-run are
``replay.demo_env``'s. The sandboxctl commands it shows run in-process
through the ``sandboxctl`` function the CLI hands over (the CLI imports this
module, so this module does not import the CLI's entry point back).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import attrs

import eventlog
from replay.audit import audit
from replay.cli.exits import EXIT_INVALID
from replay.demo_child import CHILD_ACTOR, child_main, demo_sandbox
from replay.demo_crash import WriterChild
from replay.demo_env import (
    MARKER,
    UNSHARED_ENV,
    DemoError,
    netns_possible,
    nsfs_mounts_on,
    nsfs_mounts_under,
    prepare_state_dir,
    reexec_unshared,
    scan,
    sweep_netns,
    umount_out_of_band,
    unshare_works,
)
from replay.verify import verify
from replay.view import load
from sandbox.sandbox import Sandbox
from sandbox.status import State
from sandbox.store import Store

__all__ = ["DEFAULT_STATE_DIR", "MARKER", "main"]

DEFAULT_STATE_DIR = "./demo-state"
ACTOR = "sandboxctl-demo"

#: Runs one sandboxctl command line in-process and returns its exit code.
Sandboxctl = Callable[[Sequence[str]], int]


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
    """The scenario: one method per step, sharing what a later step checks."""

    def __init__(
        self,
        state_dir: str,
        *,
        use_netns: bool,
        narrator: Narrator,
        sandboxctl: Sandboxctl,
        why_not: str = "",
    ):
        self.d = os.path.abspath(state_dir)
        self.shown = state_dir
        self.netns_dir = os.path.join(self.d, "netns")
        self.use_netns = use_netns
        self.why_not = why_not
        self.n = narrator
        self.sandboxctl = sandboxctl
        self.checks: list[Check] = []
        self.writer = WriterChild(self.d, self.netns_dir, use_netns=use_netns)
        # What the steps find out, for the later ones.
        self.ids: dict[str, str] = {}
        self.before_seq = 0
        self.before_head = ""
        self.before_state: list[tuple[str, str, str]] = []
        self.acks: list[dict[str, Any]] = []
        self.intent: dict[str, Any] | None = None
        self.nginx_path = ""
        self.snapshot = ""

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
            code = self.sandboxctl(["--state-dir", self.d, "--netns-dir", self.netns_dir, *argv])
        self.n.detail(out.getvalue())
        return code

    def store(self) -> Store:
        return Store.open(self.d, netns_dir=self.netns_dir, actor=ACTOR)

    # -- the scenario -----------------------------------------------------------------

    def run(self) -> None:
        self.intro()
        with self.store() as store:
            self.run_pods(store)
            self.stop_redis(store)
        self.cli("pods")
        self.n.detail(f"snapshot {self.snapshot}; chain head at seq {self.before_seq}:")
        self.n.detail(f"  {self.before_head}  (kept to prove later that history was not rewritten)")
        self.crash()
        if self.use_netns:
            self.umount_out_of_band()
        self.recover()
        self.verify_log()
        self.audit_trail()
        self.time_travel()
        self.cleanup_pods()

    def intro(self) -> None:
        n = self.n
        n.say(f"sandboxctl demo: state dir {self.shown}, network namespaces in {self.shown}/netns")
        if not self.use_netns:
            n.say(f"(running WITHOUT network namespaces: {self.why_not})")
        elif os.environ.get(UNSHARED_ENV):
            n.say(
                "(not root: re-executed under 'unshare -Urm'; the namespaces live in a "
                "private mount namespace that vanishes with the demo)"
            )

    def run_pods(self, store: Store) -> None:
        """Step 1: three pods, each in its own namespace."""
        self.n.step(
            "Run three pods" + (", each with its own network namespace" if self.use_netns else "")
        )
        for pod, ns in [("nginx", "default"), ("redis", "default"), ("coredns", "kube-system")]:
            sb = store.add(demo_sandbox(pod, ns), create_netns=self.use_netns)
            self.ids[pod] = sb.id
            where = f" in netns {os.path.basename(sb.netns.get_path())}" if sb.netns else ""
            self.n.detail(f"+ {sb.name}  {sb.id[:13]}{where}")
        if self.use_netns:
            live = [s for s in store.list() if s.netns is not None and not s.netns.closed()]
            self.check("three pods run, each in a live network namespace", len(live) == 3)
        else:
            self.skip("three pods run, each in a live network namespace", self.why_not)

    def stop_redis(self, store: Store) -> None:
        """Step 2: one pod stopped, then a snapshot and the head kept for later."""
        self.n.step("Stop redis: READY -> NOTREADY, its namespace removed (as containerd does)")
        redis = self.ids["redis"]
        redis_ns = store[redis].netns
        store.update_status(
            redis, lambda old: attrs.evolve(old, state=State.NOTREADY, exited_at=time.time_ns())
        )
        store.remove_netns(redis)
        gone = redis_ns is None or redis_ns.closed()
        self.check(
            "redis is NOTREADY and its namespace is gone",
            store[redis].status.state is State.NOTREADY and gone,
        )
        self.snapshot = os.path.basename(store.snapshot())
        self.before_seq = store.last_seq
        self.before_head = store.head.hex()
        self.before_state = _state_of(store.list())

    def crash(self) -> None:
        """Step 3: the writer child, killed mid-stream."""
        n = self.n
        n.step("A writer child process adds pods and updates status; SIGKILL mid-stream")
        self.acks, self.intent, status = self.crash_child()
        ack_seqs = [a["seq"] for a in self.acks]
        if ack_seqs:
            n.detail(
                f"child acknowledged {len(self.acks)} commands "
                f"(seq {min(ack_seqs)}..{max(ack_seqs)})"
            )
        if self.intent is not None:
            n.detail(
                f"api-0's namespace intent durable at seq {self.intent['seq']} "
                f"({os.path.basename(self.intent['path'])}); the child never created it"
            )
        self.check(
            "writer child was killed by SIGKILL mid-stream",
            status == -signal.SIGKILL,
            f"exit status {status}",
        )

    def umount_out_of_band(self) -> None:
        """Step 4: nginx's namespace unmounted behind the store's back."""
        self.n.step("Out of band: umount nginx's namespace (as an operator or a reboot would)")
        view = load(self.d, netns_dir=self.netns_dir)
        nginx = view.get(self.ids["nginx"])
        self.nginx_path = nginx.netns.get_path() if nginx and nginx.netns else ""
        self.n.detail(f"$ {umount_out_of_band(self.nginx_path)}")

    def recover(self) -> None:
        """Step 5: replay, reconcile; every ack present, the namespaces right."""
        self.n.step("Recovery: replay the log, then reconcile the namespaces")
        records = list(eventlog.read(self.d))
        by_seq = {r.seq: r for r in records}
        missing = [
            a
            for a in self.acks
            if a["seq"] not in by_seq
            or by_seq[a["seq"]].payload.get("type") != a["type"]
            or by_seq[a["seq"]].payload.get("id") != a["id"]
        ]
        last_ack = max((a["seq"] for a in self.acks), default=0)
        in_flight = (records[-1].seq if records else 0) - last_ack
        with self.store() as store:
            loaded = store.load_result
            if loaded is not None:
                self.n.detail(
                    f"replayed {loaded.replayed} events after snapshot seq {loaded.snapshot_seq}"
                )
            self.n.detail(
                f"log ends at seq {store.last_seq}; {in_flight} event(s) in flight "
                "at the kill, not acknowledged"
            )
            self.check(
                "every acknowledged event is in the log after the crash",
                not missing and bool(self.acks),
                f"{len(missing)} of {len(self.acks)} missing",
            )
            full = load(self.d, netns_dir=self.netns_dir)
            self.check(
                "the reopened store equals a full replay of the log",
                full.projection == store.projection(),
            )
            self.reconcile_checks(store)
        self.cli("pods")

    def reconcile_checks(self, store: Store) -> None:
        """What the reconcile at open did, and that a second one does nothing."""
        report = store.last_reconcile_report
        for path in report.created:
            self.n.detail(f"reconcile: created {os.path.basename(path)}")
        for path in report.closed:
            self.n.detail(f"reconcile: recorded {os.path.basename(path)} as closed (not recreated)")
        for path, msg in report.errors:
            self.n.detail(f"reconcile: error {path}: {msg}")
        if self.use_netns and self.intent is not None:
            path = self.intent["path"]
            creates = [
                r
                for r in eventlog.read(self.d)
                if r.payload.get("type") == "NetNSCreated" and r.payload.get("path") == path
            ]
            on_path = nsfs_mounts_on(path)
            self.check(
                "the interrupted intent's namespace was created exactly once",
                path in report.created and len(creates) == 1 and on_path == 1,
                f"{len(creates)} NetNSCreated events, {on_path} mounts",
            )
            self.check(
                "the namespace unmounted out of band was recorded as closed, not recreated",
                self.nginx_path in report.closed and nsfs_mounts_on(self.nginx_path) == 0,
            )
        else:
            why = self.why_not or "the child did not report an interrupted intent"
            self.skip("the interrupted intent's namespace was created exactly once", why)
            self.skip("the namespace unmounted out of band was recorded as closed", why)
        again = store.reconcile()
        self.check(
            "a second reconcile does nothing (idempotent)", not again.changed, str(again.to_dict())
        )

    def verify_log(self) -> None:
        """Step 6: verify, and verify against the head kept before the crash."""
        self.n.step("Verify the log: checksums, chain, seqs, every transition, snapshots")
        res = verify(self.d, netns_dir=self.netns_dir)
        self.n.detail(
            f"{res.records} records, {len(res.snapshots)} snapshot(s), head {res.head[:16]}..."
        )
        self.check("verify: the log is clean", res.ok, str(res.first))
        res2 = verify(self.d, head=self.before_head, netns_dir=self.netns_dir)
        self.check(
            "verify --head (kept before the crash): history was not rewritten",
            res2.ok,
            str(res2.first),
        )

    def audit_trail(self) -> None:
        """Step 7: the audit trail of the pod whose add the crash interrupted."""
        self.n.step("The audit trail of api-0 (the pod whose add the crash interrupted)")
        api = [sb for sb in load(self.d).list() if sb.name.startswith("api-0_")]
        if not api:
            self.check("audit: api-0 is in the store", False, "the child never added api-0")
            return
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

    def time_travel(self) -> None:
        """Step 8: the pods as they were before the crash."""
        seq = self.before_seq
        self.n.step(f"Time travel: the pods as they were at seq {seq}, before the crash")
        self.cli("history", "--upto", str(seq))
        then = load(self.d, upto_seq=seq)
        self.check(
            f"history at seq {seq} equals the state captured then",
            _state_of(then.list()) == self.before_state,
        )

    def crash_child(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int | None]:
        """Run the writer child, kill it mid-stream; (acks, intent message, exit status)."""
        out = self.writer.run()
        if out.status != -signal.SIGKILL or not out.acks:
            self.n.detail("the writer child said:\n" + (out.said or "(nothing)"))
        return out.acks, out.intent, out.status

    def cleanup_pods(self) -> None:
        self.n.step("Clean up: delete every pod, which removes every namespace the demo made")
        with self.store() as store:
            for sb in store.list():
                store.delete(sb.id)
            left = len(store)
        leftovers = [e.path for e in scan(self.netns_dir) if e.kind == "netns"]
        self.check(
            "no pod and no namespace left (only the log remains)",
            left == 0 and not leftovers and nsfs_mounts_under(self.d) == 0,
            f"{left} pods, namespaces {leftovers}",
        )

    def emergency_cleanup(self) -> None:
        """After a failure: kill the child, unmount anything left in DIR/netns."""
        self.writer.kill()
        sweep_netns(self.netns_dir)


def _state_of(pods: Sequence[Sandbox]) -> list[tuple[str, str, str]]:
    return [(sb.id, sb.name, sb.status.state.value) for sb in pods]


# -- entry points -------------------------------------------------------------------------


def main(
    state_dir: str = DEFAULT_STATE_DIR,
    *,
    force: bool = False,
    use_netns: bool = True,
    json_output: bool = False,
    sandboxctl: Sandboxctl,
) -> int:
    """Run the demo; 0 if every check passed (or was skipped), 1 if one failed."""
    why_not = "" if use_netns else "--no-netns given"
    if use_netns:
        why_not = netns_possible()
        # Not root (or root without CAP_SYS_ADMIN, as in many containers): a
        # user + mount namespace gives the rights on paths this user owns.
        if why_not and not os.environ.get(UNSHARED_ENV) and unshare_works():
            reexec_unshared(state_dir, force=force, json_output=json_output)
        if why_not:
            use_netns = False
            why_not = f"cannot make network namespaces here ({why_not}) and 'unshare -Urm' fails"
    try:
        prepare_state_dir(state_dir, force=force)
    except (DemoError, OSError) as exc:
        sys.stderr.write(f"sandboxctl: error: {exc}\n")
        return EXIT_INVALID
    narrator = Narrator(sys.stderr if json_output else sys.stdout)
    demo = Demo(
        state_dir, use_netns=use_netns, narrator=narrator, why_not=why_not, sandboxctl=sandboxctl
    )
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


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    # Run as a script this file is ``__main__``, not ``replay.demo``: importing
    # the CLI (which imports ``replay.demo`` when its demo runs) is no circle.
    from replay.cli import main as sandboxctl_main

    sys.exit(main(*sys.argv[1:2], sandboxctl=sandboxctl_main))
