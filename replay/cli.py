"""``sandboxctl``: the sandbox store from the command line, in the manner of crictl/etcdctl.

Short commands, tables for people (``-o table``, the default), JSON for
scripts (``-o json``; streams also ``-o jsonl``, one object per line), and
exit codes that mean something (``EXIT_CODES``; ``sandboxctl --help``). A
user error prints ONE line on stderr - ``sandboxctl: error: ...`` - and never
a traceback (set ``SANDBOXCTL_DEBUG=1`` to see one for an internal error).

Read commands (pods, inspect, verify, head, audit, history, diff, follow,
log) never take the writer lock and never create a state dir; write commands
(run, stop, rm, reconcile, snapshot) open the store as its one writer, which
also reconciles network namespaces, and fail with exit 8 while another
writer holds it. The reference is docs/CLI.md.

The fleet (``replay.fleet``): ``ship`` publishes a node's log to NATS
JetStream, and ``--nats URL --node NODE`` makes pods, inspect, history, audit
and verify read a node (audit and verify also every node, ``--node '*'``)
from the stream instead of a state dir. The NATS client is imported only when
one of those runs - its import (asyncio, ssl) would otherwise slow every
local command down - so nothing from ``replay.fleet`` is imported at the top
of this module and ``ship``'s parser is built only when ``ship`` is chosen.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, cast

import attrs

import eventlog
from eventlog.segments import list_segments
from replay import output
from replay.argtypes import int_at_least
from replay.argtypes import key_from_args as _key
from replay.audit import AuditEntry, audit
from replay.diff import PointInfo, diff
from replay.errors import (
    InvalidInputError,
    NotSupportedError,
    PointOutOfRangeError,
    StateDirMissingError,
)
from replay.follow import follow
from replay.repair import repair_log
from replay.timespec import TimeSpecError, ago, format_time, parse_point, parse_time
from replay.verify import VerifyResult, verify
from replay.view import StoreView, check_state_dir, load
from sandbox import gojson
from sandbox.config import InvalidConfigError, PodSandboxConfig
from sandbox.errors import (
    AlreadyExistsError,
    AmbiguousPrefixError,
    InvalidIDError,
    InvalidTransitionError,
    NotFoundError,
    StoreError,
    UnknownEventError,
    UnsupportedVersionError,
)
from sandbox.metadata import InvalidMetadataError, Metadata
from sandbox.netns import DEFAULT_NETNS_DIR, is_live_netns
from sandbox.sandbox import Sandbox
from sandbox.snapshot import SnapshotError
from sandbox.status import State, Status
from sandbox.store import Store

if TYPE_CHECKING:
    from replay.fleet.audit import FleetAuditEntry

__all__ = ["EXIT_CODES", "build_parser", "main"]

PROG = "sandboxctl"
STATE_DIR_ENV = "SANDBOXCTL_STATE_DIR"
DEBUG_ENV = "SANDBOXCTL_DEBUG"
ACTOR = "sandboxctl"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_STATE_DIR = 3
EXIT_NOT_FOUND = 4
EXIT_AMBIGUOUS = 5
EXIT_CORRUPT = 6
EXIT_INVALID = 7
EXIT_LOCKED = 8
EXIT_UNSUPPORTED = 9
EXIT_UNREACHABLE = 10  # = replay.fleet.ship.EXIT_UNREACHABLE (a test checks)
EXIT_DIVERGED = 11  # = replay.fleet.ship.EXIT_DIVERGED
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILED: "verify found a problem, or a generic failure",
    EXIT_USAGE: "usage error (bad option or argument)",
    EXIT_NO_STATE_DIR: "state dir missing",
    EXIT_NOT_FOUND: "not found (unknown id)",
    EXIT_AMBIGUOUS: "ambiguous id prefix",
    EXIT_CORRUPT: "corrupt log",
    EXIT_INVALID: "invalid input (bad pod config JSON, bad id, illegal transition, bad time)",
    EXIT_LOCKED: "log locked by another writer",
    EXIT_UNSUPPORTED: "not supported (yet)",
    EXIT_UNREACHABLE: "NATS unreachable (--nats; ship: for --give-up-after seconds)",
    EXIT_DIVERGED: "ship: the stream holds a different history for this node",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C; follow ends with 0)",
}

POD_ID_WIDTH = 13  # crictl's truncated id length

#: The fleet stream read when --stream is not given
#: (= replay.fleet.message.DEFAULT_STREAM; not imported from there, see above).
DEFAULT_STREAM = "SANDBOXLOG"
#: ``--node`` value meaning every node on the stream (= replay.fleet.source.ALL_NODES).
ALL_NODES = "*"


class CLIError(Exception):
    """A user-facing failure: one line on stderr and this exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# -- the parser -------------------------------------------------------------------------


def _exit_codes_text() -> str:
    lines = ["exit codes:"]
    lines += [f"  {code:<3}  {text}" for code, text in EXIT_CODES.items()]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
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


