"""The pod-sandbox verbs: run, pods, inspect, stop, rm (crictl's sandbox.go, one file).

Why together: they are the CRI's PodSandbox calls seen from the command
line, and they share what a pod looks like in a table and in JSON
(``pod_dict``, ``print_pods``; ``history`` prints pods the same way).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs

import eventlog
from replay import output
from replay.argtypes import read_input
from replay.cli.common import AddCommand, id_arg, load_view, short, writer
from replay.cli.exits import EXIT_OK, PROG
from replay.errors import InvalidInputError
from replay.timespec import ago, format_time
from replay.view import StoreView
from sandbox import gojson
from sandbox.config import InvalidConfigError, PodSandboxConfig
from sandbox.metadata import Metadata
from sandbox.netns import is_live_netns
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status

__all__ = [
    "add_pod_commands",
    "cmd_inspect",
    "cmd_pods",
    "cmd_rm",
    "cmd_run",
    "cmd_stop",
    "inspect_dict",
    "new_sandbox_id",
    "pod_dict",
    "print_pods",
    "sandbox_name",
]


def add_pod_commands(command: AddCommand) -> None:
    """run, pods (ls), inspect, stop, rm."""
    p = command(
        "run", "create a pod sandbox from a CRI PodSandboxConfig JSON file; prints its id", cmd_run
    )
    p.add_argument("config", metavar="POD_CONFIG.json", help="pod config as crictl runp takes it")
    p.add_argument("--netns", action="store_true", help="give it a new network namespace")

    p = command(
        "pods", "list pod sandboxes (newest first, as crictl pods)", cmd_pods, aliases=["ls"]
    )
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

    p = command(
        "inspect",
        "show one pod sandbox in detail (metadata as containerd stores it)",
        cmd_inspect,
        output="json",
    )
    p.add_argument("id", metavar="ID", help="id or unique id prefix")

    p = command(
        "stop", "stop a pod sandbox: READY/UNKNOWN -> NOTREADY; removes its netns", cmd_stop
    )
    p.add_argument("id", metavar="ID", help="id or unique id prefix")

    p = command("rm", "remove a pod sandbox (and its network namespace)", cmd_rm)
    p.add_argument("id", metavar="ID", help="id or unique id prefix")


# -- how a pod is shown -----------------------------------------------------------------


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
                short(sb.id, args),
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


def print_pods(
    view: StoreView,
    pods: Sequence[Sandbox],
    args: argparse.Namespace,
    extra: dict[str, Any] | None = None,
) -> None:
    """The pod list in the format asked for (``pods``, ``history``)."""
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


# -- run ----------------------------------------------------------------------------------


def _read_pod_config(path: str) -> tuple[PodSandboxConfig, list[str]]:
    """The pod file as crictl runp reads it (Go's encoding/json into the CRI v1
    types), and the paths of the keys Go would silently ignore."""
    # A config larger than one log record could never be stored; reading no
    # more than that keeps ``run /dev/zero`` short (and a FIFO is refused
    # without blocking: read_input opens O_NONBLOCK and wants a regular file).
    data = read_input(path, limit=eventlog.DEFAULT_MAX_RECORD_BYTES, what="pod config", stdin=True)
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
    with writer(args, create=True) as store:
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


# -- the read verbs -------------------------------------------------------------------------


def cmd_pods(args: argparse.Namespace) -> int:
    view = load_view(args)
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
    print_pods(view, pods, args)
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
    prefix = id_arg(args.id)
    view = load_view(args)
    doc = inspect_dict(view, view[prefix])
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


# -- the write verbs ------------------------------------------------------------------------


def cmd_stop(args: argparse.Namespace) -> int:
    prefix = id_arg(args.id)
    with writer(args) as store:
        sandbox_id = store[prefix].id

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
    prefix = id_arg(args.id)
    with writer(args) as store:
        sandbox_id = store[prefix].id
        store.delete(sandbox_id)
    if args.output == "json":
        output.emit(output.to_json({"id": sandbox_id, "removed": True}))
    else:
        output.emit(f"Removed sandbox {sandbox_id}\n")
    return EXIT_OK
