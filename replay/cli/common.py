"""What every command module needs from the parsed arguments, and how it registers.

Why apart from the commands: the state dir, the netns dir, the writer, the
fleet source and the id width mean the same for all seventeen commands; each
command group (``pods``, ``integrity``, ``history``, ``tools``) imports them
from here and never from another group, and ``parser`` builds every group
through the ``AddCommand`` it hands them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import eventlog
from replay import output
from replay.argtypes import int_at_least
from replay.argtypes import key_from_args as key_from_args
from replay.cli.exits import EXIT_INVALID, EXIT_LOCKED, EXIT_USAGE, CLIError
from replay.errors import InvalidInputError
from replay.fleet.message import ALL_NODES, DEFAULT_STREAM, check_node, check_stream
from replay.timespec import MAX_SEQ, TimeSpecError, parse_time
from replay.view import StoreView, check_state_dir, load
from sandbox.errors import InvalidIDError, NetNSDirMismatchError
from sandbox.ids import validate_id
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.store import Store

__all__ = [
    "ACTOR",
    "ALL_NODES",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_STREAM",
    "POD_ID_WIDTH",
    "STATE_DIR_ENV",
    "AddCommand",
    "id_arg",
    "key_from_args",
    "load_view",
    "NETNS_DIR_ENV",
    "netns_dir",
    "netns_dir_given",
    "node",
    "seq_arg",
    "short",
    "state_dir",
    "stream",
    "time_arg",
    "wait_for_lock",
    "writer",
]

T = TypeVar("T")

STATE_DIR_ENV = "SANDBOXCTL_STATE_DIR"
#: Like --netns-dir (the flag wins); neither: the store's recorded netns dir.
NETNS_DIR_ENV = "SANDBOXCTL_NETNS_DIR"
#: Seconds a write command waits for the writer lock (``--lock-timeout``).
DEFAULT_LOCK_TIMEOUT = 10.0
ACTOR = "sandboxctl"
POD_ID_WIDTH = 13  # crictl's truncated id length


class AddCommand:
    """Adds one command's parser with what every command has: its help as
    description, the global options (``add_globals``: ``parser.build_parser``'s),
    ``-o`` and ``func``, the function that runs it.

    ``stream``: ``-o`` also takes jsonl (the commands that print a stream);
    ``output``: ``-o``'s default. ``subparsers`` is argparse's sub-command
    action, for the builders of the fleet, the crash harness and the
    benchmarks, which add their own parsers.
    """

    def __init__(
        self,
        subparsers: Any,
        add_globals: Callable[[argparse.ArgumentParser, Sequence[str]], None],
    ) -> None:
        self.subparsers = subparsers
        self._add_globals = add_globals

    def __call__(
        self,
        name: str,
        help_: str,
        func: Callable[[argparse.Namespace], int],
        *,
        aliases: Sequence[str] = (),
        shown: Sequence[str] = (),
        stream: bool = False,
        output: str = "table",
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self.subparsers.add_parser(
            name, help=help_, description=help_, aliases=list(aliases)
        )
        self._add_globals(p, shown)
        _add_output(p, stream=stream, default=output)
        p.set_defaults(func=func)
        return p


def _add_output(
    parser: argparse.ArgumentParser, *, stream: bool = False, default: str = "table"
) -> None:
    """``-o``: table|json, and jsonl for the commands that print a stream."""
    choices = output.STREAM_FORMATS if stream else output.FORMATS
    parser.add_argument(
        "-o",
        "--output",
        choices=choices,
        default=default,
        help=f"output format: {'|'.join(choices)} (default {default})",
    )


seq_arg = int_at_least(
    0, maximum=MAX_SEQ, not_int="not a seq number", too_small="a seq is >= 0", name="seq"
)


def id_arg(text: str, option: str | None = None) -> str:
    """A sandbox id or id prefix as given, checked by the store's own rule first.

    Why before the lookup: ``a/b`` or an id holding NUL or whitespace can
    never name a sandbox; "not found" (exit 4) would send the user looking
    for it, an ``InvalidIDError`` (exit 7) says the input itself is wrong.
    """
    try:
        return validate_id(text)
    except InvalidIDError as exc:
        if option is None:
            raise
        raise InvalidIDError(f"{option}: {exc}") from None


def state_dir(args: argparse.Namespace, *, must_exist: bool = True) -> str:
    """--state-dir or $SANDBOXCTL_STATE_DIR; a reader never creates it (must_exist)."""
    d = args.state_dir or os.environ.get(STATE_DIR_ENV)
    if not d:
        raise CLIError(f"no state dir: give --state-dir DIR or set {STATE_DIR_ENV}", EXIT_USAGE)
    if must_exist:
        check_state_dir(d)
    return str(d)


def netns_dir_given(args: argparse.Namespace) -> str | None:
    """--netns-dir or $SANDBOXCTL_NETNS_DIR; None: the dir the store's log recorded
    (a writer opens with it; a new store records the default)."""
    d = args.netns_dir or os.environ.get(NETNS_DIR_ENV)
    return str(d) if d else None


def netns_dir(args: argparse.Namespace) -> str:
    """The netns dir for a read-only view's handles: as given, else the default."""
    return netns_dir_given(args) or DEFAULT_NETNS_DIR


def wait_for_lock(args: argparse.Namespace, take: Callable[[], T]) -> T:
    """``take()`` (which takes the writer lock), retried while another writer holds it.

    Why a poll: the lock refuses at once (``LogLockedError``), as a library
    writer wants; a person or script running ``sandboxctl run`` twice wants
    ``flock -w``: wait up to ``--lock-timeout`` seconds (default
    ``DEFAULT_LOCK_TIMEOUT``), retrying with a backoff of 10 ms doubling to
    100 ms, then exit 8 naming the holder.
    """
    timeout = getattr(args, "lock_timeout", None)
    timeout = DEFAULT_LOCK_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return take()
        except eventlog.LogLockedError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CLIError(
                    f"{exc}; gave up after {timeout:g} s (--lock-timeout)", EXIT_LOCKED
                ) from None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)


