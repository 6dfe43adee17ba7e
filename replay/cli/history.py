"""The log as history: audit, history, diff, follow, log.

Why together: each reads the log as a sequence of events in time rather than
as the state now - who changed what (``audit``, live: ``follow``), the pods
as they were (``history``), what changed between two points (``diff``), and
the records themselves (``log``). They share the audit row.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import eventlog
from replay import output
from replay.audit import AuditEntry, audit
from replay.cli.common import (
    ALL_NODES,
    AddCommand,
    id_arg,
    key_from_args,
    load_view,
    netns_dir,
    node,
    seq_arg,
    short,
    state_dir,
    stream,
    time_arg,
)
from replay.cli.exits import EXIT_OK, EXIT_USAGE, CLIError
from replay.cli.pods import print_pods
from replay.diff import PointInfo, diff
from replay.errors import InvalidInputError
from replay.follow import Follower, follow
from replay.timespec import TimeSpecError, format_time, parse_point

if TYPE_CHECKING:
    from replay.fleet.audit import FleetAuditEntry

__all__ = [
    "add_history_commands",
    "cmd_audit",
    "cmd_diff",
    "cmd_follow",
    "cmd_history",
    "cmd_log",
]


def add_history_commands(command: AddCommand) -> None:
    """audit, history, diff, follow, log."""
    p = command("audit", "the audit trail: who changed what, when, where", cmd_audit, stream=True)
    p.add_argument(
        "--sandbox", metavar="ID", help="one sandbox (id or unique prefix; deleted ones too)"
    )
    p.add_argument(
        "--since", metavar="T", help="from this time (RFC 3339, unix seconds, or 10m ago)"
    )
    p.add_argument("--until", metavar="T", help="up to this time (same forms)")
    p.add_argument(
        "--type",
        action="append",
        metavar="T",
        help="only this event type (repeatable, or comma-separated)",
    )

    p = command("history", "the pods as they were after event SEQ or at time TIME", cmd_history)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--upto", type=seq_arg, metavar="SEQ", help="after this event")
    group.add_argument("--at", metavar="TIME", help="as of this time (RFC 3339, unix seconds, 10m)")
    p.add_argument("--no-trunc", action="store_true", help="show whole ids")

    p = command(
        "diff", "what changed between two points (seq numbers, or @unix / RFC 3339 / 10m)", cmd_diff
    )
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--no-trunc", action="store_true", help="show whole ids")

    p = command(
        "follow", "print each event as it is written (Ctrl-C ends)", cmd_follow, stream=True
    )
    p.add_argument(
        "--from", dest="from_seq", type=seq_arg, metavar="SEQ", help="start with this past event"
    )
    p.add_argument(
        "--metrics-addr",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics (records followed, lag, sandboxes by state) on "
        "http://HOST:PORT/metrics (needs the metrics extra; docs/METRICS.md)",
    )

    p = command("log", "dump the log's records: seq, time, type, id, digest", cmd_log, stream=True)
    p.add_argument("--from", dest="from_seq", type=seq_arg, default=1, metavar="SEQ")
    p.add_argument("--to", dest="to_seq", type=seq_arg, default=None, metavar="SEQ")


# -- audit and follow -----------------------------------------------------------------------

_AUDIT = output.StreamTable(
    [("SEQ", 8), ("TIME", 33), ("POD ID", 16), ("TYPE", 23), ("WHO", 28), ("SUMMARY", 0)]
)


def _who(e: AuditEntry) -> str:
    return f"{e.actor or '-'}@{e.host or '?'}:{e.pid if e.pid is not None else '?'}"


def _audit_cells(e: AuditEntry, args: argparse.Namespace) -> list[object]:
    return [e.seq, e.time, short(e.sandbox_id, args), e.type, _who(e), e.summary]


def _audit_row(e: AuditEntry, args: argparse.Namespace) -> str:
    return _AUDIT.row(_audit_cells(e, args))


def _fleet_audit(args: argparse.Namespace) -> list[FleetAuditEntry]:
    # The stream reader brings asyncio and the NATS client: only for --nats.
    from replay.fleet.audit import fleet_audit

    return fleet_audit(
        args.nats,
        stream(args),
        node(args, all_nodes=True),
        sandbox=args.sandbox,
        since=time_arg(args.since, "--since"),
        until=time_arg(args.until, "--until"),
        types=args.type,
        netns_dir=netns_dir(args),
    )


def _fleet_audit_table(entries: Sequence[FleetAuditEntry], args: argparse.Namespace) -> str:
    """The audit table with a NODE column first (fleet-wide trail: ``--node '*'``)."""
    longest = max((len(e.node) for e in entries), default=0)
    table = output.StreamTable([("NODE", max(16, longest + output.PADDING)), *_AUDIT.columns])
    return table.header() + "".join(table.row([e.node, *_audit_cells(e, args)]) for e in entries)


def cmd_audit(args: argparse.Namespace) -> int:
    if args.sandbox is not None:
        id_arg(args.sandbox, "--sandbox")
    entries: Sequence[AuditEntry]
    fleet_wide: list[FleetAuditEntry] | None = None  # the trail of every node
    if args.nats:
        entries = fleet_entries = _fleet_audit(args)
        if node(args, all_nodes=True) == ALL_NODES:
            fleet_wide = fleet_entries
    else:
        entries = audit(
            state_dir(args),
            sandbox=args.sandbox,
            since=time_arg(args.since, "--since"),
            until=time_arg(args.until, "--until"),
            types=args.type,
            key=key_from_args(args),
            netns_dir=netns_dir(args),
            progress=None,
        )
    if args.output == "json":
        output.emit(output.to_json([e.to_dict() for e in entries]))
    elif args.output == "jsonl":
        output.emit("".join(output.to_jsonl(e.to_dict()) for e in entries))
    elif fleet_wide is not None:
        output.emit(_fleet_audit_table(fleet_wide, args))
    else:
        output.emit(_AUDIT.header() + "".join(_audit_row(e, args) for e in entries))
    return EXIT_OK


def cmd_follow(args: argparse.Namespace) -> int:
    d = state_dir(args)
    stop = threading.Event()
    server: WSGIServer | None = None

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        follower = follow(
            d, from_seq=args.from_seq, key=key_from_args(args), netns_dir=netns_dir(args), stop=stop
        )
        with follower:
            if args.metrics_addr:
                server = _serve_follow_metrics(args.metrics_addr, follower, key_from_args(args))
            if args.output == "table":
                output.emit(_AUDIT.header())
            for entry, _view in follower.entries():
                if args.output == "table":
                    output.emit(_audit_row(entry, args))
                elif args.output == "jsonl":
                    output.emit(output.to_jsonl(entry.to_dict()))
                else:
                    output.emit(output.to_json(entry.to_dict()))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if server is not None:
            server.shutdown()
            server.server_close()
    return EXIT_OK


def _serve_follow_metrics(addr: str, follower: Follower, key: bytes | None) -> WSGIServer:
    """Serve the follower's metrics from a daemon thread; the caller shuts it down.

    Imported here: only a follow asked for metrics loads prometheus_client.
    """
    try:
        from prometheus_client import CollectorRegistry

        from replay.follow_metrics import FollowMetrics
        from sandbox.metrics import serve_metrics
    except ImportError as exc:
        raise CLIError(
            f"--metrics-addr needs prometheus-client (the metrics extra): {exc}"
        ) from None
    registry = CollectorRegistry()
    FollowMetrics(registry, follower, key=key)
    try:
        host, port, server = serve_metrics(addr, registry)
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise CLIError(f"--metrics-addr {addr}: {exc}", EXIT_USAGE) from None
    print(
        f"sandboxctl follow: metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True
    )
    return server


# -- history and diff -----------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    if args.at is not None:
        view = load_view(args, at=time_arg(args.at, "--at"))
    else:
        view = load_view(args, upto_seq=args.upto)
    extra = {"time": format_time(view.time_ns), "head": view.head}
    if args.output == "table":
        sys.stderr.write(
            f"state after seq {view.seq}"
            + (f" ({format_time(view.time_ns)})" if view.time_ns else "")
            + "\n"
        )
    print_pods(view, view.list(), args, extra)
    return EXIT_OK


def _cell(field: str, value: Any) -> str:
    if value is None:
        return ""
    if field.endswith("_at") and isinstance(value, int):
        return format_time(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"))
        return text if len(text) <= 40 else text[:37] + "..."
    return str(value)


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        a, b = parse_point(args.a), parse_point(args.b)
    except TimeSpecError as exc:
        raise InvalidInputError(str(exc)) from None
    d = state_dir(args)
    res = diff(d, a, b, key=key_from_args(args), netns_dir=netns_dir(args), progress=None)
    if args.output == "json":
        output.emit(output.to_json(res.to_dict()))
        return EXIT_OK
    rows: list[list[object]] = []
    # An added pod's state is what B has (TO); a removed pod's is the last
    # state A had (FROM): B has none.
    for item in res.added:
        rows.append(["added", short(item["id"], args), item["name"], "state", "", item["state"]])
    for item in res.removed:
        rows.append(["removed", short(item["id"], args), item["name"], "state", item["state"], ""])
    for change in res.changed:
        first = True
        for field, c in change.changes.items():
            rows.append(
                [
                    "changed" if first else "",
                    short(change.id, args) if first else "",
                    change.name if first else "",
                    field,
                    _cell(field, c["from"]),
                    _cell(field, c["to"]),
                ]
            )
            first = False

    def where(p: PointInfo) -> str:
        return p.spec if p.spec == f"seq {p.seq}" else f"{p.spec} (seq {p.seq})"

    sys.stderr.write(f"A: {where(res.a)}   B: {where(res.b)}\n")
    if rows:
        output.emit(output.table(("CHANGE", "POD ID", "NAME", "FIELD", "FROM", "TO"), rows))
    else:
        output.emit("no differences\n")
    return EXIT_OK


# -- log ------------------------------------------------------------------------------------

_LOG = output.StreamTable([("SEQ", 8), ("TIME", 33), ("TYPE", 23), ("POD ID", 16), ("DIGEST", 0)])


def _record_dict(rec: eventlog.Record) -> dict[str, Any]:
    p = rec.payload
    return {
        "seq": rec.seq,
        "time": format_time(rec.time_ns),
        "time_ns": rec.time_ns,
        "type": p.get("type"),
        "id": p.get("id"),
        "digest": rec.digest.hex(),
    }


def cmd_log(args: argparse.Namespace) -> int:
    d = state_dir(args)
    if args.to_seq is not None and args.to_seq < args.from_seq:
        raise InvalidInputError(f"--to {args.to_seq} is before --from {args.from_seq}")
    records: Iterator[eventlog.Record]
    if any(n.endswith(".log") for n in os.listdir(d)):
        records = iter(
            eventlog.read(
                d, from_seq=max(1, args.from_seq), to_seq=args.to_seq, key=key_from_args(args)
            )
        )
    else:
        records = iter(())
    if args.output == "json":
        output.emit(output.to_json([_record_dict(r) for r in records]))
    elif args.output == "jsonl":
        for rec in records:
            output.emit(output.to_jsonl(_record_dict(rec)))
    else:
        output.emit(_LOG.header())
        for rec in records:
            row = _record_dict(rec)
            output.emit(
                _LOG.row(
                    [
                        row["seq"],
                        row["time"],
                        row["type"],
                        short(str(row["id"]), args),
                        row["digest"][:16],
                    ]
                )
            )
    return EXIT_OK
