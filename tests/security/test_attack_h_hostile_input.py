"""Attack H: hostile numbers, times and JSON on the command line.

Whoever can run sandboxctl with arguments of their choosing (a script fed
from elsewhere, a copy-pasted time) must get one line and exit 7 - never
"internal error", never a traceback - for: a pod config nested 100,000 deep
(recursion), a time or seq of 5,000 digits (Python's int-string limit), a
time past year 9999 (datetime's range), a relative time of 400 digits
(float infinity). Every command that takes a time, a seq or JSON is tried.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from security_support import sandboxctl
from support import fails, ok, sandbox

from sandbox import Store

DIGITS = "1" * 5000


@pytest.fixture
def store(state_dir: Path, spare_netns_dir: Path) -> list[str]:
    """A store of two pods; the global options that name it."""
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as s:
        s.add(sandbox("web"))
        s.add(sandbox("db"))
    return ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]


def test_a_pod_config_nested_100000_deep_is_exit_7(store: list[str], tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"metadata":' * 100_000 + "1" + "}" * 100_000)
    fails(sandboxctl(*store, "run", str(deep)), 7, "nested")


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "--at", DIGITS],
        ["history", "--at", "@" + DIGITS],
        ["history", "--at", DIGITS + ".5"],
        ["history", "--at", "@253402300800"],
        ["history", "--at", "9" * 400 + "d"],
        ["history", "--at", "9999-12-31T23:59:59-23:59"],
        ["history", "--upto", DIGITS],
        ["diff", "1", "@253402300800"],
        ["diff", DIGITS, "1"],
        ["diff", "1", "@" + DIGITS],
        ["audit", "--since", DIGITS],
        ["audit", "--until", "@253402300800"],
        ["audit", "--since", "1" * 30],
        ["log", "--from", DIGITS],
        ["log", "--to", "18446744073709551616"],
        ["follow", "--from", DIGITS],
    ],
    ids=lambda argv: " ".join(a[:12] for a in argv),
)
def test_huge_numbers_and_times_out_of_range_are_exit_7(store: list[str], argv: list[str]) -> None:
    line = fails(sandboxctl(*store, *argv), 7)
    assert "internal error" not in line
    assert len(line) < 300, "the 5,000 digits are not echoed back"


def test_the_edges_of_the_range_still_work(store: list[str]) -> None:
    """The last representable second and the largest u64 seq are refused or
    accepted as what they are, not crashed on."""
    doc = json.loads(ok(sandboxctl(*store, "history", "--at", "@253402300799", "-o", "json")))
    assert doc["seq"] == 3  # the netns dir record and two adds
    # A seq past the end of this log is a documented exit 7 of its own.
    fails(sandboxctl(*store, "history", "--upto", "18446744073709551615"), 7, "beyond the end")
