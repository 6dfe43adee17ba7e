"""A real store's log and snapshots, made at run time for the snapshot target.

The snapshot target needs more than seed bytes: to check that a snapshot
with a mutated log position still loads to the right state, it needs the
very log the seed snapshots were taken from, and the true projection after
every seq of it. ``build`` makes that with the real ``sandbox.Store`` (no
network namespaces: nothing here needs root or the kernel); ``load`` reads
it back, so that the fuzzing process and the process that wrote the seed
corpus share one fixture (the log's time stamps and envelope differ between
two builds, so their chain digests would too).

Layout under the fixture's root::

    state/    the store's state dir: its log only (no *.snap)
    snaps/    the seed snapshots, moved out of state/ as they were taken
"""

from __future__ import annotations

import os
from typing import Any

import attrs

import eventlog
from eventlog.format import ZERO_DIGEST
from sandbox import Metadata, PodSandboxConfig, Projection, Sandbox, State, Status, Store
from sandbox import events as ev
from sandbox import snapshot as snap

__all__ = ["POD_CONFIGS", "SnapshotFixture", "make_sandbox"]

#: Small segments, so the log has several and positions cross segment files.
_SEGMENT_BYTES = 1024

#: CRI pod configs in crictl's JSON shape (what ``sandboxctl run`` reads): they
#: go through the real config parser, whatever its classes look like inside.
POD_CONFIGS: tuple[dict[str, Any], ...] = (
    {"metadata": {"name": "web", "uid": "uid-web", "namespace": "default"}},
    {
        "metadata": {"name": "db", "uid": "uid-db", "namespace": "prod", "attempt": 2},
        "hostname": "db-0",
        "log_directory": "/var/log/pods/db",
        "dns_config": {
            "servers": ["10.0.0.10"],
            "searches": ["prod.svc.cluster.local"],
            "options": ["ndots:5"],
        },
        "port_mappings": [
            {"protocol": 1, "container_port": 53, "host_port": 5353, "host_ip": "127.0.0.1"},
            {"container_port": 8080},
        ],
        "labels": {"app": "db", "tier": "backend"},
        "annotations": {"note": "<&> \u00e9\u65e5"},
        "linux": {
            "cgroup_parent": "/kubepods/burstable",
            "sysctls": {"net.ipv4.ip_forward": "1"},
            "security_context": {
                "run_as_user": {"value": 1000},
                "readonly_rootfs": True,
                "supplemental_groups": [1, 2],
                "privileged": False,
                "selinux_options": {"user": "u", "role": "r", "type": "t", "level": "s0"},
            },
        },
    },
    {"metadata": {"name": "cache", "uid": "uid-cache", "namespace": "kube-system"}},
    {"metadata": {"name": "batch", "uid": "uid-batch", "namespace": "jobs", "attempt": 1}},
)


def make_sandbox(index: int, *, state: State = State.READY, netns_path: str = "") -> Sandbox:
    """The ``index``-th sandbox of the fixture: a fixed id, a containerd-style name."""
    doc = POD_CONFIGS[index % len(POD_CONFIGS)]
    config = PodSandboxConfig.from_go_json(doc)
    meta = doc["metadata"]
    name = f"{meta['name']}_{meta['namespace']}_{meta['uid']}_{meta.get('attempt', 0)}"
    if index >= len(POD_CONFIGS):
        name += f"-{index}"
    sandbox_id = f"{index + 1:02x}" * 32
    metadata = Metadata(sandbox_id, name, config, netns_path)
    return Sandbox(metadata, Status(state, pid=100 + index, created_at=1_700_000_000 + index))


def _stopped(old: Status) -> Status:
    return attrs.evolve(old, state=State.NOTREADY, exited_at=old.created_at + 5, exit_status=137)


def _lost(old: Status) -> Status:
    return attrs.evolve(old, state=State.UNKNOWN)


