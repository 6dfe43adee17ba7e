"""The log's integrity: verify, head, snapshot, reconcile, repair, compact.

Why together: each answers "can this log and these namespaces be trusted,
and what was done about it" - proving the chain (``verify``, against a
``head`` kept earlier), making the kernel match the log (``reconcile``),
cutting damage a person decided about (``repair``), and checkpointing the
fold (``snapshot``), and letting history before a snapshot go (``compact``).
"""

from __future__ import annotations

import argparse
import os

import eventlog
from eventlog.segments import list_segments
from replay import output
from replay.cli.common import (
    ACTOR,
    AddCommand,
    key_from_args,
    netns_dir,
    node,
    state_dir,
    stream,
    wait_for_lock,
    writer,
)
from replay.cli.exits import EXIT_CORRUPT, EXIT_FAILED, EXIT_OK
from replay.errors import InvalidInputError
from replay.repair import repair_log
from replay.verify import VerifyResult, verify
from sandbox.retention import check_keep

__all__ = [
    "add_integrity_commands",
    "cmd_compact",
    "cmd_head",
    "cmd_reconcile",
    "cmd_repair",
    "cmd_snapshot",
    "cmd_verify",
    "current_head",
]


def add_integrity_commands(command: AddCommand) -> None:
    """reconcile, snapshot, verify, repair, head."""
    command(
        "reconcile", "make the network namespaces match the log; print what was done", cmd_reconcile
    )

    command("snapshot", "write a snapshot of the current state (faster opens)", cmd_snapshot)

    p = command(
        "verify",
        "check checksums, chain, seqs, every transition and the snapshots",
        cmd_verify,
        shown=["--key-file"],
    )
    p.add_argument(
        "--head", metavar="H", help="a chain head recorded earlier: the log must still extend it"
    )

    p = command(
        "repair",
        "show log damage that needs a person; with --cut, cut the log before it "
        "(cut bytes kept as .broken files) and record the repair",
        cmd_repair,
        shown=["--key-file"],
    )
    p.add_argument("--cut", action="store_true", help="do the cut (without it nothing is changed)")

    p = command(
        "compact",
        "drop (or archive) the log segments wholly before the oldest kept snapshot",
        cmd_compact,
        shown=["--key-file"],
    )
    p.add_argument(
        "--keep-snapshots", type=int, default=2, metavar="N", help="snapshots to keep (default 2)"
    )
    p.add_argument("--archive", metavar="DIR", help="move the segments there instead of deleting")
    p.add_argument(
        "--force", action="store_true", help="also drop records the shipper has not had acked"
    )

    command(
        "head", "print the current chain head (hex), to keep for a later verify --head", cmd_head
    )


def cmd_reconcile(args: argparse.Namespace) -> int:
    with writer(args) as store:
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
    with writer(args) as store:
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
            f"OK: {res.records} records (seq {res.last_seq - res.records + 1}..{res.last_seq}), "
            "every event and "
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
        # The stream reader brings asyncio and the NATS client: only for --nats.
        from replay.fleet.commands import run_fleet_verify

        stream(args)  # bad --stream/--node: exit 7 here too, as for the other readers
        node(args, all_nodes=True)
        return run_fleet_verify(args)
    try:
        res = verify(
            state_dir(args),
            head=args.head,
            key=key_from_args(args),
            netns_dir=netns_dir(args),
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
    d, key = state_dir(args), key_from_args(args)
    # With --cut it writes (the cut and its record): it waits for the lock as
    # every write command does.
    report = wait_for_lock(args, lambda: repair_log(d, key=key, cut_log=args.cut, actor=ACTOR))
    output.emit(output.to_json(report.to_dict()) if args.output == "json" else report.text())
    # Damage left in place is a corrupt log, as for every other command.
    return EXIT_CORRUPT if report.damaged else EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    try:  # wrong input is refused before the store is opened (and reconciled)
        check_keep(args.keep_snapshots, "--keep-snapshots")
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    # As the store's writer: compaction first carries ownership forward in the log
    # (sandbox/retention.py), which only the writer may append.
    with writer(args) as store:
        try:
            report = store.compact(
                keep_snapshots=args.keep_snapshots, archive_dir=args.archive, force=args.force
            )
        except ValueError as exc:  # no usable snapshot: the input is wrong
            raise InvalidInputError(str(exc)) from None
    if args.output == "json":
        output.emit(output.to_json(report.to_dict()))
    else:
        where = f"archived in {report.archive}" if report.archive else "removed"
        output.emit(
            f"{len(report.segments_removed)} segment(s), {report.bytes_removed} bytes {where}; "
            f"{len(report.snapshots_removed)} older snapshot(s) removed; "
            f"the log now starts at seq {report.first_seq}\nnote: {report.note}\n"
        )
    return EXIT_OK


def current_head(directory: str, key: bytes | None = None) -> tuple[int, str]:
    """(last seq, chain head hex) of the log now, reading only its last segment(s).

    A reader starting at a segment trusts that segment's recorded prev_digest;
    ``verify`` is what proves the whole chain - ``head`` only records it.
    """
    segments = (
        list_segments(directory) if any(n.endswith(".log") for n in os.listdir(directory)) else []
    )
    for seg in reversed(segments):
        last = None
        for rec in eventlog.read(directory, from_seq=seg.first_seq, key=key):
            last = rec
        if last is not None:
            return last.seq, last.digest.hex()
    return 0, "00" * 32


def cmd_head(args: argparse.Namespace) -> int:
    seq, head = current_head(state_dir(args), key_from_args(args))
    if args.output == "json":
        output.emit(output.to_json({"seq": seq, "head": head}))
    else:
        output.emit(head + "\n")
    return EXIT_OK
