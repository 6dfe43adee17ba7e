"""The ``Sandbox`` value users get from the store.

containerd's Sandbox bundles the immutable metadata, a lock-protected status
and the netns handle. Here it is a frozen snapshot: the store hands out a
new Sandbox after every change, so a value a caller holds never changes
under it (read the store again for the current state). ``netns`` is a pure
handle: ``netns.closed()`` asks the kernel on every call.
"""

from __future__ import annotations

import attrs

from sandbox.metadata import Metadata
from sandbox.netns import NetNS
from sandbox.status import Status

__all__ = ["Sandbox"]


def _v_metadata(_inst: object, _attr: attrs.Attribute[Metadata], value: object) -> None:
    if not isinstance(value, Metadata):
        raise TypeError(f"Sandbox.metadata: expected Metadata, got {type(value).__name__}")


def _v_status(_inst: object, _attr: attrs.Attribute[Status], value: object) -> None:
    if not isinstance(value, Status):
        raise TypeError(f"Sandbox.status: expected Status, got {type(value).__name__}")


def _v_netns(_inst: object, _attr: attrs.Attribute[NetNS | None], value: object) -> None:
    if value is not None and not isinstance(value, NetNS):
        raise TypeError(f"Sandbox.netns: expected NetNS or None, got {type(value).__name__}")


@attrs.frozen
class Sandbox:
    """A sandbox as the store knows it at one log position."""

    metadata: Metadata = attrs.field(validator=_v_metadata)
    status: Status = attrs.field(validator=_v_status)
    netns: NetNS | None = attrs.field(default=None, validator=_v_netns)

    @property
    def id(self) -> str:
        return self.metadata.id

    @property
    def name(self) -> str:
        return self.metadata.name
