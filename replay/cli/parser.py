"""The ``sandboxctl`` command line: global options and one builder per command group.

Why one module: the order of the command list, the global options every
command accepts (before its name, or after it where DESIGN.md shows them
there) and the one-line usage error format are decided once, here; what each
command accepts is its group's business (``pods``, ``integrity``,
``history``, ``tools``). docs/CLI.md documents exactly this parser (a test
compares them).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from replay.cli.common import (
    ALL_NODES,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_STREAM,
    STATE_DIR_ENV,
    AddCommand,
)
from replay.cli.exits import EXIT_USAGE, PROG, exit_codes_text
from replay.cli.history import add_history_commands
from replay.cli.integrity import add_integrity_commands
from replay.cli.pods import add_pod_commands
from replay.cli.tools import add_tool_commands
from sandbox.netns import DEFAULT_NETNS_DIR

__all__ = ["CLIParser", "build_parser"]


class CLIParser(argparse.ArgumentParser):
    """argparse with the CLI's one-line error format (exit 2 stays argparse's)."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}{hint}\n")


_GLOBALS: tuple[tuple[str, str, str], ...] = (
    ("--state-dir", "DIR", f"the store's state dir (default ${STATE_DIR_ENV})"),
    ("--netns-dir", "DIR", f"where network namespaces are mounted (default {DEFAULT_NETNS_DIR})"),
    ("--key-file", "FILE", "the chain key of a keyed (HMAC) log: the file's bytes, exactly"),
    (
        "--nats",
        "URL",
        "read a node from a fleet stream on this NATS server instead of a state dir "
        "(pods, inspect, history, audit, verify; several URLs comma-separated)",
    ),
    ("--stream", "NAME", f"JetStream stream of the fleet (with --nats; default {DEFAULT_STREAM})"),
    (
        "--node",
        "NODE",
        f"node id on the fleet stream (with --nats; '{ALL_NODES}': every node, "
        "for audit and verify)",
    ),
)


def _add_globals(parser: argparse.ArgumentParser, *, top: bool, shown: Sequence[str] = ()) -> None:
    """The global options. On the top parser they have real defaults; on a command's
    parser they are SUPPRESSed (argparse would otherwise overwrite the value given
    before the command with the sub-parser's default) and hidden from its help
    unless listed in ``shown`` (``demo --state-dir``, ``verify --key-file``)."""
    for option, metavar, text in _GLOBALS:
        parser.add_argument(
            option,
            default=None if top else argparse.SUPPRESS,
            metavar=metavar,
            help=text if top or option in shown else argparse.SUPPRESS,
        )
    parser.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=None if top else argparse.SUPPRESS,
        metavar="SECONDS",
        help=(
            "how long a write command waits for the writer lock, as flock -w "
            f"(default {DEFAULT_LOCK_TIMEOUT:g}; 0: do not wait), then exits 8"
        )
        if top
        else argparse.SUPPRESS,
    )


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0 (at most a day)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text[:40]!r}") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"seconds from 0 to 86400, got {text[:40]!r}")
    return value


def build_parser(*, lazy: bool = False, argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole command line (also used by the docs test that checks docs/CLI.md).

    ``lazy``: build ``ship``'s and ``bench``'s parsers only if their name is
    one of ``argv`` (what ``main`` does, so that other commands never import
    asyncio or the benchmarks; a name that is only an argument just builds
    one parser too many); the default builds every parser now.
    """
    parser = CLIParser(
        prog=PROG,
        description=(
            "Inspect, change, verify and replay an event-sourced sandbox store\n"
            "(containerd/cri's sandbox store; every change is a logged event).\n"
            "Reference: docs/CLI.md"
        ),
        epilog=exit_codes_text()
        + "\n\nGlobal options go before the command; every command takes -o table|json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CLIParser)
    command = AddCommand(sub, lambda p, shown: _add_globals(p, top=False, shown=shown))
    add_pod_commands(command)
    add_integrity_commands(command)
    add_history_commands(command)
    words = frozenset(argv)
    add_tool_commands(command, build_now=lambda name: not lazy or name in words)
    return parser
