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

Why it looks the way it does (replay speed, ~1M events): state is kept as the
plain dicts the events carried (no attrs object per StatusUpdated), dispatch
is one dict lookup on the event type, and user-facing ``Sandbox`` values are
built lazily on the first read after a change and cached until the next one.

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
from sandbox.config import PodSandboxConfig
from sandbox.errors import StoreError, UnknownEventError, UnsupportedVersionError
from sandbox.events import InvalidEventError
from sandbox.ids import Registrar, TruncIndex
from sandbox.metadata import Metadata
from sandbox.netns import DEFAULT_NETNS_DIR, NetNS
from sandbox.ownership import NetNSState, OwnedNetNS
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status

__all__ = ["SNAPSHOT_FORMAT", "Projection"]

#: Version of the ``to_snapshot`` dict layout.
SNAPSHOT_FORMAT = 1

_ASSIGNED = NetNSState.ASSIGNED
_CREATED = NetNSState.CREATED
_REMOVING = NetNSState.REMOVING
_CLOSED = NetNSState.CLOSED
_STATE_BY_VALUE = {s.value: s for s in NetNSState}
_STATUS_UPDATED = ev.STATUS_UPDATED
_STATUS_V = ev.CURRENT[ev.STATUS_UPDATED]
# Owned states in which a sandbox shows a netns handle.
_HANDLE_STATES = (_ASSIGNED, _CREATED, _CLOSED)


class _Entry:
    """One sandbox's state: the event maps as written, plus lazily built values."""

    __slots__ = ("meta", "metadata", "owned", "sandbox", "status")

    def __init__(self, meta: dict[str, Any], status: dict[str, Any]) -> None:
        self.meta = meta
        self.status = status
        self.owned: tuple[str, ...] = ()  # paths the log assigned to this sandbox, in order
        self.metadata: Metadata | None = None  # built on first read, never changes
        self.sandbox: Sandbox | None = None  # built on first read after a change


def _no_op(seq: int, event: dict[str, Any]) -> None:
    """Events that record something about the log, not the sandboxes, fold to nothing."""


def _bad(seq: int, event: dict[str, Any], what: str) -> InvalidEventError:
    return InvalidEventError(f"event seq {seq} ({event.get('type')!r}): {what}")


