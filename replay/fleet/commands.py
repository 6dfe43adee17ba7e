"""CLI glue for the fleet: ``sandboxctl ship`` and the ``--nats`` read commands.

Why here and not in replay/cli.py: the CLI owns global options and dispatch;
this module owns what the fleet commands accept and print, so the CLI only
has to call ``add_ship_parser(subparsers)`` and hand ``args`` over.

Options that are also global (``--state-dir``, ``--nats``, ``--stream``,
``--node``, ``--key-file``) are declared here with
``default=argparse.SUPPRESS``: argparse copies a sub-command's defaults over
the values the global parser already parsed, so a plain default would
silently undo ``sandboxctl --nats URL ship``. Values are read with
``getattr(args, name, None)``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from eventlog.errors import CorruptLogError, EventLogError
from replay import output
from replay.argtypes import key_from_args as _key
from replay.errors import InvalidInputError, StateDirMissingError
from replay.fleet.config import (
    EXIT_CORRUPT,
    EXIT_DIVERGED,
    EXIT_ERROR,
    EXIT_INVALID,
    EXIT_NO_STATE_DIR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    SHIP_HELP,
    ShipConfig,
    ShipStats,
)
from replay.fleet.errors import (
    DivergedError,
    FleetConnectionError,
    FleetDataError,
    FleetError,
    NodeNotFoundError,
    ShipGaveUpError,
    StreamNotFoundError,
)
from replay.fleet.message import DEFAULT_STREAM
from replay.fleet.ship import hostname_node, ship
from replay.fleet.source import ALL_NODES
from replay.fleet.verify import FleetVerifyReport, fleet_verify
from sandbox.netns import DEFAULT_NETNS_DIR

STATE_DIR_ENV = "SANDBOXCTL_STATE_DIR"

SHIP_DESCRIPTION = """\
Tail this node's event log and publish every record to the JetStream stream
STREAM on subject STREAM.NODE (the stream is created with subjects STREAM.*
when missing). Resumes after the last record the stream holds for NODE;
re-sends are dropped by the server's duplicate window (message id NODE:SEQ).
Survives the server going away (reconnects with capped exponential backoff)
and stops cleanly on SIGINT/SIGTERM.

exit codes: 0 stopped cleanly (or --once finished), 1 error (a record too
big for the server, a stream with other subjects, a hole behind the acks),
2 usage, 3 state dir missing, 6 corrupt local log, 7 bad key file, 10 gave
up after --give-up-after seconds without NATS, 11 the stream holds a
different history for NODE (wrong --node, or a replaced log)
"""


def add_ship_arguments(parser: argparse.ArgumentParser) -> None:
    """The ship options (for ``sandboxctl ship`` and ``python -m replay.fleet.ship``)."""
    _add_target_options(parser)
    _add_connection_options(parser)
    _add_stream_options(parser)
    _add_run_options(parser)


#: What to ship and where (option, metavar, help): all also global options of
#: the CLI, so their defaults are SUPPRESSed (see the module docstring).
_TARGET_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--state-dir", "DIR", f"the node's state dir (default ${STATE_DIR_ENV})"),
    ("--nats", "URL", "NATS server URL; several comma-separated for a cluster (required)"),
    ("--stream", "NAME", f"JetStream stream name (default {DEFAULT_STREAM})"),
    ("--node", "NODE", "this node's id, the subject's last token (default: the hostname)"),
    ("--key-file", "FILE", "the chain key of a keyed log (raw bytes)"),
)


#: ShipConfig's defaults, which are the options' too.
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in attrs.fields(ShipConfig)}


def _add_seconds(parser: argparse.ArgumentParser, option: str, text: str) -> None:
    """A duration in seconds; its default is ShipConfig's, and the help says it."""
    default = _DEFAULTS[option.removeprefix("--").replace("-", "_")]
    parser.add_argument(
        option, type=float, default=default, metavar="SECONDS", help=f"{text} (default {default:g})"
    )


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    """What to ship and where: the state dir, the server, stream, node id and the log's key."""
    for option, metavar, text in _TARGET_OPTIONS:
        parser.add_argument(option, default=argparse.SUPPRESS, metavar=metavar, help=text)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The connection: credentials, flow control, timeouts and reconnects."""
    parser.add_argument("--creds", default=None, metavar="FILE", help="NATS credentials file")
    parser.add_argument(
        "--window",
        type=int,
        default=_DEFAULTS["window"],
        help=f"un-acked publishes in flight at most (default {_DEFAULTS['window']})",
    )
    _add_seconds(parser, "--ack-timeout", "an ack slower than this breaks the connection")
    _add_seconds(
        parser,
        "--backoff-max",
        f"longest wait between reconnects; waits start at {_DEFAULTS['backoff_initial']:g} "
        "and double",
    )
    _add_seconds(parser, "--give-up-after", "exit 10 after this long without a working connection")


def _add_stream_options(parser: argparse.ArgumentParser) -> None:
    """The stream ship creates when it is missing."""
    _add_seconds(
        parser, "--duplicate-window", "de-duplication window of the stream when ship creates it"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=_DEFAULTS["replicas"],
        help="replicas of the stream when ship creates it (3 on a cluster)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """How ship runs and reports: polling, --once, metrics, output."""
    _add_seconds(
        parser, "--poll-interval", "re-read the log this often even without a file-change wake-up"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="ship what the log holds now, wait for the acks, exit",
    )
    parser.add_argument(
        "--metrics-addr",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics (lag, acks) on http://HOST:PORT/metrics "
        "(needs the metrics extra; docs/METRICS.md)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    parser.add_argument(
        "-o",
        "--output",
        choices=output.FORMATS,
        default="table",
        help="format of the summary printed at exit: table|json (default table)",
    )


def add_ship_parser(subparsers: Any) -> None:
    """Add ``ship`` to the CLI's sub-commands (``subparsers`` from add_subparsers).

    It sets ``func=run_ship`` as the CLI's other commands do, and declares the
    global options it reads itself (suppressed defaults), so the CLI must not
    add its own globals to this parser again (argparse would refuse the
    duplicate options).
    """
    parser = subparsers.add_parser(
        "ship",
        help=SHIP_HELP,
        description=SHIP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_ship_arguments(parser)
    parser.set_defaults(func=run_ship)


def ship_main(argv: list[str] | None = None) -> int:
    """``python -m replay.fleet.ship``: the shipper without the rest of the CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m replay.fleet.ship",
        description="Ship a node's sandbox event log to a NATS JetStream stream.",
    )
    add_ship_arguments(parser)
    args = parser.parse_args(argv)
    return run_ship(args)


