"""Sandbox state and status: the values a sandbox's life cycle moves through.

Why only the values: which state may follow which is a rule, and every rule
has one home - ``sandbox/rules.py`` (the state machine drawn above its table,
``TRANSITIONS``, ``check_transition``), which imports this module. Keeping
the table out of here means there is no second copy to drift from the one
the store, the projection and ``verify`` ask.
"""

from __future__ import annotations

import enum
import time
from typing import Any

import attrs

__all__ = ["State", "Status"]


class State(enum.Enum):
    """A sandbox's state. The value (short) is what events carry; ``str()`` is
    the CRI spelling (``SANDBOX_READY``...)."""

    READY = "READY"
    NOTREADY = "NOTREADY"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return "SANDBOX_" + self.value


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
