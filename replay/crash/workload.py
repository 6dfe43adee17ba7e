"""The seeded random workload a crash-test child runs against the store.

Why a generator with its own model: the parent must know, for every command
the child acknowledged, what that command was and what the contract says it
should have done - without trusting the child or the store to tell it. Both
sides build the same ``Workload(seed)`` and walk it in step: the child
executes op ``i``, the parent looks op ``i`` up to judge the events the child
reports (and the one op left in flight when the child died).

The generator keeps a small model of the store it expects (live sandboxes,
their states, who holds a namespace, reserved names) so that most commands
are meaningful (deletes hit live sandboxes, status changes follow the state
machine), and a few are deliberately refused (duplicate id or name, an
illegal transition, deleting a missing id) because "refused commands write
nothing" is part of what a crash must not break.

Nothing here reads the clock, the kernel or the environment: the same seed
always yields the same ops, in the same order, with the same ids.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import attrs

#: Op kinds, in the vocabulary of the Store API.
ADD = "add"
DELETE = "delete"
UPDATE_STATUS = "update_status"
REMOVE_NETNS = "remove_netns"
SNAPSHOT = "snapshot"
RECONCILE = "reconcile"
#: An out-of-band ``umount`` of a sandbox's live namespace (cri #950): writes
#: nothing itself; the next full reconcile must record it as closed.
EXTERNAL_UMOUNT = "external_umount"
KINDS = (ADD, DELETE, UPDATE_STATUS, REMOVE_NETNS, SNAPSHOT, RECONCILE, EXTERNAL_UMOUNT)

#: What an op is expected to do: succeed and write events, be refused with an
#: error (and write nothing), or be a documented no-op (and write nothing).
OK = "ok"
NOOP = "noop"
ERR_EXISTS = "AlreadyExistsError"
ERR_TRANSITION = "InvalidTransitionError"

READY = "READY"
NOTREADY = "NOTREADY"
UNKNOWN = "UNKNOWN"
STATES = (READY, NOTREADY, UNKNOWN)

#: containerd's state machine (DESIGN.md): old state -> states it may move to.
LEGAL: dict[str, tuple[str, ...]] = {
    READY: (READY, NOTREADY, UNKNOWN),
    UNKNOWN: (UNKNOWN, NOTREADY),
    NOTREADY: (NOTREADY,),
}

#: Deterministic base for the timestamps the workload puts in statuses.
BASE_TIME_NS = 1_700_000_000_000_000_000

#: The model keeps at most this many live sandboxes (more -> prefer delete),
#: so a run stays cheap while still having something to delete.
MAX_LIVE = 10

_WEIGHTS: tuple[tuple[str, int], ...] = (
    (ADD, 30),
    (DELETE, 14),
    (UPDATE_STATUS, 26),
    (REMOVE_NETNS, 9),
    (SNAPSHOT, 7),
    (RECONCILE, 6),
    (EXTERNAL_UMOUNT, 5),
)


@attrs.frozen
class Op:
    """One store command of the workload and what the contract says it does."""

    index: int
    kind: str
    #: The id passed to the command (a unique prefix when ``by_prefix``).
    target: str = ""
    #: The full id of the sandbox the command concerns ("" for store-wide ops).
    sandbox_id: str = ""
    name: str = ""
    create_netns: bool = False
    #: add: initial state; update_status: the new state.
    state: str = ""
    pid: int = 0
    exit_status: int | None = None
    #: OK, NOOP or the name of the error class the command must raise.
    expect: str = OK
    #: Whether the sandbox held (or, for add, gets) a namespace before the op.
    had_netns: bool = False
    #: external_umount: every sandbox whose namespace is unmounted (the first
    #: is ``sandbox_id``); several at once so a later reconcile has several
    #: actions (and reaches the ``reconcile.mid`` crash point).
    targets: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for reports: enough to recognise the command."""
        parts = [self.kind]
        if self.target:
            parts.append(self.target[:12])
        if self.kind == ADD:
            parts.append(f"name={self.name} state={self.state} netns={self.create_netns}")
        elif self.kind == EXTERNAL_UMOUNT and len(self.targets) > 1:
            parts.append(" ".join(t[:12] for t in self.targets[1:]))
        elif self.kind == UPDATE_STATUS:
            parts.append(f"-> {self.state}")
        if self.expect != OK:
            parts.append(f"(expect {self.expect})")
        return " ".join(parts)


@attrs.define
class _Model:
    """What the generator believes the store holds after the ops so far."""

    #: id -> [name, state, has_netns]
    live: dict[str, list[object]] = attrs.field(factory=dict)
    names: dict[str, str] = attrs.field(factory=dict)
    ever: list[str] = attrs.field(factory=list)


