"""Typed events: decoded (and upcast) once from the log's payload map, written back with
``to_payload()``. This docstring is the event table; docs/ARCHITECTURE.md points here.

Every change to the store is one msgpack map::

    {"type": str, "v": int, "id": sandbox id,
     "env": {"time": ns, "host": str, "pid": int, "uid": int, "actor": str | None},
     ...type fields}

    class                 v  type fields (in payload order)
    SandboxAdded          1  metadata {"id","name","config","netns_path"}, status {...}
    SandboxDeleted        1
    StatusUpdated         2  status {"state","pid","created_at","exited_at","exit_status"}
    NetNSAssigned         1  path          intent: the store owns this path from now on
    NetNSCreated          1  path          effect: the namespace is mounted there
    NetNSRemoveRequested  1  path          intent to remove (also implied by SandboxDeleted)
    NetNSRemoved          1  path          effect: unmounted and unlinked
    NetNSClosed           1  path, reason  found gone out of band; never recreated
    NetNSCreateFailed     1  path, reason  effect: the namespace could not be made
                                           (add then deletes the sandbox: all or nothing)
    NetNSOwnershipCarried 1  path, assigned_seq  still owned; proof moved here before compaction
    NetNSDirRecorded      1  netns_dir     where this store's namespaces live (id "");
                                           written when the store is created
    LogRepaired           1  damage_segment, damage_offset, damage_seq, reason, cut_seq,
                             cut_segment, cut_offset, bytes_set_aside, broken_files,
                             snapshots_set_aside   a person cut the log (id "": no sandbox)

The log is history: an event is never rewritten. When a schema changes, its
version goes up and an *upcaster* turning version n into n+1 is registered
in ``UPCASTERS``; ``decode`` applies the chain up to the class's ``VERSION``
before it builds the typed value. Two real paths exist:

* StatusUpdated v1 -> v2: v1 had no ``exit_status`` (read as None);
* SandboxAdded v0 -> v1: v0 carried containerd's own metadata blob (the
  ``{"Version":"v1","Metadata":{...}}`` JSON bytes) and a status without
  ``exit_status``; v1 carries the decoded metadata map.

An unknown type is ``UnknownEventError``; a version newer than this code
knows (or a missing one) is ``UnsupportedVersionError``; both name the type
and version. A known type and version with a wrong shape is
``InvalidEventError``. ``to_payload()`` writes exactly the maps the dict
builders of format v2 wrote (same keys, same order: same bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from sandbox.errors import InvalidEventError
from sandbox.event_decode import (
    as_tuple,
    check_int,
    check_opt,
    check_str,
    check_strs,
    new_bare,
    slot,
    status_from_map,
    status_from_values,
)
from sandbox.event_parts import AddedMetadata, Env, Envelope, Payload
from sandbox.event_upcast import added_v0_to_v1, status_v1_to_v2, upcast_chain
from sandbox.metadata import Metadata
from sandbox.status import Status

__all__ = [
    "CURRENT",
    "EVENT_CLASSES",
    "LOG_REPAIRED",
    "NETNS_ASSIGNED",
    "NETNS_CLOSED",
    "NETNS_CREATED",
    "NETNS_CREATE_FAILED",
    "NETNS_DIR_RECORDED",
    "NETNS_EVENTS",
    "NETNS_REMOVED",
    "NETNS_REMOVE_REQUESTED",
    "SANDBOX_ADDED",
    "SANDBOX_DELETED",
    "STATUS_UPDATED",
    "UPCASTERS",
    "AddedMetadata",
    "Env",
    "Envelope",
    "Event",
    "InvalidEventError",
    "LogRepaired",
    "NetNSAssigned",
    "NetNSClosed",
    "NetNSCreateFailed",
    "NetNSCreated",
    "NetNSDirRecorded",
    "NetNSEvent",
    "NetNSOwnershipCarried",
    "NetNSRemoveRequested",
    "NetNSRemoved",
    "SandboxAdded",
    "SandboxDeleted",
    "StatusUpdated",
    "decode",
    "log_repaired",
    "netns_assigned",
    "netns_closed",
    "netns_created",
    "netns_ownership_carried",
    "netns_remove_requested",
    "netns_removed",
    "sandbox_added",
    "sandbox_deleted",
    "status_from_map",
    "status_from_values",
    "status_updated",
    "upcast",
]


# -- the event classes ----------------------------------------------------------


@attrs.frozen
class Event:
    """Base of every event: the sandbox id (``""`` for none) and the envelope."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]

    id: str
    env: Env

    def to_payload(self) -> Payload:
        """The map written to the log (``type, v, id, env`` first, then the fields)."""
        payload: Payload = {
            "type": self.TYPE,
            "v": self.VERSION,
            "id": self.id,
            "env": self.env.to_payload(),
        }
        payload.update(self._fields())
        return payload

    def _fields(self) -> Payload:
        return {}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> Event:
        event = new_bare(cls)
        _EV_ID(event, sandbox_id)
        _EV_ENV(event, env)
        return event


