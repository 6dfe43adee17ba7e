"""The typed-decode hook (sandbox/event_fastdecode.py) is sound: whatever it decodes,
the reference path decodes to an equal event - same classes, values and types.

The reference is what the read path did before the hook: ``msgpack.unpackb`` with
the scanner's settings (a failure or a non-map is corruption), then
``sandbox.events.decode`` (a failure is the event's error). ``decode_payload``
may decline (None) anything; it may never accept what the reference refuses, nor
build an event that differs from the reference's in any class, value or type.
Checked over every event type, a broad set of hostile payloads, and a seeded
loop of random mutations (test_sandbox_event_fastdecode_mutations.py).
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest

import eventlog
from eventlog.format import encode_record, pack_payload
from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, State, Status, snapshot
from sandbox import events as ev
from sandbox.errors import StoreError
from sandbox.event_fastdecode import CONFIG_DEPTH, decode_payload
from sandbox.projection import Projection

A = "a" * 64
ENV = {"time": 1_700_000_000_123, "host": "node-1", "pid": 4711, "uid": 0, "actor": "kubelet"}
PATH = "/var/run/netns/cni-0000"


def _config() -> dict[str, Any]:
    config = PodSandboxConfig(
        metadata=PodSandboxMetadata(name="web", uid="u-1", namespace="default", attempt=2),
        hostname="web",
        labels={"app": "web"},
        annotations={"note": "café"},
    )
    return Metadata(A, "web_default_u-1_2", config).to_event_dict()


def valid_payloads() -> dict[str, dict[str, Any]]:
    """One current-version payload of every event type, as the store writes them."""
    env = ev.Env.from_payload(ENV)
    status = Status(State.READY, pid=42, created_at=5)
    stopped = Status(State.NOTREADY, pid=0, created_at=-5, exited_at=9, exit_status=137)
    meta = ev.AddedMetadata.from_payload(_config())
    events: list[ev.Event] = [
        ev.SandboxAdded(A, env, meta, status),
        ev.SandboxDeleted(A, env),
        ev.StatusUpdated(A, env, stopped),
        ev.NetNSAssigned(A, env, PATH),
        ev.NetNSCreated(A, env, PATH),
        ev.NetNSRemoveRequested(A, env, PATH),
        ev.NetNSRemoved(A, env, PATH),
        ev.NetNSClosed(A, env, PATH, "gone"),
        ev.NetNSCreateFailed(A, env, PATH, "EPERM"),
        ev.NetNSOwnershipCarried(A, env, PATH, 4),
        ev.NetNSDirRecorded("", env, "/var/run/netns"),
        ev.LogRepaired("", env, "s.log", 9, None, "bad crc", 3, "s.log", 7, 99, ("b",), ()),
    ]
    assert {type(e) for e in events} == set(ev.EVENT_CLASSES)
    return {type(e).__name__: e.to_payload() for e in events}


VALID = valid_payloads()


# -- the soundness rule -----------------------------------------------------------


def deep(value: Any) -> Any:
    """A comparable form of ``value`` that keeps every type (bool vs int, str vs bytes,
    list vs tuple, enum members, attrs classes, map order, float bits - NaN included)."""
    if attrs.has(type(value)):
        return (
            type(value),
            tuple((f.name, deep(getattr(value, f.name))) for f in attrs.fields(type(value))),
        )
    if isinstance(value, enum.Enum):
        return (type(value), value.name)
    if isinstance(value, dict):
        return (dict, tuple((deep(k), deep(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value), tuple(deep(v) for v in value))
    if isinstance(value, float):
        return (float, struct.pack("<d", value))
    return (type(value), value)


def reference(payload: bytes) -> tuple[str, Any]:
    """What the read path made of ``payload`` before the hook existed."""
    try:
        obj = msgpack.unpackb(payload)  # the scanner's call: its defaults are the rules
    except Exception:
        return "corrupt", None
    if type(obj) is not dict:
        return "corrupt", None
    try:
        return "event", ev.decode(obj)
    except (StoreError, ValueError, TypeError, KeyError) as exc:
        return "invalid", type(exc)


def check(payload: bytes) -> ev.Event | None:
    """Assert the rule for one payload; returns what the fast path made of it."""
    fast = decode_payload(payload)
    if fast is None:
        return None
    verdict, ref = reference(payload)
    assert verdict == "event", f"fast path accepted what the reference calls {verdict}: {payload!r}"
    assert deep(fast) == deep(ref), f"fast and reference differ for {payload!r}"
    # ``==`` too, where the reference equals itself (a NaN in a config does not).
    assert type(fast) is type(ref) and (fast == ref or reference(payload)[1] != ref)
    assert pack_payload(fast.to_payload()) == pack_payload(ref.to_payload())
    return fast


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


# -- every event type -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_event_type_decodes_fast_and_equal(name: str) -> None:
    payload = pack(VALID[name])
    assert check(payload) is not None, "the fast path declined a payload the store writes"


@pytest.mark.parametrize("name", sorted(VALID))
def test_fields_in_another_order_decode_the_same(name: str) -> None:
    reordered = dict(reversed(list(VALID[name].items())))
    assert check(pack(reordered)) is not None


def test_missing_envelope_and_defaults() -> None:
    deleted = {k: v for k, v in VALID["SandboxDeleted"].items() if k != "env"}
    assert check(pack(deleted)) == ev.SandboxDeleted(A, ev.Env())
    assert check(pack({**deleted, "env": None})) == ev.SandboxDeleted(A, ev.Env())
    assert check(pack({**deleted, "env": {}})) == ev.SandboxDeleted(A, ev.Env())
    added = VALID["SandboxAdded"]
    meta = {k: v for k, v in added["metadata"].items() if k not in ("config", "netns_path")}
    assert check(pack({**added, "metadata": meta})) is not None
    status = {k: SU["status"][k] for k in ("state", "pid", "created_at")}
    assert check(pack({**VALID["StatusUpdated"], "status": status})) is not None


def test_the_richest_recorded_config_decodes_fast() -> None:
    # Every field of the CRI schema set: the deepest config the store writes.
    doc = json.loads((Path(__file__).parent / "podconfigs" / "full-v1.json").read_text())
    config = PodSandboxConfig.from_go_json(doc)
    payload = _with(VALID["SandboxAdded"], ("metadata", "config"), config.to_go_json())
    assert check(pack(payload)) is not None


# -- hostile payloads ---------------------------------------------------------------

SU = VALID["StatusUpdated"]
ADD = VALID["SandboxAdded"]


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``base`` with the field at ``path`` set to ``value`` (``_DROP``: removed)."""
    out = dict(base)
    if len(path) == 1:
        if value is _DROP:
            out.pop(path[0], None)
        else:
            out[path[0]] = value
        return out
    out[path[0]] = _with(out[path[0]], path[1:], value)
    return out