def _state_dir(args: argparse.Namespace) -> str | None:
    value = getattr(args, "state_dir", None) or os.environ.get(STATE_DIR_ENV)
    return str(value) if value else None


def _given(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, _DEFAULTS[name])


def ship_config(args: argparse.Namespace) -> ShipConfig:
    """Build the shipper's config from parsed arguments (ValueError on bad input)."""
    nats_url = getattr(args, "nats", None)
    if not nats_url:
        raise ValueError("ship needs --nats URL")
    state_dir = _state_dir(args)
    if not state_dir:
        raise ValueError(f"ship needs --state-dir or ${STATE_DIR_ENV}")
    if not os.path.isdir(state_dir):
        # Shipping reads the log; it must never create an empty state dir.
        raise StateDirMissingError(state_dir)
    return ShipConfig(
        state_dir=Path(state_dir),
        nats_url=nats_url,
        stream=getattr(args, "stream", None) or DEFAULT_STREAM,
        node=getattr(args, "node", None) or hostname_node(),
        key=_key(args),
        creds=getattr(args, "creds", None),
        window=_given(args, "window"),
        ack_timeout=_given(args, "ack_timeout"),
        backoff_max=max(_DEFAULTS["backoff_initial"], _given(args, "backoff_max")),
        give_up_after=_given(args, "give_up_after"),
        duplicate_window=_given(args, "duplicate_window"),
        replicas=_given(args, "replicas"),
        once=bool(_given(args, "once")),
        poll_interval=_given(args, "poll_interval"),
    )


def run_ship(args: argparse.Namespace) -> int:
    """``sandboxctl ship``: returns the exit code; an error is one line on stderr."""
    try:
        cfg = ship_config(args)
    except StateDirMissingError as exc:
        return _fail(exc, EXIT_NO_STATE_DIR)
    except InvalidInputError as exc:
        return _fail(exc, EXIT_INVALID)
    except (ValueError, OSError) as exc:
        return _fail(exc, EXIT_USAGE)
    if not getattr(args, "quiet", False):
        _log_to_stderr()
    stats = ShipStats(node=cfg.node, subject=cfg.subject)
    metrics_addr = getattr(args, "metrics_addr", None)
    if metrics_addr:
        try:
            _serve_metrics(metrics_addr, cfg, stats)
        except ImportError as exc:
            return _fail(f"--metrics-addr needs prometheus-client (the metrics extra): {exc}", 1)
        except ValueError as exc:
            return _fail(exc, EXIT_USAGE)
        except OSError as exc:
            return _fail(f"--metrics-addr {metrics_addr}: {exc}", EXIT_USAGE)
    try:
        stats = ship(cfg, stats=stats)
    except CorruptLogError as exc:
        return _fail(exc, EXIT_CORRUPT)
    except (FleetError, EventLogError) as exc:
        return _fail(exc, fleet_exit_code(exc))
    summary = stats.to_dict()
    summary["stream"] = cfg.stream
    if getattr(args, "output", "table") == "json":
        output.emit(output.to_json(summary))
    else:
        output.emit(output.key_values(summary.items()))
    return EXIT_OK


