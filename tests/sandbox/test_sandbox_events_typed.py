"""Typed events (sandbox/events.py): decoded and upcast once, written byte-identically.

``_old_*`` below are the dict builders the store used before events were typed
(format v2), kept verbatim in shape as the reference: what the typed classes
write must be the same bytes, and a log they wrote must replay to the same state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_sandbox_metadata import GOLDEN, SANDBOX_ID, golden_metadata

import eventlog
from eventlog.format import pack_payload, unpack_payload
from sandbox import Metadata, PodSandboxConfig, State, Status, Store
from sandbox import events as ev
from sandbox.errors import InvalidEventError, UnknownEventError, UnsupportedVersionError
from sandbox.ownership import NetNSState
from sandbox.projection import Projection

ENV = {"time": 1_700_000_000_123, "host": "node-1", "pid": 4711, "uid": 0, "actor": "kubelet"}
A = "a" * 64
NETNS_DIR = "/var/run/netns"
PATH = NETNS_DIR + "/cni-0000"
FAILED = PATH + "2"  # assigned, then its creation failed


# -- the previous code path (payload builders of format v2, before typed events) ------


def _old_added(env: dict[str, Any], md: Metadata, st: Status) -> dict[str, Any]:
    return {"type": "SandboxAdded", "v": 1, "id": md.id, "env": env,
            "metadata": md.to_event_dict(), "status": st.to_event_dict()}  # fmt: skip


def _old_simple(kind: str, env: dict[str, Any], sid: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "v": 2 if kind == "StatusUpdated" else 1, "id": sid, "env": env,
            **fields}  # fmt: skip


def _old_dir_recorded(env: dict[str, Any], netns_dir: str) -> dict[str, Any]:
    return {"type": "NetNSDirRecorded", "v": 1, "id": "", "env": env, "netns_dir": netns_dir}


def _old_repaired(env: dict[str, Any]) -> dict[str, Any]:
    return {"type": "LogRepaired", "v": 1, "id": "", "env": env, "damage_segment": "s.log",
            "damage_offset": 9, "damage_seq": None, "reason": "bad crc", "cut_seq": 3,
            "cut_segment": "s.log", "cut_offset": 7, "bytes_set_aside": 99,
            "broken_files": ["s.log.broken"], "snapshots_set_aside": []}  # fmt: skip


def _metadata() -> Metadata:
    return Metadata(A, "pod-a", PodSandboxConfig(hostname="h", labels={"app": "a"}), "")


def old_payloads() -> list[dict[str, Any]]:
    status = Status(State.READY, pid=42, created_at=5)
    stopped = Status(State.NOTREADY, pid=0, created_at=5, exited_at=9, exit_status=137)
    return [
        _old_dir_recorded(ENV, NETNS_DIR),
        _old_added(ENV, _metadata(), status),
        _old_simple("NetNSAssigned", ENV, A, path=PATH),
        _old_simple("NetNSCreated", ENV, A, path=PATH),
        _old_simple("NetNSOwnershipCarried", ENV, A, path=PATH, assigned_seq=3),
        _old_simple("StatusUpdated", ENV, A, status=stopped.to_event_dict()),
        _old_simple("NetNSClosed", ENV, A, path=PATH, reason="unmounted out of band"),
        _old_simple("NetNSAssigned", ENV, A, path=PATH + "1"),
        _old_simple("NetNSRemoveRequested", ENV, A, path=PATH + "1"),
        _old_simple("NetNSRemoved", ENV, A, path=PATH + "1"),
        _old_simple("NetNSAssigned", ENV, A, path=FAILED),
        _old_simple("NetNSCreateFailed", ENV, A, path=FAILED, reason="EPERM"),
        _old_repaired(ENV),
        _old_simple("SandboxDeleted", ENV, A),
    ]


def typed_events() -> list[ev.Event]:
    env = ev.Env.from_payload(ENV)
    meta = ev.AddedMetadata.from_metadata(_metadata())
    stopped = Status(State.NOTREADY, pid=0, created_at=5, exited_at=9, exit_status=137)
    return [
        ev.NetNSDirRecorded("", env, NETNS_DIR),
        ev.SandboxAdded(A, env, meta, Status(State.READY, pid=42, created_at=5)),
        ev.NetNSAssigned(A, env, PATH),
        ev.NetNSCreated(A, env, PATH),
        ev.NetNSOwnershipCarried(A, env, PATH, 3),
        ev.StatusUpdated(A, env, stopped),
        ev.NetNSClosed(A, env, PATH, "unmounted out of band"),
        ev.NetNSAssigned(A, env, PATH + "1"),
        ev.NetNSRemoveRequested(A, env, PATH + "1"),
        ev.NetNSRemoved(A, env, PATH + "1"),
        ev.NetNSAssigned(A, env, FAILED),
        ev.NetNSCreateFailed(A, env, FAILED, "EPERM"),
        ev.LogRepaired(
            "", env, "s.log", 9, None, "bad crc", 3, "s.log", 7, 99, ("s.log.broken",), ()
        ),
        ev.SandboxDeleted(A, env),
    ]


def test_every_class_is_covered() -> None:
    assert {type(e) for e in typed_events()} == set(ev.EVENT_CLASSES)
    assert [c.TYPE for c in ev.EVENT_CLASSES] == list(ev.CURRENT)


@pytest.mark.parametrize(
    ("typed", "old"), list(zip(typed_events(), old_payloads(), strict=True)), ids=lambda e: ""
)
def test_bytes_are_those_of_the_old_builders(typed: ev.Event, old: dict[str, Any]) -> None:
    assert pack_payload(typed.to_payload()) == pack_payload(old)


@pytest.mark.parametrize("typed", typed_events(), ids=lambda e: type(e).__name__)
def test_round_trip(typed: ev.Event) -> None:
    as_read = unpack_payload(pack_payload(typed.to_payload()))
    decoded = ev.decode(as_read)
    assert decoded == typed and type(decoded) is type(typed)
    assert pack_payload(decoded.to_payload()) == pack_payload(as_read)


def test_the_kept_dict_builders_write_the_same_bytes() -> None:
    md, status = _metadata(), Status(State.READY, pid=42, created_at=5)
    assert pack_payload(ev.sandbox_added(ENV, md, status)) == pack_payload(
        _old_added(ENV, md, status)
    )
    assert ev.netns_closed(ENV, A, PATH, "x") == _old_simple(
        "NetNSClosed", ENV, A, path=PATH, reason="x"
    )


def test_a_log_of_the_old_code_path_replays_identically(state_dir: Path) -> None:
    # The old code path wrote neither NetNSDirRecorded nor a failed creation (whose
    # path would be left pending: the reconciler would make it in /var/run/netns).
    payloads = [
        p
        for p in old_payloads()[:-1]  # keep the sandbox, to look at it
        # nor a carry (only compaction writes one)
        if p["type"]
        not in (ev.NETNS_DIR_RECORDED, ev.NETNS_CREATE_FAILED, ev.NetNSOwnershipCarried.TYPE)
        and p.get("path") != FAILED
    ]
    assert [p["type"] for p in payloads] == [
        "SandboxAdded", "NetNSAssigned", "NetNSCreated", "StatusUpdated", "NetNSClosed",
        "NetNSAssigned", "NetNSRemoveRequested", "NetNSRemoved", "LogRepaired",
    ]  # fmt: skip
    with eventlog.EventLog.open(state_dir, durability="none") as log:
        for payload in payloads:
            log.append(payload)
    records = list(eventlog.read(state_dir))
    for rec in records:  # each record decodes and re-encodes to its very bytes
        assert pack_payload(ev.decode(rec.payload).to_payload()) == pack_payload(rec.payload)
    # Its assigned paths are in /var/run/netns: that is its netns dir (sandbox/netnsdir.py),
    # so it opens without one (naming another is refused) and has it recorded after its history.
    with Store.open(state_dir, durability="none") as store:
        assert store.netns_dir == NETNS_DIR
        after = list(eventlog.read(state_dir))
        assert [r.payload for r in after[: len(records)]] == [r.payload for r in records]
        assert len(after) == len(records) + 1
        recorded = ev.decode(after[-1].payload)
        assert isinstance(recorded, ev.NetNSDirRecorded) and recorded.netns_dir == NETNS_DIR
        records = after
        sb = store[A]
        assert sb.metadata == _metadata()
        assert sb.status == Status(State.NOTREADY, 0, 5, 9, 137)
        proj = store.projection()
        assert proj.owned_state(PATH) is NetNSState.CLOSED and proj.owned_state(PATH + "1") is None
        # The typed fold and a fold of the raw maps agree bit for bit.
        from_maps = Projection(store.netns_dir)
        for rec in records:
            from_maps.apply(rec.seq, rec.payload)
        typed = Projection(store.netns_dir)
        for rec in records:
            typed.apply(rec.seq, ev.decode(rec.payload))
        assert pack_payload(from_maps.to_snapshot()) == pack_payload(proj.to_snapshot())
        assert pack_payload(typed.to_snapshot()) == pack_payload(proj.to_snapshot())


# -- upcasting -----------------------------------------------------------------


def test_status_updated_v1_is_upcast() -> None:
    old = {"type": "StatusUpdated", "v": 1, "id": A, "env": ENV,
           "status": {"state": "NOTREADY", "pid": 0, "created_at": 5, "exited_at": 9}}  # fmt: skip
    event = ev.decode(old)
    assert isinstance(event, ev.StatusUpdated)
    assert event.status == Status(State.NOTREADY, 0, 5, 9, None)
    assert event.to_payload()["v"] == 2 and "exit_status" not in old["status"]


def test_sandbox_added_v0_is_upcast() -> None:
    old = {"type": "SandboxAdded", "v": 0, "id": SANDBOX_ID, "env": ENV, "metadata": GOLDEN,
           "status": {"state": "READY", "pid": 99, "created_at": 5}}  # fmt: skip
    event = ev.decode(old)
    assert isinstance(event, ev.SandboxAdded)
    assert event.metadata.to_metadata() == golden_metadata()
    assert event.status == Status(State.READY, 99, 5)
    assert event.to_payload()["v"] == 1


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        ({"type": "SandboxResized", "v": 1, "id": A}, UnknownEventError, ["SandboxResized"]),
        (
            {"type": "StatusUpdated", "v": 3, "id": A},
            UnsupportedVersionError,
            ["StatusUpdated", "3"],
        ),
        ({"type": "SandboxAdded", "v": 7, "id": A}, UnsupportedVersionError, ["SandboxAdded", "7"]),
        ({"type": "NetNSCreated", "id": A}, UnsupportedVersionError, ["NetNSCreated", "None"]),
        ({"type": "NetNSCreated", "v": True, "id": A}, UnsupportedVersionError, ["True"]),
        ({"type": "NetNSCreated", "v": 1, "id": A}, InvalidEventError, ["NetNSCreated", "path"]),
        ({"type": "NetNSCreated", "v": 1, "id": 5, "path": "/p"}, InvalidEventError, ["id"]),
        (
            {
                "type": "StatusUpdated",
                "v": 2,
                "id": A,
                "status": {"state": "GONE", "pid": 0, "created_at": 1},
            },
            InvalidEventError,
            ["StatusUpdated", "GONE"],
        ),
        (
            {
                "type": "SandboxAdded",
                "v": 1,
                "id": A,
                "status": {},
                "metadata": {"id": "other", "name": "n"},
            },
            InvalidEventError,
            ["metadata"],
        ),
        (["not", "a", "map"], InvalidEventError, ["map"]),
    ],
)
def test_decode_errors_name_type_and_version(
    payload: Any, error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as info:
        ev.decode(payload)
    for word in words:
        assert word in str(info.value)


def test_projection_names_the_seq_of_a_bad_event() -> None:
    proj = Projection()
    with pytest.raises(UnsupportedVersionError, match=r"seq 1.*StatusUpdated.*9"):
        proj.apply(1, {"type": "StatusUpdated", "v": 9, "id": A})
    assert proj.last_seq == 0


def test_an_odd_envelope_does_not_stop_replay() -> None:
    payload = {**ev.sandbox_deleted(ENV, A), "env": {"time": "noon", "pid": True}}
    event = ev.decode(payload)
    assert event.env == ev.Env() and ev.decode({**payload, "env": None}).env == ev.Env()


def test_the_table_in_the_docstring_matches_the_classes() -> None:
    rows = {
        line.split()[0]: int(line.split()[1])
        for line in (ev.__doc__ or "").splitlines()
        if line.startswith("    ") and line.split()[0] in ev.CURRENT
    }
    assert rows == ev.CURRENT