def _add_output(
    parser: argparse.ArgumentParser, *, stream: bool = False, default: str = "table"
) -> None:
    choices = output.STREAM_FORMATS if stream else output.FORMATS
    parser.add_argument(
        "-o",
        "--output",
        choices=choices,
        default=default,
        help=f"output format: {'|'.join(choices)} (default {default})",
    )


#: ``ship``'s one-line help in the command list before its parser is built
#: (= the help replay.fleet.commands.add_ship_parser gives it; a test checks).
SHIP_HELP = "ship this node's event log to NATS JetStream"
# The deferred commands' help lines, shown before their parsers are built;
# they must equal what the parsers say (tests/cli compares lazy and eager help).
CRASHTEST_HELP = (
    "kill a store at its crash points (or at random) and check that nothing "
    "acknowledged is lost, no namespace leaks and the log still verifies"
)
BENCH_HELP = "run the benchmarks (figures vs raw references)"


def _add_ship_parser(subparsers: Any) -> None:
    from replay.fleet.commands import add_ship_parser

    # Not _add_globals: the ship parser declares its own --state-dir, --nats,
    # --stream, --node and --key-file (suppressed defaults); argparse would
    # refuse them twice.
    add_ship_parser(subparsers)


def _add_crashtest_parser(subparsers: Any) -> None:
    from replay.crash.commands import add_crashtest_parser

    # Each run makes its own temporary state and netns dirs: no globals.
    add_crashtest_parser(subparsers)


def _add_bench_parser(subparsers: Any) -> None:
    from replay.bench.commands import add_bench_parser

    add_bench_parser(subparsers)


if TYPE_CHECKING:
    _SubParsersAction = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    _SubParsersAction = argparse._SubParsersAction


