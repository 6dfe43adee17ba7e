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
from replay.errors import InvalidInputError
from replay.progress import LogProgress
from replay.timespec import TimeLike, format_time, to_ns
from replay.view import check_state_dir, has_log
from sandbox import events as ev
from sandbox.errors import AmbiguousPrefixError, InvalidIDError, NotFoundError
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
_NETNS_TO = {
    ev.NETNS_ASSIGNED: "assigned",
    ev.NETNS_CREATED: "created",
    ev.NETNS_REMOVE_REQUESTED: "removing",
    ev.NETNS_REMOVED: "removed",
    ev.NETNS_CLOSED: "closed",
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


def describe(
    projection: Projection, record: Record, names: dict[str, str] | None = None
) -> AuditEntry:
    """The audit entry of ``record``, given the projection just BEFORE it is applied.

    ``names`` (id -> name, of every sandbox ever added) lets entries about a
    deleted sandbox still name it; it is updated here for adds.
    """
    payload = record.payload
    env = payload.get("env")
    env = env if isinstance(env, dict) else {}
    try:
        event = ev.upcast(payload)
    except Exception:  # an unreadable event is still an entry: the auditor must see it
        event = payload
    kind = str(event.get("type"))
    raw_id = event.get("id")
    sandbox_id = raw_id if isinstance(raw_id, str) else str(raw_id)
    names = {} if names is None else names
    exists = sandbox_id in projection
    name: str | None = names.get(sandbox_id)
    if name is None and exists:
        name = names[sandbox_id] = projection.sandbox(sandbox_id).name  # type: ignore[union-attr]
    changes: dict[str, Any] = {}
    summary: str
    try:
        if kind == ev.SANDBOX_ADDED:
            meta = event["metadata"]
            status = event["status"]
            name = str(meta.get("name"))
            names[sandbox_id] = name
            changes["state"] = _change(None, status.get("state"))
            changes["name"] = _change(None, name)
            if meta.get("netns_path"):
                changes["netns_path"] = _change(None, meta["netns_path"])
            summary = f"added {name} ({status.get('state')})"
        elif kind == ev.SANDBOX_DELETED:
            old_state = projection.status_of(sandbox_id).state.value if exists else None
            changes["state"] = _change(old_state, None)
            summary = f"deleted {name or sandbox_id}" + (f" (was {old_state})" if old_state else "")
        elif kind == ev.STATUS_UPDATED:
            new = event["status"]
            if exists:
                old = projection.status_of(sandbox_id)
                before = {
                    "state": old.state.value,
                    "pid": old.pid,
                    "created_at": old.created_at,
                    "exited_at": old.exited_at,
                    "exit_status": old.exit_status,
                }
            else:
                before = dict.fromkeys(_STATUS_FIELDS)
            for field in _STATUS_FIELDS:
                if before[field] != new.get(field):
                    changes[field] = _change(before[field], new.get(field))
            summary = _status_summary(changes)
        elif kind in _NETNS_TO:
            path = str(event.get("path"))
            old_ns = projection.owned_state(path)
            change = {"path": path, "from": old_ns.value if old_ns else None, "to": _NETNS_TO[kind]}
            if kind == ev.NETNS_CLOSED:
                change["reason"] = event.get("reason")
            changes["netns"] = change
            summary = {
                ev.NETNS_ASSIGNED: f"netns {path} assigned (intent)",
                ev.NETNS_CREATED: f"netns {path} created",
                ev.NETNS_REMOVE_REQUESTED: f"netns {path} removal requested",
                ev.NETNS_REMOVED: f"netns {path} removed",
                ev.NETNS_CLOSED: f"netns {path} found closed out of band: {event.get('reason')}",
            }[kind]
        elif kind == ev.LOG_REPAIRED:
            changes["log"] = {k: v for k, v in event.items() if k not in ("type", "v", "id", "env")}
            summary = (
                f"log repaired: cut at seq {event['cut_seq']}, "
                f"{event['bytes_set_aside']} bytes set aside ({event['reason']})"
            )
        else:
            summary = f"unreadable event: type {kind!r}, version {event.get('v')!r}"
    except (KeyError, TypeError, AttributeError):
        summary = f"malformed {kind} event"

    def _int(value: object) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    actor = env.get("actor")
    host = env.get("host")
    return AuditEntry(
        seq=record.seq,
        time_ns=record.time_ns,
        type=kind,
        sandbox_id=sandbox_id,
        name=name,
        actor=actor if isinstance(actor, str) else None,
        host=host if isinstance(host, str) else None,
        pid=_int(env.get("pid")),
        uid=_int(env.get("uid")),
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
        records = iter(eventlog.read(d, key=key))
        try:
            for rec in records:
                bar.at(rec.segment, rec.offset)
                yield describe(projection, rec, names)
                projection.apply(rec.seq, rec.payload)
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