_DROP = object()

STRUCTURED: dict[str, dict[str, Any]] = {
    "pid is a bool": _with(SU, ("status", "pid"), True),
    "pid is negative": _with(SU, ("status", "pid"), -1),
    "pid is 2**63": _with(SU, ("status", "pid"), 2**63),
    "pid is the largest int64": _with(SU, ("status", "pid"), 2**63 - 1),
    "created_at is 2**64-1": _with(SU, ("status", "created_at"), 2**64 - 1),
    "created_at is the least int64": _with(SU, ("status", "created_at"), -(2**63)),
    "created_at is a float": _with(SU, ("status", "created_at"), 1.0),
    "created_at is nil": _with(SU, ("status", "created_at"), None),
    "created_at missing": _with(SU, ("status", "created_at"), _DROP),
    "exited_at is a bool": _with(SU, ("status", "exited_at"), False),
    "exit_status is 2**63": _with(SU, ("status", "exit_status"), 2**63),
    "exit_status missing": _with(SU, ("status", "exit_status"), _DROP),
    "state unknown": _with(SU, ("status", "state"), "RUNNING"),
    "state lower case": _with(SU, ("status", "state"), "ready"),
    "state is bin": _with(SU, ("status", "state"), b"READY"),
    "state is an int": _with(SU, ("status", "state"), 1),
    "status has an extra key": _with(SU, ("status", "extra"), 1),
    "status is a list": _with(SU, ("status",), [1, 2]),
    "status missing": _with(SU, ("status",), _DROP),
    "id is bin": _with(SU, ("id",), A.encode()),
    "id is an int": _with(SU, ("id",), 5),
    "id missing": _with(SU, ("id",), _DROP),
    "id is empty": _with(SU, ("id",), ""),
    "v is a bool": _with(SU, ("v",), True),
    "v is a float": _with(SU, ("v",), 2.0),
    "v is a str": _with(SU, ("v",), "2"),
    "v missing": _with(SU, ("v",), _DROP),
    "v is newer": _with(SU, ("v",), 3),
    "StatusUpdated v1 (upcast)": _with(_with(SU, ("v",), 1), ("status", "exit_status"), _DROP),
    "type unknown": _with(SU, ("type",), "SandboxResized"),
    "type is bin": _with(SU, ("type",), b"StatusUpdated"),
    "type missing": _with(SU, ("type",), _DROP),
    "unknown top-level field": _with(SU, ("extra",), "x"),
    "unknown top-level map": _with(SU, ("extra",), {"k": [1, 2]}),
    "env is a list": _with(SU, ("env",), [1]),
    "env has an extra key": _with(SU, ("env", "zone"), "z"),
    "env time is a bool": _with(SU, ("env", "time"), True),
    "env pid is a str": _with(SU, ("env", "pid"), "1"),
    "env host is bin": _with(SU, ("env", "host"), b"node"),
    "env actor is nil": _with(SU, ("env", "actor"), None),
    "env uid is 2**64-1": _with(SU, ("env", "uid"), 2**64 - 1),
    "metadata id differs": _with(ADD, ("metadata", "id"), "b" * 64),
    "metadata name missing": _with(ADD, ("metadata", "name"), _DROP),
    "metadata name is bin": _with(ADD, ("metadata", "name"), b"n"),
    "metadata extra key": _with(ADD, ("metadata", "extra"), 1),
    "metadata is bin": _with(ADD, ("metadata",), b"{}"),
    "netns_path nil": _with(ADD, ("metadata", "netns_path"), None),
    "netns_path empty": _with(ADD, ("metadata", "netns_path"), ""),
    "netns_path a path": _with(ADD, ("metadata", "netns_path"), PATH),
    "netns_path is 0": _with(ADD, ("metadata", "netns_path"), 0),
    "config nil": _with(ADD, ("metadata", "config"), None),
    "config empty": _with(ADD, ("metadata", "config"), {}),
    "config 0": _with(ADD, ("metadata", "config"), 0),
    "config empty string": _with(ADD, ("metadata", "config"), ""),
    "config a list": _with(ADD, ("metadata", "config"), [1]),
    "config a str": _with(ADD, ("metadata", "config"), "x"),
    "config bin value": _with(ADD, ("metadata", "config", "hostname"), b"web"),
    "config float values": _with(
        ADD, ("metadata", "config", "f"), [0.5, -0.0, 1e308, float("inf")]
    ),
    "config nan": _with(ADD, ("metadata", "config", "f"), float("nan")),
    "config bool and nil values": _with(ADD, ("metadata", "config", "f"), [True, None, {}]),
    "config big ints": _with(ADD, ("metadata", "config", "f"), [2**64 - 1, -(2**63)]),
    "config unknown keys kept": _with(ADD, ("metadata", "config", "zz"), {"a": {"b": ["c"]}}),
    "status of an add is bad": _with(ADD, ("status", "pid"), -3),
    "NetNSClosed reason missing": _with(VALID["NetNSClosed"], ("reason",), _DROP),
    "NetNSClosed reason nil": _with(VALID["NetNSClosed"], ("reason",), None),
    "NetNSCreated path bin": _with(VALID["NetNSCreated"], ("path",), b"/p"),
    "NetNSCreated with a reason": _with(VALID["NetNSCreated"], ("reason",), "x"),
    "NetNSOwnershipCarried seq bool": _with(
        VALID["NetNSOwnershipCarried"], ("assigned_seq",), True
    ),
    "NetNSOwnershipCarried seq float": _with(
        VALID["NetNSOwnershipCarried"], ("assigned_seq",), 4.0
    ),
    "NetNSOwnershipCarried seq str": _with(VALID["NetNSOwnershipCarried"], ("assigned_seq",), "4"),
    "NetNSOwnershipCarried seq nil": _with(VALID["NetNSOwnershipCarried"], ("assigned_seq",), None),
    "NetNSOwnershipCarried seq missing": _with(
        VALID["NetNSOwnershipCarried"], ("assigned_seq",), _DROP
    ),
    "NetNSOwnershipCarried seq huge": _with(
        VALID["NetNSOwnershipCarried"], ("assigned_seq",), 2**64 - 1
    ),
    "NetNSOwnershipCarried seq negative": _with(
        VALID["NetNSOwnershipCarried"], ("assigned_seq",), -(2**63)
    ),
    "NetNSOwnershipCarried with a reason": _with(VALID["NetNSOwnershipCarried"], ("reason",), "x"),
    "NetNSDirRecorded dir nil": _with(VALID["NetNSDirRecorded"], ("netns_dir",), None),
    "LogRepaired damage_seq int": _with(VALID["LogRepaired"], ("damage_seq",), 4),
    "LogRepaired damage_seq bool": _with(VALID["LogRepaired"], ("damage_seq",), True),
    "LogRepaired broken_files bin": _with(VALID["LogRepaired"], ("broken_files",), [b"x"]),
    "LogRepaired broken_files map": _with(VALID["LogRepaired"], ("broken_files",), {"x": 1}),
    "LogRepaired cut_offset huge": _with(VALID["LogRepaired"], ("cut_offset",), 2**64 - 1),
    "LogRepaired missing cut_seq": _with(VALID["LogRepaired"], ("cut_seq",), _DROP),
    "SandboxAdded v0 (upcast)": {
        "type": "SandboxAdded",
        "v": 0,
        "id": A,
        "env": ENV,
        "metadata": Metadata(A, "n", PodSandboxConfig(hostname="h")).to_json(),
        "status": {"state": "READY", "pid": 1, "created_at": 5},
    },
}