class _Commands(_SubParsersAction):
    """The sub-commands, where some parsers are built only once their command is chosen.

    Why: ``ship``'s parser comes from replay.fleet.commands, whose import
    brings in the NATS client (asyncio, ssl: tens of milliseconds) that no
    local command needs. Until it is chosen, ``ship`` is a placeholder that
    only puts the command and its help line in the command list.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: dict[str, Callable[[Any], None]] = {}

    def add_deferred(self, name: str, help_: str, build: Callable[[Any], None]) -> None:
        """Name a command whose parser ``build(self)`` adds when it is first needed."""
        self.add_parser(name, help=help_, add_help=False)
        self._deferred[name] = build

    def build(self, name: str) -> argparse.ArgumentParser:
        """The parser of ``name``, building a deferred one now (in the placeholder's place)."""
        build = self._deferred.pop(name, None)
        if build is not None:
            index = next(i for i, a in enumerate(self._choices_actions) if a.dest == name)
            del self._name_parser_map[name]
            del self._choices_actions[index]
            build(self)
            # Back to the placeholder's place in the command list.
            self._choices_actions.insert(index, self._choices_actions.pop())
        parser: argparse.ArgumentParser = self._name_parser_map[name]
        return parser

    def build_all(self) -> None:
        for name in list(self._deferred):
            self.build(name)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values and values[0] in self._deferred:
            self.build(values[0])
        super().__call__(parser, namespace, values, option_string)


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The whole command line (also used by the docs test that checks docs/CLI.md).

    ``lazy``: build ``ship``'s parser only if ``ship`` is parsed (what ``main``
    does, so local commands never import the NATS client); the default builds
    every parser now.
    """
    parser = _Parser(
        prog=PROG,
        description=(
            "Inspect, change, verify and replay an event-sourced sandbox store\n"
            "(containerd/cri's sandbox store; every change is a logged event).\n"
            "Reference: docs/CLI.md"
        ),
        epilog=_exit_codes_text()
        + "\n\nGlobal options go before the command; every command takes -o table|json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_globals(parser, top=True)
    sub = cast(
        _Commands,
        parser.add_subparsers(
            dest="command", metavar="COMMAND", parser_class=_Parser, action=_Commands
        ),
    )

    def command(
        name: str, help_: str, *, aliases: Sequence[str] = (), shown: Sequence[str] = ()
    ) -> Any:
        p = sub.add_parser(name, help=help_, description=help_, aliases=list(aliases))
        _add_globals(p, top=False, shown=shown)
        return p

    p = command("run", "create a pod sandbox from a CRI PodSandboxConfig JSON file; prints its id")
    p.add_argument("config", metavar="POD_CONFIG.json", help="pod config as crictl runp takes it")
    p.add_argument("--netns", action="store_true", help="give it a new network namespace")
    _add_output(p)
    p.set_defaults(func=cmd_run)

    p = command("pods", "list pod sandboxes (newest first, as crictl pods)", aliases=["ls"])
    p.add_argument("--name", help="only pods whose name contains this")
    p.add_argument("--namespace", help="only pods in this namespace")
    p.add_argument(
        "--state", type=str.upper, choices=[s.value for s in State], help="only pods in this state"
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only pods with this label (repeatable)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only pod ids")
    p.add_argument("--no-trunc", action="store_true", help="show whole ids")
    _add_output(p)
    p.set_defaults(func=cmd_pods)

    p = command("inspect", "show one pod sandbox in detail (metadata as containerd stores it)")
    p.add_argument("id", metavar="ID", help="id or unique id prefix")
    _add_output(p, default="json")
    p.set_defaults(func=cmd_inspect)

    p = command("stop", "stop a pod sandbox: READY/UNKNOWN -> NOTREADY; removes its netns")
    p.add_argument("id", metavar="ID", help="id or unique id prefix")
    _add_output(p)
    p.set_defaults(func=cmd_stop)

    p = command("rm", "remove a pod sandbox (and its network namespace)")
    p.add_argument("id", metavar="ID", help="id or unique id prefix")
    _add_output(p)
    p.set_defaults(func=cmd_rm)

    p = command("reconcile", "make the network namespaces match the log; print what was done")
    _add_output(p)
    p.set_defaults(func=cmd_reconcile)

    p = command("snapshot", "write a snapshot of the current state (faster opens)")
    _add_output(p)
    p.set_defaults(func=cmd_snapshot)

    p = command(
        "verify",
        "check checksums, chain, seqs, every transition and the snapshots",
        shown=["--key-file"],
    )
    p.add_argument(
        "--head", metavar="H", help="a chain head recorded earlier: the log must still extend it"
    )
    _add_output(p)
    p.set_defaults(func=cmd_verify)

    p = command(
        "repair",
        "show log damage that needs a person; with --cut, cut the log before it "
        "(cut bytes kept as .broken files) and record the repair",
        shown=["--key-file"],
    )
    p.add_argument("--cut", action="store_true", help="do the cut (without it nothing is changed)")
    _add_output(p)
    p.set_defaults(func=cmd_repair)

    p = command("head", "print the current chain head (hex), to keep for a later verify --head")
    _add_output(p)
    p.set_defaults(func=cmd_head)

    p = command("audit", "the audit trail: who changed what, when, where")
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
    _add_output(p, stream=True)
    p.set_defaults(func=cmd_audit)

    p = command("history", "the pods as they were after event SEQ or at time TIME")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--upto", type=_seq_arg, metavar="SEQ", help="after this event")
    group.add_argument("--at", metavar="TIME", help="as of this time (RFC 3339, unix seconds, 10m)")
    p.add_argument("--no-trunc", action="store_true", help="show whole ids")
    _add_output(p)
    p.set_defaults(func=cmd_history)

    p = command("diff", "what changed between two points (seq numbers, or @unix / RFC 3339 / 10m)")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--no-trunc", action="store_true", help="show whole ids")
    _add_output(p)
    p.set_defaults(func=cmd_diff)

    p = command("follow", "print each event as it is written (Ctrl-C ends)")
    p.add_argument(
        "--from", dest="from_seq", type=_seq_arg, metavar="SEQ", help="start with this past event"
    )
    _add_output(p, stream=True)
    p.set_defaults(func=cmd_follow)

    p = command("log", "dump the log's records: seq, time, type, id, digest")
    p.add_argument("--from", dest="from_seq", type=_seq_arg, default=1, metavar="SEQ")
    p.add_argument("--to", dest="to_seq", type=_seq_arg, default=None, metavar="SEQ")
    _add_output(p, stream=True)
    p.set_defaults(func=cmd_log)

    p = command(
        "demo",
        "run a short end-to-end scenario (pods, a crash, recovery, reconcile, verify, audit)",
        shown=["--state-dir"],
    )
    p.add_argument("--force", action="store_true", help="wipe a previous demo's state dir first")
    p.add_argument("--no-netns", action="store_true", help="run without network namespaces")
    _add_output(p)
    p.set_defaults(func=cmd_demo)

    # ship sets func=replay.fleet.commands.run_ship itself.
    sub.add_deferred("ship", SHIP_HELP, _add_ship_parser)
    sub.add_deferred("crashtest", CRASHTEST_HELP, _add_crashtest_parser)
    sub.add_deferred("bench", BENCH_HELP, _add_bench_parser)
    if not lazy:
        sub.build_all()
    return parser


_seq_arg = int_at_least(0, not_int="not a seq number", too_small="a seq is >= 0")


# -- shared helpers ---------------------------------------------------------------------


def _state_dir(args: argparse.Namespace, *, must_exist: bool = True) -> str:
    d = args.state_dir or os.environ.get(STATE_DIR_ENV)
    if not d:
        raise CLIError(f"no state dir: give --state-dir DIR or set {STATE_DIR_ENV}", EXIT_USAGE)
    if must_exist:
        check_state_dir(d)
    return str(d)


def _netns_dir(args: argparse.Namespace) -> str:
    return str(args.netns_dir or DEFAULT_NETNS_DIR)


@contextlib.contextmanager
def _writer(args: argparse.Namespace, *, create: bool = False) -> Iterator[Store]:
    d = _state_dir(args, must_exist=not create)
    store = Store.open(d, netns_dir=_netns_dir(args), actor=ACTOR, key=_key(args))
    try:
        yield store
    finally:
        store.close()


def _stream(args: argparse.Namespace) -> str:
    """--stream (default DEFAULT_STREAM), checked: an InvalidInputError if it cannot be one."""
    from replay.fleet.message import check_stream

    stream = str(args.stream or DEFAULT_STREAM)
    try:
        return check_stream(stream)
    except ValueError as exc:
        raise InvalidInputError(f"--stream: {exc}") from None


def _node(args: argparse.Namespace, *, all_nodes: bool) -> str:
    """--node, checked; ``'*'`` (every node, the default) only where ``all_nodes``."""
    from replay.fleet.message import check_node

    node = str(args.node or (ALL_NODES if all_nodes else ""))
    if not node or node == ALL_NODES:
        if all_nodes:
            return ALL_NODES
        raise CLIError("a state is one node's: give --node NODE with --nats", EXIT_USAGE)
    try:
        return check_node(node)
    except ValueError as exc:
        raise InvalidInputError(f"--node: {exc}") from None


def _load(args: argparse.Namespace, **kwargs: Any) -> StoreView:
    if args.nats:
        from replay.fleet.view import load_fleet

        node = _node(args, all_nodes=False)
        return load_fleet(args.nats, _stream(args), node, netns_dir=_netns_dir(args), **kwargs)
    return load(
        _state_dir(args), key=_key(args), netns_dir=_netns_dir(args), progress=None, **kwargs
    )


def _short(sandbox_id: str, args: argparse.Namespace) -> str:
    return sandbox_id if getattr(args, "no_trunc", False) else sandbox_id[:POD_ID_WIDTH]


def _state_word(state: State) -> str:
    """crictl's spelling in tables."""
    return {State.READY: "Ready", State.NOTREADY: "NotReady", State.UNKNOWN: "Unknown"}[state]