@attrs.frozen
class SnapshotFixture:
    """The fixture's paths, the log's digests and true projections, the seed snapshots.

    ``digests[seq]`` is the chain digest after ``seq`` (``digests[0]`` the
    genesis zeros); ``truth[seq]`` is ``Projection.to_snapshot()`` after
    replaying records 1..seq.
    """

    root: str
    state_dir: str
    netns_dir: str
    digests: tuple[bytes, ...]
    truth: tuple[dict[str, Any], ...]
    snapshots: tuple[bytes, ...]

    @property
    def last_seq(self) -> int:
        return len(self.digests) - 1

    @classmethod
    def build(cls, root: str) -> SnapshotFixture:
        """Make the fixture under ``root`` (created; must not hold one already)."""
        state_dir = os.path.join(root, "state")
        snaps_dir = os.path.join(root, "snaps")
        netns_dir = os.path.join(root, "netns")  # never created: no namespaces here
        os.makedirs(snaps_dir)
        taken = 0

        def keep(path: str) -> None:
            nonlocal taken
            taken += 1
            os.rename(path, os.path.join(snaps_dir, f"{taken:03d}-{os.path.basename(path)}"))

        with Store.open(
            state_dir, netns_dir=netns_dir, durability="none", segment_bytes=_SEGMENT_BYTES
        ) as store:
            keep(store.snapshot())  # seq 0: the empty store
            for i in range(3):
                store.add(make_sandbox(i))
            keep(store.snapshot())
            store.update_status(make_sandbox(0).id, _stopped)
            store.update_status(make_sandbox(1).id, _lost)
            keep(store.snapshot())
            store.delete(make_sandbox(2).id)
            store.add(make_sandbox(3, state=State.NOTREADY))
            store.add(make_sandbox(4, netns_path="/run/netns/caller-made"))
            keep(store.snapshot())
            store.update_status(make_sandbox(1).id, _stopped)
            store.delete(make_sandbox(0).id)
            keep(store.snapshot())
        fixture = cls.load(root)
        # A version 1 snapshot (no log position) and one whose projection owns
        # namespaces (folded from real events, no kernel involved).
        mid = fixture.last_seq // 2
        v1 = snap.encode(Projection.from_snapshot(fixture.truth[mid]), fixture.digests[mid])
        with open(os.path.join(snaps_dir, "900-v1.snap"), "wb") as f:
            f.write(v1)
        with open(os.path.join(snaps_dir, "901-owned.snap"), "wb") as f:
            f.write(_owned_netns_snapshot(netns_dir))
        return cls.load(root)

    @classmethod
    def load(cls, root: str) -> SnapshotFixture:
        """Read a fixture ``build`` made: replay its log, read its seed snapshots."""
        state_dir = os.path.join(root, "state")
        snaps_dir = os.path.join(root, "snaps")
        netns_dir = os.path.join(root, "netns")
        projection = Projection(netns_dir)
        digests = [ZERO_DIGEST]
        truth = [projection.to_snapshot()]
        for record in eventlog.read(state_dir):
            projection.apply(record.seq, record.payload)
            digests.append(record.digest)
            truth.append(projection.to_snapshot())
        snapshots = []
        for name in sorted(os.listdir(snaps_dir)):
            with open(os.path.join(snaps_dir, name), "rb") as f:
                snapshots.append(f.read())
        return cls(root, state_dir, netns_dir, tuple(digests), tuple(truth), tuple(snapshots))


def _owned_netns_snapshot(netns_dir: str) -> bytes:
    """Snapshot bytes of a projection holding owned namespaces in every state."""
    env = {"time": 1_700_000_000, "host": "fuzz", "pid": 1, "uid": 0, "actor": None}
    projection = Projection(netns_dir)
    a, b, c = (make_sandbox(i) for i in range(3))
    events = [ev.sandbox_added(env, sb.metadata, sb.status) for sb in (a, b, c)]
    paths = [
        os.path.join(netns_dir, f"cni-0000000{i}-0000-4000-8000-000000000000") for i in range(4)
    ]
    events += [
        ev.netns_assigned(env, a.id, paths[0]),
        ev.netns_created(env, a.id, paths[0]),
        ev.netns_assigned(env, b.id, paths[1]),
        ev.netns_created(env, b.id, paths[1]),
        ev.netns_closed(env, b.id, paths[1], "gone out of band"),
        ev.netns_assigned(env, c.id, paths[2]),
        ev.sandbox_deleted(env, c.id),
        ev.netns_assigned(env, a.id, paths[3]),
        ev.netns_remove_requested(env, a.id, paths[3]),
    ]
    for seq, event in enumerate(events, 1):
        projection.apply(seq, event)
    return snap.encode(projection, bytes(32))
