"""sandboxctl and the fleet: ``ship`` to a real nats-server, then read it back with --nats.

Every command runs as a subprocess, as a user runs it. What is shipped must
read back exactly as the node's own state dir reads: the same ``pods``,
``inspect``, ``history`` and ``audit`` output (the audit plus ``node``), and
``verify`` clean; ``audit --node '*'`` is the fleet's trail with a NODE column.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from support import NO_TRACEBACK, REPO, fails, ok, sandbox, sandboxctl

from replay import cli
from replay.fleet.config import SHIP_HELP
from replay.fleet.natsserver import LocalNatsServer, free_port
from sandbox import State, Store


def make_node(state_dir: Path, netns_dir: Path, node: str, pods: int) -> list[str]:
    """A small real history written by a Store: adds, a stop, a delete. The ids."""
    ids = []
    with Store.open(state_dir, netns_dir=netns_dir, durability="none", actor=node) as store:
        for i in range(pods):
            sb = store.add(sandbox(f"{node}-web{i}", "prod"))
            ids.append(sb.id)
        store.update_status(ids[0], lambda old: attrs.evolve(old, state=State.NOTREADY))
        store.delete(ids[-1])
    return ids


def ship_once(url: str, state_dir: Path, node: str, *, globals_first: bool) -> dict[str, Any]:
    """``sandboxctl ship --once``; the global options before or after the command name."""
    opts = ["--state-dir", str(state_dir), "--nats", url, "--node", node]
    argv = [*opts, "ship"] if globals_first else ["ship", *opts]
    summary: dict[str, Any] = json.loads(ok(sandboxctl(*argv, "--once", "-q", "-o", "json")))
    return summary


@pytest.fixture
def fleet(nats_server: LocalNatsServer, tmp_path: Path) -> dict[str, Path]:
    """Two nodes' state dirs, n1 (3 pods) and n2 (2 pods), shipped to the server."""
    netns_dir = tmp_path / "unused-netns"
    dirs = {"n1": tmp_path / "n1", "n2": tmp_path / "n2"}
    make_node(dirs["n1"], netns_dir, "n1", 3)
    make_node(dirs["n2"], netns_dir, "n2", 2)
    s1 = ship_once(nats_server.url, dirs["n1"], "n1", globals_first=True)
    s2 = ship_once(nats_server.url, dirs["n2"], "n2", globals_first=False)
    # Each log: NetNSDirRecorded, the adds, a stop, a delete.
    assert (s1["node"], s1["acked"], s1["stream"]) == ("n1", 6, cli.DEFAULT_STREAM)
    assert (s2["node"], s2["acked"]) == ("n2", 5)
    return dirs


@pytest.mark.slow
def test_a_shipped_node_reads_back_as_its_state_dir(
    nats_server: LocalNatsServer, fleet: dict[str, Path]
) -> None:
    url = nats_server.url
    for node, state_dir in fleet.items():
        local = ["--state-dir", str(state_dir)]
        remote = ["--nats", url, "--node", node]
        assert json.loads(ok(sandboxctl(*remote, "pods", "-o", "json"))) == json.loads(
            ok(sandboxctl(*local, "pods", "-o", "json"))
        )
        assert ok(sandboxctl(*remote, "pods", "-q")) == ok(sandboxctl(*local, "pods", "-q"))
        pod = ok(sandboxctl(*local, "pods", "-q")).split()[0]
        assert ok(sandboxctl(*remote, "inspect", pod[:8])) == ok(
            sandboxctl(*local, "inspect", pod[:8])
        )
        assert ok(sandboxctl(*remote, "history", "--upto", "3", "-o", "json")) == ok(
            sandboxctl(*local, "history", "--upto", "3", "-o", "json")
        )
        # One node's trail: the local table exactly (no NODE column); JSON adds "node".
        assert ok(sandboxctl(*remote, "audit")) == ok(sandboxctl(*local, "audit"))
        remote_trail = json.loads(ok(sandboxctl(*remote, "audit", "-o", "json")))
        local_trail = json.loads(ok(sandboxctl(*local, "audit", "-o", "json")))
        assert [e.pop("node") for e in remote_trail] == [node] * len(local_trail)
        assert remote_trail == local_trail

        out = ok(sandboxctl(*remote, "verify"))
        assert out.startswith(f"OK: node {node}: "), out
        # The stream name may be given; the default is the shipper's.
        ok(sandboxctl(*remote, "--stream", cli.DEFAULT_STREAM, "pods", "-q"))


