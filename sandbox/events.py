"""Event types, the envelope, schema versions and the upcaster registry.

Every change to the store is one msgpack map (see docs/ARCHITECTURE.md)::

    {"type": str, "v": int, "id": sandbox id,
     "env": {"time": ns, "host": str, "pid": int, "uid": int, "actor": str | None},
     ...type fields}

    SandboxAdded         v1  metadata {"id","name","config","netns_path"}, status {...}
    SandboxDeleted       v1
    StatusUpdated        v2  status {"state","pid","created_at","exited_at","exit_status"}
    NetNSAssigned        v1  path          intent: the store owns this path from now on
    NetNSCreated         v1  path          effect: the namespace is mounted there
    NetNSRemoveRequested v1  path          intent to remove (also implied by SandboxDeleted)
    NetNSRemoved         v1  path          effect: unmounted and unlinked
    NetNSClosed          v1  path, reason  found gone out of band; never recreated
    LogRepaired          v1  damage_*, reason, cut_*, bytes_set_aside, broken_files,
                             snapshots_set_aside   a person cut the log (id "": no sandbox)

The log is history: an event is never rewritten. When a schema changes, its
version goes up and an *upcaster* turning version n into n+1 is registered
here; reading applies the chain up to ``CURRENT``. Two real paths exist:

* StatusUpdated v1 -> v2: v1 had no ``exit_status`` (read as None);
* SandboxAdded v0 -> v1: v0 carried containerd's own metadata blob (the
  ``{"Version":"v1","Metadata":{...}}`` JSON bytes) and a status without
  ``exit_status``; v1 carries the decoded metadata map.

An unknown type is ``UnknownEventError``; a version newer than this code
knows (or a missing one) is ``UnsupportedVersionError``; both name the type.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from sandbox.errors import (
    InvalidEventError,
    UnknownEventError,
    UnsupportedVersionError,
)
from sandbox.metadata import Metadata
from sandbox.status import Status

__all__ = [
    "CURRENT",
    "LOG_REPAIRED",
    "NETNS_ASSIGNED",
    "NETNS_CLOSED",
    "NETNS_CREATED",
    "NETNS_REMOVED",
    "NETNS_REMOVE_REQUESTED",
    "SANDBOX_ADDED",
    "SANDBOX_DELETED",
    "STATUS_UPDATED",
    "UPCASTERS",
    "Envelope",
    "InvalidEventError",
    "log_repaired",
    "netns_assigned",
    "netns_closed",
    "netns_created",
    "netns_remove_requested",
    "netns_removed",
    "sandbox_added",
    "sandbox_deleted",
    "status_updated",
    "upcast",
]

Event = dict[str, Any]

SANDBOX_ADDED = "SandboxAdded"
SANDBOX_DELETED = "SandboxDeleted"
STATUS_UPDATED = "StatusUpdated"
NETNS_ASSIGNED = "NetNSAssigned"
NETNS_CREATED = "NetNSCreated"
NETNS_REMOVE_REQUESTED = "NetNSRemoveRequested"
NETNS_REMOVED = "NetNSRemoved"
NETNS_CLOSED = "NetNSClosed"
LOG_REPAIRED = "LogRepaired"

#: The schema version this code writes, per event type.
CURRENT: dict[str, int] = {
    SANDBOX_ADDED: 1,
    SANDBOX_DELETED: 1,
    STATUS_UPDATED: 2,
    NETNS_ASSIGNED: 1,
    NETNS_CREATED: 1,
    NETNS_REMOVE_REQUESTED: 1,
    NETNS_REMOVED: 1,
    NETNS_CLOSED: 1,
    LOG_REPAIRED: 1,
}


class Envelope:
    """Who wrote an event, and when: ``{"time","host","pid","uid","actor"}``.

    The host name and uid are read once; the pid each time (a forked child
    writing to a log it opened itself must say so); the time each time.
    """

    __slots__ = ("actor", "host", "uid")

    def __init__(self, actor: str | None = None) -> None:
        if actor is not None and not isinstance(actor, str):
            raise TypeError(f"actor must be a str or None, got {type(actor).__name__}")
        self.actor = actor
        self.host = socket.gethostname()
        self.uid = os.getuid()

    def __call__(self) -> dict[str, Any]:
        return {
            "time": time.time_ns(),
            "host": self.host,
            "pid": os.getpid(),
            "uid": self.uid,
            "actor": self.actor,
        }


# -- builders (current versions) ------------------------------------------------


def sandbox_added(env: dict[str, Any], metadata: Metadata, status: Status) -> Event:
    return {
        "type": SANDBOX_ADDED,
        "v": CURRENT[SANDBOX_ADDED],
        "id": metadata.id,
        "env": env,
        "metadata": metadata.to_event_dict(),
        "status": status.to_event_dict(),
    }


def sandbox_deleted(env: dict[str, Any], sandbox_id: str) -> Event:
    return {"type": SANDBOX_DELETED, "v": CURRENT[SANDBOX_DELETED], "id": sandbox_id, "env": env}


def status_updated(env: dict[str, Any], sandbox_id: str, status: Status) -> Event:
    return {
        "type": STATUS_UPDATED,
        "v": CURRENT[STATUS_UPDATED],
        "id": sandbox_id,
        "env": env,
        "status": status.to_event_dict(),
    }


def _netns_event(kind: str, env: dict[str, Any], sandbox_id: str, path: str) -> Event:
    return {"type": kind, "v": CURRENT[kind], "id": sandbox_id, "env": env, "path": path}


def netns_assigned(env: dict[str, Any], sandbox_id: str, path: str) -> Event:
    return _netns_event(NETNS_ASSIGNED, env, sandbox_id, path)


def netns_created(env: dict[str, Any], sandbox_id: str, path: str) -> Event:
    return _netns_event(NETNS_CREATED, env, sandbox_id, path)


def netns_remove_requested(env: dict[str, Any], sandbox_id: str, path: str) -> Event:
    return _netns_event(NETNS_REMOVE_REQUESTED, env, sandbox_id, path)


def netns_removed(env: dict[str, Any], sandbox_id: str, path: str) -> Event:
    return _netns_event(NETNS_REMOVED, env, sandbox_id, path)


def netns_closed(env: dict[str, Any], sandbox_id: str, path: str, reason: str) -> Event:
    event = _netns_event(NETNS_CLOSED, env, sandbox_id, path)
    event["reason"] = reason
    return event


def log_repaired(
    env: dict[str, Any],
    *,
    damage_segment: str,
    damage_offset: int,
    damage_seq: int | None,
    reason: str,
    cut_seq: int,
    cut_segment: str,
    cut_offset: int,
    bytes_set_aside: int,
    broken_files: list[str],
    snapshots_set_aside: list[str],
) -> Event:
    """A person cut the log after ``cut_seq`` (``sandboxctl repair --cut``).

    Written as the first event after the cut so that the history itself says
    where it was cut, why, and where the cut bytes went (file names in the
    state dir: nothing was deleted). It concerns no sandbox, so ``id`` is "".
    """
    return {
        "type": LOG_REPAIRED,
        "v": CURRENT[LOG_REPAIRED],
        "id": "",
        "env": env,
        "damage_segment": damage_segment,
        "damage_offset": damage_offset,
        "damage_seq": damage_seq,
        "reason": reason,
        "cut_seq": cut_seq,
        "cut_segment": cut_segment,
        "cut_offset": cut_offset,
        "bytes_set_aside": bytes_set_aside,
        "broken_files": broken_files,
        "snapshots_set_aside": snapshots_set_aside,
    }


# -- upcasting -----------------------------------------------------------------


def _status_v1_to_v2(event: Event) -> Event:
    status = dict(event["status"])
    status.setdefault("exit_status", None)
    return {**event, "v": 2, "status": status}


def _added_v0_to_v1(event: Event) -> Event:
    blob = event["metadata"]
    if not isinstance(blob, bytes | str):
        raise InvalidEventError(
            f"SandboxAdded v0 of {event.get('id')!r}: metadata must be containerd's JSON blob"
        )
    metadata = Metadata.from_json(blob)
    status = dict(event["status"])
    status.setdefault("exited_at", None)
    status.setdefault("exit_status", None)
    return {
        **event,
        "v": 1,
        "id": metadata.id,
        "metadata": metadata.to_event_dict(),
        "status": status,
    }


#: (type, version) -> function returning the same event at version + 1.
UPCASTERS: dict[tuple[str, int], Callable[[Event], Event]] = {
    (STATUS_UPDATED, 1): _status_v1_to_v2,
    (SANDBOX_ADDED, 0): _added_v0_to_v1,
}


def upcast(event: Event) -> Event:
    """Bring ``event`` to its type's ``CURRENT`` version (a new dict if changed).

    Raises ``UnknownEventError`` for an unknown type and
    ``UnsupportedVersionError`` for a newer (or missing, or unreachable) version.
    """
    if not isinstance(event, dict):
        raise InvalidEventError(f"an event must be a map, got {type(event).__name__}")
    kind = event.get("type")
    current = CURRENT.get(kind) if isinstance(kind, str) else None
    if current is None:
        raise UnknownEventError(f"unknown event type {kind!r}; known: {', '.join(CURRENT)}")
    version = event.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnsupportedVersionError(
            f"event {kind} has version {version!r}; expected an integer <= {current}"
        )
    if version > current:
        raise UnsupportedVersionError(
            f"event {kind} version {version} is newer than this code supports ({current}); "
            "upgrade the sandbox package to read this log"
        )
    while version < current:
        step = UPCASTERS.get((str(kind), version))
        if step is None:
            raise UnsupportedVersionError(
                f"event {kind} version {version} is no longer readable (no upcaster to "
                f"{version + 1}); current is {current}"
            )
        try:
            event = step(event)
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidEventError(
                f"event {kind} v{version} of {event.get('id')!r} is malformed: {exc!r}"
            ) from None
        version = event["v"]
    return event
