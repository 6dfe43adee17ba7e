"""The seed's semantics (containerd's sandbox store tests), on a real log."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from support import MakeSandbox, OpenStore

import eventlog
from sandbox import (
    AlreadyExistsError,
    AmbiguousPrefixError,
    InvalidIDError,
    InvalidTransitionError,
    NotFoundError,
    PodSandboxConfig,
    Sandbox,
    State,
    Status,
    Store,
    StoreClosedError,
    StoreError,
)
from sandbox.ids import MAX_ID_LENGTH, Registrar, TruncIndex, validate_id, validate_name
from sandbox.rules import TRANSITIONS, check_transition

IDS = [
    "1",  # containerd's test ids: prefixes of each other on purpose
    "2abcd",
    "4a333",
    "4abcd",
]


def test_add_get_list_in_add_order(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    added = [store.add(make_sandbox(i)) for i in reversed(IDS)]
    for sb in added:
        got = store.get(sb.id)
        assert got == sb
        assert store[sb.id] == sb
        assert sb.id in store
    assert [sb.id for sb in store.list()] == list(reversed(IDS))
    assert list(store) == list(reversed(IDS))
    assert len(store) == len(IDS)
    assert store.get(IDS[1]).name == f"name-{IDS[1]}"  # type: ignore[union-attr]


def test_duplicates_are_refused_and_write_nothing(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    store.add(make_sandbox("aaa", "web"))
    seq = store.last_seq
    with pytest.raises(AlreadyExistsError, match="aaa"):
        store.add(make_sandbox("aaa", "other"))
    with pytest.raises(AlreadyExistsError, match="web"):
        store.add(make_sandbox("bbb", "web"))
    assert store.last_seq == seq
    assert len(store) == 1


def test_delete_then_get_and_name_released(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    for i in IDS:
        store.add(make_sandbox(i))
    store.delete("4a333")
    assert store.get("4a333") is None
    assert "4a333" not in store
    with pytest.raises(NotFoundError, match="4a333"):
        store["4a333"]
    assert [sb.id for sb in store.list()] == ["1", "2abcd", "4abcd"]
    # The name is free again, and a re-add goes to the end.
    store.add(make_sandbox("4a333"))
    assert [sb.id for sb in store.list()] == ["1", "2abcd", "4abcd", "4a333"]


def test_delete_of_missing_id_is_a_noop_that_writes_nothing(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    store.add(make_sandbox("abc"))
    seq = store.last_seq
    store.delete("zzz")
    store.delete("abcd")  # longer than any id: no match
    assert store.last_seq == seq
    with pytest.raises(InvalidIDError):
        store.delete("")
    assert store.last_seq == seq
    assert [r.seq for r in eventlog.read(state_dir)] == [1, 2]  # NetNSDirRecorded, the add


def test_prefix_lookups(state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox) -> None:
    store = open_store(state_dir, durability="none")
    for i in [*IDS, "4a"]:
        store.add(make_sandbox(i))
    assert store.get("2").id == "2abcd"  # type: ignore[union-attr]  # unique prefix
    assert store.get("4ab").id == "4abcd"  # type: ignore[union-attr]
    assert store.get("4a").id == "4a"  # type: ignore[union-attr]  # exact id wins
    assert store.get("1").id == "1"  # type: ignore[union-attr]
    with pytest.raises(AmbiguousPrefixError, match="'4'"):
        store.get("4")
    assert store.get("5") is None
    with pytest.raises(InvalidIDError):
        store.get("")
    with pytest.raises(InvalidIDError):
        store.get(12345)  # type: ignore[arg-type]
    assert 12345 not in store
    with pytest.raises(AmbiguousPrefixError):
        store["4"]
    assert "4" not in store
    # Commands take prefixes too.
    store.update_status("2a", lambda old: attrs.evolve(old, state=State.NOTREADY))
    assert store["2abcd"].status.state is State.NOTREADY
    store.delete("4ab")
    assert store.get("4abcd") is None
    seq = store.last_seq
    with pytest.raises(AmbiguousPrefixError):
        store.delete("4")
    assert store.last_seq == seq


def test_update_status_follows_the_state_machine(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    store.add(make_sandbox("s1", pid=10))
    new = store.update_status("s1", lambda old: attrs.evolve(old, pid=42))
    assert new.pid == 42 and new.state is State.READY
    assert store["s1"].status == new
    store.update_status("s1", lambda old: attrs.evolve(old, state=State.UNKNOWN))
    stopped = store.update_status(
        "s1",
        lambda old: attrs.evolve(old, state=State.NOTREADY, exited_at=5, exit_status=137),
    )
    assert stopped.exit_status == 137
    store.update_status("s1", lambda old: old)  # NOTREADY -> NOTREADY, unchanged: no event
    seq = store.last_seq
    with pytest.raises(InvalidTransitionError, match=r"s1.*SANDBOX_NOTREADY.*SANDBOX_READY"):
        store.update_status("s1", lambda old: attrs.evolve(old, state=State.READY))
    assert store.last_seq == seq
    assert store["s1"].status == stopped


def test_add_in_any_state(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    for i, state in enumerate(State):
        assert store.add(make_sandbox(f"s{i}", state=state)).status.state is state


def test_a_refused_transition_names_the_sandbox_and_both_states() -> None:
    # The table itself is checked against DESIGN.md in test_sandbox_rules.py.
    for old in State:
        for new in State:
            if (old, new) in TRANSITIONS:
                check_transition("x", old, new)
            else:
                with pytest.raises(InvalidTransitionError) as info:
                    check_transition("sbx-id", old, new)
                assert "sbx-id" in str(info.value)
                assert str(old) in str(info.value) and str(new) in str(info.value)
    assert str(State.READY) == "SANDBOX_READY"
    assert str(State.NOTREADY) == "SANDBOX_NOTREADY"
    assert str(State.UNKNOWN) == "SANDBOX_UNKNOWN"


# -- bad input: a clear error, nothing written, the store still usable ---------

BAD_IDS = [
    "",
    "a b",
    "a\tb",
    "a/b",
    "a\x00b",
    "x" * 10_000,
    "a\nb",
    "\u00a0x",
    "x" * (MAX_ID_LENGTH + 1),
]


class Boom(Exception):
    """What a caller's update_status fn raises here."""