@pytest.mark.parametrize("name", sorted(STRUCTURED))
def test_structured_hostile_payloads(name: str) -> None:
    check(pack(STRUCTURED[name]))


def _bytes_with(base: dict[str, Any], key: str, raw: bytes) -> bytes:
    """``base`` packed with the value of top-level ``key`` replaced by ``raw`` bytes."""
    marker = "\x00marker\x00"
    packed = pack({**base, key: marker})
    return packed.replace(pack(marker), raw)


def _config_with(raw: bytes) -> bytes:
    """The add payload whose config holds ``{"x": <raw>}``."""
    marker = "\x00marker\x00"
    packed = pack(_with(ADD, ("metadata", "config", "x"), marker))
    return packed.replace(pack(marker), raw)


def _nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"


RAW: dict[str, bytes] = {
    "trailing byte": pack(SU) + b"\x00",
    "truncated": pack(SU)[:-1],
    "empty": b"",
    "not a map": pack([SU]),
    "nil": b"\xc0",
    "reserved byte 0xc1": _bytes_with(SU, "id", b"\xc1"),
    "id invalid utf-8": _bytes_with(SU, "id", b"\xa2\xff\xfe"),
    "id encoded surrogate": _bytes_with(SU, "id", b"\xa3\xed\xa0\x80"),
    "id as str8 (not minimal)": _bytes_with(SU, "id", b"\xd9\x01x"),
    "id as str32 claiming 2**31": _bytes_with(SU, "id", b"\xdb\x80\x00\x00\x00x"),
    "map32 claiming 2**31 entries": _bytes_with(SU, "env", b"\xdf\x80\x00\x00\x00"),
    "v as uint8 (not minimal)": _bytes_with(SU, "v", b"\xcc\x02"),
    "v as int64 (not minimal)": _bytes_with(SU, "v", b"\xd3" + (2).to_bytes(8, "big")),
    "v as float32": _bytes_with(SU, "v", b"\xca\x40\x00\x00\x00"),
    "env ext value": _bytes_with(SU, "env", b"\x81\xa4time\xd4\x05\x00"),
    "env timestamp value": _bytes_with(SU, "env", b"\x81\xa4time\xd6\xff\x00\x00\x00\x01"),
    "env int key": _bytes_with(SU, "env", b"\x81\x01\x02"),
    "env bin key": _bytes_with(SU, "env", b"\x81\xc4\x04time\x02"),
    "unknown field with invalid utf-8": _bytes_with(SU, "zz", b"\xa2\xff\xfe"),
    "unknown field with an int-keyed map": _bytes_with(SU, "zz", b"\x81\x01\x02"),
    "unknown field with an ext": _bytes_with(SU, "zz", b"\xd4\x05\x00"),
    "unknown field nested 2000 deep": _bytes_with(SU, "zz", _nested(2000)),
    "env unknown key, invalid utf-8": _bytes_with(SU, "env", b"\x81\xa2zz\xa2\xff\xfe"),
    "env unknown key, int-keyed map": _bytes_with(SU, "env", b"\x81\xa2zz\x81\x01\x02"),
    "status unknown key, ext": _bytes_with(
        SU, "status", b"\x86" + pack(SU["status"])[1:] + b"\xa2zz\xd4\x05\x00"
    ),
    "bin key at the top": b"\x86\xc4\x02zz\x01" + pack(SU)[1:],
    "duplicate id (last wins)": b"\x86" + pack(SU)[1:] + b"\xa2id\xa1x",
    "duplicate type, same": b"\x86" + pack(SU)[1:] + b"\xa4type\xadStatusUpdated",
    "duplicate type, other": b"\x86" + pack(SU)[1:] + b"\xa4type\xaeSandboxDeleted",
    "duplicate status, second bad": b"\x86" + pack(SU)[1:] + b"\xa6status\xc0",
    "config int key": _config_with(b"\x81\x01\x02"),
    "config nil key": _config_with(b"\x81\xc0\x02"),
    "config float key": _config_with(b"\x81\xca\x00\x00\x00\x00\x02"),
    "config array key": _config_with(b"\x81\x90\x02"),
    "config bin key": _config_with(b"\x81\xc4\x01k\x02"),
    "config int key in a list": _config_with(b"\x91\x81\x01\x02"),
    "config invalid utf-8 key": _config_with(b"\x81\xa2\xff\xfe\x01"),
    "config surrogate value": _config_with(b"\xa3\xed\xa0\x80"),
    "config ext": _config_with(b"\xd4\x05\x00"),
    "config timestamp": _config_with(b"\xd6\xff\x00\x00\x00\x01"),
    "config float32": _config_with(b"\xca\x3f\xc0\x00\x00"),
    "config float32 nan": _config_with(b"\xca\x7f\xc0\x00\x01"),
    "config float64 -0.0": _config_with(b"\xcb\x80" + b"\x00" * 7),
    "config duplicate keys": _config_with(b"\x83\xa1a\x01\xa1b\x02\xa1a\x03"),
    **{
        f"config nested {n} deep": _config_with(_nested(n))
        for n in (
            CONFIG_DEPTH - 2,
            CONFIG_DEPTH - 1,
            CONFIG_DEPTH,
            CONFIG_DEPTH + 1,
            995,
            1020,
            3000,
        )
    },
}