@pytest.mark.slow
def test_the_fleet_trail_and_verify_of_every_node(
    nats_server: LocalNatsServer, fleet: dict[str, Path]
) -> None:
    url = nats_server.url
    table = ok(sandboxctl("--nats", url, "--node", "*", "audit")).splitlines()
    assert table[0].split()[:3] == ["NODE", "SEQ", "TIME"]
    assert {line.split()[0] for line in table[1:]} == {"n1", "n2"}
    assert len(table) == 1 + 6 + 5
    # Without --node the trail is the fleet's too.
    assert ok(sandboxctl("--nats", url, "audit")).splitlines() == table

    trail = json.loads(ok(sandboxctl("--nats", url, "--node", "*", "audit", "-o", "json")))
    times = [e["time_ns"] for e in trail]
    assert times == sorted(times), "merged by record time"
    for node, state_dir in fleet.items():
        local = json.loads(ok(sandboxctl("--state-dir", str(state_dir), "audit", "-o", "json")))
        mine = [{k: v for k, v in e.items() if k != "node"} for e in trail if e["node"] == node]
        assert mine == local
    lines = ok(sandboxctl("--nats", url, "--node", "*", "audit", "-o", "jsonl")).splitlines()
    assert [json.loads(line) for line in lines] == trail

    out = ok(sandboxctl("--nats", url, "--node", "*", "verify"))
    assert [line.split(":")[1] for line in out.splitlines()] == [" node n1", " node n2"]
    doc = json.loads(ok(sandboxctl("--nats", url, "verify", "-o", "json")))
    assert doc["ok"] is True and len(doc["nodes"]) == 2
    # --head: the node's current head, as `head` printed it on the node.
    head = ok(sandboxctl("--state-dir", str(fleet["n1"]), "head")).strip()
    ok(sandboxctl("--nats", url, "--node", "n1", "verify", "--head", head))


@pytest.mark.slow
def test_fleet_errors_are_one_line_and_a_documented_code(
    nats_server: LocalNatsServer, fleet: dict[str, Path], tmp_path: Path
) -> None:
    url = nats_server.url
    fails(sandboxctl("--nats", url, "--node", "n9", "pods"), cli.EXIT_NOT_FOUND, "node n9")
    fails(sandboxctl("--nats", url, "--stream", "NOPE", "--node", "n1", "pods"), 4, "NOPE")
    fails(sandboxctl("--nats", url, "--node", "n1", "inspect", "ffff"), 4, "ffff")
    fails(sandboxctl("--nats", url, "--node", "n1", "history", "--upto", "99"), 7, "beyond")
    fails(sandboxctl("--nats", url, "--node", "*", "pods"), cli.EXIT_USAGE, "--node")
    fails(sandboxctl("--nats", url, "inspect", "ab"), 2, "--node")
    fails(sandboxctl("--nats", url, "--node", "a.b", "pods"), cli.EXIT_INVALID, "--node")
    fails(sandboxctl("--nats", url, "--node", "a.b", "audit"), 7, "--node")
    fails(sandboxctl("--nats", url, "--stream", "a b", "verify"), 7, "--stream")
    for argv in (["diff", "1", "2"], ["log"], ["head"], ["follow"], ["snapshot"], ["demo"]):
        fails(sandboxctl("--nats", url, "--node", "n1", *argv), 2, "--nats works with")

    unreachable = f"nats://127.0.0.1:{free_port()}"
    for argv in (["--node", "n1", "pods"], ["audit"], ["verify"]):
        fails(sandboxctl("--nats", unreachable, *argv), cli.EXIT_UNREACHABLE, "cannot reach")

    # ship: a missing state dir is 3 (and is not created); n1's log is not n2's history.
    missing = tmp_path / "missing"
    cp = sandboxctl("--state-dir", str(missing), "ship", "--nats", url, "--once")
    assert cp.returncode == cli.EXIT_NO_STATE_DIR, cp.stderr
    assert not missing.exists()
    cp = sandboxctl("--state-dir", str(fleet["n1"]), "ship", "--nats", url, "--node", "n2", "-q")
    assert cp.returncode == cli.EXIT_DIVERGED, cp.stderr
    assert cp.stderr.startswith("sandboxctl: error: ") and NO_TRACEBACK not in cp.stderr
    cp = _ship_to_nowhere(fleet, unreachable, "-q")
    assert cp.returncode == cli.EXIT_UNREACHABLE, cp.stderr


