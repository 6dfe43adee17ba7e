"""``sandboxctl crashtest``: the CLI face of the crash harness.

    sandboxctl crashtest [--runs N] [--seed S] [--points all|NAME,...]
                         [--power-loss] [--ops K] [--jobs J] [--workdir DIR] [--keep-failed]
                         [--launch fork|exec] [--list-points] [-o table|json]
    sandboxctl crashtest --model reorder [--states N] [--workload single|threads|batch|all]
                         [--seed S] [--workdir DIR] [--keep-failed] [-o table|json]

Two models. ``points`` (the default) kills a store at its crash points and,
with ``--power-loss``, loses the unsynced tail of the log: prefixes only.
``reorder`` (``replay.crash.reorder``) traces an event-log workload with
strace and checks crash states beyond prefixes: unsynced writes persisted
partially and out of order, unsynced directory entries lost, crashes during
recovery.

Why it is separate from ``replay/cli.py``: the CLI module belongs to the
command set as a whole; this module only adds one sub-command to the
``subparsers`` it is given (``add_crashtest_parser``) and runs it
(``run_crashtest``), so the crash harness can change without touching the
rest of the CLI.

Exit codes: 0 no violation; 1 a violation was found (or the harness could
not run, e.g. not root, or strace missing); 2 a usage error (unknown crash
point, bad number, a reorder option with the points model, a --workdir
that is no directory).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from replay import output
from replay.argtypes import int_at_least
from replay.crash.reorder_child import WORKLOADS as REORDER_WORKLOADS

PROG = "sandboxctl"
EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2


MODELS = ("points", "reorder")
#: The reorder model's workloads (their one home is reorder_child: stdlib and attrs only).
WORKLOADS = tuple(REORDER_WORKLOADS)
DEFAULT_STATES = 300

_positive = int_at_least(1, not_int="not a whole number", too_small="must be >= 1")


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a seed (an integer): {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is >= 0, got {value}")
    return value


def add_crashtest_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``crashtest`` to a ``parser.add_subparsers()`` object; returns its parser.

    The parser's ``func`` default is ``run_crashtest``, so a CLI that
    dispatches on ``args.func(args)`` needs nothing more.
    """
    text = (
        "kill a store at its crash points (or at random) and check that nothing "
        "acknowledged is lost, no namespace leaks and the log still verifies"
    )
    p: argparse.ArgumentParser = subparsers.add_parser(
        "crashtest",
        help=text,
        description=text + ". Each run uses a fresh temporary state dir and netns dir "
        "(root needed: real network namespaces). Every violation is printed with the "
        "command that replays its run alone.",
    )
    _add_run_options(p)
    _add_child_options(p)
    _add_model_options(p)
    _add_output_option(p)
    p.set_defaults(func=run_crashtest)
    return p


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Which runs: how many, their seed, crash points and size, where they go."""
    p.add_argument("--runs", type=_positive, default=100, metavar="N", help="runs (default 100)")
    p.add_argument(
        "--seed",
        type=_seed,
        default=None,
        metavar="S",
        help="master seed (default: random, printed); run 0 uses S itself",
    )
    p.add_argument(
        "--points",
        default="all",
        metavar="all|NAME,...",
        help="crash points to arm, round robin over the runs; 'sigkill' is a random "
        "kill by the parent (default all: every registered point and sigkill)",
    )
    p.add_argument(
        "--power-loss",
        action="store_true",
        help="also lose what was not fsynced: cut or zero each segment's unsynced tail, "
        "drop unacknowledged snapshots, and reboot (namespaces gone)",
    )
    p.add_argument(
        "--ops", type=_positive, default=None, metavar="K", help="commands per child (default 80)"
    )
    p.add_argument(
        "--jobs", type=_positive, default=1, metavar="J", help="runs in parallel (default 1)"
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        default=None,
        help="where the per-run temporary state and netns dirs go (default: $TMPDIR)",
    )
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep the state dir of a run with a violation (its path is printed)",
    )


def _add_child_options(p: argparse.ArgumentParser) -> None:
    """How each child starts, and --list-points."""
    p.add_argument(
        "--launch",
        choices=("fork", "exec"),
        default="fork",
        help="start each child by forking this process (fast, default) or as "
        "'python -m replay.crash.child' armed through SANDBOX_CRASHPOINT",
    )
    p.add_argument(
        "--list-points", action="store_true", help="list the crash points and where they are"
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The crash model and its reorder-only knobs."""
    p.add_argument(
        "--model",
        choices=MODELS,
        default="points",
        help="points: kill at crash points, with --power-loss lose the unsynced tail "
        "(prefixes; default); reorder: trace an event-log workload and check crash states "
        "beyond prefixes (out-of-order sectors and pages, lost directory entries, crashes "
        "during recovery; needs strace, not root)",
    )
    p.add_argument(
        "--states",
        type=_positive,
        default=None,
        metavar="N",
        help=f"reorder: distinct crash states to check, split over the workloads "
        f"(default {DEFAULT_STATES})",
    )
    p.add_argument(
        "--workload",
        choices=(*WORKLOADS, "all"),
        default=None,
        help="reorder: the event-log workload to trace (default all)",
    )