@contextlib.contextmanager
def writer(args: argparse.Namespace, *, create: bool = False) -> Iterator[Store]:
    """The store opened as its one writer (which also reconciles namespaces),
    waiting up to ``--lock-timeout`` for the lock."""
    d = state_dir(args, must_exist=not create)
    key = key_from_args(args)
    given = netns_dir_given(args)
    try:
        store = wait_for_lock(args, lambda: Store.open(d, netns_dir=given, actor=ACTOR, key=key))
    except NetNSDirMismatchError as exc:  # the user named the wrong dir: bad input
        raise CLIError(str(exc), EXIT_INVALID) from None
    try:
        yield store
    finally:
        store.close()


def stream(args: argparse.Namespace) -> str:
    """--stream (default DEFAULT_STREAM), checked: an InvalidInputError if it cannot be one."""
    name = str(args.stream or DEFAULT_STREAM)
    try:
        return check_stream(name)
    except ValueError as exc:
        raise InvalidInputError(f"--stream: {exc}") from None


def node(args: argparse.Namespace, *, all_nodes: bool) -> str:
    """--node, checked; ``'*'`` (every node, the default) only where ``all_nodes``."""
    value = str(args.node or (ALL_NODES if all_nodes else ""))
    if not value or value == ALL_NODES:
        if all_nodes:
            return ALL_NODES
        raise CLIError("a state is one node's: give --node NODE with --nats", EXIT_USAGE)
    try:
        return check_node(value)
    except ValueError as exc:
        raise InvalidInputError(f"--node: {exc}") from None


def load_view(args: argparse.Namespace, **kwargs: Any) -> StoreView:
    """The state the read commands show: from the state dir, or with --nats from the stream."""
    if args.nats:
        # The stream reader brings asyncio and the NATS client: only for --nats.
        from replay.fleet.view import load_fleet

        one = node(args, all_nodes=False)
        return load_fleet(args.nats, stream(args), one, netns_dir=netns_dir(args), **kwargs)
    return load(
        state_dir(args), key=key_from_args(args), netns_dir=netns_dir(args), progress=None, **kwargs
    )


def short(sandbox_id: str, args: argparse.Namespace) -> str:
    """An id as tables show it: crictl's 13 characters unless --no-trunc."""
    return sandbox_id if getattr(args, "no_trunc", False) else sandbox_id[:POD_ID_WIDTH]


def time_arg(text: str | None, option: str) -> int | None:
    """A --since/--until/--at value in ns, or an InvalidInputError naming the option."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except TimeSpecError as exc:
        raise InvalidInputError(f"{option}: {exc}") from None
