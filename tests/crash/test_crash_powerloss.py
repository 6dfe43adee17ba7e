"""The power-loss simulator never takes what was reported durable, and does
take the rest in every way it claims to (cut, zeros, lost files, reboot)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from replay.crash import powerloss


def _segments(d: Path, sizes: list[int]) -> list[str]:
    names = []
    for i, size in enumerate(sizes):
        name = f"{1 + 100 * i:020d}.log"
        (d / name).write_bytes(bytes([0xAB]) * size)
        names.append(name)
    return names


def test_never_below_durable_and_never_touches_older_segments(tmp_path: Path) -> None:
    rng = random.Random(3)
    for trial in range(200):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        names = _segments(d, [5000, 3000, 900])
        durable_off = rng.randint(64, 3000)
        plan = powerloss.PowerLossPlan.draw(rng)
        durable = powerloss.Durable(str(d / names[1]), durable_off, tuple(names[:2]))
        actions = powerloss.simulate(str(d), durable, plan)
        assert actions
        assert (d / names[0]).read_bytes() == bytes([0xAB]) * 5000
        data = (d / names[1]).read_bytes()
        assert data[:durable_off] == bytes([0xAB]) * durable_off
        if plan.tail == powerloss.TAIL_ZERO:
            assert len(data) == 3000
            tail = data.rstrip(b"\0")
            start = len(tail)
            assert start >= durable_off
            if start > durable_off and start < 3000:
                assert start % powerloss.SECTOR == 0
        if (d / names[2]).exists():
            assert len(data) == 3000  # a later segment survives only if the older is whole


def test_nothing_acknowledged_means_anything_may_go(tmp_path: Path) -> None:
    names = _segments(tmp_path, [700])
    plan = powerloss.PowerLossPlan(powerloss.TAIL_CUT, seed=1)
    powerloss.simulate(str(tmp_path), None, plan)
    assert os.path.getsize(tmp_path / names[0]) <= 700


def test_unacknowledged_snapshots_may_vanish_acknowledged_ones_stay(tmp_path: Path) -> None:
    names = _segments(tmp_path, [100])
    gone = 0
    for seed in range(20):
        for n in ("00000000000000000005.snap", "00000000000000000009.snap"):
            (tmp_path / n).write_bytes(b"x")
        durable = powerloss.Durable(
            str(tmp_path / names[0]), 100, tuple(names), ("00000000000000000005.snap",)
        )
        powerloss.simulate(str(tmp_path), durable, powerloss.PowerLossPlan("cut", seed))
        assert (tmp_path / "00000000000000000005.snap").exists()
        gone += not (tmp_path / "00000000000000000009.snap").exists()
    assert 0 < gone < 20


def test_reboot_empties_netns_dir(tmp_path: Path) -> None:
    state, ns = tmp_path / "s", tmp_path / "n"
    state.mkdir()
    ns.mkdir()
    (ns / "cni-x").write_bytes(b"")
    actions = powerloss.simulate(
        str(state), None, powerloss.PowerLossPlan("cut", 1), netns_dir=str(ns)
    )
    assert os.listdir(ns) == []
    assert any("reboot" in a for a in actions)
