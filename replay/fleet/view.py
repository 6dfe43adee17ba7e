"""The read tools over shipped records: a node's state, and all nodes' states.

Why it mirrors ``replay.view.load``: an auditor should ask the fleet copy the
same questions as a node's own state dir - "what did node X believe after
event k, or at time t?" - and get the same ``StoreView`` back, so every
renderer of the local tools works unchanged. The fold is the same pure
``sandbox.projection.Projection``; only the records come from JetStream.

A view from the stream is built from seq 1 (snapshots are local files and are
not shipped). Its ``state_dir`` names where it came from
(``nats:<stream>.<node>``), which is what error messages and renderers show.
"""

from __future__ import annotations

from collections.abc import Iterable

from replay.errors import PointOutOfRangeError
from replay.fleet.errors import FleetDataError
from replay.fleet.message import ALL_NODES, DEFAULT_STREAM, NATS_SCHEMES, ShippedRecord, check_node
from replay.fleet.source import fleet_nodes, fleet_records
from replay.timespec import TimeLike, to_ns
from replay.view import StoreView, check_point, close_records
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection
from sandbox.snapshot import gc_paused

__all__ = [
    "NATS_SCHEMES",
    "fold_records",
    "is_nats_source",
    "load_fleet",
    "load_fleet_all",
    "load_source",
    "source_name",
]


def is_nats_source(source: object) -> bool:
    """Whether ``source`` (a ``replay.load`` first argument) names NATS servers.

    Why: ``replay.load("nats://host:4222", node="n1")`` and
    ``replay.load("/var/lib/sandboxes")`` share one entry point; a path can
    never start with ``nats://``.
    """
    return (
        isinstance(source, str)
        and source.split("://", 1)[0].lower() in NATS_SCHEMES
        and ("://" in source)
    )


def source_name(stream: str, node: str) -> str:
    """How a view read from the stream names its origin."""
    return f"nats:{stream}.{node}"


def fold_records(
    records: Iterable[ShippedRecord],
    name: str,
    *,
    upto_seq: int | None = None,
    until_ns: int | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
) -> StoreView:
    """Fold one node's records (in seq order) into a view, stopping at the point.

    A record out of order (a gap or a repeat on the stream) is a
    FleetDataError naming it: a state built across a hole would be wrong
    without saying so; ``verify`` tells what exactly is wrong.
    """
    projection = Projection(netns_dir)
    last: ShippedRecord | None = None
    with gc_paused():  # many long-lived dicts: the collector would dominate
        for rec in records:
            if upto_seq is not None and rec.seq > upto_seq:
                break
            if until_ns is not None and rec.time_ns > until_ns:
                break
            if rec.seq != projection.last_seq + 1:
                raise FleetDataError(
                    f"{name}: record seq {rec.seq} after seq {projection.last_seq} "
                    f"(stream seq {rec.stream_seq}); run verify"
                )
            projection.apply(rec.seq, rec.payload)
            last = rec
    if upto_seq is not None and projection.last_seq < upto_seq:
        raise PointOutOfRangeError(
            f"seq {upto_seq} is beyond the end of {name} (last seq {projection.last_seq})"
        )
    return StoreView.after(projection, name, last)


def load_fleet(
    nats_url: str,
    stream: str = DEFAULT_STREAM,
    node: str = "",
    upto_seq: int | None = None,
    at: TimeLike | None = None,
    *,
    netns_dir: str = DEFAULT_NETNS_DIR,
    creds: str | None = None,
) -> StoreView:
    """``replay.load`` for a node on the stream: its state after ``upto_seq``, at ``at``, or now.

    Raises StreamNotFoundError, NodeNotFoundError, FleetConnectionError,
    FleetDataError, PointOutOfRangeError.
    """
    check_point(upto_seq, at)
    if node == ALL_NODES:
        raise ValueError("a state is one node's: give a node id, or use load_fleet_all")
    check_node(node)
    name = source_name(stream, node)
    if upto_seq == 0:
        return StoreView(Projection(netns_dir), name)
    records = fleet_records(nats_url, stream, node, creds=creds)
    try:
        return fold_records(
            records,
            name,
            upto_seq=upto_seq,
            until_ns=to_ns(at) if at is not None else None,
            netns_dir=netns_dir,
        )
    finally:
        close_records(records)


def load_source(
    source: str,
    upto_seq: int | None,
    at: TimeLike | None,
    *,
    netns_dir: str,
    node: str | None,
    stream: str | None,
) -> StoreView:
    """``replay.load(URL, ..., node=, stream=)`` for NATS URLs (``replay.view.SourceLoader``)."""
    if node is None:
        raise ValueError("a NATS source needs node=: a state is one node's")
    return load_fleet(source, stream or DEFAULT_STREAM, node, upto_seq, at, netns_dir=netns_dir)


def load_fleet_all(
    nats_url: str,
    stream: str = DEFAULT_STREAM,
    at: TimeLike | None = None,
    *,
    netns_dir: str = DEFAULT_NETNS_DIR,
    creds: str | None = None,
) -> dict[str, StoreView]:
    """Every node's view (now, or at wall time ``at``), keyed by node id, sorted.

    Why one view per node and not one merged store: sandbox ids and names
    are unique per node only; the fleet is a set of stores.
    """
    return {
        node: load_fleet(nats_url, stream, node, at=at, netns_dir=netns_dir, creds=creds)
        for node in fleet_nodes(nats_url, stream, creds=creds)
    }
