"""``audit``: who changed what, when, on which host - one entry per event.

An auditor reads the log as a trail: "at 14:02:07 uid 0, pid 4711 on node-3
(actor kubelet) stopped sandbox 8f3e...: READY -> NOTREADY". Each entry
carries the writer's envelope (time, host, pid, uid, actor), the event type,
the sandbox, a one-line human summary and a structured ``changes`` dict for
scripts::

    {"state": {"from": "READY", "to": "NOTREADY"},
     "exited_at": {"from": None, "to": 1714572127000000000}}
    {"netns": {"path": "/var/run/netns/cni-...", "from": "assigned", "to": "created"}}

"What changed" needs the state *before* the event (the old status of a
StatusUpdated is not in the event), so entries are made by folding the log
and describing each event against the projection just before it is applied
(``describe``; ``follow`` uses the same function for live events).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import attrs

import eventlog
from eventlog.format import Record
from replay.compact import local_start
from replay.errors import InvalidInputError
from replay.progress import LogProgress
from replay.timespec import TimeLike, format_time, to_ns
from replay.view import check_state_dir, has_log
from sandbox import events as ev
from sandbox.errors import AmbiguousPrefixError, InvalidIDError, NotFoundError, StoreError
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection

__all__ = [
    "EVENT_TYPES",
    "AuditEntry",
    "audit",
    "describe",
    "normalise_types",
    "select_entries",
]

#: Every event type, in the order of docs/ARCHITECTURE.md.
EVENT_TYPES: tuple[str, ...] = tuple(ev.CURRENT)

_STATUS_FIELDS = ("state", "pid", "created_at", "exited_at", "exit_status")
#: netns event class -> (the ownership state it leads to, words for the summary).
_NETNS_TO: dict[type[ev.Event], tuple[str, str]] = {
    ev.NetNSAssigned: ("assigned", "assigned (intent)"),
    ev.NetNSCreated: ("created", "created"),
    ev.NetNSRemoveRequested: ("removing", "removal requested"),
    ev.NetNSRemoved: ("removed", "removed"),
    ev.NetNSClosed: ("closed", "found closed out of band"),
    ev.NetNSCreateFailed: ("failed", "could not be created"),
}


@attrs.frozen
class AuditEntry:
    """One event as an auditor reads it."""

    seq: int
    time_ns: int
    type: str
    sandbox_id: str
    name: str | None
    actor: str | None
    host: str | None
    pid: int | None
    uid: int | None
    summary: str
    changes: dict[str, Any] = attrs.field(factory=dict, eq=True)

    @property
    def time(self) -> str:
        """The record's time, RFC 3339 UTC."""
        return format_time(self.time_ns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "time_ns": self.time_ns,
            "type": self.type,
            "sandbox_id": self.sandbox_id,
            "name": self.name,
            "actor": self.actor,
            "host": self.host,
            "pid": self.pid,
            "uid": self.uid,
            "summary": self.summary,
            "changes": self.changes,
        }


#: An ``AuditEntry`` or a subclass (``replay.fleet.audit.FleetAuditEntry``).
_E = TypeVar("_E", bound=AuditEntry)


def _change(old: Any, new: Any) -> dict[str, Any]:
    return {"from": old, "to": new}


def _status_summary(changes: dict[str, Any]) -> str:
    parts = []
    state = changes.get("state")
    if state is not None:
        parts.append(f"{state['from']} -> {state['to']}")
    for field in ("pid", "exit_status"):
        if field in changes:
            c = changes[field]
            parts.append(f"{field.replace('_', ' ')} {c['from']} -> {c['to']}")
    for field in ("created_at", "exited_at"):
        if field in changes:
            c = changes[field]
            word = field.replace("_at", "")
            parts.append(f"{word} at {format_time(c['to'])}" if c["to"] else f"{word} at cleared")
    return ", ".join(parts) or "no change"


def _added(projection: Projection, event: ev.SandboxAdded) -> tuple[str, dict[str, Any]]:
    meta, state = event.metadata, event.status.state.value
    changes: dict[str, Any] = {"state": _change(None, state), "name": _change(None, meta.name)}
    if meta.netns_path:
        changes["netns_path"] = _change(None, meta.netns_path)
    return f"added {meta.name} ({state})", changes


