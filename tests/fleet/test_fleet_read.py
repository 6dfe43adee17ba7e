"""The read tools over the stream answer as they answer over the node's state dir.

A real ``sandbox.Store`` (durability none, no namespaces) writes each node's
history; after shipping, the state, the history at a point and the audit
trail read from JetStream must equal what ``replay.load``/``replay.audit``
read from the state dir - and the fleet trail merges the nodes by time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import attrs
import pytest

from replay import audit, load
from replay.errors import PointOutOfRangeError
from replay.fleet.audit import fleet_audit
from replay.fleet.commands import render_verify, run_fleet_verify
from replay.fleet.natsserver import LocalNatsServer
from replay.fleet.ship import ShipConfig, ship_async
from replay.fleet.verify import fleet_verify
from replay.fleet.view import load_fleet, load_fleet_all
from sandbox import (
    Metadata,
    PodSandboxConfig,
    PodSandboxMetadata,
    Sandbox,
    State,
    Status,
    Store,
)
from sandbox import events as ev

STREAM = "SANDBOXLOG"


def _history(state_dir: Path, netns_dir: Path, node: str, pods: int) -> None:
    """Add pods, stop some, delete one: a small real history."""
    with Store.open(state_dir, netns_dir=netns_dir, durability="none", actor=node) as store:
        ids = []
        for i in range(pods):
            cfg = PodSandboxConfig(
                metadata=PodSandboxMetadata(name=f"web{i}", uid=f"{node}{i}", namespace="prod")
            )
            sid = f"{node}{i:02d}".ljust(64, "0")
            store.add(Sandbox(Metadata(sid, f"web{i}_prod_{node}{i}_0", cfg), Status(State.READY)))
            ids.append(sid)
        for sid in ids[::2]:
            store.update_status(sid, lambda old: attrs.evolve(old, state=State.NOTREADY))
        store.delete(ids[-1])


def _ship(state_dir: Path, url: str, node: str) -> None:
    cfg = ShipConfig(state_dir=state_dir, nats_url=url, node=node, once=True)
    asyncio.run(ship_async(cfg, handle_signals=False))


@pytest.fixture
def two_nodes(nats_server: LocalNatsServer, tmp_path: Path) -> dict[str, Path]:
    dirs = {"alpha": tmp_path / "alpha", "beta": tmp_path / "beta"}
    for (node, d), pods in zip(dirs.items(), (5, 3), strict=True):
        _history(d, tmp_path / "netns", node, pods)
        _ship(d, nats_server.url, node)
    return dirs


def _pods(view: object) -> list[tuple[str, str, str]]:
    return [(s.id, s.name, s.status.state.value) for s in view.list()]  # type: ignore[attr-defined]


def test_a_nodes_state_from_the_stream_is_its_state(
    nats_server: LocalNatsServer, two_nodes: dict[str, Path]
) -> None:
    url = nats_server.url
    for node, d in two_nodes.items():
        local = load(d)
        remote = load_fleet(url, STREAM, node)
        assert _pods(remote) == _pods(local)
        assert (remote.seq, remote.head, remote.time_ns) == (local.seq, local.head, local.time_ns)
        assert remote.state_dir == f"nats:{STREAM}.{node}"
        for upto in (1, 3, local.seq - 1):
            assert _pods(load_fleet(url, STREAM, node, upto_seq=upto)) == _pods(load(d, upto))
        middle = load(d, 3)
        at = load_fleet(url, STREAM, node, at=middle.time_ns)
        assert (at.seq, _pods(at)) == (3, _pods(middle))
    with pytest.raises(PointOutOfRangeError):
        load_fleet(url, STREAM, "alpha", upto_seq=10_000)
    views = load_fleet_all(url, STREAM)
    assert sorted(views) == ["alpha", "beta"]
    assert len(views["alpha"]) == 4 and len(views["beta"]) == 2


def test_the_audit_trail_from_the_stream_is_the_nodes_trail(
    nats_server: LocalNatsServer, two_nodes: dict[str, Path]
) -> None:
    url = nats_server.url
    for node, d in two_nodes.items():
        local = audit(d)
        remote = fleet_audit(url, STREAM, node)
        assert [e.to_dict() for e in local] == [
            {k: v for k, v in e.to_dict().items() if k != "node"} for e in remote
        ]
        assert {e.node for e in remote} == {node}
    only = fleet_audit(url, STREAM, "alpha", sandbox="alpha00", types=[ev.STATUS_UPDATED])
    assert [e.summary for e in only] == ["READY -> NOTREADY"]

    fleet = fleet_audit(url, STREAM, "*")
    assert len(fleet) == len(audit(two_nodes["alpha"])) + len(audit(two_nodes["beta"]))
    assert [e.time_ns for e in fleet] == sorted(e.time_ns for e in fleet)
    assert {e.node for e in fleet} == {"alpha", "beta"}
    assert fleet[0].to_dict()["node"] in ("alpha", "beta")


def test_verify_over_the_stream_checks_chain_and_events(
    nats_server: LocalNatsServer, two_nodes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    reports = fleet_verify(url)
    assert all(r.ok for r in reports)
    assert reports[0].events_checked == reports[0].chain.records > 0
    text = render_verify(reports)
    assert text.startswith("OK: node alpha:")
    args = argparse.Namespace(nats=url, stream=None, node="beta", output="json", head=None)
    assert run_fleet_verify(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and [n["node"] for n in doc["nodes"]] == ["beta"]
    # a pinned head must be that node's
    local_head = load(two_nodes["beta"]).head
    assert fleet_verify(url, node="beta", head=bytes.fromhex(local_head))[0].ok
    assert not fleet_verify(url, node="alpha", head=bytes.fromhex(local_head))[0].ok


def test_an_illegal_transition_with_an_intact_chain_is_reported(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    """Intact bytes can still say impossible things; verify folds the state machine too."""
    from eventlog import EventLog

    d = tmp_path / "forged"
    env = {"time": 1, "host": "h", "pid": 1, "uid": 0, "actor": None}
    sid = "f" * 64
    md = Metadata(sid, "p_ns_u_0", PodSandboxConfig(metadata=PodSandboxMetadata(name="p")))
    with EventLog.open(d, durability="none") as log:
        log.append(ev.sandbox_added(env, md, Status(State.READY)))
        log.append(ev.status_updated(env, sid, Status(State.NOTREADY)))
        log.append(ev.status_updated(env, sid, Status(State.READY)))
    _ship(d, nats_server.url, "forged")
    (report,) = fleet_verify(nats_server.url, STREAM, "forged")
    assert report.chain.ok and not report.ok
    assert [(p.kind, p.seq) for p in report.problems] == [("transition", 3)]


def test_ship_options_given_before_the_command_survive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argparse copies a sub-command's defaults over the globals; ship's are suppressed."""
    monkeypatch.delenv("SANDBOXCTL_STATE_DIR", raising=False)
    from replay.fleet.commands import add_ship_parser, ship_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir")
    parser.add_argument("--nats")
    parser.add_argument("--stream")
    parser.add_argument("--node")
    add_ship_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["--state-dir", str(tmp_path), "--nats", "nats://127.0.0.1:1", "--node", "n", "ship"]
    )
    cfg = ship_config(args)
    assert (cfg.nats_url, cfg.node, cfg.stream, cfg.state_dir) == (
        "nats://127.0.0.1:1",
        "n",
        "SANDBOXLOG",
        tmp_path,
    )
    args = parser.parse_args(["ship", "--nats", "nats://x:4222", "--stream", "S", "--once"])
    assert args.func.__name__ == "run_ship"
    with pytest.raises(ValueError, match="state-dir"):
        ship_config(args)
    args = parser.parse_args(["--state-dir", str(tmp_path / "missing"), "ship", "--nats", "n://x"])
    from replay.errors import StateDirMissingError

    with pytest.raises(StateDirMissingError):
        ship_config(args)
