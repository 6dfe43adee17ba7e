"""The rule book (sandbox/rules.py): every transition and precondition, and one table
shared by the store, the projection and verify.

Command rules run against the in-memory log (sandbox/logport.py: no disk);
the verify checks read real log files.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import attrs
import pytest
from support import MakeSandbox

import replay
from eventlog import EventLog
from sandbox import State, Status, Store, rules
from sandbox import events as ev
from sandbox.errors import (
    AlreadyExistsError,
    InvalidIDError,
    InvalidTransitionError,
    NotFoundError,
)
from sandbox.logport import MemoryLog
from sandbox.ownership import NetNSState
from sandbox.projection import Projection

A, B = "a" * 64, "b" * 64
ENV = ev.Env(1, "node", 1, 0, "rules-test")
PATH = "/nonexistent/netns/cni-rules"

# DESIGN.md "State machine", spelled out independently of the code's table.
DESIGN_ALLOWED = {
    (State.READY, State.READY),
    (State.READY, State.NOTREADY),
    (State.READY, State.UNKNOWN),
    (State.UNKNOWN, State.UNKNOWN),
    (State.UNKNOWN, State.NOTREADY),
    (State.NOTREADY, State.NOTREADY),
}
ALL_PAIRS = list(itertools.product(State, State))


def memory_store(*history_events: ev.Event) -> tuple[Store, MemoryLog]:
    log = MemoryLog()
    for event in history_events:
        log.append(event.to_payload())
    return Store.from_log(log, log.history(), netns_dir="/nonexistent/netns"), log


def added(sid: str, name: str, state: State = State.READY) -> ev.SandboxAdded:
    meta = ev.AddedMetadata(sid, name, {}, "")
    return ev.SandboxAdded(sid, ENV, meta, Status(state, created_at=1))


# -- the state machine ------------------------------------------------------------


def test_the_table_is_the_design() -> None:
    assert rules.TRANSITIONS == DESIGN_ALLOWED


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS, ids=lambda s: s.value)
def test_each_transition_through_the_store(
    old: State, new: State, make_sandbox: MakeSandbox
) -> None:
    store, log = memory_store()
    store.add(make_sandbox(A, state=old))
    before = log.last_seq
    if (old, new) in DESIGN_ALLOWED:
        result = store.update_status(A, lambda s: attrs.evolve(s, state=new, pid=7))
        assert result.state is new and store[A].status.state is new
        assert log.last_seq == before + 1
    else:
        with pytest.raises(InvalidTransitionError, match=f"from {old} to {new}"):
            store.update_status(A, lambda s: attrs.evolve(s, state=new))
        assert log.last_seq == before  # nothing written
        assert store[A].status.state is old


# -- preconditions of add / delete / update_status ----------------------------------


def test_add_refuses_a_duplicate_id_and_name(make_sandbox: MakeSandbox) -> None:
    store, log = memory_store()
    store.add(make_sandbox(A, "one"))
    with pytest.raises(AlreadyExistsError, match="already exists"):
        store.add(make_sandbox(A, "two"))
    with pytest.raises(AlreadyExistsError, match="already reserved"):
        store.add(make_sandbox(B, "one"))
    assert log.last_seq == 1 and store.list()[0].name == "one"
    store.delete(A)  # the name is released with the sandbox
    store.add(make_sandbox(B, "one"))
    assert list(store) == [B]


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "nul\0", "x" * 129])
def test_add_refuses_an_invalid_id(bad: str, make_sandbox: MakeSandbox) -> None:
    store, log = memory_store()
    with pytest.raises(InvalidIDError):
        store.add(make_sandbox(bad, "fine"))
    assert log.last_seq == 0


def test_add_refuses_an_invalid_name(make_sandbox: MakeSandbox) -> None:
    store, log = memory_store()
    with pytest.raises(InvalidIDError):
        store.add(make_sandbox(A, "n" * 1025))
    assert log.last_seq == 0


def test_delete_and_update_need_an_existing_sandbox(make_sandbox: MakeSandbox) -> None:
    store, log = memory_store()
    store.delete(A)  # containerd's Delete: missing is a no-op, nothing written
    assert log.last_seq == 0
    with pytest.raises(NotFoundError):
        store.update_status(A, lambda s: s)
    proj = Projection()
    with pytest.raises(NotFoundError, match="does not exist"):
        rules.check_delete(proj, A)
    with pytest.raises(NotFoundError, match="does not exist"):
        rules.check_status(proj, A, State.READY)


def test_a_memory_log_replays_to_the_same_store(make_sandbox: MakeSandbox) -> None:
    store, log = memory_store()
    store.add(make_sandbox(A, "one"))
    store.add(make_sandbox(B, "two", state=State.UNKNOWN))
    store.update_status(A, lambda s: attrs.evolve(s, state=State.NOTREADY, exit_status=1))
    store.delete(B)
    again = Store.from_log(log, log.history(), netns_dir="/nonexistent/netns")
    assert again.projection() == store.projection()
    assert again.list() == store.list() and again.head == store.head == log.head
    store.close()
    with pytest.raises(Exception, match="closed"):
        store.add(make_sandbox("c" * 64))


# -- namespace ownership ---------------------------------------------------------

NETNS_DESIGN = {
    ev.NetNSAssigned: {None},
    ev.NetNSCreated: {NetNSState.ASSIGNED},
    ev.NetNSRemoveRequested: {NetNSState.ASSIGNED, NetNSState.CREATED},
    ev.NetNSRemoved: {NetNSState.REMOVING},
    ev.NetNSClosed: {NetNSState.CREATED},
}
OWNED_STATES: list[NetNSState | None] = [None, *NetNSState]


def _projection_with_path_in(state: NetNSState | None) -> Projection:
    """A projection where PATH (assigned to A, which exists unless removed) is in ``state``."""
    steps: list[ev.Event] = [added(A, "one")]
    if state is not None:
        steps.append(ev.NetNSAssigned(A, ENV, PATH))
    if state in (NetNSState.CREATED, NetNSState.CLOSED):
        steps.append(ev.NetNSCreated(A, ENV, PATH))
    if state is NetNSState.CLOSED:
        steps.append(ev.NetNSClosed(A, ENV, PATH, "gone"))
    if state in (NetNSState.REMOVING, NetNSState.REMOVED):
        steps.append(ev.NetNSRemoveRequested(A, ENV, PATH))
    if state is NetNSState.REMOVED:
        steps.append(ev.NetNSRemoved(A, ENV, PATH))
    proj = Projection()
    for seq, event in enumerate(steps, 1):
        proj.apply(seq, event)
    expected = None if state is NetNSState.REMOVED else state
    assert proj.owned_state(PATH) is expected
    return proj


@pytest.mark.parametrize("kind", list(NETNS_DESIGN), ids=lambda k: k.TYPE)
@pytest.mark.parametrize("state", OWNED_STATES, ids=lambda s: s.value if s else "unowned")
def test_each_netns_step_allowed_or_refused(
    kind: type[ev.NetNSEvent], state: NetNSState | None
) -> None:
    proj = _projection_with_path_in(state)
    owned = proj.owned_state(PATH)
    if owned in NETNS_DESIGN[kind]:
        rules.check_netns(proj, kind, A, PATH)
    else:
        with pytest.raises(InvalidTransitionError, match=f"{kind.TYPE} of netns"):
            rules.check_netns(proj, kind, A, PATH)


def test_netns_assignment_and_creation_name_the_right_sandbox() -> None:
    proj = _projection_with_path_in(None)
    with pytest.raises(NotFoundError):
        rules.check_netns(proj, ev.NetNSAssigned, B, PATH)
    proj = _projection_with_path_in(NetNSState.ASSIGNED)
    with pytest.raises(InvalidTransitionError, match="not its assigned path"):
        rules.check_netns(proj, ev.NetNSCreated, B, PATH)


def test_remove_netns_writes_the_intent_the_table_allows() -> None:
    store, log = memory_store(added(A, "one"), ev.NetNSAssigned(A, ENV, PATH))
    proj = store.projection()
    assert proj.owned_state(PATH) is NetNSState.ASSIGNED
    # Allowed by the table: the store writes the intent (then the reconcile finds
    # nothing to remove in a netns_dir that does not exist).
    store.remove_netns(A)
    assert log.last_seq == 4 and store.projection().owned_state(PATH) is None


# -- one table: store, projection and verify change together -------------------------


def _write(state_dir: Path, events: list[ev.Event]) -> None:
    with EventLog.open(state_dir, durability="none") as log:
        for event in events:
            log.append(event.to_payload())


def test_a_status_rule_changed_once_changes_store_and_verify(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, make_sandbox: MakeSandbox
) -> None:
    history = [added(A, "one", State.NOTREADY), ev.StatusUpdated(A, ENV, Status(State.READY))]
    _write(state_dir, history)
    assert not replay.verify(state_dir).ok  # NOTREADY -> READY: refused by the table
    store, _log = memory_store(history[0])
    with pytest.raises(InvalidTransitionError):
        store.update_status(A, lambda s: attrs.evolve(s, state=State.READY))

    monkeypatch.setattr(rules, "TRANSITIONS", DESIGN_ALLOWED | {(State.NOTREADY, State.READY)})
    assert replay.verify(state_dir).ok
    assert store.update_status(A, lambda s: attrs.evolve(s, state=State.READY)).state is State.READY


def test_a_netns_rule_changed_once_changes_store_projection_and_verify(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    history: list[ev.Event] = [
        added(A, "one"),
        ev.NetNSAssigned(A, ENV, PATH),
        ev.NetNSRemoveRequested(A, ENV, PATH),
    ]
    _write(state_dir, history)
    assert replay.verify(state_dir).ok
    store, log = memory_store(*history[:2])

    # From now on a removal may only be requested of a created namespace.
    monkeypatch.setitem(rules.NETNS_FROM, ev.NetNSRemoveRequested, frozenset({NetNSState.CREATED}))
    res = replay.verify(state_dir)  # verify refuses the logged request...
    assert res.first is not None and res.first.kind == "transition" and res.first.seq == 3
    proj = Projection()  # ...the projection does not fold it...
    for seq, event in enumerate(history, 1):
        proj.apply(seq, event)
    assert proj.owned_state(PATH) is NetNSState.ASSIGNED
    with pytest.raises(InvalidTransitionError, match="expected created"):
        store.remove_netns(A)  # ...and the store will not write it
    assert log.last_seq == 2


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "nul\0", "x" * 129])
def test_the_add_rule_itself_refuses_an_invalid_id(bad: str) -> None:
    # Metadata may refuse these first; the rule must too (verify has no Metadata to rely on).
    with pytest.raises(InvalidIDError):
        rules.check_add(Projection(), bad, "fine")
    with pytest.raises(InvalidIDError):
        rules.check_add(Projection(), A, "n" * 1025)
