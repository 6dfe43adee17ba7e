"""Ids checked before lookup, diff's FROM/TO columns, crashtest's --workdir line.

* An id that can never name a sandbox (``/``, whitespace, NUL, control
  characters: sandbox.ids' rule) is invalid input, exit 7 - not "not found",
  which would send the user looking for it - in every command taking an id.
* ``diff``: a removed pod's last state is what A had (FROM), an added pod's
  state is what B has (TO).
* ``crashtest --workdir /missing`` names the missing directory, not a
  per-run subdirectory under it, and is a usage error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import fails, ok, sandbox, sandboxctl

from sandbox import Store

POD = "0123456789abcdef" * 4
GONE = "fedcba9876543210" * 4


@pytest.fixture
def store(state_dir: Path, spare_netns_dir: Path) -> list[str]:
    """seq 1: the netns dir recorded; seq 2: GONE added; seq 3: POD added; seq 4: GONE removed."""
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as s:
        s.add(sandbox("gone", sid=GONE))
        s.add(sandbox("web", sid=POD))
        s.delete(GONE)
    return ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]


def parse(table: str) -> list[list[str]]:
    """A table's cells by the header's column starts (empty cells kept)."""
    header, *lines = table.splitlines()
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 2 : i] == "  ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [[line[a:b].strip() for a, b in bounds] for line in [header, *lines]]


BAD_IDS = ["a/b", "a b", "0123\t", "x\x1by", "\u00a0", "../0123"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("command", ["inspect", "stop", "rm"])
def test_an_invalid_id_is_exit_7_not_not_found(store: list[str], command: str, bad: str) -> None:
    fails(sandboxctl(*store, command, bad), 7, "sandbox id")


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_audit_sandbox_checks_its_id(store: list[str], bad: str) -> None:
    fails(sandboxctl(*store, "audit", "--sandbox", bad), 7, "--sandbox: sandbox id")


def test_valid_ids_and_prefixes_still_resolve(store: list[str]) -> None:
    assert json.loads(ok(sandboxctl(*store, "inspect", POD[:5])))["id"] == POD
    fails(sandboxctl(*store, "inspect", "ffff"), 4, "no sandbox")
    assert GONE in ok(sandboxctl(*store, "audit", "--sandbox", GONE[:6], "-o", "json"))


def test_diff_puts_a_removed_pods_state_under_from(store: list[str]) -> None:
    """2 -> 4 removes GONE (READY at 2): FROM READY, TO empty; 2 -> 3 adds POD: TO READY."""
    header, *rows = parse(ok(sandboxctl(*store, "diff", "2", "4", "--no-trunc")))
    assert header == ["CHANGE", "POD ID", "NAME", "FIELD", "FROM", "TO"]
    removed = [r for r in rows if r[0] == "removed"]
    assert len(removed) == 1 and removed[0][1] == GONE
    assert removed[0][4] == "READY" and removed[0][5] == "", removed
    header, *rows = parse(ok(sandboxctl(*store, "diff", "2", "3", "--no-trunc")))
    added = [r for r in rows if r[0] == "added"]
    assert len(added) == 1 and added[0][1] == POD
    assert added[0][4] == "" and added[0][5] == "READY", added


def test_crashtest_names_the_missing_workdir(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    cp = sandboxctl("crashtest", "--runs", "1", "--workdir", str(missing))
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    lines = cp.stderr.splitlines()
    assert len(lines) == 1, cp.stderr
    assert f"--workdir {missing}: no such directory" in lines[0]
    assert "crashtest-" not in lines[0], "the run's subdirectory is not what is missing"
    assert not missing.exists()
    a_file = tmp_path / "file"
    a_file.write_text("")
    cp = sandboxctl("crashtest", "--runs", "1", "--workdir", str(a_file))
    assert cp.returncode == 2 and "not a directory" in cp.stderr, cp.stderr
    assert os.path.isfile(a_file)
