"""The audit trail of a node, or of the whole fleet merged by time, from the stream.

Why it reuses ``replay.audit.describe``: an entry must read the same whether
the auditor looks at a node's state dir or at the fleet's copy - same
summary, same ``changes``, same fields. The only addition is ``node`` (the
subject the record came from): the envelope's ``host`` is what the writer
said its name was, ``node`` is where the shipper put it, and on a fleet-wide
trail both matter. The filters (``sandbox``, ``since``, ``until``, ``types``)
are ``replay.audit.select_entries``, the very code of the local ``audit``.

Entries of ``'*'`` come in record-time order across nodes (each node's own
order is always kept); each node is folded with its own projection, so the
"from" side of every change is that node's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

import attrs

from eventlog.format import Record
from replay.audit import AuditEntry, describe, select_entries
from replay.fleet.errors import FleetDataError
from replay.fleet.message import DEFAULT_STREAM
from replay.fleet.source import ALL_NODES, fleet_records
from replay.timespec import TimeLike
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection

__all__ = ["FleetAuditEntry", "fleet_audit", "fleet_audit_entries"]


@attrs.frozen
class FleetAuditEntry(AuditEntry):
    """An audit entry plus the node whose stream subject it came from."""

    node: str = ""

    def to_dict(self) -> dict[str, Any]:
        """As ``AuditEntry.to_dict`` with ``node`` first."""
        return {"node": self.node, **super().to_dict()}


def fleet_audit_entries(
    records: Iterable[Any], *, netns_dir: str = DEFAULT_NETNS_DIR
) -> Iterator[FleetAuditEntry]:
    """Entries for shipped records (one node's, or several nodes' interleaved).

    Each node's records must come in seq order from 1; anything else is a
    FleetDataError (``verify`` says what exactly is wrong).
    """
    projections: dict[str, Projection] = {}
    names: dict[str, dict[str, str]] = {}
    for rec in records:
        node = rec.node
        projection = projections.get(node)
        if projection is None:
            projection = projections[node] = Projection(netns_dir)
            names[node] = {}
        if rec.seq != projection.last_seq + 1:
            raise FleetDataError(
                f"node {node}: record seq {rec.seq} after seq {projection.last_seq} "
                f"(stream seq {rec.stream_seq}); run verify"
            )
        # describe() reads seq, time_ns and payload: a ShippedRecord has them.
        entry = describe(projection, cast(Record, rec), names[node])
        projection.apply(rec.seq, rec.payload)
        yield FleetAuditEntry(**attrs.asdict(entry, recurse=False), node=node)


def fleet_audit(
    nats_url: str,
    stream: str = DEFAULT_STREAM,
    node: str = ALL_NODES,
    sandbox: str | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    types: Iterable[str] | None = None,
    *,
    netns_dir: str = DEFAULT_NETNS_DIR,
    creds: str | None = None,
) -> list[FleetAuditEntry]:
    """``replay.audit`` over the stream: one node's trail, or the fleet's (``'*'``).

    Filters mean what they mean locally. ``sandbox`` (id or unique prefix)
    is resolved against every id the trail ever held; on the fleet trail the
    same prefix may name sandboxes on several nodes, which is ambiguous
    unless it is an exact id.
    """

    def trail() -> Iterator[FleetAuditEntry]:
        records = fleet_records(nats_url, stream, node, creds=creds)
        try:
            yield from fleet_audit_entries(records, netns_dir=netns_dir)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()

    return select_entries(trail, sandbox, since, until, types, where=f"the history on {stream}")