@pytest.mark.parametrize("name", sorted(RAW))
def test_byte_level_hostile_payloads(name: str) -> None:
    check(RAW[name])


def test_what_the_fast_path_takes_and_leaves() -> None:
    """Spot checks that the cases above exercise both paths (not only the fallback)."""
    taken = {"pid is the largest int64", "created_at is the least int64", "id is empty",
             "env actor is nil", "env uid is 2**64-1", "netns_path a path", "config empty",
             "config float values", "config big ints", "config unknown keys kept",
             "LogRepaired damage_seq int", "LogRepaired cut_offset huge"}  # fmt: skip
    for name in taken:
        assert decode_payload(pack(STRUCTURED[name])) is not None, name
    for name in ("duplicate id (last wins)", "config float32", "config duplicate keys",
                 "v as uint8 (not minimal)", "id as str8 (not minimal)"):  # fmt: skip
        assert decode_payload(RAW[name]) is not None, name
    for name in ("StatusUpdated v1 (upcast)", "SandboxAdded v0 (upcast)", "env has an extra key",
                 "netns_path nil", "config nil", "state unknown"):  # fmt: skip
        assert decode_payload(pack(STRUCTURED[name])) is None, name
    assert decode_payload(RAW[f"config nested {CONFIG_DEPTH} deep"]) is not None
    assert decode_payload(RAW[f"config nested {CONFIG_DEPTH + 1} deep"]) is None


