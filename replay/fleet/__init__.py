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

The names below are imported on first use (``replay.fleet.load_fleet``):
importing one light module of the package - the CLI imports ``message`` and
``config`` for every command - must not import them all. The NATS client
itself loads only when something connects (``source.connect``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from replay.fleet.message import ALL_NODES, DEFAULT_STREAM, ShippedRecord
    from replay.fleet.source import fleet_nodes, fleet_records
    from replay.fleet.verify import FleetVerifyReport, fleet_verify
    from replay.fleet.view import is_nats_source, load_fleet, load_fleet_all

#: Re-exported names -> the module that defines them.
_EXPORTS = {
    "FleetAuditEntry": "audit",
    "fleet_audit": "audit",
    "ChainChecker": "chain",
    "ChainProblem": "chain",
    "NodeVerifyReport": "chain",
    "verify_records": "chain",
    "DivergedError": "errors",
    "FleetConnectionError": "errors",
    "FleetDataError": "errors",
    "FleetError": "errors",
    "NodeNotFoundError": "errors",
    "ShipFatalError": "errors",
    "ShipGaveUpError": "errors",
    "StreamNotFoundError": "errors",
    "ALL_NODES": "message",
    "DEFAULT_STREAM": "message",
    "ShippedRecord": "message",
    "fleet_nodes": "source",
    "fleet_records": "source",
    "FleetVerifyReport": "verify",
    "fleet_verify": "verify",
    "is_nats_source": "view",
    "load_fleet": "view",
    "load_fleet_all": "view",
}


def __getattr__(name: str) -> Any:
    """``replay.fleet.<name>``: import the module that defines it on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