class Projection:
    """The fold of the log. Not thread-safe: the store serialises writers and readers."""

    def __init__(self, netns_dir: str = DEFAULT_NETNS_DIR) -> None:
        self.netns_dir = netns_dir
        self.last_seq = 0
        self._sandboxes: dict[str, _Entry] = {}
        self._owned: dict[str, tuple[str, NetNSState]] = {}
        self.index = TruncIndex()
        self.names = Registrar()
        self._dispatch: dict[str, tuple[int, Callable[[int, dict[str, Any]], None]]] = {
            ev.SANDBOX_ADDED: (ev.CURRENT[ev.SANDBOX_ADDED], self._added),
            ev.SANDBOX_DELETED: (ev.CURRENT[ev.SANDBOX_DELETED], self._deleted),
            ev.STATUS_UPDATED: (ev.CURRENT[ev.STATUS_UPDATED], self._status),
            ev.NETNS_ASSIGNED: (ev.CURRENT[ev.NETNS_ASSIGNED], self._assigned),
            ev.NETNS_CREATED: (ev.CURRENT[ev.NETNS_CREATED], self._created),
            ev.NETNS_REMOVE_REQUESTED: (
                ev.CURRENT[ev.NETNS_REMOVE_REQUESTED],
                self._remove_requested,
            ),
            ev.NETNS_REMOVED: (ev.CURRENT[ev.NETNS_REMOVED], self._removed),
            ev.NETNS_CLOSED: (ev.CURRENT[ev.NETNS_CLOSED], self._closed),
            # A repair record changes no sandbox: the cut was made to the bytes.
            ev.LOG_REPAIRED: (ev.CURRENT[ev.LOG_REPAIRED], _no_op),
        }

    # -- the fold ----------------------------------------------------------

    def apply(self, seq: int, event: dict[str, Any]) -> None:
        """Fold one event (upcast first if it is an old version) at ``seq``.

        ``seq`` must be ``last_seq + 1``: a gap or a repeat means the caller
        lost track of the log, which would silently corrupt state.
        """
        if seq != self.last_seq + 1:
            raise StoreError(
                f"projection at seq {self.last_seq} cannot apply seq {seq}; expected "
                f"{self.last_seq + 1} (events must be applied in order, once)"
            )
        try:
            kind = event["type"]
            if kind == _STATUS_UPDATED and event["v"] == _STATUS_V:
                # The hot path (most of a node's history): inlined, no handler call.
                entry = self._sandboxes.get(event["id"])
                if entry is not None:
                    status = event["status"]
                    if type(status) is not dict:
                        raise _bad(seq, event, "status must be a map")
                    entry.status = status
                    entry.sandbox = None
            else:
                version, handler = self._dispatch[kind]
                if event["v"] != version:
                    event = ev.upcast(event)
                handler(seq, event)
        except (KeyError, TypeError, AttributeError) as exc:
            if not isinstance(event, dict):
                raise InvalidEventError(
                    f"event seq {seq}: expected a map, got {type(event).__name__}"
                ) from None
            try:
                # An unknown type or a missing/newer version is reported as such.
                ev.upcast(event)
            except (UnknownEventError, UnsupportedVersionError) as why:
                raise type(why)(f"event seq {seq}: {why}") from None
            raise _bad(seq, event, f"malformed: {exc!r}") from None
        except (UnknownEventError, UnsupportedVersionError) as why:
            raise type(why)(f"event seq {seq}: {why}") from None
        self.last_seq = seq

    def _added(self, seq: int, event: dict[str, Any]) -> None:
        sandbox_id = event["id"]
        meta = event["metadata"]
        status = event["status"]
        if type(sandbox_id) is not str or type(meta) is not dict or type(status) is not dict:
            raise _bad(seq, event, "id must be a str, metadata and status maps")
        name = meta["name"]
        if type(name) is not str or meta["id"] != sandbox_id:
            raise _bad(seq, event, "metadata.name must be a str and metadata.id the event id")
        if sandbox_id in self._sandboxes or name in self.names:
            return  # refused at command time; a log with it anyway keeps the first
        self._sandboxes[sandbox_id] = _Entry(meta, status)
        self.index.add(sandbox_id)
        self.names.reserve(name, sandbox_id)

    def _deleted(self, seq: int, event: dict[str, Any]) -> None:
        sandbox_id = event["id"]
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

    def _status(self, seq: int, event: dict[str, Any]) -> None:
        entry = self._sandboxes.get(event["id"])
        if entry is None:
            return
        status = event["status"]
        if type(status) is not dict:
            raise _bad(seq, event, "status must be a map")
        entry.status = status
        entry.sandbox = None

    def _assigned(self, seq: int, event: dict[str, Any]) -> None:
        sandbox_id = event["id"]
        path = event["path"]
        if type(path) is not str or type(sandbox_id) is not str:
            raise _bad(seq, event, "id and path must be strs")
        if path in self._owned:
            return  # already owned (by this or another sandbox): the first claim stands
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

    def _created(self, seq: int, event: dict[str, Any]) -> None:
        path = event["path"]
        rec = self._owned.get(path)
        if rec is not None and rec[1] is _ASSIGNED:
            self._owned[path] = (rec[0], _CREATED)
            self._touch(rec[0])

    def _remove_requested(self, seq: int, event: dict[str, Any]) -> None:
        path = event["path"]
        rec = self._owned.get(path)
        if rec is not None and (rec[1] is _ASSIGNED or rec[1] is _CREATED):
            self._owned[path] = (rec[0], _REMOVING)
            self._touch(rec[0])

    def _removed(self, seq: int, event: dict[str, Any]) -> None:
        rec = self._owned.pop(event["path"], None)
        if rec is not None:
            self._touch(rec[0])

    def _closed(self, seq: int, event: dict[str, Any]) -> None:
        path = event["path"]
        rec = self._owned.get(path)
        if rec is None or rec[1] is _CLOSED:
            return
        if rec[1] is _REMOVING or rec[0] not in self._sandboxes:
            del self._owned[path]  # it was on its way out anyway: gone is done
        else:
            self._owned[path] = (rec[0], _CLOSED)
        self._touch(rec[0])

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
        if entry is not None and entry.metadata is None and entry.meta["name"] == metadata.name:
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

    def status_of(self, sandbox_id: str) -> Status:
        entry = self._sandboxes[sandbox_id]
        sb = entry.sandbox
        return sb.status if sb is not None else _status(entry.status)

    def _build(self, sandbox_id: str, entry: _Entry) -> Sandbox:
        metadata = entry.metadata
        if metadata is None:
            meta = entry.meta
            metadata = entry.metadata = Metadata(
                sandbox_id,
                meta["name"],
                PodSandboxConfig.from_go_json(meta.get("config") or {}),
                meta.get("netns_path") or "",
            )
        return Sandbox(metadata, _status(entry.status), self._netns_handle(entry, metadata))

    def _netns_handle(self, entry: _Entry, metadata: Metadata) -> NetNS | None:
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

    def owned_path_of(self, sandbox_id: str) -> str | None:
        """The latest path the log assigned to this sandbox (None if none)."""
        entry = self._sandboxes.get(sandbox_id)
        if entry is None or not entry.owned:
            return None
        return entry.owned[-1]

    # -- snapshots and equality ----------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """A msgpack-ready dict; ``from_snapshot(to_snapshot())`` equals ``self``.

        Status maps are written in a fixed field order whatever schema
        version the events had, so two projections of one log encode to the
        same bytes.
        """
        sandboxes = []
        for sandbox_id, entry in self._sandboxes.items():
            meta = entry.meta
            st = entry.status
            sandboxes.append(
                [
                    sandbox_id,
                    meta["name"],
                    meta.get("config") or {},
                    meta.get("netns_path") or "",
                    [
                        st["state"],
                        st["pid"],
                        st["created_at"],
                        st.get("exited_at"),
                        st.get("exit_status"),
                    ],
                    list(entry.owned),
                ]
            )
        owned = [[path, sid, state.value] for path, (sid, state) in self._owned.items()]
        return {
            "format": SNAPSHOT_FORMAT,
            "last_seq": self.last_seq,
            "sandboxes": sandboxes,
            "owned": owned,
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], netns_dir: str = DEFAULT_NETNS_DIR) -> Projection:
        """Rebuild from ``to_snapshot()`` output. A wrong shape raises ValueError."""
        try:
            if data["format"] != SNAPSHOT_FORMAT:
                raise ValueError(f"snapshot format {data['format']!r}; expected {SNAPSHOT_FORMAT}")
            proj = cls(netns_dir)
            last_seq = data["last_seq"]
            if type(last_seq) is not int or last_seq < 0:
                raise ValueError(f"bad last_seq {last_seq!r}")
            proj.last_seq = last_seq
            sandboxes = proj._sandboxes
            index = proj.index
            names = proj.names
            for sandbox_id, name, config, netns_path, st, owned in data["sandboxes"]:
                if type(sandbox_id) is not str or type(name) is not str:
                    raise ValueError(f"bad sandbox entry {sandbox_id!r}")
                if sandbox_id in sandboxes or name in names:
                    raise ValueError(f"duplicate sandbox {sandbox_id!r} / name {name!r}")
                state, pid, created_at, exited_at, exit_status = st
                entry = _Entry(
                    {"id": sandbox_id, "name": name, "config": config, "netns_path": netns_path},
                    {
                        "state": state,
                        "pid": pid,
                        "created_at": created_at,
                        "exited_at": exited_at,
                        "exit_status": exit_status,
                    },
                )
                entry.owned = tuple(owned)
                sandboxes[sandbox_id] = entry
                index.add(sandbox_id)
                names.reserve(name, sandbox_id)
            for path, sid, state_value in data["owned"]:
                if type(path) is not str or type(sid) is not str:
                    raise ValueError(f"bad owned entry {path!r}")
                proj._owned[path] = (sid, _STATE_BY_VALUE[state_value])
        except (KeyError, TypeError, ValueError, StoreError) as exc:
            raise ValueError(f"not a valid projection snapshot: {exc!r}") from None
        return proj

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


def _status(data: dict[str, Any]) -> Status:
    return Status(
        State(data["state"]),
        data["pid"],
        data["created_at"],
        data.get("exited_at"),
        data.get("exit_status"),
    )