_EV_ID, _EV_ENV = slot(Event, "id"), slot(Event, "env")


@attrs.frozen
class SandboxAdded(Event):
    TYPE: ClassVar[str] = "SandboxAdded"
    VERSION: ClassVar[int] = 1

    metadata: AddedMetadata
    status: Status

    def _fields(self) -> Payload:
        return {"metadata": self.metadata.to_payload(), "status": self.status.to_event_dict()}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> SandboxAdded:
        meta = AddedMetadata.from_payload(payload["metadata"])
        if meta.id != sandbox_id:
            raise ValueError(f"metadata.id {meta.id!r} is not the event id")
        event = new_bare(cls)
        _EV_ID(event, sandbox_id)
        _EV_ENV(event, env)
        _ADD_META(event, meta)
        _ADD_STATUS(event, status_from_map(payload["status"]))
        return event


@attrs.frozen
class SandboxDeleted(Event):
    TYPE: ClassVar[str] = "SandboxDeleted"
    VERSION: ClassVar[int] = 1


@attrs.frozen
class StatusUpdated(Event):
    TYPE: ClassVar[str] = "StatusUpdated"
    VERSION: ClassVar[int] = 2

    status: Status

    def _fields(self) -> Payload:
        return {"status": self.status.to_event_dict()}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> StatusUpdated:
        event = new_bare(cls)
        _EV_ID(event, sandbox_id)
        _EV_ENV(event, env)
        _UPD_STATUS(event, status_from_map(payload["status"]))
        return event


@attrs.frozen
class NetNSEvent(Event):
    """A step in an owned namespace's life (sandbox/ownership.py); ``path`` is the key."""

    path: str

    def _fields(self) -> Payload:
        return {"path": self.path}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> NetNSEvent:
        path = payload["path"]
        event = new_bare(cls)
        _EV_ID(event, sandbox_id)
        _EV_ENV(event, env)
        _NS_PATH(event, path if type(path) is str else check_str(path, "path"))
        return event


_ADD_META, _ADD_STATUS = slot(SandboxAdded, "metadata"), slot(SandboxAdded, "status")
_UPD_STATUS = slot(StatusUpdated, "status")
_NS_PATH = slot(NetNSEvent, "path")


@attrs.frozen
class NetNSAssigned(NetNSEvent):
    TYPE: ClassVar[str] = "NetNSAssigned"
    VERSION: ClassVar[int] = 1


@attrs.frozen
class NetNSCreated(NetNSEvent):
    TYPE: ClassVar[str] = "NetNSCreated"
    VERSION: ClassVar[int] = 1


@attrs.frozen
class NetNSRemoveRequested(NetNSEvent):
    TYPE: ClassVar[str] = "NetNSRemoveRequested"
    VERSION: ClassVar[int] = 1


@attrs.frozen
class NetNSRemoved(NetNSEvent):
    TYPE: ClassVar[str] = "NetNSRemoved"
    VERSION: ClassVar[int] = 1


@attrs.frozen
class NetNSClosed(NetNSEvent):
    TYPE: ClassVar[str] = "NetNSClosed"
    VERSION: ClassVar[int] = 1

    reason: str = ""

    def _fields(self) -> Payload:
        return {"path": self.path, "reason": self.reason}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> NetNSClosed:
        path = check_str(payload["path"], "path")
        return cls(sandbox_id, env, path, check_str(payload["reason"], "reason"))


@attrs.frozen
class NetNSCreateFailed(NetNSEvent):
    """The reconciler could not make an assigned namespace for ``add``: logged (with
    why) before the SandboxDeleted that undoes the add, so the audit keeps the attempt."""

    TYPE: ClassVar[str] = "NetNSCreateFailed"
    VERSION: ClassVar[int] = 1

    reason: str = ""

    def _fields(self) -> Payload:
        return {"path": self.path, "reason": self.reason}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> NetNSCreateFailed:
        path = check_str(payload["path"], "path")
        return cls(sandbox_id, env, path, check_str(payload["reason"], "reason"))


