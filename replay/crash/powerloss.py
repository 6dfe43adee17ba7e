"""Simulated power loss: lose what the page cache held but the disk did not.

Why simulate rather than pull a plug: a crash-test run must be cheap,
repeatable from its seed and runnable in CI. After SIGKILL the kernel still
holds every byte the child wrote, so a kill alone never tests fsync. This
module takes away exactly what a power cut could take away, judged from what
the child reported as durable after its last acknowledged command (segment
path and bytes known to be on disk - measured in the child by wrapping
fsync, see ``faults``, not taken from the writer's own ``synced_offset``):

- segments that existed before the durable one stay whole (rotation fsyncs
  the old segment before it creates the next);
- one segment from the durable one onwards is chosen as the new end; the
  segments after it vanish (their directory entries were never fsynced);
- the chosen segment keeps at least its durable bytes (none if it was
  created after the last acknowledgement) and loses the rest: either cut off
  at any byte (a file size that got ahead of, or fell behind, its data), or
  zero-filled up to the old size, the zeros starting at the durable offset
  or at a 512-byte sector boundary after it (a power cut loses whole
  sectors; a sector on disk holds either its newest content or the one it
  had when the file ended earlier, i.e. data then zeros);
- snapshot files that appeared after the last acknowledgement vanish with
  probability 1/2;
- the machine reboots: every namespace mount under netns_dir is gone and so
  is every file there (``/run`` is tmpfs). This is not optional: a
  namespace cannot outlive a power cut, and keeping one while cutting the
  log behind the reported durable offset (which lags the real one inside an
  in-flight command) would build a state no machine can reach - a mounted
  namespace whose fsynced intent record is gone. After the reboot the store
  must record its namespaces as closed, never pretend they still exist
  (cri #948).

Not modelled: sectors persisted out of order (a stale sector followed by a
newer one). The log's torn-tail rules assume a monotonic tail, as etcd's do.

Acknowledged events must survive all of this: ``durability="always"`` acks
only after fsync. A writer that acks before fsync loses them here, which is
how the harness proves it can fail (tests/crash/test_crash_broken_build.py).
"""

from __future__ import annotations

import os
import random

import attrs

from replay.crash import cleanup

TAIL_CUT = "cut"
SECTOR = 512
TAIL_ZERO = "zero"


@attrs.frozen
class Durable:
    """What the child reported as on disk after its last acknowledged command."""

    segment: str
    offset: int
    segments: tuple[str, ...] = ()
    snapshots: tuple[str, ...] = ()


@attrs.frozen
class PowerLossPlan:
    """The seeded choices for one run: how the tail goes, and the seed of the cut."""

    tail: str
    seed: int

    @classmethod
    def draw(cls, rng: random.Random) -> PowerLossPlan:
        return cls(tail=rng.choice((TAIL_CUT, TAIL_ZERO)), seed=rng.getrandbits(32))


def _segments(log_dir: str) -> list[str]:
    return sorted(e.name for e in os.scandir(log_dir) if e.name.endswith(".log") and e.is_file())


def _snapshots(log_dir: str) -> list[str]:
    return sorted(e.name for e in os.scandir(log_dir) if e.name.endswith(".snap") and e.is_file())


def simulate(
    log_dir: str,
    durable: Durable | None,
    plan: PowerLossPlan,
    *,
    snapshot_dir: str | None = None,
    netns_dir: str | None = None,
) -> list[str]:
    """Apply the plan to the files the killed child left; return what was done.

    ``durable`` None means nothing was ever acknowledged, and a ``durable``
    with segment ``""`` that no segment was ever synced: then nothing is
    known to be durable and every segment may lose everything.
    """
    rng = random.Random(plan.seed)
    actions: list[str] = []
    segs = _segments(log_dir) if os.path.isdir(log_dir) else []
    if segs:
        if durable is not None and os.path.basename(durable.segment) in segs:
            first = segs.index(os.path.basename(durable.segment))
            floor_first = durable.offset
        else:
            if durable is not None and durable.segment:
                actions.append(f"durable segment {durable.segment} missing after kill")
            first = 0
            floor_first = 0
        end = rng.randrange(first, len(segs))
        for name in segs[end + 1 :]:
            os.unlink(os.path.join(log_dir, name))
            actions.append(f"lost segment {name} (created after the last ack)")
        victim = os.path.join(log_dir, segs[end])
        size = os.path.getsize(victim)
        floor = floor_first if end == first else 0
        floor = min(floor, size)
        if plan.tail == TAIL_CUT:
            keep = rng.randint(floor, size)
        else:
            first_sector = -(-(floor + 1) // SECTOR) * SECTOR
            starts = [floor, *range(first_sector, size, SECTOR)]
            keep = rng.choice(starts) if rng.random() < 0.8 else size
        if keep < size:
            if plan.tail == TAIL_CUT:
                os.truncate(victim, keep)
                actions.append(f"cut {segs[end]} from {size} to {keep} bytes (durable {floor})")
            else:
                with open(victim, "r+b") as f:
                    f.seek(keep)
                    f.write(b"\0" * (size - keep))
                actions.append(f"zeroed {segs[end]} bytes {keep}..{size} (durable {floor})")
        else:
            actions.append(f"kept {segs[end]} whole ({size} bytes, durable {floor})")
    snap_dir = snapshot_dir or log_dir
    if os.path.isdir(snap_dir):
        known = set(durable.snapshots) if durable is not None else set()
        for name in _snapshots(snap_dir):
            if name not in known and rng.random() < 0.5:
                os.unlink(os.path.join(snap_dir, name))
                actions.append(f"lost snapshot {name} (written after the last ack)")
    if netns_dir is not None and os.path.isdir(netns_dir):
        files = len(os.listdir(netns_dir))
        gone = cleanup.clear(netns_dir)
        actions.append(f"reboot: {len(gone)} namespace mount(s) and {files} file(s) gone")
    return actions
