"""The fleet: every node's event log shipped to NATS JetStream, and read back.

Why: a node's log proves what happened on that node only while the node is
there to ask. Shipping each record (with the bytes its chain digest covers)
to a JetStream stream, one subject per node, lets an auditor replay, audit
and verify any node - or the whole fleet, merged by time - from one place,
including nodes that are gone.

Modules:

    message.py     a record <-> one JetStream message (what travels, and why)
    config.py      the shipper's config, summary counters and exit codes
    durable.py     the rule: publish only what is durable (proof or own fdatasync)
    feeder.py      the log read (raw records), made durable, handed to the shipper
    resume.py      on each connect: where the stream stands, and that it is this log's
    ship.py        the shipper (``sandboxctl ship``; ``python -m replay.fleet.ship``)
    source.py      reading a node's (or the fleet's) records back, synchronously
    chain.py       re-verifying the hash chain from the shipped bytes alone
    verify.py      verify over the stream: the chain, then every event
    view.py        a node's state (``load_fleet``), every node's (``load_fleet_all``)
    audit.py       the audit trail of a node, or of the fleet merged by time
    commands.py    CLI glue: ``add_ship_parser``/``run_ship`` and the --nats readers
    natsserver.py  a throw-away local nats-server for tests and the benchmark

See docs/FLEET.md for running it and the guarantees.
"""

from __future__ import annotations

from replay.fleet.audit import FleetAuditEntry, fleet_audit
from replay.fleet.chain import ChainChecker, ChainProblem, NodeVerifyReport, verify_records
from replay.fleet.errors import (
    DivergedError,
    FleetConnectionError,
    FleetDataError,
    FleetError,
    NodeNotFoundError,
    ShipFatalError,
    ShipGaveUpError,
    StreamNotFoundError,
)
from replay.fleet.message import DEFAULT_STREAM, ShippedRecord
from replay.fleet.source import ALL_NODES, fleet_nodes, fleet_records
from replay.fleet.verify import FleetVerifyReport, fleet_verify
from replay.fleet.view import is_nats_source, load_fleet, load_fleet_all

__all__ = [
    "ALL_NODES",
    "DEFAULT_STREAM",
    "ChainChecker",
    "ChainProblem",
    "DivergedError",
    "FleetAuditEntry",
    "FleetConnectionError",
    "FleetDataError",
    "FleetError",
    "FleetVerifyReport",
    "NodeNotFoundError",
    "NodeVerifyReport",
    "ShipFatalError",
    "ShipGaveUpError",
    "ShippedRecord",
    "StreamNotFoundError",
    "fleet_audit",
    "fleet_nodes",
    "fleet_records",
    "fleet_verify",
    "is_nats_source",
    "load_fleet",
    "load_fleet_all",
    "verify_records",
]
