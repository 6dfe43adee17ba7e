"""Which network namespace paths the store owns, and how far each has got.

Ownership is proven by the log, never by a name: a path is owned from the
NetNSAssigned event that names it (written before any file exists) until a
terminal event (NetNSRemoved or NetNSClosed). The projection keeps one
``OwnedNetNS`` per assigned path; the reconciler acts on the non-terminal ones.

    ASSIGNED --NetNSCreated--> CREATED --NetNSRemoveRequested/SandboxDeleted--> REMOVING
       |                          |                                                |
       |                          +--NetNSClosed--> CLOSED (terminal)              |
       +--NetNSRemoveRequested/SandboxDeleted--> REMOVING --NetNSRemoved--> REMOVED (terminal)
"""

from __future__ import annotations

import enum

import attrs


class NetNSState(enum.Enum):
    ASSIGNED = "assigned"  # intent logged, namespace not known to exist yet
    CREATED = "created"  # effect logged: mounted at path
    REMOVING = "removing"  # removal requested (or its sandbox deleted)
    CLOSED = "closed"  # found gone out of band; never recreated
    REMOVED = "removed"  # effect logged: unmounted and unlinked

    @property
    def terminal(self) -> bool:
        return self in (NetNSState.CLOSED, NetNSState.REMOVED)


@attrs.frozen
class OwnedNetNS:
    sandbox_id: str
    path: str
    state: NetNSState
