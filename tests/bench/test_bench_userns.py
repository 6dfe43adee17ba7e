"""The ``ip netns add`` reference row inside a user namespace (``./dev bench`` for a
plain user): skipped with its reason, never an error, and nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from replay.bench import netns as netns_bench
from replay.bench.userns import in_user_namespace


def test_uid_map_of_the_initial_namespace_and_of_a_user_namespace(tmp_path: Path) -> None:
    initial = tmp_path / "initial"
    initial.write_text("         0          0 4294967295\n", encoding="ascii")
    mapped = tmp_path / "mapped"
    mapped.write_text("         0       1000          1\n", encoding="ascii")
    assert not in_user_namespace(str(initial))
    assert in_user_namespace(str(mapped))
    assert not in_user_namespace(str(tmp_path / "missing"))


def test_ip_netns_row_says_it_needs_the_real_root(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("ip") is None:
        pytest.skip("no ip binary: the row is not planned at all")
    monkeypatch.setattr(netns_bench, "in_user_namespace", lambda: True)

    def no_spawn(*_a: object, **_k: object) -> None:
        raise AssertionError("ip must not run inside a user namespace")

    monkeypatch.setattr(netns_bench.subprocess, "run", no_spawn)
    (row,) = netns_bench.bench_ip_netns(20)
    assert row.name == "ip netns add x20"
    assert row.verdict == "skip"
    assert row.skipped == "skipped: needs the real root (ip netns writes /var/run/netns)"
