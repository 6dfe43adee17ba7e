"""Sandbox state and status, and the state machine the store enforces.

The CRI plugin's sandbox life cycle (after containerd's sandbox status)::

       RunPodSandbox                 restart: sandbox found
       (Create + Start)              but its state is lost
             |                                |
             v                                v
    +------------------+  status lost  +-------------+
    |      READY       |-------------->|   UNKNOWN   |--+
    |  (pid, ports..)  |               |             |  | UNKNOWN -> UNKNOWN
    +------------------+               +-------------+<-+
      |    ^        |                         |
      +----+        | Stop / Exit             | Stop
    READY -> READY  v                         |
    (pid etc.)  +------------------+          |
                |     NOTREADY     |<---------+
                |                  |--+
    start       +------------------+  | NOTREADY -> NOTREADY
    failed -------> (add as NOTREADY)<-+  (a repeated stop is fine)
                         |
                         | RemovePodSandbox
                         v
                      deleted     (from any state; its netns is removed)

``add`` may enter READY, NOTREADY or UNKNOWN, as the caller's Status says
(NOTREADY/UNKNOWN: loaded after a restart, or the start failed). There is no
way back to READY from NOTREADY or UNKNOWN (a stopped sandbox is never
restarted: kubelet makes a new one), and no way from NOTREADY to UNKNOWN (a
stopped sandbox's state is known). Illegal transitions raise
``InvalidTransitionError`` before anything is written; replay applies the
log without re-checking (``verify`` re-checks).
"""

from __future__ import annotations

import enum
import time
from typing import Any

import attrs

from sandbox.errors import InvalidTransitionError

__all__ = ["ALLOWED_TRANSITIONS", "State", "Status", "check_transition"]


class State(enum.Enum):
    """A sandbox's state. The value (short) is what events carry; ``str()`` is
    the CRI spelling (``SANDBOX_READY``...)."""

    READY = "READY"
    NOTREADY = "NOTREADY"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return "SANDBOX_" + self.value


#: (from, to) pairs ``update_status`` accepts.
ALLOWED_TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (State.READY, State.READY),
        (State.READY, State.NOTREADY),
        (State.READY, State.UNKNOWN),
        (State.UNKNOWN, State.UNKNOWN),
        (State.UNKNOWN, State.NOTREADY),
        (State.NOTREADY, State.NOTREADY),
    }
)


def check_transition(old: State, new: State, sandbox_id: str) -> None:
    """Raise ``InvalidTransitionError`` (naming the id, from and to) unless allowed."""
    if (old, new) not in ALLOWED_TRANSITIONS:
        allowed = sorted(str(to) for frm, to in ALLOWED_TRANSITIONS if frm is old)
        raise InvalidTransitionError(
            f"sandbox {sandbox_id}: cannot go from {old} to {new}; "
            f"from {old} only {', '.join(allowed)} is allowed"
        )


def _v_state(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, State):
        raise TypeError(f"Status.{attr.name}: expected a State, got {value!r}")


def _v_int(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Status.{attr.name}: expected an int, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"Status.{attr.name}: {value} does not fit in int64")


def _v_opt_int(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _v_int(inst, attr, value)


def _v_pid(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    _v_int(inst, attr, value)
    assert isinstance(value, int)
    if value < 0:
        raise ValueError(f"Status.pid: must be >= 0, got {value}")


@attrs.frozen
class Status:
    """A sandbox's mutable part, replaced as a whole by ``update_status``.

    Times are Unix nanoseconds. ``created_at`` defaults to now *when the Status
    is built* (by the caller, at command time) - the projection never reads
    the clock.
    """

    state: State = attrs.field(validator=_v_state)
    pid: int = attrs.field(default=0, validator=_v_pid)
    created_at: int = attrs.field(factory=time.time_ns, validator=_v_int)
    exited_at: int | None = attrs.field(default=None, validator=_v_opt_int)
    exit_status: int | None = attrs.field(default=None, validator=_v_opt_int)

    def to_event_dict(self) -> dict[str, Any]:
        """``{"state","pid","created_at","exited_at","exit_status"}`` as events carry it."""
        return {
            "state": self.state.value,
            "pid": self.pid,
            "created_at": self.created_at,
            "exited_at": self.exited_at,
            "exit_status": self.exit_status,
        }

    @classmethod
    def from_event_dict(cls, data: dict[str, Any]) -> Status:
        return cls(
            State(data["state"]),
            data["pid"],
            data["created_at"],
            data.get("exited_at"),
            data.get("exit_status"),
        )