def _fn_raises(old: Status) -> Status:
    raise Boom("from fn")


def _id_changed_behind_the_validators_back(make_sandbox: MakeSandbox) -> Sandbox:
    sb = make_sandbox("fine")
    object.__setattr__(sb.metadata, "id", "has space")
    return sb


#: (command on a store holding "s1", the error it raises, what the error says).
Refused = Callable[[Store, MakeSandbox], object]
REFUSED = [
    *(
        pytest.param(
            lambda store, make, bad=bad: store.add(make(bad)),
            InvalidIDError,
            "sandbox id",
            id=f"bad-id-{n}",
        )
        for n, bad in enumerate(BAD_IDS)
    ),
    pytest.param(
        lambda store, make: store.add(make(12345)), InvalidIDError, "str", id="non-str-id"
    ),
    pytest.param(
        lambda store, make: store.add(make("big", "n" * (1 << 20))),
        InvalidIDError,
        "name",
        id="huge-name",
    ),
    pytest.param(
        lambda store, make: store.add(make("nul", "a\x00b")), InvalidIDError, "NUL", id="nul-name"
    ),
    # A Sandbox built behind the validators' back is still refused by add.
    pytest.param(
        lambda store, make: store.add(_id_changed_behind_the_validators_back(make)),
        InvalidIDError,
        None,
        id="id-changed-after-validation",
    ),
    pytest.param(
        lambda store, make: store.add("not a sandbox"), TypeError, None, id="not-a-sandbox"
    ),
    pytest.param(
        lambda store, make: store.add(
            make("big", config=PodSandboxConfig(annotations={"blob": "x" * (5 << 20)}))
        ),
        eventlog.RecordTooLargeError,
        None,
        id="oversized-event",
    ),
    pytest.param(
        lambda store, make: store.update_status("s1", _fn_raises), Boom, None, id="fn-raises"
    ),
    pytest.param(
        lambda store, make: store.update_status("s1", lambda old: "READY"),
        TypeError,
        "Status",
        id="fn-returns-no-status",
    ),
    pytest.param(
        lambda store, make: store.update_status("nope", lambda old: old),
        NotFoundError,
        None,
        id="update-missing-id",
    ),
    pytest.param(
        lambda store, make: store.update_status("s1", lambda old: (store.delete("s1"), old)[1]),
        StoreError,
        "inside an update_status fn",
        id="command-inside-fn",
    ),
]


@pytest.mark.parametrize(("command", "error", "match"), REFUSED)
def test_a_refused_command_writes_nothing(
    state_dir: Path,
    open_store: OpenStore,
    make_sandbox: MakeSandbox,
    command: Refused,
    error: type[Exception],
    match: str | None,
) -> None:
    store = open_store(state_dir, durability="always")
    store.add(make_sandbox("s1"))
    seq = store.last_seq
    with pytest.raises(error, match=match):
        command(store, make_sandbox)
    assert store.last_seq == seq
    assert [sb.id for sb in store.list()] == ["s1"]
    store.add(make_sandbox("ok2"))  # still usable
    assert store.last_seq == seq + 1


