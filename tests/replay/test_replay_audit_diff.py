"""replay.audit and replay.diff: who changed what, and what changed between points."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path

import attrs
import pytest
from support import sandbox

import eventlog
import replay
from sandbox import AmbiguousPrefixError, NotFoundError, State, Store

A = "aaaa1" + "0" * 59
A2 = "aaaa2" + "0" * 59
B = "bbbb1" + "0" * 59


def _history(state_dir: Path, netns_dir: Path, *, with_netns: bool = False) -> None:
    with Store.open(state_dir, netns_dir=netns_dir, durability="none", actor="kubelet") as s:
        # seq 1: the netns dir, recorded by this first open
        s.add(sandbox("web", sid=A), create_netns=with_netns)  # 2 (+ 3, 4 with netns)
        s.add(sandbox("db", sid=B))
        s.update_status(A, lambda old: attrs.evolve(old, pid=4711))
        s.update_status(A, lambda old: attrs.evolve(old, state=State.NOTREADY, exited_at=99))
        s.delete(B)
        s.add(sandbox("web", "staging", sid=A2))


def test_audit_entries_say_who_what_and_when(state_dir: Path, spare_netns_dir: Path) -> None:
    _history(state_dir, spare_netns_dir)
    entries = replay.audit(state_dir)
    records = list(eventlog.read(state_dir))
    assert [e.seq for e in entries] == [r.seq for r in records]
    assert [e.time_ns for e in entries] == [r.time_ns for r in records]
    assert (entries[0].type, entries[0].sandbox_id) == ("NetNSDirRecorded", "")
    first = entries[1]
    assert (first.type, first.sandbox_id, first.actor) == ("SandboxAdded", A, "kubelet")
    assert (first.host, first.pid, first.uid) == (socket.gethostname(), os.getpid(), os.getuid())
    assert first.changes["state"] == {"from": None, "to": "READY"}
    assert first.name == "web_default_uid-web_0"
    pid, stop = entries[3], entries[4]
    assert pid.changes == {"pid": {"from": 0, "to": 4711}}
    assert "pid 0 -> 4711" in pid.summary
    assert stop.changes["state"] == {"from": "READY", "to": "NOTREADY"}
    assert stop.changes["exited_at"] == {"from": None, "to": 99}
    assert stop.summary.startswith("READY -> NOTREADY")
    deleted = entries[5]
    assert deleted.type == "SandboxDeleted" and deleted.changes["state"]["from"] == "READY"
    assert deleted.name == "db_default_uid-db_0", "a deleted sandbox is still named"
    d = first.to_dict()
    assert d["time"].endswith("Z") and d["sandbox_id"] == A and d["changes"] == first.changes


def test_audit_filters(state_dir: Path, spare_netns_dir: Path) -> None:
    _history(state_dir, spare_netns_dir)
    entries = replay.audit(state_dir)
    # A deleted sandbox's history, by a prefix.
    assert [e.seq for e in replay.audit(state_dir, sandbox="bbbb")] == [3, 6]
    assert [e.seq for e in replay.audit(state_dir, sandbox=A)] == [2, 4, 5]
    with pytest.raises(AmbiguousPrefixError):
        replay.audit(state_dir, sandbox="aaaa")
    with pytest.raises(NotFoundError):
        replay.audit(state_dir, sandbox="cccc")
    only = replay.audit(state_dir, types=["statusupdated"])
    assert [e.seq for e in only] == [4, 5]
    assert [e.seq for e in replay.audit(state_dir, types=["SandboxAdded,SandboxDeleted"])] == [
        2,
        3,
        6,
        7,
    ]
    with pytest.raises(replay.InvalidInputError):
        replay.audit(state_dir, types=["Nope"])
    t4 = entries[3].time_ns
    assert [e.seq for e in replay.audit(state_dir, since=t4)] == [e.seq for e in entries[3:]]
    assert [e.seq for e in replay.audit(state_dir, until=t4)] == [e.seq for e in entries[:4]]
    when = dt.datetime.fromtimestamp(entries[-1].time_ns / 1e9 + 1, tz=dt.UTC)
    assert replay.audit(state_dir, since=when) == []


def test_audit_of_namespace_events(state_dir: Path, netns_dir: Path) -> None:
    _history(state_dir, netns_dir, with_netns=True)
    trail = replay.audit(state_dir, sandbox=A)
    kinds = [e.type for e in trail]
    assert kinds[:3] == ["SandboxAdded", "NetNSAssigned", "NetNSCreated"]
    created = trail[2].changes["netns"]
    assert (created["from"], created["to"]) == ("assigned", "created")
    assert created["path"].startswith(str(netns_dir))
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        store.delete(A)  # removes its namespace
    kinds = [e.type for e in replay.audit(state_dir, sandbox=A)]
    assert kinds[-2:] == ["SandboxDeleted", "NetNSRemoved"]


def test_diff_between_seqs_and_times(state_dir: Path, spare_netns_dir: Path) -> None:
    _history(state_dir, spare_netns_dir)
    res = replay.diff(state_dir, 3, 7)
    assert [a["id"] for a in res.added] == [A2]
    assert [r["id"] for r in res.removed] == [B]
    assert len(res.changed) == 1
    change = res.changed[0]
    assert change.id == A
    assert change.changes["state"] == {"from": "READY", "to": "NOTREADY"}
    assert change.changes["pid"] == {"from": 0, "to": 4711}
    assert change.changes["exited_at"] == {"from": None, "to": 99}
    assert set(change.changes) == {"state", "pid", "exited_at"}
    # Reversed: history undone.
    back = replay.diff(state_dir, 7, 3)
    assert [a["id"] for a in back.added] == [B] and [r["id"] for r in back.removed] == [A2]
    # Times: each record's own time is a point at that record.
    times = {r.seq: r.time_ns for r in eventlog.read(state_dir)}
    by_time = replay.diff(state_dir, replay.Point(at=times[3]), replay.Point(at=times[7]))
    assert by_time.to_dict()["added"] == res.to_dict()["added"]
    assert (by_time.a.seq, by_time.b.seq) == (3, 7)
    assert replay.diff(state_dir, 4, 4).empty
    doc = res.to_dict()
    assert doc["a"]["seq"] == 3 and doc["changed"][0]["id"] == A
