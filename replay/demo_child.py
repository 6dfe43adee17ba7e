"""The demo's writer child: a store writing until the demo kills it with SIGKILL.

Why a process of its own: "nothing acknowledged is lost to kill -9" is only
shown by killing a real writer mid-stream. It reports every acknowledged
command through a pipe (one JSON line each) so the parent knows exactly
what must survive. Run as ``python -m replay.demo child ...``.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from eventlog import crashpoints
from replay.cli.pods import new_sandbox_id
from sandbox.config import PodSandboxConfig, PodSandboxMetadata
from sandbox.metadata import Metadata
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status
from sandbox.store import AFTER_INTENT, Store

__all__ = ["CHILD_ACTOR", "child_main", "demo_sandbox"]

CHILD_ACTOR = "demo-writer"


def demo_sandbox(pod: str, namespace: str, attempt: int = 0) -> Sandbox:
    """A READY sandbox as containerd would name it, with a fresh uid and id."""
    uid = str(uuid.uuid4())
    config = PodSandboxConfig(
        metadata=PodSandboxMetadata(name=pod, uid=uid, namespace=namespace, attempt=attempt),
        hostname=pod,
        log_directory=f"/var/log/pods/{namespace}_{pod}_{uid}",
        labels={"app": pod.split("-")[0]},
    )
    name = f"{pod}_{namespace}_{uid}_{attempt}"
    return Sandbox(Metadata(new_sandbox_id(), name, config), Status(State.READY))


def _with_pid(pid: int) -> Callable[[Status], Status]:
    """An update_status fn: the same status with a new pid (READY -> READY)."""
    return lambda old: attrs.evolve(old, pid=pid)


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

    web = store.add(demo_sandbox("web-1", "default"), create_netns=use_netns)
    ack(web.id, "NetNSCreated" if use_netns else "SandboxAdded")
    store.update_status(web.id, lambda old: attrs.evolve(old, pid=4242))
    ack(web.id, "StatusUpdated")
    api = demo_sandbox("api-0", "default")
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
            batch = store.add(demo_sandbox(f"batch-{i}", "jobs"))
            ack(batch.id, "SandboxAdded")
        else:
            target = web.id if i % 2 else api.id
            store.update_status(target, _with_pid(1000 + i))
            ack(target, "StatusUpdated")
        if i > 100_000:  # the parent is gone: do not write forever
            return 1