@attrs.frozen
class Workload:
    """An endless, seeded stream of store commands (``ops()``)."""

    seed: int

    def ops(self) -> Iterator[Op]:
        """Yield ops forever; ``itertools.islice`` bounds a run."""
        rng = random.Random(f"workload:{self.seed}")
        model = _Model()
        kinds = [k for k, _ in _WEIGHTS]
        weights = [w for _, w in _WEIGHTS]
        index = 0
        counter = 0
        while True:
            kind = rng.choices(kinds, weights)[0]
            if not model.live and kind in (DELETE, UPDATE_STATUS, REMOVE_NETNS):
                kind = ADD
            with_netns = sorted(sid for sid, e in model.live.items() if e[2])
            if kind == EXTERNAL_UMOUNT and not with_netns:
                kind = RECONCILE
            if len(model.live) >= MAX_LIVE and kind == ADD:
                kind = DELETE
            if kind == ADD:
                counter += 1
                op = self._add(rng, model, index, counter)
            elif kind == DELETE:
                op = self._delete(rng, model, index)
            elif kind == UPDATE_STATUS:
                op = self._update(rng, model, index)
            elif kind == REMOVE_NETNS:
                sid = rng.choice(sorted(model.live))
                had = bool(model.live[sid][2])
                model.live[sid][2] = False
                op = Op(index, REMOVE_NETNS, target=sid, sandbox_id=sid, had_netns=had)
            elif kind == EXTERNAL_UMOUNT:
                count = min(len(with_netns), rng.choice((1, 2, 2, 3)))
                targets = tuple(rng.sample(with_netns, count))
                for sid in targets:
                    model.live[sid][2] = False
                op = Op(
                    index,
                    EXTERNAL_UMOUNT,
                    target=targets[0],
                    sandbox_id=targets[0],
                    had_netns=True,
                    targets=targets,
                )
            else:
                op = Op(index, kind)
            yield op
            index += 1

    @staticmethod
    def _new_id(rng: random.Random) -> str:
        return f"{rng.getrandbits(256):064x}"

    def _add(self, rng: random.Random, model: _Model, index: int, counter: int) -> Op:
        sid = self._new_id(rng)
        uid = f"{rng.getrandbits(64):016x}"
        name = f"pod{counter}_crash_{uid}_0"
        state = rng.choices(STATES, (8, 1, 1))[0]
        netns = rng.random() < 0.6
        pid = rng.randrange(100, 1 << 22) if state == READY else 0
        dup = rng.random() < 0.06 and model.live
        if dup:
            other = rng.choice(sorted(model.live))
            if rng.random() < 0.5:
                sid = other  # same id, new name
            else:
                name = str(model.live[other][0])  # new id, same name
            expect, had_netns = ERR_EXISTS, False
        else:
            model.live[sid] = [name, state, netns]
            model.names[name] = sid
            model.ever.append(sid)
            expect, had_netns = OK, netns
        return Op(
            index,
            ADD,
            target=sid,
            sandbox_id=sid,
            name=name,
            create_netns=netns,
            state=state,
            pid=pid,
            expect=expect,
            had_netns=had_netns,
        )

    def _delete(self, rng: random.Random, model: _Model, index: int) -> Op:
        if rng.random() < 0.1:
            missing = self._new_id(rng)
            return Op(index, DELETE, target=missing, sandbox_id=missing, expect=NOOP)
        sid = rng.choice(sorted(model.live))
        target = sid
        if rng.random() < 0.3:
            prefix = sid[:12]
            if sum(1 for other in model.live if other.startswith(prefix)) == 1:
                target = prefix
        name, _, had = model.live.pop(sid)
        del model.names[str(name)]
        return Op(index, DELETE, target=target, sandbox_id=sid, had_netns=bool(had))

    def _update(self, rng: random.Random, model: _Model, index: int) -> Op:
        sid = rng.choice(sorted(model.live))
        entry = model.live[sid]
        old = str(entry[1])
        illegal = [s for s in STATES if s not in LEGAL[old]]
        if illegal and rng.random() < 0.1:
            return Op(
                index,
                UPDATE_STATUS,
                target=sid,
                sandbox_id=sid,
                state=rng.choice(illegal),
                expect=ERR_TRANSITION,
                had_netns=bool(entry[2]),
            )
        new = rng.choice(LEGAL[old])
        pid = rng.randrange(100, 1 << 22) if new == READY else 0
        exit_status = rng.randrange(0, 256) if new == NOTREADY else None
        entry[1] = new
        return Op(
            index,
            UPDATE_STATUS,
            target=sid,
            sandbox_id=sid,
            state=new,
            pid=pid,
            exit_status=exit_status,
            had_netns=bool(entry[2]),
        )


def take(seed: int, count: int) -> list[Op]:
    """The first ``count`` ops of a seed's workload (tests, reports)."""
    out: list[Op] = []
    for op in Workload(seed).ops():
        if len(out) >= count:
            break
        out.append(op)
    return out
