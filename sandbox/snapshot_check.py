"""What a snapshot's body must say before the store believes any of it.

A snapshot's checksum only proves the bytes are the ones written; it says
nothing about whether the writer told the truth (anyone who can write the
state dir can write a checksum). Events are checked for shape as they are
folded; a snapshot skips the fold, so its content is checked here, as
strictly: types, ids, names, states, paths, and the ownership entries'
consistency with the sandboxes (the invariants ``Projection``'s fold keeps).

``decode_body`` decodes the body's msgpack into the layout's shape (``_Body``:
the keys; in body format 4 one typed list per sandbox column, status ranges
included; in formats 2 and 3 each sandbox row a tuple of six of the right
types; each owned row a tuple of four), which ``msgspec`` checks in C as it decodes - a snapshot
may hold 100,000 sandboxes, and a check per field in Python cost more than
the decode - and then checks here what a shape cannot say. Building the
``Projection`` from it and ``Projection.check_sandboxes`` (in
``snapshot.decode_info``) check metadata, config and status with the same
validators events use (a config in body format 3 is its own msgpack bytes,
checked there in bulk).
"""

from __future__ import annotations

import os
from itertools import compress
from operator import itemgetter
from typing import Annotated, Any

import msgpack
import msgspec
from msgspec import UNSET, Meta, UnsetType

from sandbox.errors import SnapshotError
from sandbox.ids import validate_id
from sandbox.ownership import NetNSState
from sandbox.projection import SANDBOX_COLUMNS, SNAPSHOT_CONFIG_TYPES

__all__ = ["as_format_3", "decode_body"]

# REMOVED is never kept by the fold (the entry is dropped), so a snapshot claiming it lies.
_KEPT_STATES = {s.value: s for s in NetNSState if s is not NetNSState.REMOVED}
# States in which the owning sandbox exists and lists the path (ASSIGNED/CREATED turn
# into REMOVING when the sandbox is deleted; CLOSED is dropped with it).
_NEEDS_SANDBOX = (NetNSState.ASSIGNED, NetNSState.CREATED, NetNSState.CLOSED)
_CONFIG_TYPES: dict[type[Any], str] = {bytes: "msgpack bytes", dict: "a map"}

#: A sandbox row: id, name, config (msgpack bytes, or a map in format 2), netns path,
#: status (state, pid, created_at, exited_at, exit_status: checked as a Status is
#: built), owned netns paths (a tuple, as the entry keeps them: none built to be copied).
_Status = tuple[Any, Any, Any, Any, Any]
_Row = tuple[str, str, bytes | dict[str, Any], str, _Status, tuple[str, ...]]


_I64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
_PID = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
    """The body's keys and the shape of its rows or columns (``Projection.to_snapshot``):
    formats 2 and 3 have ``sandboxes``, format 4 the columns (``SANDBOX_COLUMNS``), whose
    types and status ranges (``event_decode._fast_status``') are then checked in C."""

    format: Any
    last_seq: Any
    sandboxes: list[_Row] | UnsetType = UNSET
    ids: list[str] | UnsetType = UNSET
    names: list[str] | UnsetType = UNSET
    configs: list[bytes] | UnsetType = UNSET
    netns_paths: list[str] | UnsetType = UNSET
    states: list[str] | UnsetType = UNSET
    pids: list[_PID] | UnsetType = UNSET
    created_at: list[_I64] | UnsetType = UNSET
    exited_at: list[_I64 | None] | UnsetType = UNSET
    exit_statuses: list[_I64 | None] | UnsetType = UNSET
    owned_paths: list[tuple[str, ...]] | UnsetType = UNSET
    #: path, sandbox id, state, seq of the assigning record
    owned: list[tuple[Any, Any, Any, Any]]
    #: The recorded netns dir (NetNSDirRecorded): in every snapshot of a store that has
    #: one, so that a compacted log, whose first record is gone, still knows its dir.
    netns_dir: Any = None


