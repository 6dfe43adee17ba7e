"""``diff``: what changed in the store between two points of its history.

Answers the operator's "what did the node do between the deploy and the
crash?" as three lists - sandboxes added, removed, changed - with the changed
ones broken down field by field (state, pid, times, exit status, network
namespace path and the store's view of it, and the pod config, which can
differ only if an id was deleted and added again in between).

Each point is a seq or a time (see ``replay.timespec.Point``); the two
states are loaded with ``replay.load`` (so snapshots speed it up) and
compared. A is the "before" and B the "after" whatever their order: a diff
from a later point to an earlier one shows history undone, which is
sometimes exactly the question.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import attrs

from replay.timespec import Point, format_time
from replay.view import StoreView, load
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.sandbox import Sandbox

__all__ = ["DiffResult", "SandboxChange", "diff", "sandbox_fields"]


def sandbox_fields(view: StoreView, sb: Sandbox) -> dict[str, Any]:
    """The comparable fields of one sandbox, as plain JSON-ready values."""
    proj = view.projection
    path = proj.owned_path_of(sb.id)
    owned = proj.owned_state(path) if path is not None else None
    st = sb.status
    return {
        "name": sb.name,
        "state": st.state.value,
        "pid": st.pid,
        "created_at": st.created_at,
        "exited_at": st.exited_at,
        "exit_status": st.exit_status,
        "netns_path": sb.metadata.netns_path,
        "netns": owned.value if owned is not None else None,
        "config": sb.metadata.config.to_go_json(),
    }


@attrs.frozen
class SandboxChange:
    """A sandbox present at both points whose fields differ."""

    id: str
    name: str
    changes: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "changes": self.changes}


@attrs.frozen
class PointInfo:
    """Where a point landed: the seq folded to, and that event's time."""

    spec: str
    seq: int
    time_ns: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.spec, "seq": self.seq, "time": format_time(self.time_ns)}


@attrs.frozen
class DiffResult:
    """``added`` and ``removed`` hold each sandbox's fields (plus its id)."""

    a: PointInfo
    b: PointInfo
    added: tuple[dict[str, Any], ...]
    removed: tuple[dict[str, Any], ...]
    changed: tuple[SandboxChange, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [c.to_dict() for c in self.changed],
        }


def _load(
    d: str | os.PathLike[str],
    point: Point,
    key: bytes | None,
    netns_dir: str,
    progress: bool | None,
) -> StoreView:
    if point.seq is not None:
        return load(d, upto_seq=point.seq, key=key, netns_dir=netns_dir, progress=progress)
    return load(d, at=point.at, key=key, netns_dir=netns_dir, progress=progress)


def diff(
    state_dir: str | os.PathLike[str],
    a: Point | int | dt.datetime,
    b: Point | int | dt.datetime,
    *,
    key: bytes | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
    progress: bool | None = False,
) -> DiffResult:
    """Compare the store at point ``a`` with the store at point ``b``.

    ``a``/``b``: an int is a seq, a datetime a time, or a ``Point`` (use
    ``Point(at=ns)`` for a time in ns). Raises as ``load`` does.
    """
    pa, pb = Point.of(a), Point.of(b)
    va = _load(state_dir, pa, key, netns_dir, progress)
    vb = _load(state_dir, pb, key, netns_dir, progress)
    fa = {sb.id: sandbox_fields(va, sb) for sb in va.list()}
    fb = {sb.id: sandbox_fields(vb, sb) for sb in vb.list()}
    added = tuple({"id": i, **f} for i, f in fb.items() if i not in fa)
    removed = tuple({"id": i, **f} for i, f in fa.items() if i not in fb)
    changed = []
    for sandbox_id, before in fa.items():
        after = fb.get(sandbox_id)
        if after is None or after == before:
            continue
        changes = {
            field: {"from": before[field], "to": after[field]}
            for field in before
            if before[field] != after[field]
        }
        changed.append(SandboxChange(sandbox_id, after["name"], changes))
    return DiffResult(
        PointInfo(str(pa), va.seq, va.time_ns),
        PointInfo(str(pb), vb.seq, vb.time_ns),
        added,
        removed,
        tuple(changed),
    )
