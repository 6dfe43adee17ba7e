"""What a snapshot's body must say before the store believes any of it.

A snapshot's checksum only proves the bytes are the ones written; it says
nothing about whether the writer told the truth (anyone who can write the
state dir can write a checksum). Events are checked for shape as they are
folded; a snapshot skips the fold, so its content is checked here, as
strictly: types, ids, names, states, paths, and the ownership entries'
consistency with the sandboxes (the invariants ``Projection``'s fold keeps).

``check_body`` looks at the decoded msgpack before a ``Projection`` is built
from it; building every ``Sandbox`` afterwards (``snapshot.decode_info``)
checks metadata, config and status with the same validators events use.
"""

from __future__ import annotations

import os
from typing import Any

from sandbox.errors import SnapshotError
from sandbox.ids import validate_id
from sandbox.ownership import NetNSState
from sandbox.projection import SNAPSHOT_FORMAT

__all__ = ["check_body"]

_KEYS = frozenset(("format", "last_seq", "sandboxes", "owned"))
#: The recorded netns dir (NetNSDirRecorded): in every snapshot of a store that has
#: one, so that a compacted log, whose first record is gone, still knows its dir.
_OPTIONAL = frozenset(("netns_dir",))
# REMOVED is never kept by the fold (the entry is dropped), so a snapshot claiming it lies.
_KEPT_STATES = {s.value: s for s in NetNSState if s is not NetNSState.REMOVED}
# States in which the owning sandbox exists and lists the path (ASSIGNED/CREATED turn
# into REMOVING when the sandbox is deleted; CLOSED is dropped with it).
_NEEDS_SANDBOX = (NetNSState.ASSIGNED, NetNSState.CREATED, NetNSState.CLOSED)


def _int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise SnapshotError(f"{what} {value!r}: expected an int in [{low}, {high}]")
    return value


def _list(value: object, what: str, length: int | None = None) -> list[Any]:
    if type(value) is not list or (length is not None and len(value) != length):
        shape = "a list" if length is None else f"a list of {length}"
        raise SnapshotError(f"{what}: expected {shape}, got {value!r:.80}")
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


def _sandbox_paths(rows: list[Any]) -> dict[str, list[str]]:
    """Each sandbox's owned-path list, checked; ids and names are checked when built."""
    out: dict[str, list[str]] = {}
    for i, row in enumerate(rows):
        sandbox_id, _name, config, netns_path, status, owned = _list(row, f"sandboxes[{i}]", 6)
        if type(sandbox_id) is not str or sandbox_id in out:
            raise SnapshotError(f"sandboxes[{i}]: id {sandbox_id!r:.80} is not a unique str")
        if type(config) is not dict or type(netns_path) is not str:
            raise SnapshotError(f"sandbox {sandbox_id}: config must be a map, netns_path a str")
        _list(status, f"sandbox {sandbox_id}: status", 5)
        paths = [_path(p, f"sandbox {sandbox_id}: owned path") for p in _list(owned, "owned")]
        if len(set(paths)) != len(paths):
            raise SnapshotError(f"sandbox {sandbox_id}: an owned path is listed twice")
        out[sandbox_id] = paths
    return out


def check_body(body: object) -> None:
    """Raise ``SnapshotError`` unless ``body`` is a well-formed ``to_snapshot()`` dict."""
    if type(body) is not dict or not _KEYS <= set(body) <= _KEYS | _OPTIONAL:
        raise SnapshotError(
            f"body must be a map with keys {sorted(_KEYS)} (and optionally {sorted(_OPTIONAL)})"
        )
    recorded = body.get("netns_dir")
    if recorded is not None:
        _path(recorded, "netns_dir")
    if body["format"] != SNAPSHOT_FORMAT:
        raise SnapshotError(f"body format {body['format']!r}; expected {SNAPSHOT_FORMAT}")
    last_seq = _int(body["last_seq"], "last_seq", 0, 2**63 - 1)
    paths_of = _sandbox_paths(_list(body["sandboxes"], "sandboxes"))
    seen: set[str] = set()
    for i, row in enumerate(_list(body["owned"], "owned")):
        path, sandbox_id, state_value, assigned_seq = _list(row, f"owned[{i}]", 4)
        _path(path, f"owned[{i}]: path")
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
