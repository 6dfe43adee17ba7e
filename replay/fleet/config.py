"""What a shipper is told (``ShipConfig``), what it reports (``ShipStats``), its exit codes.

Why a module of its own: the shipper (``ship``), the log feeder (``feeder``)
and the CLI glue (``commands``) all need these, and none of them should have
to import the others to get them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from replay.fleet.message import DEFAULT_STREAM, check_node, check_stream, subject_for

#: The exit codes by name: ``replay.fleet.ship`` re-exports exactly these.
EXIT_NAMES = [
    "EXIT_CORRUPT",
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "EXIT_INVALID",
    "EXIT_NOT_FOUND",
    "EXIT_NO_STATE_DIR",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
]

__all__ = [
    *EXIT_NAMES,
    "SHIP_HELP",
    "ShipConfig",
    "ShipStats",
]

#: ``ship``'s line in ``sandboxctl``'s command list (the CLI shows it before,
#: or instead of, building the parser: ``replay.cli.tools``).
SHIP_HELP = "ship this node's event log to NATS JetStream"

#: Exit codes of ``run_ship`` / ``python -m replay.fleet.ship`` and the fleet
#: readers; 0-9 mean what they mean for every sandboxctl command.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_STATE_DIR = 3
EXIT_NOT_FOUND = 4
EXIT_CORRUPT = 6
EXIT_INVALID = 7
#: NATS could not be reached (a reader), or not for --give-up-after seconds (ship).
EXIT_UNREACHABLE = 10
#: The stream holds a different history for this node than its log.
EXIT_DIVERGED = 11


@attrs.frozen
class ShipConfig:
    """Everything a shipper needs; defaults are the CLI's."""

    state_dir: Path
    nats_url: str
    stream: str = DEFAULT_STREAM
    node: str = "node"
    key: bytes | None = None
    creds: str | None = None
    #: Un-acked publishes in flight at most (bounded memory, pipelining); also
    #: the size of a group of records read (and synced) at once.
    window: int = 256
    #: Seconds an ack may take before the connection is called broken.
    ack_timeout: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    #: Seconds of continuous failure to connect or publish before giving up.
    give_up_after: float = 3600.0
    #: The stream's de-duplication window, when the shipper creates it.
    duplicate_window: float = 120.0
    #: Stream replicas when the shipper creates it (a cluster: 3).
    replicas: int = 1
    #: Ship what the log holds now, then exit (instead of tailing).
    once: bool = False
    #: Seconds between re-reads of the log when the follower gets no wake-up.
    poll_interval: float = 1.0

    def __attrs_post_init__(self) -> None:
        check_stream(self.stream)
        check_node(self.node)
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.give_up_after <= 0:
            raise ValueError("give_up_after must be > 0 seconds")
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")

    @property
    def subject(self) -> str:
        """The subject this node publishes on."""
        return subject_for(self.stream, self.node)


@attrs.define
class ShipStats:
    """Counters of one shipper run (printed at exit, read by tests and the bench).

    ``syncs`` counts the shipper's own fdatasyncs (``replay.fleet.durable``):
    records the log does not prove durable are synced before publishing.
    """

    node: str
    subject: str
    acked: int = 0
    duplicates: int = 0
    published: int = 0
    sessions: int = 0
    failures: int = 0
    resumed_from: int = 0
    last_acked_seq: int = 0
    #: The time_ns of record ``last_acked_seq`` (its writer's clock), 0 before any.
    last_acked_time_ns: int = 0
    syncs: int = 0
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return attrs.asdict(self)
