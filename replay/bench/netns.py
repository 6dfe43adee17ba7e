"""Benchmark: namespace creation through the reconciler against the raw kernel calls.

    sandboxctl bench --only netns      (python -m replay.bench.commands --only netns)

Figures (all in one run, so they share the machine's current state):

- reconcile creating N namespaces from ASSIGNED entries (``record`` is a
  no-op list append) versus a raw loop doing the same kernel calls
  (placeholder ``O_CREAT|O_EXCL``, helper thread ``unshare`` + bind mount).
  Target: the reconciler keeps >= 0.7x the raw loop's throughput.
- a no-op reconcile over the N live namespaces (every one kernel-checked):
  target <= 1/20 of the creation time.
- removal of the N through the reconciler versus raw detach + unlink
  (reported, no target).
- ``ip netns add`` for 100 namespaces with temporary names in
  /var/run/netns (process spawn included), deleted afterwards: a reference.
  Skipped as root of a user namespace (``./dev bench`` for a plain user):
  only the real root may write /var/run/netns.

Raw and reconciler creation are measured in alternating rounds (raw first,
then reconciler first, ...; ``--rounds``, default 3) and the best round of
each is kept, so neither side pays for the kernel still tearing down the
other's namespaces, or for a burst of load from something else (the runner
asks for one round per repetition and takes the median instead). Everything
made is removed, also on error or Ctrl-C. Needs root. ``--quick`` uses 200.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

import attrs

from sandbox import _linux
from sandbox.netns import DEFAULT_NETNS_DIR, remove_at
from sandbox.ownership import NetNSState, OwnedNetNS
from sandbox.reconciler import reconcile

from .rows import Row, skipped_rows
from .userns import in_user_namespace

#: Why the ``ip netns add`` row is not measured as root of a user namespace.
NEEDS_REAL_ROOT = "skipped: needs the real root (ip netns writes /var/run/netns)"

_MS = 1000.0  # per second
_CREATE_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def _raw_create(path: str) -> None:
    """The kernel calls create_at makes, with none of its checks or bookkeeping."""
    fd = os.open(path, _CREATE_FLAGS, 0o444)
    failures: list[BaseException] = []

    def helper() -> None:
        try:
            _linux.unshare(_linux.CLONE_NEWNET)
            _linux.bind_mount("/proc/thread-self/ns/net", f"/proc/self/fd/{fd}")
        except BaseException as e:
            failures.append(e)

    try:
        t = threading.Thread(target=helper)
        t.start()
        t.join()
    finally:
        os.close(fd)
    if failures:
        raise failures[0]


def _raw_remove(path: str) -> None:
    _linux.umount_detach(path)
    os.unlink(path)


def _paths(d: str, n: int) -> list[str]:
    return [os.path.join(d, f"cni-{uuid.uuid4()}") for _ in range(n)]


def _kernel_netns_count() -> int | None:
    """Network namespaces alive in the kernel (slab objects), or None if unreadable."""
    try:
        with open("/proc/slabinfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _settle(baseline: int | None, timeout: float = 30.0) -> None:
    """Wait for the kernel's asynchronous netns teardown (cleanup_net) to finish.

    Removing a namespace's last mount only queues its destruction; a phase
    that started while 1,000 namespaces are still being torn down would pay
    for them (rtnl contention). Waits until the kernel's count of network
    namespaces is back near ``baseline`` or has stopped falling for a second.
    """
    if baseline is None:
        time.sleep(2.0)
        return
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = _kernel_netns_count()
        if count is None or count <= baseline + 8:
            break
        if count != last:
            last, still_since = count, time.monotonic()
        elif time.monotonic() - still_since > 1.0:
            break
        time.sleep(0.05)
    time.sleep(0.2)


def _sweep(base: str) -> None:
    """Remove every mount and file this benchmark left under base (error paths)."""
    real = os.path.realpath(base)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    for p in sorted((p for p in points if p.startswith(real + os.sep)), key=len, reverse=True):
        for _ in range(8):
            try:
                _linux.umount_detach(p)
            except OSError:
                break
    shutil.rmtree(base, ignore_errors=True)


@attrs.define
class _Round:
    create: float
    remove: float
    noop: float = 0.0


def _round_raw(d: str, n: int) -> _Round:
    paths = _paths(d, n)
    t0 = time.perf_counter()
    for p in paths:
        _raw_create(p)
    t1 = time.perf_counter()
    for p in paths:
        _raw_remove(p)
    t2 = time.perf_counter()
    return _Round(create=t1 - t0, remove=t2 - t1)


def _round_reconcile(d: str, n: int) -> _Round:
    calls: list[tuple[str, str, str, str]] = []

    def record(kind: str, sandbox_id: str, path: str, reason: str) -> None:
        calls.append((kind, sandbox_id, path, reason))

    paths = _paths(d, n)
    assigned = [OwnedNetNS(f"sb{i}", p, NetNSState.ASSIGNED) for i, p in enumerate(paths)]
    created = [OwnedNetNS(o.sandbox_id, o.path, NetNSState.CREATED) for o in assigned]
    removing = [OwnedNetNS(o.sandbox_id, o.path, NetNSState.REMOVING) for o in assigned]

    t0 = time.perf_counter()
    report = reconcile(assigned, d, record)
    t1 = time.perf_counter()
    if len(report.created) != n or report.errors:
        raise RuntimeError(f"reconcile created {len(report.created)} of {n}: {report.errors}")

    samples = []
    for _ in range(5):
        s0 = time.perf_counter()
        idle = reconcile(created, d, record)
        samples.append(time.perf_counter() - s0)
        if idle.changed or len(calls) != n:
            raise RuntimeError("a no-op reconcile changed something or recorded")

    t2 = time.perf_counter()
    report = reconcile(removing, d, record)
    t3 = time.perf_counter()
    if len(report.removed) != n:
        raise RuntimeError(f"reconcile removed {len(report.removed)} of {n}: {report.errors}")
    return _Round(create=t1 - t0, remove=t3 - t2, noop=statistics.median(samples))


def bench_reconcile(n: int, rounds: int = 3) -> list[Row]:
    """Creation (reconciler vs raw), no-op reconcile, removal (reconciler vs raw)."""
    base = tempfile.mkdtemp(prefix="netns-bench-")
    baseline = _kernel_netns_count()
    raw: list[_Round] = []
    rec: list[_Round] = []
    try:
        _settle(baseline)
        for r in range(rounds):
            order = ("raw", "rec") if r % 2 == 0 else ("rec", "raw")
            for which in order:
                d = os.path.join(base, f"{which}{r}")
                os.mkdir(d, 0o755)
                if which == "raw":
                    raw.append(_round_raw(d, n))
                else:
                    rec.append(_round_reconcile(d, n))
                os.rmdir(d)
                _settle(baseline)
    finally:
        _sweep(base)

    raw_create = [x.create for x in raw]
    rec_create = [x.create for x in rec]
    raw_remove = [x.remove for x in raw]
    rec_remove = [x.remove for x in rec]
    noop = [x.noop for x in rec]
    raw_c, rec_c = min(raw_create), min(rec_create)
    raw_r, rec_r = min(raw_remove), min(rec_remove)
    best_noop = min(noop)
    return [
        _vs_raw(
            f"reconcile: create {n} (ASSIGNED)",
            rec_c,
            "raw loop, same kernel calls",
            raw_c,
            n,
            ">= 0.7 (throughput vs raw)",
        ),
        Row.measured(
            f"reconcile: no-op over {n} live",
            best_noop * _MS,
            f"reconcile: create {n}",
            rec_c * _MS,
            "<= 0.05 of creation",
            unit="ms",
            ratio=best_noop / rec_c,
        ),
        _vs_raw(
            f"reconcile: remove {n} (REMOVING)",
            rec_r,
            "raw detach + unlink",
            raw_r,
            n,
            "reported (throughput vs raw)",
        ),
    ]


def _vs_raw(
    name: str, seconds: float, raw_name: str, raw_seconds: float, n: int, target: str
) -> Row:
    """The reconciler's time per namespace beside the raw loop's, for ``n`` namespaces.

    The ratio is throughput against raw (raw time / ours), so that a target
    reads as "keeps at least this share of the raw loop's speed".
    """
    return Row.measured(
        name,
        seconds / n * _MS,
        raw_name,
        raw_seconds / n * _MS,
        target,
        unit="ms/netns",
        ratio=raw_seconds / seconds,
    )


def bench_ip_netns(n: int = 100, reference_ms: float | None = None) -> list[Row]:
    """`ip netns add` for n temporary names in the system netns dir, then deleted."""
    if shutil.which("ip") is None:
        return []
    if in_user_namespace():
        return skipped_rows([f"ip netns add x{n}"], "netns", NEEDS_REAL_ROOT, unit="ms/netns")
    tag = uuid.uuid4().hex[:8]
    names = [f"bench-{tag}-{i}" for i in range(n)]
    added: list[str] = []
    try:
        t0 = time.perf_counter()
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            added.append(name)
        add = time.perf_counter() - t0
    finally:
        for name in added:
            subprocess.run(["ip", "netns", "delete", name], check=False)
        for name in names:  # anything half-made
            p = os.path.join(DEFAULT_NETNS_DIR, name)
            if os.path.lexists(p):
                remove_at(p, DEFAULT_NETNS_DIR)
    per = add / n * _MS
    return [
        Row.measured(
            f"ip netns add x{n}",
            per,
            "raw loop, same kernel calls",
            reference_ms,
            "reference only (process spawn included)",
            unit="ms/netns",
        )
    ]