_DECODER = msgspec.msgpack.Decoder(_Body)
_ID, _CONFIG, _OWNED = itemgetter(0), itemgetter(2), itemgetter(5)


def _int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise SnapshotError(f"{what} {value!r}: expected an int in [{low}, {high}]")
    return value


def _path(value: object, what: str) -> str:
    """A netns path as the store writes them: absolute, normalised, a plain last name."""
    if (
        type(value) is not str
        or "\0" in value
        or not os.path.isabs(value)
        or os.path.normpath(value) != value
        or os.path.basename(value) in ("", ".", "..")
    ):
        raise SnapshotError(f"{what} {value!r:.120}: expected an absolute, normalised file path")
    return value


def _repeated(values: list[str]) -> str:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    raise ValueError("no value is repeated")


def _sandbox_paths(rows: list[_Row], config_type: type[Any]) -> dict[str, list[str]]:
    """The owned-path list of each sandbox that has one, checked; ids unique, configs of
    the format's type. Ids, names and configs are checked when built. Each whole-body
    test is one C pass (``map``, ``filter``): a body may hold 100,000 rows."""
    if len(set(map(_ID, rows))) != len(rows):
        raise SnapshotError(f"sandbox id {_repeated(list(map(_ID, rows)))!r:.80} is listed twice")
    if set(map(type, map(_CONFIG, rows))) - {config_type}:
        bad = next(row[0] for row in rows if type(row[2]) is not config_type)
        raise SnapshotError(f"sandbox {bad}: config must be {_CONFIG_TYPES[config_type]}")
    out: dict[str, list[str]] = {}
    for sandbox_id, _name, _config, _netns_path, _status, owned in filter(_OWNED, rows):
        paths = [_path(p, f"sandbox {sandbox_id}: owned path") for p in owned]
        if len(set(paths)) != len(paths):
            raise SnapshotError(f"sandbox {sandbox_id}: an owned path is listed twice")
        out[sandbox_id] = paths
    return out


def _columns(body: _Body, fmt: int) -> dict[str, list[Any]]:
    """The sandbox columns of a format 4 body by key, all present and of one length (or
    the rows of an older one, under ``sandboxes``)."""
    columns = {key: getattr(body, key) for key in SANDBOX_COLUMNS}
    present = [key for key, column in columns.items() if column is not UNSET]
    if fmt < 4:
        if body.sandboxes is UNSET or present:
            raise SnapshotError(f"body format {fmt} has its sandboxes as rows, and only so")
        return {"sandboxes": body.sandboxes}
    if body.sandboxes is not UNSET or len(present) != len(columns):
        raise SnapshotError(f"body format {fmt} has its sandboxes as the columns {SANDBOX_COLUMNS}")
    if len(set(map(len, columns.values()))) != 1:
        lengths = {key: len(column) for key, column in columns.items()}
        raise SnapshotError(f"sandbox columns of unequal lengths: {lengths}")
    return columns


def _column_paths(ids: list[str], owned: list[tuple[str, ...]]) -> dict[str, list[str]]:
    """``_sandbox_paths`` of a format 4 body (its column types were checked by the decode)."""
    if len(set(ids)) != len(ids):
        raise SnapshotError(f"sandbox id {_repeated(ids)!r:.80} is listed twice")
    out: dict[str, list[str]] = {}
    for sandbox_id, listed in compress(zip(ids, owned, strict=True), owned):
        paths = [_path(p, f"sandbox {sandbox_id}: owned path") for p in listed]
        if len(set(paths)) != len(paths):
            raise SnapshotError(f"sandbox {sandbox_id}: an owned path is listed twice")
        out[sandbox_id] = paths
    return out