@attrs.frozen
class NetNSOwnershipCarried(NetNSEvent):
    """``id``'s proof of ``path`` moves here from record ``assigned_seq`` (sandbox/retention.py)."""

    TYPE: ClassVar[str] = "NetNSOwnershipCarried"
    VERSION: ClassVar[int] = 1

    assigned_seq: int

    def _fields(self) -> Payload:
        return {"path": self.path, "assigned_seq": self.assigned_seq}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> NetNSOwnershipCarried:
        path = check_str(payload["path"], "path")
        return cls(sandbox_id, env, path, check_int(payload["assigned_seq"], "assigned_seq"))


@attrs.frozen
class NetNSDirRecorded(Event):
    """The directory this store's namespaces live in, fixed when the store is created
    (sandbox/netnsdir.py): a later open without one uses it, an open naming another is
    refused. It concerns no sandbox, so ``id`` is ""."""

    TYPE: ClassVar[str] = "NetNSDirRecorded"
    VERSION: ClassVar[int] = 1

    netns_dir: str

    def _fields(self) -> Payload:
        return {"netns_dir": self.netns_dir}

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> NetNSDirRecorded:
        return cls(sandbox_id, env, check_str(payload["netns_dir"], "netns_dir"))


@attrs.frozen
class LogRepaired(Event):
    """A person cut the log after ``cut_seq`` (``sandboxctl repair --cut``).

    Written as the first event after the cut so that the history itself says
    where it was cut, why, and where the cut bytes went (file names in the
    state dir: nothing was deleted). It concerns no sandbox, so ``id`` is "".
    """

    TYPE: ClassVar[str] = "LogRepaired"
    VERSION: ClassVar[int] = 1

    damage_segment: str
    damage_offset: int
    damage_seq: int | None
    reason: str
    cut_seq: int
    cut_segment: str
    cut_offset: int
    bytes_set_aside: int
    broken_files: tuple[str, ...] = attrs.field(converter=as_tuple)
    snapshots_set_aside: tuple[str, ...] = attrs.field(converter=as_tuple)

    def _fields(self) -> Payload:
        fields = attrs.asdict(self, recurse=False, filter=lambda a, _v: a.name not in _BASE)
        fields["broken_files"] = list(self.broken_files)
        fields["snapshots_set_aside"] = list(self.snapshots_set_aside)
        return fields

    @classmethod
    def _decode(cls, sandbox_id: str, env: Env, payload: Payload) -> LogRepaired:
        p = payload
        return cls(
            sandbox_id,
            env,
            check_str(p["damage_segment"], "damage_segment"),
            check_int(p["damage_offset"], "damage_offset"),
            check_opt(p["damage_seq"], int, "damage_seq"),
            check_str(p["reason"], "reason"),
            check_int(p["cut_seq"], "cut_seq"),
            check_str(p["cut_segment"], "cut_segment"),
            check_int(p["cut_offset"], "cut_offset"),
            check_int(p["bytes_set_aside"], "bytes_set_aside"),
            check_strs(p["broken_files"], "broken_files"),
            check_strs(p["snapshots_set_aside"], "snapshots_set_aside"),
        )


_BASE = frozenset(("id", "env"))

#: Every event class, in the order of the table above.
EVENT_CLASSES: tuple[type[Event], ...] = (
    SandboxAdded,
    SandboxDeleted,
    StatusUpdated,
    NetNSAssigned,
    NetNSCreated,
    NetNSRemoveRequested,
    NetNSRemoved,
    NetNSClosed,
    NetNSCreateFailed,
    NetNSOwnershipCarried,
    NetNSDirRecorded,
    LogRepaired,
)
NETNS_EVENTS: tuple[type[NetNSEvent], ...] = (
    NetNSAssigned,
    NetNSCreated,
    NetNSRemoveRequested,
    NetNSRemoved,
    NetNSClosed,
    NetNSCreateFailed,
    NetNSOwnershipCarried,
)
_BY_TYPE: dict[str, type[Event]] = {cls.TYPE: cls for cls in EVENT_CLASSES}

#: The schema version this code writes, per event type (derived from the classes).
CURRENT: dict[str, int] = {cls.TYPE: cls.VERSION for cls in EVENT_CLASSES}