def _ship_to_nowhere(
    fleet: dict[str, Path], unreachable: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``ship`` n1 to an unreachable server, giving up after half a second."""
    return sandboxctl(
        "--state-dir",
        str(fleet["n1"]),
        "ship",
        "--nats",
        unreachable,
        *extra,
        "--give-up-after",
        "0.5",
        "--backoff-max",
        "0.1",
    )


def test_ship_prints_a_connection_failure_once(fleet: dict[str, Path]) -> None:
    """Not quiet: the outage's warning is one line (not also the CLI's warning), then the error."""
    unreachable = f"nats://127.0.0.1:{free_port()}"
    cp = _ship_to_nowhere(fleet, unreachable, "--node", "n1")
    assert cp.returncode == cli.EXIT_UNREACHABLE, cp.stderr
    lines = [line for line in cp.stderr.splitlines() if "cannot reach NATS" in line]
    assert len(lines) == 2, cp.stderr
    assert lines[0].startswith("sandboxctl ship: ship SANDBOXLOG.n1: "), cp.stderr
    assert lines[1].startswith("sandboxctl: error: ship: NATS at "), cp.stderr


def test_replay_load_reads_a_nats_source(
    nats_server: LocalNatsServer, fleet: dict[str, Path]
) -> None:
    import replay

    local = replay.load(fleet["n2"])
    remote = replay.load(nats_server.url, node="n2")
    assert remote.state_dir == f"nats:{cli.DEFAULT_STREAM}.n2"
    assert (remote.seq, remote.head, remote.time_ns) == (local.seq, local.head, local.time_ns)
    assert remote.list() == local.list()
    assert replay.load(nats_server.url, 3, node="n2").list() == replay.load(fleet["n2"], 3).list()
    with pytest.raises(ValueError, match="node="):
        replay.load(nats_server.url)
    assert replay.load_fleet_all(nats_server.url).keys() == {"n1", "n2"}
    assert {e.node for e in replay.fleet_audit(nats_server.url)} == {"n1", "n2"}


# -- no NATS needed ---------------------------------------------------------------------------


def test_help_is_the_same_before_and_after_the_tool_parsers_are_built() -> None:
    """ship's and bench's lines in the command list do not depend on building their parsers."""
    lazy = cli.build_parser(lazy=True).format_help()
    eager = cli.build_parser().format_help()
    # The column width follows the longest global option (--lock-timeout SECONDS).
    assert lazy == eager and re.search(rf"^    ship +{re.escape(SHIP_HELP)}$", eager, re.M)


def test_local_commands_do_not_import_the_nats_client(tmp_path: Path) -> None:
    """Start-up of every local command stays free of nats (and asyncio); ship loads them.

    The CLI imports the fleet's constants and ship's help line directly
    (replay.fleet.message, replay.fleet.config): those must not bring the
    client in.
    """
    state_dir = tmp_path / "s"
    with Store.open(state_dir, netns_dir=tmp_path / "netns", durability="none") as store:
        store.add(sandbox("web"))
    code = (
        "import sys\n"
        "from replay.cli import main\n"
        "assert main(sys.argv[1:]) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nats', 'asyncio')))\n"
    )

    def loaded(*argv: str) -> str:
        cp = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO
        )
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.splitlines()[-1]

    for argv in (["pods"], ["audit"], ["verify"], ["history", "--upto", "1"]):
        assert loaded("--state-dir", str(state_dir), *argv) == "[]", argv

    # --help exits inside argparse: ask the interpreter what it imported.
    def imported(*argv: str) -> set[str]:
        cp = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "replay", *argv],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert cp.returncode == 0 and "--" in cp.stdout, cp.stderr[-2000:]
        return set(re.findall(r"^import time: .*\|\s+(\S+)$", cp.stderr, re.M))

    assert not {"nats", "asyncio"} & imported("--help")
    # ship's parser (and the shipper, asyncio) loads with ship; NATS only once it connects.
    ship_help = imported("ship", "--help")
    assert "asyncio" in ship_help and "nats" not in ship_help
