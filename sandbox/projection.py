"""The projection: a pure fold of the event log into the store's state.

``Projection.apply(seq, event)`` is the only way state changes. It never
reads the clock, the kernel or a file, and it never re-validates a
transition (the command side did that before the event was written; ``verify``
re-checks history). The same log therefore always yields the same
projection - ``to_snapshot()`` of two projections of one log are equal, and
their msgpack encodings are identical bytes.

Apply is also *total*: an event that makes no sense in the current state (a
status update of an unknown sandbox, a second add of an id, an effect on a
path the log does not own) is ignored, deterministically, rather than
aborting replay - one odd record must not make a node's sandboxes
unrecoverable (cri #1014). An event whose *shape* is wrong (a field
missing or of the wrong type) raises ``InvalidEventError`` naming its seq.

Events arrive typed (sandbox/events.py decodes and upcasts a payload once;
``apply`` accepts either) and each class has one handler. The namespace
ownership steps it folds come from the rule book (sandbox/rules.py), so the
projection, the store and ``verify`` read one table. For replay speed state
is kept as plain maps (the event's metadata map, its status as a map), and
user-facing ``Sandbox`` values are built lazily on the first read after a
change and cached until the next one.

What it holds:

* sandboxes in add order (dict insertion order; a delete removes, a re-add
  appends), each with its metadata map, status map and owned netns paths;
* the id ``TruncIndex`` and the name ``Registrar`` (derived from the above);
* owned network namespaces: path -> (sandbox id, ``NetNSState``) for every
  path the log assigned and has not finished with (see sandbox/ownership.py):
  REMOVED entries are dropped, CLOSED ones are kept while their sandbox
  exists (its ``netns`` handle then reports closed) and dropped with it;
* ``last_seq``: the seq of the last applied event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sandbox import events as ev
from sandbox import rules
from sandbox.errors import StoreError, UnknownEventError, UnsupportedVersionError
from sandbox.events import InvalidEventError
from sandbox.ids import Registrar, TruncIndex
from sandbox.metadata import Metadata
from sandbox.netns import DEFAULT_NETNS_DIR, NetNS
from sandbox.ownership import NetNSState, OwnedNetNS
from sandbox.projection_entry import (
    SANDBOX_COLUMNS,
    Entry,
    Stored,
    check_all,
    check_stored,
    column_entries,
    metadata_of,
    stored_entries,
)
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status

__all__ = [
    "SANDBOX_COLUMNS",
    "SNAPSHOT_CONFIG_TYPES",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_FORMATS",
    "Projection",
]

#: Version of the ``to_snapshot`` dict layout. 2: each owned entry carries the seq of
#: the NetNSAssigned record that made it (so a removal can be checked against the log).
#: 3: each sandbox's config is its own msgpack bytes (a bin), so that loading a snapshot
#: builds no config map (sandbox/projection_entry.py).
#: 4: the sandboxes laid out by column (``SANDBOX_COLUMNS``), not as rows, so that a
#: load decodes each column into one list and builds no row.
SNAPSHOT_FORMAT = 4
#: The layouts ``from_snapshot`` reads, each with the type a sandbox's config has in
#: it (format 1 lacks the assigning seqs: never read).
SNAPSHOT_CONFIG_TYPES: dict[int, type[Any]] = {2: dict, 3: bytes, 4: bytes}
SNAPSHOT_FORMATS = tuple(SNAPSHOT_CONFIG_TYPES)

_ASSIGNED = NetNSState.ASSIGNED
_CREATED = NetNSState.CREATED
_REMOVING = NetNSState.REMOVING
_CLOSED = NetNSState.CLOSED
_STATE_BY_VALUE = {s.value: s for s in NetNSState}
# Owned states in which a sandbox shows a netns handle.
_HANDLE_STATES = (_ASSIGNED, _CREATED, _CLOSED)


def _no_op(seq: int, event: ev.Event) -> None:
    """Events that record something about the log, not the sandboxes, fold to nothing."""


class Projection:
    """The fold of the log. Not thread-safe: the store serialises writers and readers."""

    def __init__(self, netns_dir: str = DEFAULT_NETNS_DIR) -> None:
        self.netns_dir = netns_dir
        #: The netns dir the log recorded (NetNSDirRecorded; not in snapshots: the
        #: store reads it from the log's first records, sandbox/netnsdir.py).
        self.recorded_netns_dir: str | None = None
        self.last_seq = 0
        self._sandboxes: dict[str, Entry] = {}
        self._owned: dict[str, tuple[str, NetNSState]] = {}
        # path -> seq of the record behind its ``_owned`` entry (its NetNSAssigned or
        # the latest NetNSOwnershipCarried of it).
        self._assigned_at: dict[str, int] = {}
        self.index = TruncIndex()
        self.names = Registrar()
        # One handler per event class; each takes the typed event it is keyed by.
        self._dispatch: dict[type[ev.Event], Callable[[int, Any], None]] = {
            ev.SandboxAdded: self._added,
            ev.SandboxDeleted: self._deleted,
            ev.StatusUpdated: self._status,
            ev.NetNSAssigned: self._assigned,
            ev.NetNSCreated: self._created,
            ev.NetNSRemoveRequested: self._remove_requested,
            ev.NetNSRemoved: self._removed,
            ev.NetNSClosed: self._closed,
            ev.NetNSCreateFailed: self._create_failed,
            ev.NetNSOwnershipCarried: self._carried,
            ev.NetNSDirRecorded: self._dir_recorded,
            # A repair record changes no sandbox: the cut was made to the bytes.
            ev.LogRepaired: _no_op,
        }

    # -- the fold ----------------------------------------------------------

    def apply(self, seq: int, event: ev.Event | dict[str, Any]) -> None:
        """Fold one event at ``seq``: a typed event, or a log payload map (decoded - and
        upcast - here, once; ``UnknownEventError`` / ``UnsupportedVersionError`` /
        ``InvalidEventError`` name the seq).

        ``seq`` must be ``last_seq + 1``: a gap or a repeat means the caller
        lost track of the log, which would silently corrupt state.
        """
        if seq != self.last_seq + 1:
            raise StoreError(
                f"projection at seq {self.last_seq} cannot apply seq {seq}; expected "
                f"{self.last_seq + 1} (events must be applied in order, once)"
            )
        if not isinstance(event, ev.Event):
            try:
                event = ev.decode(event)
            except (UnknownEventError, UnsupportedVersionError, InvalidEventError) as why:
                raise type(why)(f"event seq {seq}: {why}") from None
        self._dispatch[type(event)](seq, event)
        self.last_seq = seq

    def _added(self, seq: int, event: ev.SandboxAdded) -> None:
        sandbox_id = event.id
        name = event.metadata.name
        if sandbox_id in self._sandboxes or name in self.names:
            return  # refused at command time; a log with it anyway keeps the first
        meta = event.metadata
        self._sandboxes[sandbox_id] = Entry(name, meta.netns_path, meta.config, None, event.status)
        self.index.add(sandbox_id)
        self.names.reserve(name, sandbox_id)

    def _deleted(self, seq: int, event: ev.SandboxDeleted) -> None:
        sandbox_id = event.id
        entry = self._sandboxes.pop(sandbox_id, None)
        if entry is None:
            return
        self.index.delete(sandbox_id)
        self.names.release_by_id(sandbox_id)
        owned = self._owned
        for path in entry.owned:
            rec = owned.get(path)
            if rec is None or rec[0] != sandbox_id:
                continue
            state = rec[1]
            if state is _ASSIGNED or state is _CREATED:
                owned[path] = (sandbox_id, _REMOVING)
            elif state is _CLOSED:
                del owned[path]  # terminal, and nobody shows it any more
                self._assigned_at.pop(path, None)

    def _status(self, seq: int, event: ev.StatusUpdated) -> None:
        entry = self._sandboxes.get(event.id)
        if entry is None:
            return
        entry.status = event.status
        entry.sandbox = None

    def _assigned(self, seq: int, event: ev.NetNSAssigned) -> None:
        sandbox_id = event.id
        path = event.path
        if not rules.netns_may_follow(ev.NetNSAssigned, self.owned_state(path)):
            return  # already owned (by this or another sandbox): the first claim stands
        self._assigned_at[path] = seq
        entry = self._sandboxes.get(sandbox_id)
        if entry is None:
            # Owned, but its sandbox is gone: the reconciler cleans it up.
            self._owned[path] = (sandbox_id, _REMOVING)
            return
        self._owned[path] = (sandbox_id, _ASSIGNED)
        entry.owned += (path,)
        entry.sandbox = None

    def _touch(self, sandbox_id: str) -> None:
        entry = self._sandboxes.get(sandbox_id)
        if entry is not None:
            entry.sandbox = None

    def _created(self, seq: int, event: ev.NetNSCreated) -> None:
        path = event.path
        rec = self._owned.get(path)
        if rec is not None and rules.netns_may_follow(ev.NetNSCreated, rec[1]):
            self._owned[path] = (rec[0], _CREATED)
            self._touch(rec[0])

    def _remove_requested(self, seq: int, event: ev.NetNSRemoveRequested) -> None:
        path = event.path
        rec = self._owned.get(path)
        if rec is not None and rules.netns_may_follow(ev.NetNSRemoveRequested, rec[1]):
            self._owned[path] = (rec[0], _REMOVING)
            self._touch(rec[0])

    def _removed(self, seq: int, event: ev.NetNSRemoved) -> None:
        rec = self._owned.pop(event.path, None)
        if rec is not None:
            self._assigned_at.pop(event.path, None)
            self._touch(rec[0])

    def _closed(self, seq: int, event: ev.NetNSClosed) -> None:
        path = event.path
        rec = self._owned.get(path)
        if rec is None or rec[1] is _CLOSED:
            return
        if rec[1] is _REMOVING or rec[0] not in self._sandboxes:
            del self._owned[path]  # it was on its way out anyway: gone is done
            self._assigned_at.pop(path, None)
        else:
            self._owned[path] = (rec[0], _CLOSED)
        self._touch(rec[0])

    def _create_failed(self, seq: int, event: ev.NetNSCreateFailed) -> None:
        # Terminal: a failed creation leaves nothing of ours at the path (a placeholder
        # it made is unlinked again; anything else there was never ours to touch).
        rec = self._owned.get(event.path)
        if rec is not None and rules.netns_may_follow(ev.NetNSCreateFailed, rec[1]):
            del self._owned[event.path]
            self._assigned_at.pop(event.path, None)
            self._touch(rec[0])

    def _carried(self, seq: int, event: ev.NetNSOwnershipCarried) -> None:
        # The proof moves to this record (compaction is about to remove the old one);
        # a carry the rules refuse proves nothing and changes nothing (verify flags it).
        if rules.carry_refusal(self, event.id, event.path, event.assigned_seq) is None:
            self._assigned_at[event.path] = seq

    def _dir_recorded(self, seq: int, event: ev.NetNSDirRecorded) -> None:
        if self.recorded_netns_dir is None:  # the first record stands
            self.recorded_netns_dir = event.netns_dir

    # -- reads -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sandboxes)

    def __contains__(self, sandbox_id: object) -> bool:
        return sandbox_id in self._sandboxes

    def ids(self) -> list[str]:
        """All ids, in add order."""
        return list(self._sandboxes)

    def resolve(self, id_or_prefix: str) -> str:
        """Full id of an exact id or unique prefix (NotFoundError / AmbiguousPrefixError /
        InvalidIDError)."""
        if id_or_prefix in self._sandboxes:
            return id_or_prefix
        return self.index.get(id_or_prefix)

    def name_holder(self, name: str) -> str | None:
        return self.names.get_id(name)

    def sandbox(self, sandbox_id: str) -> Sandbox | None:
        """The Sandbox for an exact id (built once per change, then cached)."""
        entry = self._sandboxes.get(sandbox_id)
        if entry is None:
            return None
        sb = entry.sandbox
        if sb is None:
            sb = entry.sandbox = self._build(sandbox_id, entry)
        return sb

    def prime(self, sandbox_id: str, metadata: Metadata) -> None:
        """Cache the Metadata object the command side already has for a sandbox it just
        added (it equals what decoding the event's map would build), sparing the first
        read a config decode. Changes nothing observable."""
        entry = self._sandboxes.get(sandbox_id)
        # Only plain str fields: a str subclass (a str Enum) compares equal to
        # the decoded text but is not what a replay returns.
        if type(metadata.name) is not str or type(metadata.netns_path) is not str:
            return
        if entry is not None and entry.metadata is None and entry.name == metadata.name:
            entry.metadata = metadata

    def sandboxes(self) -> list[Sandbox]:
        """Every Sandbox, in add order."""
        out: list[Sandbox] = []
        for sandbox_id, entry in self._sandboxes.items():
            sb = entry.sandbox
            if sb is None:
                sb = entry.sandbox = self._build(sandbox_id, entry)
            out.append(sb)
        return out

    def state_of(self, sandbox_id: str) -> State:
        """The state of an exact id (KeyError if missing): what the rules check against."""
        return self._sandboxes[sandbox_id].current_status().state

    def status_of(self, sandbox_id: str) -> Status:
        return self._sandboxes[sandbox_id].current_status()

    def _build(self, sandbox_id: str, entry: Entry) -> Sandbox:
        metadata = entry.metadata
        if metadata is None:
            metadata = entry.metadata = metadata_of(sandbox_id, entry)
        return Sandbox(metadata, entry.current_status(), self._netns_handle(entry, metadata))

    def _netns_handle(self, entry: Entry, metadata: Metadata) -> NetNS | None:
        if entry.owned:
            path = entry.owned[-1]
            rec = self._owned.get(path)
            if rec is not None and rec[1] in _HANDLE_STATES:
                return NetNS(path, self.netns_dir)
            return None  # the store's own namespace, removed or being removed
        if metadata.netns_path:
            return NetNS(metadata.netns_path, self.netns_dir)  # the caller's: never removed
        return None

    # -- owned namespaces --------------------------------------------------

    def owned(self, sandbox_id: str | None = None) -> list[OwnedNetNS]:
        """Owned entries (non-terminal and CLOSED) in assignment order, optionally of one
        sandbox."""
        return [
            OwnedNetNS(sid, path, state)
            for path, (sid, state) in self._owned.items()
            if sandbox_id is None or sid == sandbox_id
        ]

    def pending(self, sandbox_id: str | None = None) -> list[OwnedNetNS]:
        """The non-terminal owned entries: what the reconciler works on."""
        return [o for o in self.owned(sandbox_id) if not o.state.terminal]

    def owned_state(self, path: str) -> NetNSState | None:
        rec = self._owned.get(path)
        return rec[1] if rec is not None else None

    def owner_of(self, path: str) -> str | None:
        """The sandbox id that owns ``path`` (None: not owned)."""
        rec = self._owned.get(path)
        return rec[0] if rec is not None else None

    def assigned_seq(self, path: str) -> int | None:
        """The seq of the record that proves ``path`` owned: its NetNSAssigned, or the
        NetNSOwnershipCarried that carried the proof past a compaction (None: not owned)."""
        return self._assigned_at.get(path) if path in self._owned else None

    def owned_path_of(self, sandbox_id: str) -> str | None:
        """The latest path the log assigned to this sandbox (None if none)."""
        entry = self._sandboxes.get(sandbox_id)
        if entry is None or not entry.owned:
            return None
        return entry.owned[-1]

    # -- snapshots and equality ----------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """A msgpack-ready dict (format ``SNAPSHOT_FORMAT``); ``from_snapshot(to_snapshot())``
        equals ``self``.

        Each config is its msgpack bytes: the ones a snapshot gave, else the event's
        map encoded once (the bytes then replace the map in memory). Status maps are
        written in a fixed field order whatever schema version the events had, so two
        projections of one log encode to the same bytes.
        """
        entries = list(self._sandboxes.values())
        statuses = [entry.status_values() for entry in entries]
        status_columns = [list(c) for c in zip(*statuses, strict=True)] or [[] for _ in range(5)]
        columns = [
            list(self._sandboxes),
            [entry.name for entry in entries],
            [entry.config_bytes() for entry in entries],
            [entry.netns_path for entry in entries],
            *status_columns,
            [list(entry.owned) for entry in entries],
        ]
        at = self._assigned_at
        owned = [[path, sid, state.value, at[path]] for path, (sid, state) in self._owned.items()]
        body: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "last_seq": self.last_seq,
            **dict(zip(SANDBOX_COLUMNS, columns, strict=True)),
            "owned": owned,
        }
        if self.recorded_netns_dir is not None:
            # The first record of the log says it; a compacted log no longer has it.
            body["netns_dir"] = self.recorded_netns_dir
        return body

    @classmethod
    def from_snapshot(
        cls, data: dict[str, Any], netns_dir: str = DEFAULT_NETNS_DIR, *, check: bool = False
    ) -> Projection:
        """Rebuild from ``to_snapshot()`` output, of any format in ``SNAPSHOT_FORMATS``.
        A wrong shape raises ValueError; the content is checked by ``check_sandboxes``,
        or here with ``check`` (raising as it does; from the rows' columns, which a
        snapshot's load of 100,000 sandboxes then need not gather again)."""
        try:
            fmt = data["format"]
            if type(fmt) is not int or fmt not in SNAPSHOT_FORMATS:
                raise ValueError(f"snapshot format {fmt!r}; expected one of {SNAPSHOT_FORMATS}")
            proj = cls(netns_dir)
            last_seq = data["last_seq"]
            if type(last_seq) is not int or last_seq < 0:
                raise ValueError(f"bad last_seq {last_seq!r}")
            proj.last_seq = last_seq
            if fmt >= 4:
                stored = proj._add_stored(column_entries([data[k] for k in SANDBOX_COLUMNS]))
            else:
                stored = proj._stored_sandboxes(data["sandboxes"], SNAPSHOT_CONFIG_TYPES[fmt])
            for path, sid, state_value, assigned_seq in data["owned"]:
                if type(path) is not str or type(sid) is not str or type(assigned_seq) is not int:
                    raise ValueError(f"bad owned entry {path!r}")
                proj._owned[path] = (sid, _STATE_BY_VALUE[state_value])
                proj._assigned_at[path] = assigned_seq
            recorded = data.get("netns_dir")
            if recorded is not None and type(recorded) is not str:
                raise ValueError(f"bad netns_dir {recorded!r}")
            proj.recorded_netns_dir = recorded
        except (KeyError, TypeError, ValueError, StoreError) as exc:
            raise ValueError(f"not a valid projection snapshot: {exc!r}") from None
        if check:
            check_stored(stored, proj._sandboxes)
        return proj

    def _stored_sandboxes(self, rows: list[Any], config_type: type[Any]) -> Stored:
        """Add a snapshot's sandbox rows, whose configs are of ``config_type``: in bulk
        (a snapshot may hold 100,000); ids, names and paths are checked by
        ``check_sandboxes``, a name taken twice is AlreadyExistsError here."""
        return self._add_stored(stored_entries(rows, config_type))

    def _add_stored(self, stored: Stored) -> Stored:
        """Add the sandboxes ``stored`` holds (a repeated id: ValueError)."""
        ids, names = stored.ids, stored.names
        sandboxes = self._sandboxes
        sandboxes.update(zip(ids, stored.entries, strict=True))
        if len(sandboxes) != len(ids):  # the first repeated id, for the message
            seen: set[str] = set()
            for sandbox_id in ids:
                if sandbox_id in seen:
                    raise ValueError(f"duplicate sandbox {sandbox_id!r}")
                seen.add(sandbox_id)
        self.names.reserve_many(names, ids)
        self.index.add_many(ids)
        return stored

    def check_sandboxes(self) -> None:
        """Check what every sandbox's first read would check, without building them.

        A snapshot skips the fold, so its content must validate as events do:
        ids, names, netns paths and configs, by the checks building its
        ``Metadata`` makes (``sandbox.projection_entry.check_all``: a config in
        canonical form is proven valid in bulk and decoded on the first read;
        any other is decoded now, and its ``Metadata`` kept). Statuses were
        checked when ``from_snapshot`` read them. ``Status``, ``Sandbox`` and ``NetNS``
        values stay lazy. Raises what building the Sandbox would raise.
        """
        check_all(self._sandboxes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Projection):
            return NotImplemented
        return self.to_snapshot() == other.to_snapshot()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Projection(last_seq={self.last_seq}, sandboxes={len(self._sandboxes)}, "
            f"owned={len(self._owned)})"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._sandboxes))
