"""``sandboxctl``: the sandbox store from the command line, in the manner of crictl/etcdctl.

Short commands, tables for people (``-o table``, the default), JSON for
scripts (``-o json``; streams also ``-o jsonl``, one object per line), and
exit codes that mean something (``EXIT_CODES``; ``sandboxctl --help``). A
user error prints ONE line on stderr - ``sandboxctl: error: ...`` - and never
a traceback (set ``SANDBOXCTL_DEBUG=1`` to see one for an internal error).

Read commands (pods, inspect, verify, head, audit, history, diff, follow,
log) never take the writer lock and never create a state dir; write commands
(run, stop, rm, reconcile, snapshot) open the store as its one writer, which
also reconciles network namespaces; they wait for another writer's lock up
to ``--lock-timeout`` seconds (as ``flock -w``), then exit 8. Malformed
input - a huge number, an out-of-range time, an invalid id, an oversized
record, a FIFO or device given as a file - is exit 7. The reference is
docs/CLI.md.

The package, split as etcdctl's ctlv3/command/ and crictl's sandbox.go:

    __init__.py   main: parse, check --nats, run the command (this file)
    parser.py     the parser: global options, one builder per command group
    exits.py      exit codes and the one error -> exit code mapping
    common.py     what every command reads from its arguments (state dir, writer, ...)
    pods.py       run, pods, inspect, stop, rm
    integrity.py  verify, head, snapshot, reconcile, repair
    history.py    audit, history, diff, follow, log
    tools.py      demo, ship, crashtest, bench (their parsers come from their packages)

The fleet (``replay.fleet``): ``ship`` publishes a node's log to NATS
JetStream, and ``--nats URL --node NODE`` makes pods, inspect, history, audit
and verify read a node (audit and verify also every node, ``--node '*'``)
from the stream instead of a state dir. The NATS client loads only when one
of those connects.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from replay.argtypes import ArgumentRangeError
from replay.cli import exits
from replay.cli.common import DEFAULT_STREAM
from replay.cli.exits import *  # noqa: F403  (the exit codes: exits.EXIT_NAMES)
from replay.cli.exits import EXIT_INVALID, EXIT_USAGE, PROG, run_command
from replay.cli.history import cmd_audit, cmd_history
from replay.cli.integrity import cmd_verify
from replay.cli.parser import build_parser
from replay.cli.pods import cmd_inspect, cmd_pods

__all__ = [
    "DEFAULT_STREAM",
    *exits.EXIT_NAMES,
    "build_parser",
    "entry",
    "main",
]


class _WarningsToStderr(logging.Handler):
    """Library warnings (a skipped snapshot, a reconcile error) as one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a logging handler must never raise
            sys.stderr.write(f"{PROG}: warning: {record.getMessage()}\n")


#: The commands that read from a fleet stream with --nats (and ``ship``).
_NATS_COMMANDS: frozenset[Callable[[argparse.Namespace], int]] = frozenset(
    {cmd_pods, cmd_inspect, cmd_history, cmd_audit, cmd_verify}
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sandboxctl`` and ``python -m replay``; returns the exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(lazy=True, argv=words)
    # The demo runs sandboxctl commands in-process: it is handed this function
    # rather than importing the package whose tools module imports it.
    parser.set_defaults(sandboxctl=main)
    try:
        args = parser.parse_args(words)
    except ArgumentRangeError as exc:
        # A number beyond its bounds (a 5,000-digit seq): invalid input, not usage.
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_INVALID
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    root = logging.getLogger()
    if not root.handlers:
        handler = _WarningsToStderr(logging.WARNING)
        root.addHandler(handler)
    func: Callable[[argparse.Namespace], int] = args.func
    # run_ship is compared by name: importing it would import the shipper.
    if getattr(args, "nats", None) and not (func in _NATS_COMMANDS or args.command == "ship"):
        sys.stderr.write(
            f"{PROG}: error: {args.command} does not read a fleet stream: --nats works with "
            "pods, inspect, history, audit, verify and ship\n"
        )
        return EXIT_USAGE
    return run_command(func, args)


def entry() -> NoReturn:
    """``console_scripts``-style wrapper that exits with ``main``'s code."""
    sys.exit(main())
