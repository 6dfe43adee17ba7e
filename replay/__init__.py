"""Read-side tooling for the event-sourced sandbox store, and the ``sandboxctl`` CLI.

Everything here reads a state dir without taking the writer lock, so it
works while the node's agent runs, on a copy taken from a broken machine,
and as a user who may not write there:

    load(state_dir, upto_seq=None, at=None) -> StoreView
        the store's state after event ``upto_seq`` or as of wall time ``at``
    verify(state_dir, head=None, key=None) -> VerifyResult
        bytes, chain, seqs, and every event re-checked against the state machine
    audit(state_dir, sandbox=None, since=None, until=None, types=None) -> list[AuditEntry]
        who changed what, when, where
    diff(state_dir, a, b) -> DiffResult
        sandboxes added, removed and changed between two points
    follow(state_dir) -> Follower
        a live view that updates as another process appends

The fleet (every node's log shipped to NATS JetStream; ``replay.fleet``):
``load("nats://host:4222", node="n1")`` is a node's state from the stream,
and ``load_fleet``, ``load_fleet_all``, ``fleet_audit``, ``fleet_verify`` and
``fleet_records`` are re-exported here. They are imported on first use: the
NATS client is not imported with ``replay`` (the CLI's start-up would pay
for it on every local command).

The CLI (``sandboxctl``, ``python -m replay``) is in ``replay.cli``; its
reference is docs/CLI.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from replay.audit import AuditEntry, audit
from replay.diff import DiffResult, SandboxChange, diff
from replay.errors import (
    InvalidInputError,
    NotSupportedError,
    PointOutOfRangeError,
    ReplayError,
    StateDirMissingError,
)
from replay.fleet.message import NATS_SCHEMES
from replay.follow import Follower, follow
from replay.timespec import Point
from replay.verify import Problem, VerifyResult, verify
from replay.view import StoreView, load, register_source

if TYPE_CHECKING:
    from replay.fleet.audit import fleet_audit
    from replay.fleet.source import fleet_records
    from replay.fleet.verify import fleet_verify
    from replay.fleet.view import load_fleet, load_fleet_all

#: Lazily re-exported names -> the module that defines them.
_FLEET = {
    "fleet_audit": "replay.fleet.audit",
    "fleet_records": "replay.fleet.source",
    "fleet_verify": "replay.fleet.verify",
    "load_fleet": "replay.fleet.view",
    "load_fleet_all": "replay.fleet.view",
}


def _load_from_nats(*args: Any, **kwargs: Any) -> StoreView:
    """``load("nats://...", node=...)``: ``replay.fleet.view.load_source``, imported on
    first use (NATS)."""
    from replay.fleet.view import load_source

    return load_source(*args, **kwargs)


register_source(NATS_SCHEMES, _load_from_nats)


def __getattr__(name: str) -> Any:
    """``replay.load_fleet`` & co: import the fleet (and the NATS client) on first use."""
    module = _FLEET.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AuditEntry",
    "DiffResult",
    "Follower",
    "InvalidInputError",
    "NotSupportedError",
    "Point",
    "PointOutOfRangeError",
    "Problem",
    "ReplayError",
    "SandboxChange",
    "StateDirMissingError",
    "StoreView",
    "VerifyResult",
    "audit",
    "diff",
    "fleet_audit",
    "fleet_records",
    "fleet_verify",
    "follow",
    "load",
    "load_fleet",
    "load_fleet_all",
    "verify",
]
