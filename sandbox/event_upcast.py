"""Upcasting: old versions of an event map brought to the version this code reads.

``sandbox.events`` registers the steps in ``UPCASTERS`` (its docstring says which
exist and why) and ``events.upcast`` runs the chain here against ``CURRENT``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sandbox.errors import InvalidEventError, UnknownEventError, UnsupportedVersionError
from sandbox.event_parts import Payload
from sandbox.metadata import Metadata

__all__ = ["added_v0_to_v1", "status_v1_to_v2", "upcast_chain"]


def status_v1_to_v2(event: Payload) -> Payload:
    status = dict(event["status"])
    status.setdefault("exit_status", None)
    return {**event, "v": 2, "status": status}


def added_v0_to_v1(event: Payload) -> Payload:
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


def upcast_chain(
    event: Payload,
    versions: Mapping[str, int],
    upcasters: Mapping[tuple[str, int], Callable[[Payload], Payload]],
) -> Payload:
    """Bring the map ``event`` to its type's version in ``versions`` (a new map if
    changed), one ``upcasters[(type, version)]`` step at a time.

    Raises ``UnknownEventError`` for an unknown type and
    ``UnsupportedVersionError`` for a newer (or missing, or unreachable) version.
    """
    if not isinstance(event, dict):
        raise InvalidEventError(f"an event must be a map, got {type(event).__name__}")
    kind = event.get("type")
    current = versions.get(kind) if isinstance(kind, str) else None
    if current is None:
        raise UnknownEventError(f"unknown event type {kind!r}; known: {', '.join(versions)}")
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
        step = upcasters.get((str(kind), version))
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