# -- through the log: the read path and replay ---------------------------------------


def _write(d: Path, payloads: list[bytes]) -> None:
    with eventlog.EventLog.open(d, durability="none") as log:
        log.append({"n": 0})
    last = list(eventlog.read(d))[-1]
    digest = last.digest
    (seg,) = sorted(d.glob("*.log"))
    with seg.open("ab") as f:
        for seq, payload in enumerate(payloads, 2):
            record, digest = encode_record(digest, seq, 1, 0, payload, b"")
            f.write(record)


def _outcome(read: Callable[[], list[Any]]) -> tuple[str, Any]:
    try:
        return "ok", read()
    except eventlog.CorruptLogError as exc:
        return "corrupt", (exc.seq, exc.reason)


@pytest.mark.parametrize("name", sorted(RAW))
def test_a_log_reads_the_same_with_and_without_the_hook(tmp_path: Path, name: str) -> None:
    d = tmp_path / "log"
    _write(d, [pack(VALID["StatusUpdated"]), RAW[name]])
    plain = _outcome(lambda: list(eventlog.read(d)))
    hooked = _outcome(lambda: list(eventlog.read(d, decode=decode_payload)))
    assert plain[0] == hooked[0]
    if plain[0] == "corrupt":
        assert plain == hooked  # the same record, the same words
        return
    for a, b in zip(plain[1], hooked[1], strict=True):
        assert (a.seq, a.digest, a.segment, a.offset) == (b.seq, b.digest, b.segment, b.offset)
        payload = b.payload
        if isinstance(payload, ev.Event):
            assert deep(payload) == deep(ev.decode(a.payload))
        else:  # declined: the reference map, as before (top level: it may nest 1,000 deep)
            assert type(payload) is dict and list(payload) == list(a.payload)


def test_replay_with_the_hook_builds_the_same_projection(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with eventlog.EventLog.open(d, durability="none") as log:
        for payload in VALID.values():
            if payload["type"] == "SandboxDeleted":
                continue
            log.append(payload)
        log.append(STRUCTURED["StatusUpdated v1 (upcast)"])
        log.append(VALID["SandboxDeleted"])
    plain, hooked = Projection(), Projection()
    snapshot.replay(eventlog.read(d), plain)
    snapshot.replay(eventlog.read(d, decode=decode_payload), hooked)
    assert pack_payload(plain.to_snapshot()) == pack_payload(hooked.to_snapshot())
    assert plain == hooked
