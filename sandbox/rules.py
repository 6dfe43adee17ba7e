"""The rule book: the state machine and every command's preconditions, written once.

The Store asks these rules before it writes an event, ``replay.verify`` asks
the same rules of every logged event (a log the store could not have written
is a problem), and the projection takes the namespace ownership table from
here for the steps it folds. Nothing else decides what is allowed, so a rule
changed here changes all three.

The rules read the state through ``RuleState`` (the projection satisfies it);
they never write. A refusal is an exception naming the sandbox and what was
expected: ``InvalidIDError``, ``AlreadyExistsError``, ``NotFoundError`` or
``InvalidTransitionError``.
"""

from __future__ import annotations

from typing import Protocol

from sandbox import events as ev
from sandbox.errors import AlreadyExistsError, InvalidTransitionError, NotFoundError
from sandbox.ids import validate_id, validate_name
from sandbox.ownership import NetNSState
from sandbox.status import State

__all__ = [
    "NETNS_FROM",
    "TRANSITIONS",
    "RuleState",
    "check",
    "carry_refusal",
    "check_add",
    "check_carry",
    "check_delete",
    "check_netns",
    "check_netns_dir",
    "check_status",
    "check_transition",
    "netns_may_follow",
]


class RuleState(Protocol):
    """What the rules read: the projection's view of the sandboxes and owned paths."""

    def __contains__(self, sandbox_id: object) -> bool: ...

    def name_holder(self, name: str) -> str | None: ...

    def state_of(self, sandbox_id: str) -> State: ...

    def owned_state(self, path: str) -> NetNSState | None: ...

    def owned_path_of(self, sandbox_id: str) -> str | None: ...

    def owner_of(self, path: str) -> str | None: ...

    def assigned_seq(self, path: str) -> int | None: ...

    @property
    def recorded_netns_dir(self) -> str | None: ...


# The sandbox state machine (containerd's sandbox status, CRI plugin), enforced
# by update_status before it writes and by verify on every StatusUpdated:
#
#        RunPodSandbox                 restart: sandbox found
#        (Create + Start)              but its state is lost
#              |                                |
#              v                                v
#     +------------------+  status lost  +-------------+
#     |      READY       |-------------->|   UNKNOWN   |--+
#     |  (pid, ports..)  |               |             |  | UNKNOWN -> UNKNOWN
#     +------------------+               +-------------+<-+
#       |    ^        |                         |
#       +----+        | Stop / Exit             | Stop
#     READY -> READY  v                         |
#     (pid etc.)  +------------------+          |
#                 |     NOTREADY     |<---------+
#                 |                  |--+
#     start       +------------------+  | NOTREADY -> NOTREADY
#     failed -------> (add as NOTREADY)<-+  (a repeated stop is fine)
#                          |
#                          | RemovePodSandbox
#                          v
#                       deleted     (from any state; its netns is removed)
#
# add may enter any state (NOTREADY/UNKNOWN: loaded after a restart, or the
# start failed). There is no way back to READY (kubelet makes a new sandbox
# rather than restart a stopped one) and none from NOTREADY to UNKNOWN (a
# stopped sandbox's state is known).

#: (from, to) pairs a status update may make.
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (State.READY, State.READY),
        (State.READY, State.NOTREADY),
        (State.READY, State.UNKNOWN),
        (State.UNKNOWN, State.UNKNOWN),
        (State.UNKNOWN, State.NOTREADY),
        (State.NOTREADY, State.NOTREADY),
    }
)

# An owned namespace's life (sandbox/ownership.py has the diagram): each event
# may follow only these states of its path (None: the path is not owned). The
# store writes an intent or records an effect only from them, verify flags any
# other, and the projection folds NetNSAssigned/Created/RemoveRequested only
# from them. (It stays lenient for NetNSRemoved and NetNSClosed: the kernel
# effect happened, so replay forgets the path whatever the log said before.)
_ASSIGNED, _CREATED, _REMOVING = NetNSState.ASSIGNED, NetNSState.CREATED, NetNSState.REMOVING

#: netns event class -> the owned states of its path it may follow.
NETNS_FROM: dict[type[ev.NetNSEvent], frozenset[NetNSState | None]] = {
    ev.NetNSAssigned: frozenset({None}),
    ev.NetNSCreated: frozenset({_ASSIGNED}),
    ev.NetNSRemoveRequested: frozenset({_ASSIGNED, _CREATED}),
    ev.NetNSRemoved: frozenset({_REMOVING}),
    ev.NetNSClosed: frozenset({_CREATED}),
    # add(create_netns=True) records a failed creation of its fresh path, then
    # deletes the sandbox (which turns the path to REMOVING: any leftover goes).
    ev.NetNSCreateFailed: frozenset({_ASSIGNED}),
    # Compaction carries the proof of a path the store still has to act on (or show);
    # a terminal path needs none. It also must name the owner and the record it
    # replaces as the proof (``carry_refusal``).
    ev.NetNSOwnershipCarried: frozenset({_ASSIGNED, _CREATED, _REMOVING}),
}


def _shown(state: NetNSState | None) -> str:
    return state.value if state is not None else "not owned"


def check_transition(sandbox_id: str, old: State, new: State) -> None:
    """Refuse a status change the state machine forbids (InvalidTransitionError)."""
    if (old, new) not in TRANSITIONS:
        allowed = sorted(str(to) for frm, to in TRANSITIONS if frm is old)
        raise InvalidTransitionError(
            f"sandbox {sandbox_id}: cannot go from {old} to {new}; "
            f"from {old} only {', '.join(allowed) or 'nothing'} is allowed"
        )