SANDBOX_ADDED = SandboxAdded.TYPE
SANDBOX_DELETED = SandboxDeleted.TYPE
STATUS_UPDATED = StatusUpdated.TYPE
NETNS_ASSIGNED = NetNSAssigned.TYPE
NETNS_CREATED = NetNSCreated.TYPE
NETNS_REMOVE_REQUESTED = NetNSRemoveRequested.TYPE
NETNS_REMOVED = NetNSRemoved.TYPE
NETNS_CLOSED = NetNSClosed.TYPE
NETNS_CREATE_FAILED = NetNSCreateFailed.TYPE
NETNS_DIR_RECORDED = NetNSDirRecorded.TYPE
LOG_REPAIRED = LogRepaired.TYPE


# -- upcasting -----------------------------------------------------------------

#: (type, version) -> function returning the same event map at version + 1.
UPCASTERS: dict[tuple[str, int], Callable[[Payload], Payload]] = {
    (STATUS_UPDATED, 1): status_v1_to_v2,
    (SANDBOX_ADDED, 0): added_v0_to_v1,
}


def upcast(event: Payload) -> Payload:
    """Bring the map ``event`` to its type's ``CURRENT`` version (a new map if changed).

    Raises ``UnknownEventError`` for an unknown type and
    ``UnsupportedVersionError`` for a newer (or missing, or unreachable) version.
    """
    return upcast_chain(event, CURRENT, UPCASTERS)


def decode(payload: object) -> Event:
    """The typed event of a log payload, upcast to its class's version: the one place a
    payload map is read. Errors name the type and version (see the module docstring)."""
    if type(payload) is not dict:
        raise InvalidEventError(f"an event must be a map, got {type(payload).__name__}")
    cls = _BY_TYPE.get(payload.get("type"))  # type: ignore[arg-type]
    if cls is None or type(payload.get("v")) is not int or payload["v"] != cls.VERSION:
        payload = upcast(payload)  # raises unless it is an old version of a known type
        cls = _BY_TYPE[payload["type"]]
    try:
        sandbox_id = payload["id"]
        if type(sandbox_id) is not str:
            check_str(sandbox_id, "id")
        return cls._decode(sandbox_id, Env.from_payload(payload.get("env")), payload)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        why = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise InvalidEventError(
            f"event {cls.TYPE} v{cls.VERSION} of {payload.get('id')!r} is malformed: {why}"
        ) from None


# -- builders of payload maps (kept for tooling and tests that write logs directly) --


def sandbox_added(env: Payload, metadata: Metadata, status: Status) -> Payload:
    meta = AddedMetadata.from_metadata(metadata)
    return SandboxAdded(metadata.id, Env.from_payload(env), meta, status).to_payload()


def sandbox_deleted(env: Payload, sandbox_id: str) -> Payload:
    return SandboxDeleted(sandbox_id, Env.from_payload(env)).to_payload()


def status_updated(env: Payload, sandbox_id: str, status: Status) -> Payload:
    return StatusUpdated(sandbox_id, Env.from_payload(env), status).to_payload()


def netns_assigned(env: Payload, sandbox_id: str, path: str) -> Payload:
    return NetNSAssigned(sandbox_id, Env.from_payload(env), path).to_payload()


def netns_created(env: Payload, sandbox_id: str, path: str) -> Payload:
    return NetNSCreated(sandbox_id, Env.from_payload(env), path).to_payload()


def netns_remove_requested(env: Payload, sandbox_id: str, path: str) -> Payload:
    return NetNSRemoveRequested(sandbox_id, Env.from_payload(env), path).to_payload()


def netns_removed(env: Payload, sandbox_id: str, path: str) -> Payload:
    return NetNSRemoved(sandbox_id, Env.from_payload(env), path).to_payload()


def netns_closed(env: Payload, sandbox_id: str, path: str, reason: str) -> Payload:
    return NetNSClosed(sandbox_id, Env.from_payload(env), path, reason).to_payload()


def netns_ownership_carried(env: Payload, sandbox_id: str, path: str, assigned_seq: int) -> Payload:
    return NetNSOwnershipCarried(sandbox_id, Env.from_payload(env), path, assigned_seq).to_payload()


def log_repaired(env: Payload, **fields: Any) -> Payload:
    """See ``LogRepaired``; keyword arguments are its fields."""
    return LogRepaired("", Env.from_payload(env), **fields).to_payload()