def _check_owned(rows: list[tuple[Any, Any, Any, Any]], last_seq: int,
                 paths_of: dict[str, list[str]]) -> None:  # fmt: skip
    seen: set[str] = set()
    for path, sandbox_id, state_value, assigned_seq in rows:
        _path(path, "owned path")
        if path in seen:
            raise SnapshotError(f"owned path {path} is listed twice")
        seen.add(path)
        try:
            validate_id(sandbox_id)
        except ValueError as exc:
            raise SnapshotError(f"owned path {path}: {exc}") from None
        state = _KEPT_STATES.get(state_value) if type(state_value) is str else None
        if state is None:
            raise SnapshotError(f"owned path {path}: state {state_value!r:.40} is not kept")
        # The assigning record precedes the snapshot's position in the log.
        _int(assigned_seq, f"owned path {path}: assigned seq", 1, last_seq)
        if state in _NEEDS_SANDBOX and path not in paths_of.get(sandbox_id, ()):
            raise SnapshotError(
                f"owned path {path} is {state.value} for sandbox {sandbox_id}, "
                "which does not exist or does not list it"
            )


def decode_body(data: bytes | memoryview) -> dict[str, Any]:
    """The body in ``data`` as a ``Projection.to_snapshot()`` dict (rows as tuples);
    ``SnapshotError`` unless it is well formed."""
    try:
        body = _DECODER.decode(data)
    except Exception as exc:  # DecodeError (ValidationError: the wrong shape), and
        # RecursionError on hostile nesting where the layout holds any value
        raise SnapshotError(f"unreadable body: {type(exc).__name__}: {exc}") from None
    recorded = body.netns_dir
    if recorded is not None:
        _path(recorded, "netns_dir")
    fmt = body.format
    if type(fmt) is not int or fmt not in SNAPSHOT_CONFIG_TYPES:
        raise SnapshotError(f"body format {fmt!r}; expected one of {sorted(SNAPSHOT_CONFIG_TYPES)}")
    last_seq = _int(body.last_seq, "last_seq", 0, 2**63 - 1)
    sandboxes = _columns(body, fmt)
    if fmt == 2:
        sandboxes = {"sandboxes": _with_reference_configs(data, body.sandboxes)}  # type: ignore[arg-type]
        body.sandboxes = sandboxes["sandboxes"]
    if fmt < 4:
        paths_of = _sandbox_paths(body.sandboxes, SNAPSHOT_CONFIG_TYPES[fmt])  # type: ignore[arg-type]
    else:
        paths_of = _column_paths(sandboxes["ids"], sandboxes["owned_paths"])
    _check_owned(body.owned, last_seq, paths_of)
    return {
        "format": fmt,
        "last_seq": last_seq,
        **sandboxes,
        "owned": body.owned,
        "netns_dir": recorded,
    }


def _with_reference_configs(data: bytes | memoryview, rows: list[_Row]) -> list[_Row]:
    """Format 2's rows with each config map as the msgpack reference decodes it, as
    format 2 always was read: str keys at every level and msgpack's own types (a
    Timestamp, an ExtType), so that a load equals the replay that wrote it. The typed
    layout reads a config map as ``Any``: it would take an int key deep inside one, or
    turn a timestamp into a datetime that no longer packs."""
    try:
        reference = msgpack.unpackb(data, raw=False, strict_map_key=True)
        configs = [row[2] for row in reference["sandboxes"]]
        pairs = zip(rows, configs, strict=True)
        return [(i, n, config, p, st, own) for (i, n, _c, p, st, own), config in pairs]
    except Exception as exc:  # msgpack raises several unrelated types on hostile bytes
        raise SnapshotError(f"unreadable body: {type(exc).__name__}: {exc}") from None


def as_format_3(body: dict[str, Any]) -> dict[str, Any]:
    """A format 4 body (``Projection.to_snapshot()``) as format 3 wrote the same content:
    one row per sandbox. For tests and tools that make the older layout; still read."""
    columns = [body[key] for key in SANDBOX_COLUMNS]
    ids, names, configs, paths, *status, owned = columns
    rows = [
        [sid, name, config, path, list(st), list(own)]
        for sid, name, config, path, st, own in zip(
            ids, names, configs, paths, zip(*status, strict=True), owned, strict=True
        )
    ]
    out = {key: value for key, value in body.items() if key not in SANDBOX_COLUMNS}
    return {**out, "format": 3, "sandboxes": rows}