def _deleted(projection: Projection, event: ev.SandboxDeleted) -> tuple[str, dict[str, Any]]:
    exists = event.id in projection
    old_state = projection.state_of(event.id).value if exists else None
    name = projection.sandbox(event.id).name if exists else event.id  # type: ignore[union-attr]
    summary = f"deleted {name}" + (f" (was {old_state})" if old_state else "")
    return summary, {"state": _change(old_state, None)}


def _status(projection: Projection, event: ev.StatusUpdated) -> tuple[str, dict[str, Any]]:
    new = event.status.to_event_dict()
    if event.id in projection:
        before = projection.status_of(event.id).to_event_dict()
    else:
        before = dict.fromkeys(_STATUS_FIELDS)
    changes = {f: _change(before[f], new[f]) for f in _STATUS_FIELDS if before[f] != new[f]}
    return _status_summary(changes), changes


def _netns(projection: Projection, event: ev.NetNSEvent) -> tuple[str, dict[str, Any]]:
    old = projection.owned_state(event.path)
    to, words = _NETNS_TO[type(event)]
    change: dict[str, Any] = {"path": event.path, "from": old.value if old else None, "to": to}
    summary = f"netns {event.path} {words}"
    if isinstance(event, ev.NetNSClosed | ev.NetNSCreateFailed):
        change["reason"] = event.reason
        summary += f": {event.reason}"
    return summary, {"netns": change}


def _carried(projection: Projection, event: ev.NetNSOwnershipCarried) -> tuple[str, dict[str, Any]]:
    # The state does not change; what moves is the record that proves ownership.
    old = projection.owned_state(event.path)
    state = old.value if old else None
    change: dict[str, Any] = {
        "path": event.path,
        "from": state,
        "to": state,
        "assigned_seq": event.assigned_seq,
    }
    summary = (
        f"netns {event.path} ownership carried forward from seq {event.assigned_seq} "
        "before compaction"
    )
    return summary, {"netns": change}


def _dir_recorded(projection: Projection, event: ev.NetNSDirRecorded) -> tuple[str, dict[str, Any]]:
    return f"netns dir recorded: {event.netns_dir}", {"netns_dir": event.netns_dir}


def _repaired(projection: Projection, event: ev.LogRepaired) -> tuple[str, dict[str, Any]]:
    log = {k: v for k, v in event.to_payload().items() if k not in ("type", "v", "id", "env")}
    summary = (
        f"log repaired: cut at seq {event.cut_seq}, "
        f"{event.bytes_set_aside} bytes set aside ({event.reason})"
    )
    return summary, {"log": log}


#: One describer per event class: (summary, changes) given the projection before it.
_DESCRIBE: dict[type[ev.Event], Callable[[Projection, Any], tuple[str, dict[str, Any]]]] = {
    ev.SandboxAdded: _added,
    ev.SandboxDeleted: _deleted,
    ev.StatusUpdated: _status,
    **dict.fromkeys(ev.NETNS_EVENTS, _netns),
    ev.NetNSOwnershipCarried: _carried,
    ev.NetNSDirRecorded: _dir_recorded,
    ev.LogRepaired: _repaired,
}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def describe(
    projection: Projection, record: Record, names: dict[str, str] | None = None
) -> AuditEntry:
    """The audit entry of ``record``, given the projection just BEFORE it is applied.

    ``names`` (id -> name, of every sandbox ever added) lets entries about a
    deleted sandbox still name it; it is updated here for adds. An event
    that does not decode is still an entry (the auditor must see it).
    """
    return _entry(projection, record, _decode(record), names)


def _decode(record: Record) -> ev.Event | None:
    try:
        return ev.decode(record.payload)
    except StoreError:
        return None


def _entry(
    projection: Projection, record: Record, event: ev.Event | None, names: dict[str, str] | None
) -> AuditEntry:
    payload = record.payload
    names = {} if names is None else names
    if event is None:
        kind, raw_id = str(payload.get("type")), payload.get("id")
        sandbox_id = raw_id if isinstance(raw_id, str) else str(raw_id)
        summary = f"unreadable event: type {kind!r}, version {payload.get('v')!r}"
        changes: dict[str, Any] = {}
        env = ev.Env.from_payload(payload.get("env"))
    else:
        kind, sandbox_id, env = event.TYPE, event.id, event.env
        summary, changes = _DESCRIBE[type(event)](projection, event)
        if isinstance(event, ev.SandboxAdded):
            names[sandbox_id] = event.metadata.name
    name = names.get(sandbox_id)
    if name is None and sandbox_id in projection:
        name = names[sandbox_id] = projection.sandbox(sandbox_id).name  # type: ignore[union-attr]
    return AuditEntry(
        seq=record.seq,
        time_ns=record.time_ns,
        type=kind,
        sandbox_id=sandbox_id,
        name=name,
        actor=env.actor,
        host=env.host,
        pid=_int(env.pid),
        uid=_int(env.uid),
        summary=summary,
        changes=changes,
    )