def pod_dict(sb: Sandbox) -> dict[str, Any]:
    """One pod for ``-o json`` (pods, history): crictl's fields, snake_case."""
    cfg = sb.metadata.config
    md = cfg.metadata
    st = sb.status
    return {
        "id": sb.id,
        "name": sb.name,
        "metadata": {
            "name": md.name if md else "",
            "uid": md.uid if md else "",
            "namespace": md.namespace if md else "",
            "attempt": md.attempt if md else 0,
        },
        "state": str(st.state),
        "created_at": st.created_at,
        "created": format_time(st.created_at),
        "labels": dict(cfg.labels),
        "annotations": dict(cfg.annotations),
        "netns_path": sb.metadata.netns_path,
    }


_POD_HEADERS = ("POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT")


def _pod_rows(pods: Sequence[Sandbox], args: argparse.Namespace) -> list[list[object]]:
    now = time.time_ns()
    rows: list[list[object]] = []
    for sb in pods:
        md = sb.metadata.config.metadata
        rows.append(
            [
                _short(sb.id, args),
                ago(sb.status.created_at, now_ns=now),
                _state_word(sb.status.state),
                md.name if md else "",
                md.namespace if md else "",
                md.attempt if md else 0,
            ]
        )
    return rows


def _newest_first(pods: Sequence[Sandbox]) -> list[Sandbox]:
    """crictl sorts pods by creation time, newest first; add order breaks ties."""
    indexed = list(enumerate(pods))
    indexed.sort(key=lambda p: (p[1].status.created_at, p[0]), reverse=True)
    return [sb for _, sb in indexed]


def _print_pods(
    view: StoreView,
    pods: Sequence[Sandbox],
    args: argparse.Namespace,
    extra: dict[str, Any] | None = None,
) -> None:
    pods = _newest_first(pods)
    if args.output == "json":
        doc: dict[str, Any] = {"seq": view.seq}
        if extra:
            doc.update(extra)
        doc["items"] = [pod_dict(sb) for sb in pods]
        output.emit(output.to_json(doc))
    elif getattr(args, "quiet", False):
        output.emit("".join(sb.id + "\n" for sb in pods))
    else:
        output.emit(output.table(_POD_HEADERS, _pod_rows(pods, args)))


# -- commands ---------------------------------------------------------------------------


def _read_pod_config(path: str) -> tuple[PodSandboxConfig, list[str]]:
    """The pod file as crictl runp reads it (Go's encoding/json into the CRI v1
    types), and the paths of the keys Go would silently ignore."""
    # A config larger than one log record could never be stored; reading no
    # more than that keeps ``run /dev/zero`` short.
    limit = eventlog.DEFAULT_MAX_RECORD_BYTES
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InvalidInputError(f"cannot read pod config {path}: {reason}") from None
    if len(data) > limit:
        raise InvalidInputError(f"pod config {path}: larger than {limit} bytes")
    try:
        doc = gojson.loads(data, f"pod config {path}")
    except InvalidConfigError as exc:
        raise InvalidInputError(str(exc)) from None
    ignored: list[str] = []
    try:
        config = PodSandboxConfig.from_go_json(doc, ignored=ignored)
    except InvalidConfigError as exc:
        raise InvalidInputError(f"pod config {path}: {exc}") from None
    md = config.metadata
    missing = [f for f in ("name", "namespace", "uid") if md is None or not getattr(md, f)]
    if missing:
        raise InvalidInputError(
            f"pod config {path}: metadata.{', metadata.'.join(missing)} must be set "
            "(the sandbox is named <name>_<namespace>_<uid>_<attempt>)"
        )
    return config, ignored