def check_add(state: RuleState, sandbox_id: str, name: str) -> None:
    """add: a valid id and name, neither already in the store (containerd's registrar)."""
    validate_id(sandbox_id)
    validate_name(name)
    if sandbox_id in state:
        raise AlreadyExistsError(f"sandbox {sandbox_id} already exists")
    holder = state.name_holder(name)
    if holder is not None:
        raise AlreadyExistsError(
            f"name {name!r} is already reserved (held by sandbox {holder}); cannot add {sandbox_id}"
        )


def _exists(state: RuleState, sandbox_id: str, what: str) -> None:
    if sandbox_id not in state:
        raise NotFoundError(f"{what} of sandbox {sandbox_id}, which does not exist")


def check_delete(state: RuleState, sandbox_id: str) -> None:
    """delete: the sandbox exists (the Store's delete of a missing id writes nothing)."""
    _exists(state, sandbox_id, "delete")


def check_status(state: RuleState, sandbox_id: str, new: State) -> None:
    """update_status: the sandbox exists and the state machine allows the change."""
    _exists(state, sandbox_id, "status update")
    check_transition(sandbox_id, state.state_of(sandbox_id), new)


def netns_may_follow(kind: type[ev.NetNSEvent], owned: NetNSState | None) -> bool:
    """Whether a ``kind`` event may follow a path in ownership state ``owned``."""
    return owned in NETNS_FROM[kind]


def check_netns(state: RuleState, kind: type[ev.NetNSEvent], sandbox_id: str, path: str) -> None:
    """A namespace intent or effect: its path must be in a state ``NETNS_FROM`` allows;
    an assignment names an existing sandbox, a creation the sandbox's latest path."""
    if kind is ev.NetNSAssigned:
        _exists(state, sandbox_id, f"netns {path} assignment")
    owned = state.owned_state(path)
    if not netns_may_follow(kind, owned):
        expected = " or ".join(sorted(_shown(s) for s in NETNS_FROM[kind]))
        raise InvalidTransitionError(
            f"sandbox {sandbox_id}: {kind.TYPE} of netns {path}; "
            f"it was {_shown(owned)}, expected {expected}"
        )
    if kind is ev.NetNSCreated and state.owned_path_of(sandbox_id) != path:
        raise InvalidTransitionError(
            f"sandbox {sandbox_id}: NetNSCreated of netns {path}, which is not its assigned path"
        )


def carry_refusal(state: RuleState, sandbox_id: str, path: str, assigned_seq: int) -> str | None:
    """Why a NetNSOwnershipCarried of ``path`` for ``sandbox_id``, replacing the proof at
    ``assigned_seq``, may not follow now (None: it may). Only the path's owner, in a
    non-terminal state, with the very seq the state records as its proof: a carry can
    move a proof forward, never create one or hand a path to another sandbox."""
    kind = ev.NetNSOwnershipCarried
    owned = state.owned_state(path)
    if not netns_may_follow(kind, owned):
        expected = " or ".join(sorted(_shown(s) for s in NETNS_FROM[kind]))
        return f"it was {_shown(owned)}, expected {expected}"
    owner = state.owner_of(path)
    if owner != sandbox_id:
        return f"it is owned by sandbox {owner}, expected {sandbox_id}"
    recorded = state.assigned_seq(path)
    if recorded != assigned_seq:
        return f"its ownership rests on seq {recorded}, expected {assigned_seq}"
    return None


def check_carry(state: RuleState, sandbox_id: str, path: str, assigned_seq: int) -> None:
    """NetNSOwnershipCarried (``carry_refusal``): InvalidTransitionError naming why not."""
    why = carry_refusal(state, sandbox_id, path, assigned_seq)
    if why is not None:
        raise InvalidTransitionError(
            f"sandbox {sandbox_id}: NetNSOwnershipCarried of netns {path} "
            f"from seq {assigned_seq}; {why}"
        )


def check_netns_dir(state: RuleState, netns_dir: str) -> None:
    """NetNSDirRecorded: a store's netns dir is recorded once and never changed (a
    second record of the same dir, e.g. by two racing first opens, is harmless)."""
    recorded = state.recorded_netns_dir
    if recorded is not None and recorded != netns_dir:
        raise InvalidTransitionError(
            f"netns dir {netns_dir} recorded, but the log already recorded {recorded}; "
            "expected one netns dir per store"
        )


def check(state: RuleState, event: ev.Event) -> None:
    """Whether the store could have written ``event`` in ``state``: the rule of its
    command, by type. Raises the command's refusal; returns None when allowed."""
    if isinstance(event, ev.SandboxAdded):
        check_add(state, event.id, event.metadata.name)
    elif isinstance(event, ev.SandboxDeleted):
        check_delete(state, event.id)
    elif isinstance(event, ev.StatusUpdated):
        check_status(state, event.id, event.status.state)
    elif isinstance(event, ev.NetNSOwnershipCarried):
        check_carry(state, event.id, event.path, event.assigned_seq)
    elif isinstance(event, ev.NetNSEvent):
        check_netns(state, type(event), event.id, event.path)
    elif isinstance(event, ev.NetNSDirRecorded):
        check_netns_dir(state, event.netns_dir)
    # LogRepaired: a person's cut, recorded; nothing the state machine refuses.