def _serve_metrics(addr: str, cfg: ShipConfig, stats: ShipStats) -> None:
    """Start the metrics endpoint (a daemon thread) before shipping begins.

    Imported here: only a ship asked for metrics loads prometheus_client.
    """
    from prometheus_client import CollectorRegistry

    from replay.fleet.metrics import ShipMetrics
    from sandbox.metrics import serve_metrics

    registry = CollectorRegistry()
    ShipMetrics(registry, cfg, stats)
    host, port, _server = serve_metrics(addr, registry)
    print(f"sandboxctl ship: metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)


def _fail(exc: BaseException | str, code: int) -> int:
    print(f"sandboxctl: error: ship: {exc}", file=sys.stderr)
    return code


def _log_to_stderr() -> None:
    """Progress and warnings of the shipper, one line each on stderr.

    ``propagate`` is off: ``sandboxctl`` gives the root logger a handler for
    library warnings, and a record reaching both would print every
    connection failure twice.
    """
    logger = logging.getLogger("replay.fleet")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("sandboxctl ship: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


# -- the read side ---------------------------------------------------------------


def fleet_exit_code(exc: BaseException) -> int:
    """The CLI exit code of a fleet error (the CLI's own codes where one fits).

    3 missing state dir (ship), 4 no such stream or node (as an unknown id),
    6 malformed data on the stream (as a corrupt log), 10 NATS unreachable,
    11 the stream holds another history for the node, 1 anything else.
    """
    if isinstance(exc, StateDirMissingError):
        return EXIT_NO_STATE_DIR
    if isinstance(exc, StreamNotFoundError | NodeNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, FleetDataError):
        return EXIT_CORRUPT
    if isinstance(exc, FleetConnectionError | ShipGaveUpError):
        return EXIT_UNREACHABLE
    if isinstance(exc, DivergedError):
        return EXIT_DIVERGED
    return EXIT_ERROR


def render_verify(reports: Iterable[FleetVerifyReport], fmt: str = "table") -> str:
    """Text for ``sandboxctl --nats URL [--node N] verify -o FORMAT``.

    The table form leads with one line per node in the local ``verify``'s
    words (OK / FAILED: first problem), then every problem.
    """
    reports = list(reports)
    if fmt == "json":
        return output.to_json(
            {"ok": all(r.ok for r in reports), "nodes": [r.to_dict() for r in reports]}
        )
    lines = []
    for r in reports:
        c = r.chain
        if r.ok:
            lines.append(
                f"OK: node {r.node}: {_count(c.records, 'record')} (seq 1..{c.last_seq}), "
                f"chain and {_count(r.events_checked, 'event')} checked; head {c.head.hex()}"
            )
        else:
            lines.append(f"FAILED: {r.problems[0]}")
            if r.problems_total > 1:
                lines.append(f"{r.problems_total} problems in all:")
                lines += [f"  {p}" for p in r.problems]
                hidden = r.problems_total - len(r.problems)
                if hidden > 0:
                    lines.append(f"  ... and {hidden} more")
        lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run_fleet_verify(args: argparse.Namespace) -> int:
    """``sandboxctl --nats URL [--node N] verify``: 0 when every node verifies, 1 otherwise.

    Errors (no such stream or node, NATS unreachable) are raised for the
    CLI's error handler; ``fleet_exit_code`` gives their exit codes.
    """
    head_hex = getattr(args, "head", None)
    try:
        head = bytes.fromhex(head_hex.strip()) if head_hex else None
    except ValueError:
        raise InvalidInputError(f"--head is not a hex digest: {head_hex!r}") from None
    if head is not None and len(head) != 32:
        raise InvalidInputError("--head is a 32-byte chain head (64 hex digits)")
    try:
        reports = fleet_verify(
            args.nats,
            getattr(args, "stream", None) or DEFAULT_STREAM,
            getattr(args, "node", None) or ALL_NODES,
            key=_key(args),
            head=head,
            netns_dir=getattr(args, "netns_dir", None) or DEFAULT_NETNS_DIR,
            creds=getattr(args, "creds", None),
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    output.emit(render_verify(reports, getattr(args, "output", None) or "table"))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_ERROR