def sandbox_name(config: PodSandboxConfig) -> str:
    """containerd's sandbox name: ``<name>_<namespace>_<uid>_<attempt>``."""
    md = config.metadata
    assert md is not None
    return f"{md.name}_{md.namespace}_{md.uid}_{md.attempt}"


def new_sandbox_id() -> str:
    """A 64-hex random id, as containerd generates (32 random bytes)."""
    return secrets.token_hex(32)


def cmd_run(args: argparse.Namespace) -> int:
    config, ignored = _read_pod_config(args.config)
    # Go (crictl, containerd) drops unknown keys without a word; say which, one
    # line each (escaped: a key cannot forge a line or drive the terminal),
    # at most 100 of them.
    for key in ignored[:100]:
        shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in key)
        sys.stderr.write(
            f"{PROG}: warning: pod config {args.config}: ignored unknown key {shown}\n"
        )
    if len(ignored) > 100:
        sys.stderr.write(f"{PROG}: warning: ... and {len(ignored) - 100} more ignored keys\n")
    sandbox_id = new_sandbox_id()
    sb = Sandbox(Metadata(sandbox_id, sandbox_name(config), config), Status(State.READY))
    with _writer(args, create=True) as store:
        added = store.add(sb, create_netns=args.netns)
    if args.output == "json":
        output.emit(
            output.to_json(
                {"id": added.id, "name": added.name, "netns_path": added.metadata.netns_path}
            )
        )
    else:
        output.emit(added.id + "\n")
    return EXIT_OK


def cmd_pods(args: argparse.Namespace) -> int:
    view = _load(args)
    labels: list[tuple[str, str]] = []
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"--label {item!r}: expected KEY=VALUE")
        labels.append((key, value))
    pods = []
    for sb in view.list():
        md = sb.metadata.config.metadata
        if args.name and args.name not in (md.name if md else ""):
            continue
        if args.namespace and args.namespace != (md.namespace if md else ""):
            continue
        if args.state and sb.status.state.value != args.state:
            continue
        have = dict(sb.metadata.config.labels)
        if any(have.get(k) != v for k, v in labels):
            continue
        pods.append(sb)
    _print_pods(view, pods, args)
    return EXIT_OK


