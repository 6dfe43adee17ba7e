"""Errors of the fleet tooling, all ``ReplayError`` so the CLI maps them to exit codes.

Why separate classes: an operator must tell "NATS is unreachable" (retry,
check the URL) from "the stream has no such node" (typo) from "what is on the
stream does not match this node's log" (two hosts shipping under one node
id, or a replaced log) - each needs a different action.
"""

from __future__ import annotations

from replay.errors import ReplayError


class FleetError(ReplayError):
    """Base class of the fleet errors."""


class FleetConnectionError(FleetError):
    """NATS could not be reached, or the connection broke during a read."""


class StreamNotFoundError(FleetError):
    """The JetStream stream does not exist (nothing was ever shipped to it)."""

    def __init__(self, stream: str) -> None:
        super().__init__(f"stream {stream} does not exist on the NATS server")
        self.stream = stream


class NodeNotFoundError(FleetError, LookupError):
    """The stream holds no record of the node asked for."""

    def __init__(self, stream: str, node: str, known: list[str]) -> None:
        hint = f" (nodes on the stream: {', '.join(known[:20])})" if known else " (it is empty)"
        super().__init__(f"stream {stream} holds no records of node {node}{hint}")
        self.stream = stream
        self.node = node
        self.known = known


class FleetDataError(FleetError):
    """A message on the stream is malformed where a well-formed record was needed.

    Read tools (view, history, audit) raise this; ``verify`` reports the same
    thing as a problem instead.
    """


class ShipFatalError(FleetError):
    """A shipper error that retrying cannot fix; the shipper stops (exit 1).

    Why not retry: a record the server can never take (bigger than its
    max_payload), or a stream that exists with other subjects, will fail the
    same way forever; retrying would only hide it in a log.
    """


class DivergedError(ShipFatalError):
    """The stream's records of a node do not match the node's local log.

    Raised by the shipper before it publishes anything: the stream's last
    record for the node has a seq the local log lacks, or a different digest
    at that seq. Publishing would splice two histories into one chain.
    """


class ShipGaveUpError(FleetError):
    """The shipper could not reach NATS for longer than it was told to keep trying."""
