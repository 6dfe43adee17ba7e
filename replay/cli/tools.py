"""The tool commands: demo, ship, crashtest, bench - and where their parsers come from.

Why apart from the store's verbs: each is a program of its own that the CLI
only wires in. ``ship``'s parser and runner are the fleet's
(``replay.fleet.commands``), ``crashtest``'s the crash harness's, ``bench``'s
the benchmarks'. The fleet glue and the benchmarks import asyncio and their
suites at module level, which no other command needs: their parsers are
built only when their command is on the command line (``build_now``), and a
one-line placeholder stands in the command list otherwise (the help text is
the same either way; tests/cli compares the two).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from replay.cli.common import AddCommand
from replay.crash.commands import add_crashtest_parser
from replay.fleet.config import SHIP_HELP

__all__ = ["BENCH_HELP", "SHIP_HELP", "add_tool_commands", "cmd_demo"]

#: ``bench``'s line in the command list while its parser is not built (the
#: benchmarks own the text; tests/cli checks that the two help screens match).
BENCH_HELP = "run the benchmarks (figures vs raw references)"


def add_tool_commands(command: AddCommand, *, build_now: Callable[[str], bool]) -> None:
    """demo, ship, crashtest, bench; ship's and bench's parsers only if ``build_now(name)``."""
    p = command(
        "demo",
        "run a short end-to-end scenario (pods, a crash, recovery, reconcile, verify, audit)",
        cmd_demo,
        shown=["--state-dir"],
    )
    p.add_argument("--force", action="store_true", help="wipe a previous demo's state dir first")
    p.add_argument("--no-netns", action="store_true", help="run without network namespaces")

    sub = command.subparsers
    if build_now("ship"):
        _add_ship_parser(sub)
    else:
        sub.add_parser("ship", help=SHIP_HELP, add_help=False)
    # Each run makes its own temporary state and netns dirs: no globals.
    add_crashtest_parser(sub)
    if build_now("bench"):
        _add_bench_parser(sub)
    else:
        sub.add_parser("bench", help=BENCH_HELP, add_help=False)


def _add_ship_parser(subparsers: object) -> None:
    # The fleet glue imports the shipper (asyncio); the NATS client itself
    # loads only when ship connects.
    from replay.fleet.commands import add_ship_parser

    # Not the CLI's globals: the ship parser declares its own --state-dir,
    # --nats, --stream, --node and --key-file (suppressed defaults); argparse
    # would refuse them twice. It sets func=run_ship itself.
    add_ship_parser(subparsers)


def _add_bench_parser(subparsers: object) -> None:
    # The benchmarks' suites (and their optional extras) load with their parser.
    from replay.bench.commands import add_bench_parser

    add_bench_parser(subparsers)


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo (ctypes, subprocesses, its scenario) loads only when it runs.
    from replay import demo

    # Never $SANDBOXCTL_STATE_DIR: that names a real store, and a demo is not one.
    state_dir = args.state_dir or demo.DEFAULT_STATE_DIR
    return demo.main(
        state_dir,
        force=args.force,
        use_netns=not args.no_netns,
        json_output=args.output == "json",
        sandboxctl=args.sandboxctl,
    )
