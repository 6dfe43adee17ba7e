"""``verify`` over the stream: the chain from the shipped bytes, and every event.

Why both layers, as the local ``replay.verify`` does: an intact chain proves
the records are the ones the node wrote; it does not prove the node's writer
wrote only things the store allows. So after the chain checks of
``replay.fleet.chain`` each in-order record is folded with the state
machine's own checks (``replay.verify.check_event``), and an event the store
would have refused is reported as a ``transition`` problem, a record that
cannot be read as an event as an ``event`` problem.

Folding stops at the first gap or unreadable event (a state built across a
hole would judge the events after it against the wrong state); the report
says so in ``notes``.
"""

from __future__ import annotations

from typing import Any

import attrs

from replay.fleet.chain import MAX_PROBLEMS, ChainChecker, ChainProblem, NodeVerifyReport
from replay.fleet.errors import NodeNotFoundError
from replay.fleet.message import DEFAULT_STREAM, ShippedRecord, check_node, check_stream
from replay.fleet.source import ALL_NODES, fleet_nodes, stream_messages
from replay.verify import check_event
from sandbox import events as ev
from sandbox.errors import StoreError
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection

__all__ = ["EVENT", "TRANSITION", "FleetVerifyReport", "NodeEventChecker", "fleet_verify"]

EVENT = "event"
TRANSITION = "transition"


@attrs.frozen
class FleetVerifyReport:
    """One node's verdict: the chain report plus the event checks."""

    chain: NodeVerifyReport
    event_problems: tuple[ChainProblem, ...]
    events_checked: int
    notes: tuple[str, ...] = ()

    @property
    def node(self) -> str:
        return self.chain.node

    @property
    def ok(self) -> bool:
        """True when the chain is intact and every event is one the store could write."""
        return self.chain.ok and not self.event_problems

    @property
    def problems(self) -> tuple[ChainProblem, ...]:
        """Every problem, in seq order (unlocated ones last)."""
        both = self.chain.problems + self.event_problems
        return tuple(sorted(both, key=lambda p: (p.seq is None, p.seq or 0)))

    @property
    def problems_total(self) -> int:
        return self.chain.problems_total + len(self.event_problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = self.chain.to_dict()
        d["ok"] = self.ok
        d["problems_total"] = self.problems_total
        d["problems"] = [p.to_dict() for p in self.problems]
        d["events_checked"] = self.events_checked
        d["notes"] = list(self.notes)
        return d


class NodeEventChecker:
    """Folds one node's in-order records and reports events the store would refuse."""

    def __init__(self, node: str, netns_dir: str = DEFAULT_NETNS_DIR) -> None:
        self.node = node
        self.projection = Projection(netns_dir)
        self.problems: list[ChainProblem] = []
        self.checked = 0
        self.stopped: str | None = None

    def feed(self, rec: ShippedRecord) -> None:
        """Check and fold ``rec`` if it is the next record of this node."""
        if self.stopped is not None or rec.node != self.node:
            return
        if rec.seq <= self.projection.last_seq:
            return  # a repeat: the chain check reports it
        if rec.seq != self.projection.last_seq + 1:
            self.stopped = (
                f"events after seq {self.projection.last_seq} not checked: "
                f"seq {self.projection.last_seq + 1} is missing"
            )
            return
        sid = rec.payload.get("id")
        sid = sid if isinstance(sid, str) else None
        try:
            event = ev.upcast(rec.payload)
        except (StoreError, ValueError, TypeError, KeyError) as exc:
            self._problem(EVENT, rec, str(exc) or type(exc).__name__)
            self.stopped = f"events after seq {rec.seq - 1} not checked: seq {rec.seq} unreadable"
            return
        why = check_event(self.projection, event)
        if why is not None:
            self._problem(TRANSITION, rec, why)
        try:
            self.projection.apply(rec.seq, event)
        except (StoreError, ValueError, TypeError, KeyError) as exc:
            self._problem(EVENT, rec, str(exc) or type(exc).__name__)
            self.stopped = f"events after seq {rec.seq - 1} not checked: seq {rec.seq} unreadable"
            return
        self.checked += 1

    def _problem(self, kind: str, rec: ShippedRecord, detail: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(ChainProblem(self.node, kind, rec.seq, rec.stream_seq, detail))


def verify_node(
    nats_url: str,
    stream: str,
    node: str,
    *,
    key: bytes | None = None,
    head: bytes | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
    creds: str | None = None,
) -> FleetVerifyReport:
    """Verify one node's records on the stream from seq 1."""
    chain = ChainChecker(node, key=key, head=head)
    events = NodeEventChecker(node, netns_dir)
    for m in stream_messages(nats_url, stream, node, creds=creds):
        rec = chain.feed_bytes(m.data, m.subject, m.stream_seq)
        if rec is not None:
            events.feed(rec)
    notes = (events.stopped,) if events.stopped else ()
    return FleetVerifyReport(chain.report(), tuple(events.problems), events.checked, notes)


def fleet_verify(
    nats_url: str,
    stream: str = DEFAULT_STREAM,
    node: str = ALL_NODES,
    *,
    key: bytes | None = None,
    head: bytes | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
    creds: str | None = None,
) -> list[FleetVerifyReport]:
    """Verify ``node`` (or every node for ``'*'``); one report per node, sorted by node.

    A pinned ``head`` is one node's chain head, so it is refused with ``'*'``.
    Never raises on bad data (that is what the reports are for); raises
    StreamNotFoundError, NodeNotFoundError, FleetConnectionError.
    """
    check_stream(stream)
    if node == ALL_NODES:
        if head is not None:
            raise ValueError("--head pins one node's chain: give --node too")
        nodes = fleet_nodes(nats_url, stream, creds=creds)
        if not nodes:
            raise NodeNotFoundError(stream, node, [])
    else:
        nodes = [check_node(node)]
    return [
        verify_node(nats_url, stream, n, key=key, head=head, netns_dir=netns_dir, creds=creds)
        for n in nodes
    ]