def _add_output_option(p: argparse.ArgumentParser) -> None:
    """The output format."""
    p.add_argument(
        "-o",
        "--output",
        choices=output.FORMATS,
        default="table",
        help=f"output format: {'|'.join(output.FORMATS)} (default table)",
    )


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG} crashtest: error: {message}\n")
    return code


def run_crashtest(args: argparse.Namespace) -> int:
    """Run the command ``add_crashtest_parser`` parsed; returns the exit code."""
    from replay.crash import harness

    fmt = getattr(args, "output", "table")
    if getattr(args, "list_points", False):
        points = harness.known_points()
        if fmt == "json":
            output.emit(output.to_json([{"point": k, "where": v} for k, v in points.items()]))
        else:
            output.emit(output.table(["CRASH POINT", "WHERE"], list(points.items())))
        return EXIT_OK
    workdir = getattr(args, "workdir", None)
    if workdir is not None and not os.path.isdir(workdir):
        # Checked here: mkdtemp would report the run's subdirectory instead.
        why = "not a directory" if os.path.exists(workdir) else "no such directory"
        return _fail(f"--workdir {workdir}: {why}", EXIT_USAGE)
    model = getattr(args, "model", "points")
    if model == "reorder":
        return _run_reorder(args, fmt)
    if getattr(args, "states", None) is not None or getattr(args, "workload", None) is not None:
        return _fail("--states and --workload go with --model reorder", EXIT_USAGE)
    try:
        harness.resolve_points(args.points)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if os.geteuid() != 0:
        return _fail(
            "needs root: every run creates real network namespaces (try sudo, or unshare -Urm)",
            EXIT_VIOLATIONS,
        )
    from replay.progress import Progress

    max_ops = args.ops if args.ops is not None else harness.DEFAULT_MAX_OPS
    with Progress(args.runs, "crashtest", unit="runs") as bar:
        done = [0]

        def step(_result: harness.RunResult) -> None:
            done[0] += 1
            bar.update(done[0])

        report = harness.run_crashtest(
            args.runs,
            args.seed,
            args.points,
            args.power_loss,
            jobs=args.jobs,
            max_ops=max_ops,
            keep_failed=args.keep_failed,
            workdir=args.workdir,
            launch=args.launch,
            progress=step,
        )
    if fmt == "json":
        output.emit(output.to_json(report.to_dict()))
    else:
        output.emit(report.to_table())
    return EXIT_OK if report.ok else EXIT_VIOLATIONS


def _run_reorder(args: argparse.Namespace, fmt: str) -> int:
    """``--model reorder``: trace the workloads, check crash states, print the report."""
    from replay.crash import reorder
    from replay.progress import Progress

    bound = args.states if args.states is not None else DEFAULT_STATES
    chosen = args.workload or "all"
    names = WORKLOADS if chosen == "all" else (chosen,)
    with Progress(bound, "crashtest reorder", unit="states") as bar:
        try:
            report = reorder.run_reorder(
                bound,
                args.seed,
                names,
                workdir=args.workdir,
                keep_failed=args.keep_failed,
                progress=bar.update,
            )
        except reorder.ReorderError as exc:
            return _fail(str(exc), EXIT_VIOLATIONS)
    if fmt == "json":
        output.emit(output.to_json(report.to_dict()))
    else:
        output.emit(report.to_table())
    return EXIT_OK if report.ok else EXIT_VIOLATIONS
