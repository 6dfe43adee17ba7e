"""The ``sandboxctl bench`` command: its options and the benchmarks' one entry point.

Kept apart from the CLI package so the CLI only has to wire two names:
``add_bench_parser(subparsers)`` and ``run_bench(args) -> int``. Without
the CLI, ``python -m replay.bench.commands [options]`` is the same command;
``--only GROUP[,GROUP]`` runs some suites (``--only log`` is what the log
module alone used to be). The bench modules have no entry points of their
own: one runner, one row model, one set of renderers for every figure. The
optional heavy imports (matplotlib, eventsourcing, nats) happen only when a
benchmark needs them, so ``sandboxctl pods`` never pays for them.

Exit status: 0 after a run, whatever the figures say (CI runs ``--quick``
to print them, never to judge them on a noisy VM); 1 when a suite failed
with an error or the plot could not be written; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import attrs

from .plan import Plan
from .render import FORMATS as _FORMATS
from .render import plot_open_scale, render
from .runner import GROUPS as _GROUPS
from .runner import run

__all__ = ["add_bench_parser", "command_line", "main", "run_bench"]

DESCRIPTION = (
    "run every benchmark in one process and one run, each figure beside its reference "
    "(raw fdatasync, raw msgpack.Unpacker, raw netns creation, eventsourcing on SQLite), "
    "with their ratio, the target ratio and pass/MISS; machine facts on top"
)


def _groups(text: str) -> list[str]:
    names = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in names if g not in _GROUPS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown group {','.join(bad) or text!r}; choose from {','.join(_GROUPS)}"
        )
    return names


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the CLI's subparsers; it dispatches to ``run_bench``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="run the benchmarks (figures vs raw references)", description=DESCRIPTION
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes, fewer repetitions: under a minute on 2 cores (what CI runs)",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=_FORMATS,
        default="table",
        help=f"output format: {'|'.join(_FORMATS)} (default table)",
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="write a PNG of Store.open time vs log size, with and without snapshots "
        "(needs matplotlib: pip install .[bench])",
    )
    p.add_argument(
        "--dir",
        metavar="DIR",
        default=None,
        help="where the scratch logs go (default: the system temp dir); fsync figures "
        "are this filesystem's",
    )
    p.add_argument(
        "--only",
        type=_groups,
        default=None,
        metavar="GROUPS",
        help=f"run only these groups (comma-separated: {','.join(_GROUPS)})",
    )
    p.add_argument(
        "--skip", type=_groups, default=None, metavar="GROUPS", help="run all groups but these"
    )
    p.add_argument(
        "--reps",
        type=int,
        default=None,
        metavar="N",
        help="repetitions per row (default 5; 3 for the 1M-event cases and with --quick)",
    )
    p.add_argument(
        "--save-json",
        metavar="PATH",
        default=None,
        help="also write the JSON report here (to compare runs later), whatever -o says",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    # The smoke test's sizes (every row in seconds; the figures mean nothing).
    p.add_argument(
        "--plan", choices=("full", "quick", "tiny"), default=None, help=argparse.SUPPRESS
    )
    p.set_defaults(func=run_bench)
    return p


def command_line(args: argparse.Namespace) -> str:
    """The command as a person would type it again, for the report's header."""
    parts = ["sandboxctl", "bench"]
    if getattr(args, "quick", False):
        parts.append("--quick")
    if getattr(args, "plan", None):
        parts += ["--plan", args.plan]
    if getattr(args, "output", "table") != "table":
        parts += ["-o", args.output]
    if getattr(args, "plot", None):
        parts += ["--plot", args.plot]
    if getattr(args, "dir", None):
        parts += ["--dir", args.dir]
    if getattr(args, "only", None):
        parts += ["--only", ",".join(args.only)]
    if getattr(args, "skip", None):
        parts += ["--skip", ",".join(args.skip)]
    if getattr(args, "save_json", None):
        parts += ["--save-json", args.save_json]
    if getattr(args, "reps", None):
        parts += ["--reps", str(args.reps)]
    return " ".join(parts)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmarks as ``args`` say, print the report on stdout; the exit code."""
    name = getattr(args, "plan", None) or ("quick" if getattr(args, "quick", False) else "full")
    plan = Plan.named(name)
    reps = getattr(args, "reps", None)
    if reps is not None:
        if reps < 1:
            sys.stderr.write("sandboxctl: error: --reps must be >= 1\n")
            return 2
        plan = attrs.evolve(plan, reps=reps, reps_big=reps)
    only = getattr(args, "only", None)
    skip = set(getattr(args, "skip", None) or ())
    groups = [g for g in _GROUPS if (only is None or g in only) and g not in skip]
    plot = getattr(args, "plot", None)
    if plot and "open" not in groups:
        sys.stderr.write("sandboxctl: error: --plot needs the 'open' group\n")
        return 2
    quiet = getattr(args, "quiet", False)

    def progress(message: str) -> None:
        if not quiet:
            sys.stderr.write(f"bench: {message}\n")
            sys.stderr.flush()

    result = run(
        plan,
        parent=getattr(args, "dir", None),
        groups=groups,
        progress=progress,
        command=command_line(args),
    )
    sys.stdout.write(render(result.report, getattr(args, "output", "table")))
    sys.stdout.flush()
    code = 1 if result.errors else 0
    save_json = getattr(args, "save_json", None)
    if save_json:
        try:
            with open(save_json, "w", encoding="utf-8") as f:
                f.write(render(result.report, "json"))
        except OSError as exc:
            sys.stderr.write(f"sandboxctl: error: --save-json {save_json}: {exc}\n")
            code = 1
    for error in result.errors:
        sys.stderr.write(f"sandboxctl: bench: {error}\n")
    if plot:
        if not result.open_points:
            sys.stderr.write(f"sandboxctl: error: --plot {plot}: the open benchmark did not run\n")
            return 1
        try:
            path = plot_open_scale(
                result.open_points,
                plot,
                title=f"Store.open vs log size ({plan.name} run, {os.cpu_count()} cpus)",
            )
        except Exception as exc:  # ImportError (no matplotlib), OSError
            sys.stderr.write(f"sandboxctl: error: --plot {plot}: {exc}\n")
            return 1
        progress(f"plot written to {path}")
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m replay.bench.commands [options]``: ``sandboxctl bench`` without the CLI."""
    parser = argparse.ArgumentParser(prog="sandboxctl")
    sub = parser.add_subparsers(dest="command")
    add_bench_parser(sub)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
