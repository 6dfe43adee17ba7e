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
    "status_columns",
    "status_from_values",
    "status_rows",
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


#: A status as a snapshot row holds it: (state value, pid, created_at, exited_at,
#: exit_status).
StatusRow = tuple[str, int, int, int | None, int | None]
_STATE_NAMES: frozenset[str] = frozenset(_STATE_OF)
_NONE = type(None)


def status_rows(rows: Sequence[Sequence[object]]) -> list[Status] | list[StatusRow]:
    """``rows`` validated as ``statuses_from_values`` validates them, building no Status
    when every row passes ``status_from_values``' fast check: the rows then come back as
    tuples, each of which ``status_from_values(*row)`` builds (its fast way) when it is
    needed. Otherwise the Statuses themselves, or what ``statuses_from_values`` raises.

    A snapshot holds a status per sandbox; building them all at load costs more than
    checking them. The check is ``_fast_status``' own test, column by column: each
    condition over all rows at once (``min``/``max``, a set of types), at C speed.
    """
    if not _rows_pass_fast(rows):
        return statuses_from_values(rows)  # decides, and words the first error
    if set(map(type, rows)) <= {tuple}:
        return cast("list[StatusRow]", list(rows))
    return cast("list[StatusRow]", list(map(tuple, rows)))  # none shared with the caller


def status_columns(
    states: Sequence[object],
    pids: Sequence[object],
    created: Sequence[object],
    exited: Sequence[object],
    codes: Sequence[object],
) -> list[Status] | list[StatusRow]:
    """``status_rows`` of the rows these five columns make (a body laid out by column,
    snapshot format 4): the same check, with no transposition first. The columns must
    be of one length (``ValueError``)."""
    rows = list(zip(states, pids, created, exited, codes, strict=True))
    if rows and not _columns_pass_fast(states, pids, created, exited, codes):
        return statuses_from_values(rows)  # decides, and words the first error
    return cast("list[StatusRow]", rows)


def _rows_pass_fast(rows: Sequence[Sequence[object]]) -> bool:
    """True: ``_fast_status(*row)`` accepts every row (False: not all, or not known)."""
    if not rows:
        return True
    try:
        states, pids, created, exited, codes = zip(*rows, strict=True)
    except (TypeError, ValueError):  # a row that is no 5 values
        return False
    return _columns_pass_fast(states, pids, created, exited, codes)


def _columns_pass_fast(
    states: Sequence[object],
    pids: Sequence[object],
    created: Sequence[object],
    exited: Sequence[object],
    codes: Sequence[object],
) -> bool:
    """``_rows_pass_fast`` of the rows these columns make; the columns not empty."""
    return (
        set(map(type, states)) == {str}
        and _STATE_NAMES.issuperset(states)
        and _ints_within(pids, 0, _I64)
        and _ints_within(created, -_I64, _I64)
        and _opt_ints_within(exited)
        and _opt_ints_within(codes)
    )


def _ints_within(values: Sequence[object], low: int, high: int) -> bool:
    """Every value an int (exactly: no bool) in ``[low, high)``; ``values`` not empty."""
    if set(map(type, values)) != {int}:
        return False
    ints = cast("Sequence[int]", values)
    return low <= min(ints) and max(ints) < high


def _opt_ints_within(values: Sequence[object]) -> bool:
    """Every value None or an int64 (exactly an int)."""
    kinds = set(map(type, values))
    if kinds == {_NONE}:
        return True
    if not kinds <= {int, _NONE}:
        return False
    opt = cast("Sequence[int | None]", values)
    # ``filter(None, ...)`` drops the Nones (and the zeros, which are in range).
    return min(filter(None, opt), default=0) >= -_I64 and max(filter(None, opt), default=0) < _I64


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
