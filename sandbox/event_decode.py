"""The replay hot path's decode helpers: field checks and construction without attrs'
``__init__`` (``sandbox.events`` and ``sandbox.event_parts`` build with these).

attrs' generated ``__init__`` of a frozen class sets each field through
``object.__setattr__`` and runs its validators: ~1.5 us for a Status, ~0.9 us
for an Env, per replayed event. Decoding does the same checks inline (plain
``type() is`` tests on what msgpack returns) and then fills the slots
directly through their descriptors; anything the inline checks do not accept
goes through the ordinary constructor, which raises exactly the errors it
always raised. The classes stay attrs classes (equality, repr, evolve).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import is_
from typing import Any, cast

from sandbox.status import State, Status

__all__ = [
    "as_tuple",
    "check_int",
    "check_opt",
    "check_str",
    "check_strs",
    "new_bare",
    "slot",
    "status_from_map",
    "status_from_values",
    "statuses_from_values",
]


def check_str(value: object, what: str) -> str:
    if type(value) is not str:
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return value


def check_int(value: object, what: str) -> int:
    if type(value) is not int:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value


def check_opt(value: object, kind: type, what: str) -> Any:
    if value is not None and type(value) is not kind:
        raise TypeError(f"{what} must be a {kind.__name__} or nil, got {type(value).__name__}")
    return value


def as_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def check_strs(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"{what} must be a list, got {type(value).__name__}")
    return tuple(check_str(v, what) for v in value)


# -- fast construction (the replay hot path) -------------------------------------

#: An instance with no slot set yet (fill it with ``slot`` setters; decode only).
new_bare = object.__new__
_I64 = 2**63


def slot(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The slot's setter, bypassing a frozen class's ``__setattr__`` (decode only)."""
    setter: Callable[[Any, Any], None] = getattr(cls, name).__set__
    return setter


_STATE_OF: dict[str, State] = {s.value: s for s in State}
_ST_STATE, _ST_PID, _ST_CREATED, _ST_EXITED, _ST_EXIT = (
    slot(Status, n) for n in ("state", "pid", "created_at", "exited_at", "exit_status")
)


def status_from_map(data: object) -> Status:
    """``Status.from_event_dict(data)`` with its validation done inline (same rules:
    a known state, pid an int64 >= 0, created_at an int64, exited_at and exit_status
    int64 or nil); what the inline checks do not accept goes the slow way."""
    if type(data) is not dict:
        raise TypeError("status must be a map")
    get = data.get
    st = _fast_status(
        get("state"), get("pid"), get("created_at"), get("exited_at"), get("exit_status")
    )
    return st if st is not None else Status.from_event_dict(data)


def status_from_values(state: object, pid: object, created: object, exited: object,
                       code: object) -> Status:  # fmt: skip
    """``Status(State(state), pid, created, exited, code)``, checked as ``status_from_map``."""
    st = _fast_status(state, pid, created, exited, code)
    return st if st is not None else Status(State(state), pid, created, exited, code)  # type: ignore[arg-type]


def statuses_from_values(rows: Sequence[Sequence[object]]) -> list[Status]:
    """``status_from_values(*row)`` of each 5-item row, in order (a snapshot's statuses):
    the same Statuses, and what the first invalid row raises."""
    fast = _fast_status
    try:
        out = [fast(*row) for row in rows]
    except TypeError:  # a row that is no 5 values: one by one finds the first error
        return [status_from_values(*row) for row in rows]
    # ``None in out`` would call Status.__eq__ (Python) on each: identity, in C.
    if any(map(is_, out, repeat(None))):
        return [
            st if st is not None else status_from_values(*row)
            for st, row in zip(out, rows, strict=True)
        ]
    return cast("list[Status]", out)


def _fast_status(
    state: object, pid: object, created: object, exited: object, code: object
) -> Status | None:
    if (
        type(state) is str
        and state in _STATE_OF
        and type(pid) is int
        and 0 <= pid < _I64
        and type(created) is int
        and -_I64 <= created < _I64
        and (exited is None or (type(exited) is int and -_I64 <= exited < _I64))
        and (code is None or (type(code) is int and -_I64 <= code < _I64))
    ):
        st = new_bare(Status)
        _ST_STATE(st, _STATE_OF[state])
        _ST_PID(st, pid)
        _ST_CREATED(st, created)
        _ST_EXITED(st, exited)
        _ST_EXIT(st, code)
        return st
    return None
