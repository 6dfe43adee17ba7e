"""What a snapshot MAC costs: Store.snapshot() and Store.open from a snapshot,
on an unkeyed and a keyed log of N sandboxes (default 10,000).

Prints medians of a few runs and the keyed/unkeyed ratios. Usage:
    .venv/bin/python scripts/bench_snapshot_mac.py [N] [RUNS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, Sandbox, State, Status, Store

KEY = b"bench key: any length, derived for blake2b"


def _fill(state: Path, netns: Path, n: int, key: bytes | None) -> None:
    with Store.open(state, netns_dir=netns, durability="none", key=key) as store:
        for i in range(n):
            sid = f"{i:064x}"
            cfg = PodSandboxConfig(metadata=PodSandboxMetadata(name=f"p{i}", uid=f"u{i}"))
            store.add(Sandbox(Metadata(sid, f"p{i}_default_u{i}_0", cfg), Status(State.READY)))


def _measure(root: Path, n: int, runs: int, key: bytes | None) -> tuple[float, float]:
    state, netns = root / "state", root / "netns"
    _fill(state, netns, n, key)
    snaps, opens = [], []
    for _ in range(runs):
        with Store.open(state, netns_dir=netns, durability="none", key=key) as store:
            t = time.perf_counter()
            store.snapshot()
            snaps.append(time.perf_counter() - t)
        t = time.perf_counter()
        with Store.open(state, netns_dir=netns, durability="none", key=key) as store:
            opens.append(time.perf_counter() - t)
            assert store.load_result is not None and store.load_result.snapshot is not None
            assert len(store) == n
    return statistics.median(snaps), statistics.median(opens)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rows = {}
    for label, key in (("unkeyed (no MAC)", None), ("keyed (MAC)", KEY)):
        with tempfile.TemporaryDirectory() as d:
            rows[label] = _measure(Path(d), n, runs, key)
    print(f"{n} sandboxes, median of {runs} runs")
    print(f"{'':18} {'snapshot() ms':>14} {'open from snapshot ms':>22}")
    for label, (s, o) in rows.items():
        print(f"{label:18} {s * 1e3:14.1f} {o * 1e3:22.1f}")
    (s0, o0), (s1, o1) = rows.values()
    print(f"{'keyed / unkeyed':18} {s1 / s0:14.2f} {o1 / o0:22.2f}")


if __name__ == "__main__":
    main()