def inspect_dict(view: StoreView, sb: Sandbox) -> dict[str, Any]:
    """The detail ``inspect`` prints: status, netns, and containerd's metadata JSON."""
    st = sb.status
    proj = view.projection
    owned_path = proj.owned_path_of(sb.id)
    owned_state = proj.owned_state(owned_path) if owned_path is not None else None
    # The projection drops an owned path once its removal is recorded.
    shown_state = owned_state.value if owned_state is not None else None
    if owned_path is not None and owned_state is None:
        shown_state = "removed"
    path = sb.netns.get_path() if sb.netns is not None else (sb.metadata.netns_path or None)
    return {
        "id": sb.id,
        "name": sb.name,
        "status": {
            "state": str(st.state),
            "pid": st.pid,
            "created_at": format_time(st.created_at),
            "exited_at": format_time(st.exited_at) or None,
            "exit_status": st.exit_status,
        },
        "netns": {
            "path": path,
            "owned": owned_path is not None and owned_path == path,
            "state": shown_state,
            "live": path is not None and is_live_netns(path),
        },
        "metadata": json.loads(sb.metadata.to_json()),
        "seq": view.seq,
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    view = _load(args)
    doc = inspect_dict(view, view[args.id])
    if args.output == "json":
        output.emit(output.to_json(doc))
        return EXIT_OK
    st, ns = doc["status"], doc["netns"]
    cfg = doc["metadata"]["Metadata"]["Config"]
    md = cfg.get("metadata", {})
    output.emit(
        output.key_values(
            [
                ("ID", doc["id"]),
                ("Name", doc["name"]),
                ("Pod", md.get("name", "")),
                ("Namespace", md.get("namespace", "")),
                ("UID", md.get("uid", "")),
                ("Attempt", md.get("attempt", 0)),
                ("State", st["state"]),
                ("PID", st["pid"]),
                ("Created", st["created_at"]),
                ("Exited", st["exited_at"] or ""),
                ("Exit status", "" if st["exit_status"] is None else st["exit_status"]),
                ("NetNS", ns["path"] or ""),
                ("NetNS live", "yes" if ns["live"] else "no"),
                ("NetNS owned", f"yes ({ns['state']})" if ns["owned"] else "no"),
                ("Labels", ", ".join(f"{k}={v}" for k, v in cfg.get("labels", {}).items())),
                ("Seq", doc["seq"]),
            ]
        )
    )
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    with _writer(args) as store:
        sandbox_id = store[args.id].id

        def stopped(old: Status) -> Status:
            if old.state is State.NOTREADY:
                return old  # a repeated stop is fine and writes nothing
            return attrs.evolve(old, state=State.NOTREADY, exited_at=time.time_ns())

        status = store.update_status(sandbox_id, stopped)
        # containerd's StopPodSandbox tears the network down with the sandbox.
        store.remove_netns(sandbox_id)
    if args.output == "json":
        output.emit(
            output.to_json(
                {"id": sandbox_id, "state": str(status.state), "exited_at": status.exited_at}
            )
        )
    else:
        output.emit(f"Stopped sandbox {sandbox_id}\n")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    with _writer(args) as store:
        sandbox_id = store[args.id].id
        store.delete(sandbox_id)
    if args.output == "json":
        output.emit(output.to_json({"id": sandbox_id, "removed": True}))
    else:
        output.emit(f"Removed sandbox {sandbox_id}\n")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    with _writer(args) as store:
        # Opening already reconciled; a second run finds what the first left
        # (and proves idempotence: it should do nothing).
        report = store.last_reconcile_report.merge(store.reconcile())
    if args.output == "json":
        output.emit(output.to_json(report.to_dict()))
    else:
        rows: list[list[object]] = []
        for what, paths in (
            ("created", [p for p in report.created if p not in report.adopted]),
            ("adopted", report.adopted),
            ("removed", report.removed),
            ("closed", report.closed),
            ("foreign", report.foreign),
        ):
            rows += [[what, p, ""] for p in paths]
        rows += [["error", p, m] for p, m in report.errors]
        if rows:
            output.emit(output.table(("ACTION", "PATH", "DETAIL"), rows))
        else:
            output.emit("nothing to do: every namespace matches the log\n")
    return EXIT_FAILED if report.errors else EXIT_OK


def cmd_snapshot(args: argparse.Namespace) -> int:
    with _writer(args) as store:
        path = store.snapshot()
        seq = store.last_seq
    if args.output == "json":
        output.emit(output.to_json({"path": path, "seq": seq}))
    else:
        output.emit(path + "\n")
    return EXIT_OK


def _verify_text(res: VerifyResult) -> str:
    lines = []
    if res.ok and res.chain_checked:
        lines.append(
            f"OK: {res.records} records (seq 1..{res.last_seq}), every event and "
            f"{len(res.snapshots)} snapshot(s) checked; head {res.head}"
        )
    elif res.ok:
        lines.append(
            f"NOT VERIFIED: {res.records} records read, checksums and events fine, but the "
            "chain of this keyed log was not checked: give --key-file"
        )
    else:
        first = res.first
        assert first is not None
        lines.append(f"FAILED: {first}")
        if first.sandbox_id:
            lines.append(f"  sandbox {first.sandbox_id}")
        if len(res.problems) > 1:
            lines.append(f"{len(res.problems)} problems in all:")
            lines += [f"  {p}" for p in res.problems]
        lines.append(f"checked {res.records} records up to seq {res.last_seq}")
    if res.head_checked and res.ok:
        lines.append("the log still extends the given head")
    if res.torn_tail:
        lines.append(
            f"note: {res.torn_tail} bytes of a torn tail "
            "(a crash mid-append; the next writer cuts it)"
        )
    lines += [f"note: {n}" for n in res.notes]
    return "\n".join(lines) + "\n"


def cmd_verify(args: argparse.Namespace) -> int:
    if args.nats:
        from replay.fleet.commands import run_fleet_verify

        _stream(args)  # bad --stream/--node: exit 7 here too, as for the other readers
        _node(args, all_nodes=True)
        return run_fleet_verify(args)
    try:
        res = verify(
            _state_dir(args),
            head=args.head,
            key=_key(args),
            netns_dir=_netns_dir(args),
            progress=None,
        )
    except ValueError as exc:  # a bad --head
        raise InvalidInputError(str(exc)) from None
    if args.output == "json":
        output.emit(output.to_json(res.to_dict()))
    else:
        output.emit(_verify_text(res))
    return EXIT_OK if res.ok and res.chain_checked else EXIT_FAILED


def cmd_repair(args: argparse.Namespace) -> int:
    report = repair_log(_state_dir(args), key=_key(args), cut_log=args.cut, actor=ACTOR)
    output.emit(output.to_json(report.to_dict()) if args.output == "json" else report.text())
    # Damage left in place is a corrupt log, as for every other command.
    return EXIT_CORRUPT if report.damaged else EXIT_OK


def current_head(state_dir: str, key: bytes | None = None) -> tuple[int, str]:
    """(last seq, chain head hex) of the log now, reading only its last segment(s).

    A reader starting at a segment trusts that segment's recorded prev_digest;
    ``verify`` is what proves the whole chain - ``head`` only records it.
    """
    segments = (
        list_segments(state_dir) if any(n.endswith(".log") for n in os.listdir(state_dir)) else []
    )
    for seg in reversed(segments):
        last = None
        for rec in eventlog.read(state_dir, from_seq=seg.first_seq, key=key):
            last = rec
        if last is not None:
            return last.seq, last.digest.hex()
    return 0, "00" * 32


def cmd_head(args: argparse.Namespace) -> int:
    seq, head = current_head(_state_dir(args), _key(args))
    if args.output == "json":
        output.emit(output.to_json({"seq": seq, "head": head}))
    else:
        output.emit(head + "\n")
    return EXIT_OK


def _time_arg(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except TimeSpecError as exc:
        raise InvalidInputError(f"{option}: {exc}") from None


_AUDIT = output.StreamTable(
    [("SEQ", 8), ("TIME", 33), ("POD ID", 16), ("TYPE", 23), ("WHO", 28), ("SUMMARY", 0)]
)


def _who(e: AuditEntry) -> str:
    return f"{e.actor or '-'}@{e.host or '?'}:{e.pid if e.pid is not None else '?'}"


def _audit_cells(e: AuditEntry, args: argparse.Namespace) -> list[object]:
    return [e.seq, e.time, _short(e.sandbox_id, args), e.type, _who(e), e.summary]


def _audit_row(e: AuditEntry, args: argparse.Namespace) -> str:
    return _AUDIT.row(_audit_cells(e, args))


def _fleet_audit(args: argparse.Namespace) -> list[FleetAuditEntry]:
    from replay.fleet.audit import fleet_audit

    return fleet_audit(
        args.nats,
        _stream(args),
        _node(args, all_nodes=True),
        sandbox=args.sandbox,
        since=_time_arg(args.since, "--since"),
        until=_time_arg(args.until, "--until"),
        types=args.type,
        netns_dir=_netns_dir(args),
    )


def _fleet_audit_table(entries: Sequence[FleetAuditEntry], args: argparse.Namespace) -> str:
    """The audit table with a NODE column first (fleet-wide trail: ``--node '*'``)."""
    longest = max((len(e.node) for e in entries), default=0)
    table = output.StreamTable([("NODE", max(16, longest + output.PADDING)), *_AUDIT.columns])
    return table.header() + "".join(table.row([e.node, *_audit_cells(e, args)]) for e in entries)


def cmd_audit(args: argparse.Namespace) -> int:
    entries: Sequence[AuditEntry]
    fleet_wide: list[FleetAuditEntry] | None = None  # the trail of every node
    if args.nats:
        entries = fleet_entries = _fleet_audit(args)
        if _node(args, all_nodes=True) == ALL_NODES:
            fleet_wide = fleet_entries
    else:
        entries = audit(
            _state_dir(args),
            sandbox=args.sandbox,
            since=_time_arg(args.since, "--since"),
            until=_time_arg(args.until, "--until"),
            types=args.type,
            key=_key(args),
            netns_dir=_netns_dir(args),
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


def cmd_history(args: argparse.Namespace) -> int:
    if args.at is not None:
        view = _load(args, at=_time_arg(args.at, "--at"))
    else:
        view = _load(args, upto_seq=args.upto)
    extra = {"time": format_time(view.time_ns), "head": view.head}
    if args.output == "table":
        sys.stderr.write(
            f"state after seq {view.seq}"
            + (f" ({format_time(view.time_ns)})" if view.time_ns else "")
            + "\n"
        )
    _print_pods(view, view.list(), args, extra)
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
    d = _state_dir(args)
    res = diff(d, a, b, key=_key(args), netns_dir=_netns_dir(args), progress=None)
    if args.output == "json":
        output.emit(output.to_json(res.to_dict()))
        return EXIT_OK
    rows: list[list[object]] = []
    for kind, items in (("added", res.added), ("removed", res.removed)):
        for item in items:
            rows.append([kind, _short(item["id"], args), item["name"], "state", "", item["state"]])
    for change in res.changed:
        first = True
        for field, c in change.changes.items():
            rows.append(
                [
                    "changed" if first else "",
                    _short(change.id, args) if first else "",
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


def cmd_follow(args: argparse.Namespace) -> int:
    d = _state_dir(args)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        follower = follow(
            d, from_seq=args.from_seq, key=_key(args), netns_dir=_netns_dir(args), stop=stop
        )
        with follower:
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
    return EXIT_OK


_LOG = output.StreamTable([("SEQ", 8), ("TIME", 33), ("TYPE", 23), ("POD ID", 16), ("DIGEST", 0)])


def cmd_log(args: argparse.Namespace) -> int:
    d = _state_dir(args)
    if args.to_seq is not None and args.to_seq < args.from_seq:
        raise InvalidInputError(f"--to {args.to_seq} is before --from {args.from_seq}")
    records: Iterator[eventlog.Record]
    if any(n.endswith(".log") for n in os.listdir(d)):
        records = iter(
            eventlog.read(d, from_seq=max(1, args.from_seq), to_seq=args.to_seq, key=_key(args))
        )
    else:
        records = iter(())

    def as_dict(rec: eventlog.Record) -> dict[str, Any]:
        p = rec.payload
        return {
            "seq": rec.seq,
            "time": format_time(rec.time_ns),
            "time_ns": rec.time_ns,
            "type": p.get("type"),
            "id": p.get("id"),
            "digest": rec.digest.hex(),
        }

    if args.output == "json":
        output.emit(output.to_json([as_dict(r) for r in records]))
    elif args.output == "jsonl":
        for rec in records:
            output.emit(output.to_jsonl(as_dict(rec)))
    else:
        output.emit(_LOG.header())
        for rec in records:
            row = as_dict(rec)
            output.emit(
                _LOG.row(
                    [
                        row["seq"],
                        row["time"],
                        row["type"],
                        _short(str(row["id"]), args),
                        row["digest"][:16],
                    ]
                )
            )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from replay import demo

    # Never $SANDBOXCTL_STATE_DIR: that names a real store, and a demo is not one.
    state_dir = args.state_dir or demo.DEFAULT_STATE_DIR
    return demo.main(
        state_dir,
        force=args.force,
        use_netns=not args.no_netns,
        json_output=args.output == "json",
    )


# -- errors and main --------------------------------------------------------------------


def _classify(exc: BaseException) -> tuple[int, str] | None:
    """Exit code and one-line message for an error the user can act on (None: a bug)."""
    if isinstance(exc, CLIError):
        return exc.code, str(exc)
    if "replay.fleet.errors" in sys.modules:  # else no fleet code ran: not a FleetError
        from replay.fleet.commands import fleet_exit_code
        from replay.fleet.errors import FleetError

        if isinstance(exc, FleetError):
            return fleet_exit_code(exc), str(exc)
    if isinstance(exc, StateDirMissingError):
        return EXIT_NO_STATE_DIR, str(exc)
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND, str(exc)
    if isinstance(exc, AmbiguousPrefixError):
        return EXIT_AMBIGUOUS, str(exc)
    if isinstance(exc, eventlog.CorruptLogError):
        return EXIT_CORRUPT, str(exc) + " (run 'sandboxctl verify' for a full report)"
    if isinstance(exc, eventlog.LogLockedError):
        return EXIT_LOCKED, str(exc)
    if isinstance(exc, NotSupportedError):
        return EXIT_UNSUPPORTED, str(exc)
    if isinstance(exc, eventlog.KeyRequiredError):
        return EXIT_INVALID, f"{exc}; give --key-file"
    if isinstance(
        exc,
        InvalidIDError
        | InvalidTransitionError
        | InvalidConfigError
        | InvalidMetadataError
        | AlreadyExistsError
        | InvalidInputError
        | PointOutOfRangeError
        | TimeSpecError,
    ):
        return EXIT_INVALID, str(exc)
    if isinstance(exc, UnsupportedVersionError | UnknownEventError):
        return EXIT_FAILED, f"{exc} (this sandboxctl is older than the log's writer)"
    if isinstance(exc, SnapshotError | StoreError | eventlog.EventLogError):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, PermissionError):
        return EXIT_FAILED, f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return EXIT_FAILED, f"{exc.strerror or exc}{where}"
    return None


class _WarningsToStderr(logging.Handler):
    """Library warnings (a skipped snapshot, a reconcile error) as one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a logging handler must never raise
            sys.stderr.write(f"{PROG}: warning: {record.getMessage()}\n")


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): not an error worth a message.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        known = _classify(exc)
        if known is None:
            if os.environ.get(DEBUG_ENV):
                raise
            sys.stderr.write(
                f"{PROG}: error: internal error: {type(exc).__name__}: {exc} "
                f"(set {DEBUG_ENV}=1 for a traceback)\n"
            )
            return EXIT_FAILED
        code, message = known
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return code


#: The commands that read from a fleet stream with --nats (and ``ship``).
_NATS_COMMANDS: frozenset[Callable[[argparse.Namespace], int]] = frozenset(
    {cmd_pods, cmd_inspect, cmd_history, cmd_audit, cmd_verify}
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sandboxctl`` and ``python -m replay``; returns the exit code."""
    parser = build_parser(lazy=True)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    root = logging.getLogger()
    if not root.handlers:
        handler = _WarningsToStderr(logging.WARNING)
        root.addHandler(handler)
    func: Callable[[argparse.Namespace], int] = args.func
    # run_ship is compared by name: importing it would import the NATS client.
    if getattr(args, "nats", None) and not (func in _NATS_COMMANDS or args.command == "ship"):
        sys.stderr.write(
            f"{PROG}: error: {args.command} does not read a fleet stream: --nats works with "
            "pods, inspect, history, audit, verify and ship\n"
        )
        return EXIT_USAGE
    return _run(func, args)


def entry() -> NoReturn:
    """``console_scripts``-style wrapper that exits with ``main``'s code."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