def test_fn_that_raises_reaches_the_caller_unchanged(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="always")
    store.add(make_sandbox("s1"))
    boom = Boom("from fn")

    def fn(old: Status) -> Status:
        raise boom

    with pytest.raises(Boom) as info:
        store.update_status("s1", fn)
    assert info.value is boom


def test_closed_store_refuses_commands(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    store = open_store(state_dir, durability="none")
    store.add(make_sandbox("s1"))
    store.close()
    store.close()  # idempotent
    for command in (
        lambda: store.add(make_sandbox("s2")),
        lambda: store.delete("s1"),
        lambda: store.update_status("s1", lambda old: old),
        lambda: store.remove_netns("s1"),
        lambda: store.snapshot(),
        lambda: store.reconcile(),
    ):
        with pytest.raises(StoreClosedError, match="closed"):
            command()
    assert store.get("s1") is not None  # the last state stays readable
    # The writer lock is released: the directory can be opened again.
    with Store.open(state_dir, netns_dir=store.netns_dir, durability="none") as again:
        assert "s1" in again


def test_second_writer_is_refused(state_dir: Path, open_store: OpenStore) -> None:
    open_store(state_dir, durability="none")
    with pytest.raises(eventlog.LogLockedError):
        open_store(state_dir, durability="none")


def test_reads_do_not_wait_behind_a_command(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    """While a command holds the command lock (here: inside update_status's fn,
    where an fsync would be), other threads still read."""
    store = open_store(state_dir, durability="always")
    store.add(make_sandbox("s1"))
    seen: list[object] = []

    def reader() -> None:
        seen.append(store.get("s1"))
        seen.append(len(store.list()))
        seen.append("s1" in store)

    def fn(old: Status) -> Status:
        t = threading.Thread(target=reader)
        t.start()
        t.join(timeout=30)
        assert not t.is_alive(), "a reader blocked behind the command lock"
        return attrs.evolve(old, pid=7)

    store.update_status("s1", fn)
    assert seen[0] is not None and seen[1:] == [1, True]
    # fn itself may read the store too, on the command's own thread.
    seq = store.last_seq
    store.update_status("s1", lambda old: attrs.evolve(old, pid=store["s1"].status.pid + 1))
    assert store.last_seq == seq + 1


def test_actor_and_envelope_are_recorded(
    state_dir: Path, open_store: OpenStore, make_sandbox: MakeSandbox
) -> None:
    import os

    store = open_store(state_dir, durability="none", actor="kubelet")
    store.add(make_sandbox("s1"))
    first, rec = list(eventlog.read(state_dir))
    assert first.payload["type"] == "NetNSDirRecorded"
    env = rec.payload["env"]
    assert env["actor"] == "kubelet" and env["pid"] == os.getpid() and env["uid"] == os.getuid()
    assert isinstance(env["time"], int) and isinstance(env["host"], str)
    assert rec.payload["type"] == "SandboxAdded" and rec.payload["v"] == 1
    assert rec.payload["metadata"]["config"]["metadata"]["name"] == "pod-s1"


def test_validators_and_truncindex_units() -> None:
    assert issubclass(InvalidIDError, ValueError)  # callers catching ValueError see bad ids
    assert validate_id("a" * MAX_ID_LENGTH)
    assert validate_name("n" * 1024)
    with pytest.raises(InvalidIDError):
        validate_name("n" * 1025)
    with pytest.raises(InvalidIDError):
        validate_id("\ud800")
    idx = TruncIndex()
    for i in ["abc", "abd", "b"]:
        idx.add(i)
    assert idx.get("abc") == "abc"
    assert idx.get("b") == "b"
    with pytest.raises(AmbiguousPrefixError):
        idx.get("ab")
    idx.delete("abd")
    assert idx.get("ab") == "abc"
    idx.add("abd")  # kept sorted after the first lookup
    with pytest.raises(AmbiguousPrefixError):
        idx.get("ab")
    with pytest.raises(NotFoundError):
        idx.get("c")
    reg = Registrar()
    reg.reserve("n", "1")
    reg.reserve("n", "1")  # same pair: fine
    with pytest.raises(AlreadyExistsError):
        reg.reserve("n", "2")
    with pytest.raises(AlreadyExistsError):
        reg.reserve("m", "1")
    reg.release_by_id("1")
    reg.reserve("n", "2")
    assert reg.get_id("n") == "2" and reg.get_name("2") == "n"
