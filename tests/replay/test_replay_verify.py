"""replay.verify: tampering with bytes, with history, and with the state machine.

Forged logs are built with eventlog's own encoder (replay_support), exactly
as FORMAT.md lays records out, so each test changes one thing only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from replay_support import flip_record_byte, parse, replace_in_payload, write_records
from support import sandbox, sandboxctl

import replay
from eventlog import EventLog
from sandbox import Metadata, PodSandboxConfig, State, Status, Store
from sandbox import events as ev
from sandbox import snapshot as snap
from sandbox.projection import Projection

KEY = b"auditor-key-0123456789"


def make_log(state_dir: Path, netns_dir: Path, *, key: bytes | None = None, pods: int = 4) -> str:
    """A small healthy log (one event per command); returns its head."""
    with Store.open(
        state_dir, netns_dir=netns_dir, durability="none", actor="tester", key=key
    ) as s:
        for i in range(pods):
            sb = s.add(sandbox(f"pod-{i}"))
            s.update_status(sb.id, lambda old: attrs.evolve(old, state=State.NOTREADY))
        return s.head.hex()


def test_a_healthy_log_verifies(state_dir: Path, spare_netns_dir: Path) -> None:
    head = make_log(state_dir, spare_netns_dir)
    res = replay.verify(state_dir)
    assert res.ok and res.problems == () and res.first is None
    assert res.records == res.events_checked == res.last_seq == 9  # + NetNSDirRecorded
    assert res.head == head
    assert replay.verify(state_dir, head=head).ok
    assert replay.verify(state_dir, head=bytes.fromhex(head)).ok
    with pytest.raises(ValueError):
        replay.verify(state_dir, head="not hex")


def test_one_payload_byte_changed_with_its_crc_fixed_fails_at_that_seq(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    make_log(state_dir, spare_netns_dir)
    _, records = parse(state_dir)
    replace_in_payload(records[4], b"tester", b"tesTer")  # seq 5; crcs recomputed
    write_records(state_dir, records)
    res = replay.verify(state_dir)
    assert not res.ok
    first = res.first
    assert first is not None and first.kind == "log"
    assert (first.seq, first.offset) == (5, records[4].offset)
    assert first.segment is not None and first.segment.endswith("00000000000000000001.log")
    assert "chain" in first.reason or "digest" in first.reason
    # Everything before the bad record was still checked, event by event.
    assert res.events_checked == 4


def test_a_deleted_record_with_renumbered_seqs_fails(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    make_log(state_dir, spare_netns_dir)
    _, records = parse(state_dir)
    del records[2]  # seq 3 gone
    for r in records[2:]:
        r.seq -= 1  # renumbered, crcs recomputed, digests kept
    write_records(state_dir, records)
    res = replay.verify(state_dir)
    assert not res.ok and res.first is not None
    assert res.first.kind == "log" and res.first.seq == 3


def test_a_consistent_rewrite_passes_plain_verify_but_not_a_recorded_head(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    head = make_log(state_dir, spare_netns_dir)
    _, records = parse(state_dir)
    replace_in_payload(records[2], b"tester", b"forger")
    write_records(state_dir, records, rechain_from=1)  # the whole log re-chained
    plain = replay.verify(state_dir)
    assert plain.ok, plain.problems
    assert plain.head != head
    res = replay.verify(state_dir, head=head)
    assert not res.ok and res.first is not None and res.first.kind == "head"
    assert head in res.first.reason
    # The same through the CLI: exit 0 without --head, 1 with it.
    assert sandboxctl("--state-dir", str(state_dir), "verify").returncode == 0
    cp = sandboxctl("--state-dir", str(state_dir), "verify", "--head", head)
    assert cp.returncode == 1, cp
    assert "history rewritten" in cp.stdout


def test_keyed_log_rewritten_without_the_key_fails(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    make_log(state_dir, spare_netns_dir, key=KEY)
    assert replay.verify(state_dir, key=KEY).ok
    _, records = parse(state_dir)
    replace_in_payload(records[3], b"tester", b"forger")
    write_records(state_dir, records, rechain_from=4, key=b"")  # re-chained, no key
    assert replay.verify(state_dir).ok  # crcs are fine; the chain cannot be checked...
    assert not replay.verify(state_dir).chain_checked
    res = replay.verify(state_dir, key=KEY)  # ...with the key it is
    assert not res.ok and res.first is not None and res.first.seq == 4
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    cp = sandboxctl("--state-dir", str(state_dir), "verify", "--key-file", str(key_file))
    assert cp.returncode == 1 and "FAILED" in cp.stdout
    # Without the key the CLI will not call a keyed log verified.
    cp = sandboxctl("--state-dir", str(state_dir), "verify")
    assert cp.returncode == 1 and "NOT VERIFIED" in cp.stdout


def test_stripping_the_keyed_flag_is_caught(state_dir: Path, spare_netns_dir: Path) -> None:
    make_log(state_dir, spare_netns_dir, key=KEY)
    _, records = parse(state_dir)
    write_records(state_dir, records, rechain_from=1, key=b"", keyed=False)
    assert replay.verify(state_dir).ok  # an unkeyed log on its own terms
    res = replay.verify(state_dir, key=KEY)
    assert not res.ok and res.first is not None and "not keyed" in res.first.reason


# -- the state machine ------------------------------------------------------------------


def _write(state_dir: Path, events: list[dict[str, object]]) -> None:
    with EventLog.open(state_dir, durability="none") as log:
        for event in events:
            log.append(event)


def _env() -> dict[str, object]:
    return ev.Envelope("forger")()


def _added(sid: str, name: str, state: State = State.READY) -> dict[str, object]:
    md = Metadata(sid, name, PodSandboxConfig())
    return ev.sandbox_added(_env(), md, Status(state, created_at=1))


def _status(sid: str, state: State) -> dict[str, object]:
    return ev.status_updated(_env(), sid, Status(state, created_at=1))


def _deleted(sid: str) -> dict[str, object]:
    return ev.sandbox_deleted(_env(), sid)


def _netns(builder: Callable[..., dict[str, object]], sid: str) -> dict[str, object]:
    return builder(_env(), sid, "/n/p")


A, B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("events", "bad_seq", "words"),
    [
        ([_added(A, "x", State.NOTREADY), _status(A, State.READY)], 2, "cannot go from"),
        ([_added(A, "x", State.UNKNOWN), _status(A, State.READY)], 2, "cannot go from"),
        ([_added(A, "x"), _added(A, "y")], 2, "already exists"),
        ([_added(A, "x"), _added(B, "x")], 2, "held by"),
        (
            [_added(A, "x"), ev.sandbox_deleted(_env(), A), _status(A, State.NOTREADY)],
            3,
            "does not exist",
        ),
        ([_added(A, "x"), _deleted(B)], 2, "does not exist"),
        ([_added(A, "x"), ev.netns_created(_env(), A, "/run/netns/cni-x")], 2, "expected assigned"),
        ([_added(A, "x"), ev.netns_assigned(_env(), B, "/run/netns/cni-x")], 2, "does not exist"),
        (
            [
                _added(A, "x"),
                ev.netns_assigned(_env(), A, "/n/p"),
                ev.netns_removed(_env(), A, "/n/p"),
            ],
            3,
            "expected removing",
        ),
    ],
)
def test_an_event_the_store_would_refuse_is_a_problem(
    state_dir: Path, events: list[dict[str, object]], bad_seq: int, words: str
) -> None:
    _write(state_dir, events)
    res = replay.verify(state_dir)
    assert not res.ok
    first = res.first
    assert first is not None and first.kind == "transition" and first.seq == bad_seq
    assert words in first.reason
    assert first.segment is not None and first.offset is not None and first.offset > 0
    cp = sandboxctl("--state-dir", str(state_dir), "verify")
    assert cp.returncode == 1 and f"seq {bad_seq}" in cp.stdout


def test_an_event_that_does_not_decode_is_a_problem(state_dir: Path) -> None:
    _write(state_dir, [_added(A, "x"), {"type": "SandboxExploded", "v": 1, "id": A}])
    res = replay.verify(state_dir)
    assert res.first is not None and res.first.kind == "event" and res.first.seq == 2
    newer = state_dir.parent / "newer"
    _write(newer, [{**_added(A, "x"), "v": 99}])
    res = replay.verify(newer)
    assert res.first is not None and res.first.kind == "event" and "newer" in res.first.reason


def test_snapshots_are_checked_against_the_log(state_dir: Path, spare_netns_dir: Path) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as store:
        sb = store.add(sandbox("one"))
        store.add(sandbox("two"))
        path = store.snapshot()
        head = store.head
        store.update_status(sb.id, lambda old: attrs.evolve(old, state=State.NOTREADY))
    res = replay.verify(state_dir)
    assert res.ok and [c.ok for c in res.snapshots] == [True]
    # Same seq and digest, different state: a lie about the past.
    lie = Projection(str(spare_netns_dir))
    lie.apply(1, ev.NetNSDirRecorded("", ev.Env(), str(spare_netns_dir)))
    lie.apply(2, _added(A, "liar"))
    lie.apply(3, _added(B, "liar-2"))
    shutil.copy(path, str(path) + ".bak")
    Path(path).write_bytes(snap.encode(lie, head))
    res = replay.verify(state_dir)
    assert not res.ok and res.first is not None and res.first.kind == "snapshot"
    assert res.first.seq == 3 and "differs from the replay" in res.first.reason
    # A damaged file.
    Path(path).write_bytes(b"SBXSNAP\0 garbage")
    res = replay.verify(state_dir)
    assert res.first is not None and res.first.kind == "snapshot"


def test_a_torn_tail_is_not_a_problem(state_dir: Path, spare_netns_dir: Path) -> None:
    make_log(state_dir, spare_netns_dir)
    seg = next(state_dir.glob("*.log"))
    with seg.open("ab") as f:
        f.write(b"\x40\x00\x00\x00" + b"\x00" * 10)  # a record header cut short
    res = replay.verify(state_dir)
    assert res.ok and res.torn_tail > 0
    assert replay.load(state_dir).seq == 9


def test_a_corrupt_record_mid_log_stops_load_with_its_location(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    make_log(state_dir, spare_netns_dir)
    records = flip_record_byte(state_dir, 2, 30, 0xFF)  # a payload byte, crc NOT fixed
    from eventlog import CorruptLogError

    with pytest.raises(CorruptLogError) as err:
        replay.load(state_dir)
    assert err.value.seq == 3
    res = replay.verify(state_dir)
    assert res.first is not None and res.first.seq == 3 and res.first.offset == records[2].offset
