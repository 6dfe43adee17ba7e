"""The few places the crash harness touches the store, in one module.

Why one module: the child executes workload ops through the Store API and
reports what the log holds; the parent reopens, replays and verifies. Both
need the same small adapter (where the log lives, how to read back records,
what the log says is durable, how an op maps onto a Store call), and keeping
it here means a change in another package's API is adapted in one place.

Everything returned is plain msgpack-ready data (it crosses the pipe).
"""

from __future__ import annotations

import os
from typing import Any

from eventlog import read as read_log
from replay.crash import workload as wl
from replay.crash.faults import SyncRecorder
from sandbox import mounts
from sandbox.config import PodSandboxConfig, PodSandboxMetadata
from sandbox.metadata import Metadata
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status
from sandbox.store import Store

#: Errors the workload provokes on purpose (``Op.expect``); anything else a
#: command raises is a finding.
EXPECTED_ERRORS = frozenset({wl.ERR_EXISTS, wl.ERR_TRANSITION})


def log_dir(state_dir: str) -> str:
    """Where the event log's segments live: the state dir itself (Store.open)."""
    return state_dir


#: Segment size the harness runs with, so that a short workload rotates
#: segments (the store's default, 64 MiB, would never reach the rotate.*
#: crash points). Env ``SANDBOX_CRASHTEST_SEGMENT_BYTES`` overrides it.
SEGMENT_BYTES = int(os.environ.get("SANDBOX_CRASHTEST_SEGMENT_BYTES", "4096"))


def open_store(state_dir: str, netns_dir: str, *, segment_bytes: int | None = None) -> Store:
    """Open the store the way the harness tests it: durability "always", small segments."""
    size = SEGMENT_BYTES if segment_bytes is None else segment_bytes
    return Store.open(state_dir, netns_dir=netns_dir, durability="always", segment_bytes=size)


def replay_verify(state_dir: str, netns_dir: str, head: bytes | None) -> tuple[bool, list[str]]:
    """``replay.verify`` (transitions, snapshots, head): ok and the problems as text."""
    from replay.verify import verify

    result = verify(state_dir, head=head, netns_dir=netns_dir)
    return result.ok, [str(p) for p in result.problems]


def durable(store: Store, synced: SyncRecorder) -> list[Any] | None:
    """``[segment path, durable bytes, segment names, snapshot names]`` right now.

    Measured, not asked: the bytes are what ``synced`` saw a real sync make
    durable (see ``faults``), never the writer's ``synced_offset``. The
    durable segment is the first one not durable in full, or the last one
    (with a writer that syncs the old segment before it rotates), since power loss
    keeps every segment before the durable one whole and may drop every one
    after it. ``""`` and 0 when there is no segment.
    """
    names = sorted(os.listdir(store.state_dir))
    segs = [n for n in names if n.endswith(".log")]
    snaps = [n for n in names if n.endswith(".snap")]
    segment, offset = "", 0
    for name in segs:
        if segment and offset < os.path.getsize(segment):
            break  # an earlier segment is not durable in full: it is the end
        path = os.path.join(os.path.realpath(store.state_dir), name)
        segment, offset = path, synced.durable_size(path) or 0
    return [segment, offset, segs, snaps]


def records_between(state_dir: str, before: int, after: int) -> list[list[Any]]:
    """``[[seq, time_ns, digest, payload], ...]`` for seqs in (before, after]."""
    if after <= before:
        return []
    return [
        [r.seq, r.time_ns, r.digest, r.payload]
        for r in read_log(log_dir(state_dir), from_seq=before + 1, to_seq=after)
    ]


def make_sandbox(op: wl.Op) -> Sandbox:
    """The Sandbox value an ``add`` op adds (deterministic from the op)."""
    pod, _, rest = op.name.partition("_")
    namespace, _, rest = rest.partition("_")
    uid = rest.rsplit("_", 1)[0]
    config = PodSandboxConfig(
        metadata=PodSandboxMetadata(name=pod, uid=uid, namespace=namespace, attempt=0),
        hostname=pod,
        log_directory=f"/var/log/pods/{namespace}_{pod}_{uid}",
        labels={"app": pod, "crashtest": "1"},
    )
    status = Status(
        State(op.state),
        pid=op.pid,
        created_at=wl.BASE_TIME_NS + op.index,
        exited_at=wl.BASE_TIME_NS + op.index if op.state == wl.NOTREADY else None,
    )
    return Sandbox(Metadata(op.sandbox_id, op.name, config), status)


def _new_status(op: wl.Op, old: Status) -> Status:
    exited = old.exited_at
    if op.state == wl.NOTREADY and exited is None:
        exited = wl.BASE_TIME_NS + op.index
    return Status(
        State(op.state),
        pid=op.pid,
        created_at=old.created_at,
        exited_at=exited,
        exit_status=op.exit_status if op.exit_status is not None else old.exit_status,
    )


def execute(store: Store, op: wl.Op, netns_dir: str) -> Any:
    """Run one workload op against the store; return a msgpack-ready result."""
    if op.kind == wl.ADD:
        added = store.add(make_sandbox(op), create_netns=op.create_netns)
        return {"netns": added.netns.get_path() if added.netns is not None else ""}
    if op.kind == wl.DELETE:
        store.delete(op.target)
        return None
    if op.kind == wl.UPDATE_STATUS:
        new = store.update_status(op.target, lambda old: _new_status(op, old))
        return {"state": new.state.value}
    if op.kind == wl.REMOVE_NETNS:
        store.remove_netns(op.target)
        return None
    if op.kind == wl.SNAPSHOT:
        return {"snapshot": os.path.basename(store.snapshot())}
    if op.kind == wl.RECONCILE:
        report = store.reconcile()
        return {
            "created": len(report.created),
            "removed": len(report.removed),
            "closed": len(report.closed),
            "errors": [list(e) for e in report.errors],
        }
    if op.kind == wl.EXTERNAL_UMOUNT:
        done: list[str] = []
        for sid in op.targets or (op.sandbox_id,):
            found = store.get(sid)
            path = found.netns.get_path() if found is not None and found.netns is not None else ""
            real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
            for m in mounts.mounts_under(netns_dir, fstype="nsfs"):
                if path and m.mount_point == real:
                    mounts.umount_detach(m.mount_point)
                    done.append(path)
        return {"umounted": done}
    raise ValueError(f"unknown op kind {op.kind!r}")