def normalise_types(types: Iterable[str] | None) -> frozenset[str] | None:
    """Event type names as given (any case, comma-separated allowed) -> canonical names."""
    if types is None:
        return None
    by_lower = {t.lower(): t for t in EVENT_TYPES}
    out: set[str] = set()
    for item in types:
        for part in str(item).split(","):
            name = part.strip()
            if not name:
                continue
            canonical = by_lower.get(name.lower())
            if canonical is None:
                raise InvalidInputError(
                    f"unknown event type {name!r}; expected one of {', '.join(EVENT_TYPES)}"
                )
            out.add(canonical)
    return frozenset(out)


def entries(
    state_dir: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
    progress: bool | None = False,
) -> Iterator[AuditEntry]:
    """Every event of the log as an entry, in seq order (no filtering)."""
    d = check_state_dir(state_dir)
    if not has_log(d):
        return
    projection = Projection(netns_dir)
    names: dict[str, str] = {}
    with LogProgress(d, "reading the audit trail", enabled=progress) as bar:
        # A compacted log: the local part, with a warning naming what is not here
        # (sandboxes added before it are known by id only).
        first = local_start(d)
        projection.last_seq = first - 1
        records = iter(eventlog.read(d, first, key=key))
        try:
            for rec in records:
                bar.at(rec.segment, rec.offset)
                event = _decode(rec)
                yield _entry(projection, rec, event, names)
                projection.apply(rec.seq, rec.payload if event is None else event)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()


def audit(
    state_dir: str | os.PathLike[str],
    sandbox: str | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    types: Iterable[str] | None = None,
    *,
    key: bytes | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
    progress: bool | None = False,
) -> list[AuditEntry]:
    """The audit trail, oldest first, optionally narrowed.

    ``sandbox``: an id or unique prefix, resolved against every id the log
    ever held (deleted sandboxes included - their history is what an audit
    is often about); ``NotFoundError``/``AmbiguousPrefixError`` otherwise.
    ``since``/``until``: int ns or datetime, inclusive. ``types``: event
    type names (``StatusUpdated``; any case).
    """
    return select_entries(
        lambda: entries(state_dir, key=key, netns_dir=netns_dir, progress=progress),
        sandbox,
        since,
        until,
        types,
        where="the log's history",
    )


def select_entries(
    open_entries: Callable[[], Iterable[_E]],
    sandbox: str | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    types: Iterable[str] | None = None,
    *,
    where: str,
) -> list[_E]:
    """The entries of a trail that pass ``audit``'s filters, oldest first.

    The filters are checked (and may raise) before ``open_entries`` is
    called, so a bad argument never opens a log or a stream. ``sandbox`` is
    resolved against every id of the whole trail, as ``audit`` says;
    ``where`` names the trail in the errors ("the log's history").
    """
    if sandbox is not None and not sandbox:
        raise InvalidIDError("sandbox id (or prefix) must not be empty")
    since_ns = to_ns(since) if since is not None else None
    until_ns = to_ns(until) if until is not None else None
    wanted = normalise_types(types)
    out: list[_E] = []
    matched_ids: set[str] = set()
    trail = iter(open_entries())
    try:
        for entry in trail:
            if sandbox is not None:
                if not entry.sandbox_id.startswith(sandbox):
                    continue
                matched_ids.add(entry.sandbox_id)
            if since_ns is not None and entry.time_ns < since_ns:
                continue
            if until_ns is not None and entry.time_ns > until_ns:
                continue
            if wanted is not None and entry.type not in wanted:
                continue
            out.append(entry)
    finally:
        close = getattr(trail, "close", None)
        if close is not None:
            close()
    if sandbox is not None:
        if not matched_ids:
            raise NotFoundError(f"no sandbox with id or id prefix {sandbox!r} in {where}")
        if sandbox in matched_ids:
            out = [e for e in out if e.sandbox_id == sandbox]
        elif len(matched_ids) > 1:
            shown = ", ".join(sorted(matched_ids)[:2])
            raise AmbiguousPrefixError(
                f"id prefix {sandbox!r} matches more than one sandbox in {where} "
                f"({shown}, ...); give more characters"
            )
    return out
