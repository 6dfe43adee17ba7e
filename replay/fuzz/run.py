"""Drive atheris on one target: ``python -m replay.fuzz.run TARGET --runs N | --seconds S``.

Two processes, for two reasons:

* coverage: atheris only instruments code imported inside
  ``atheris.instrument_imports()``, and importing anything under ``replay``
  runs ``replay/__init__``, which imports ``eventlog`` and ``sandbox``
  uninstrumented. So the fuzzing child starts from a ``python -c`` stub
  (``_BOOTSTRAP``) that imports them inside the hook first;
* reporting: libFuzzer ends the process with C ``exit()`` (no Python code
  runs after ``atheris.Fuzz()``), so the parent measures the wall time,
  reads libFuzzer's statistics from the child's stderr and prints the
  summary: inputs, inputs/s, coverage, result.

The parent builds the seed corpus (``corpus``) and the snapshot fixture
before starting the child, and hands the fixture over through
``SBX_FUZZ_FIXTURE`` so that the seeds and the target agree on the log.

``--keep-going`` (long runs): an exception in the target does not stop the
run; each distinct finding (its exception type and where it was raised) is
written to the artifacts directory once, with up to three inputs, and the
run goes on. Without it, the first finding stops the run, as libFuzzer
does, leaving ``crash-<sha1>`` in the artifacts directory.

Exit status: 0 when no finding, 1 on a finding, 2 on a usage error.
atheris is imported only here, and only in the child.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence

import attrs

__all__ = ["Stats", "child_main", "main", "parse_stats", "resolve_target"]

#: Set in the child for --keep-going: the artifacts directory.
KEEP_GOING_ENV = "SBX_FUZZ_KEEP_GOING"

_BOOTSTRAP = """\
import sys
import atheris
with atheris.instrument_imports(include=["eventlog", "sandbox"]):
    import eventlog
    import sandbox
    import sandbox.snapshot
from replay.fuzz.run import child_main
child_main(sys.argv[1:])
"""

# -- the target ---------------------------------------------------------------


def resolve_target(spec: str) -> Callable[[bytes], None]:
    """A target by name (``targets.TARGETS``) or as ``module:function``."""
    from replay.fuzz.targets import TARGETS

    if spec in TARGETS:
        return TARGETS[spec]
    module_name, sep, func_name = spec.partition(":")
    if not sep:
        raise ValueError(f"unknown target {spec!r}; known: {', '.join(TARGETS)}")
    func: Callable[[bytes], None] = getattr(importlib.import_module(module_name), func_name)
    return func


def _write_seeds(spec: str, corpus_dir: str, dict_path: str) -> list[str]:
    """Seed the corpus (the target's real seeds, or two trivial ones for
    ``module:function``) and write its dictionary; the libFuzzer flags for them."""
    from replay.fuzz import corpus
    from replay.fuzz.targets import TARGETS

    if spec in TARGETS:
        corpus.write_corpus(spec, corpus_dir)
        corpus.write_dictionary(spec, dict_path)
        return [f"-dict={dict_path}"]
    os.makedirs(corpus_dir, exist_ok=True)
    for i, seed in enumerate((b"", b"seed")):
        with open(os.path.join(corpus_dir, f"seed-{i}"), "wb") as f:
            f.write(seed)
    return []


# -- the child ------------------------------------------------------------------


def _fingerprint(exc: BaseException) -> tuple[str, str]:
    """(short id, description) of a finding: exception types and where each was raised."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 3:
        frames = traceback.extract_tb(seen.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        parts.append(f"{type(seen).__name__} at {where}")
        seen = seen.__cause__ or seen.__context__
    text = " <- ".join(parts)
    return hashlib.sha1(text.encode()).hexdigest()[:12], text


def _keep_going(func: Callable[[bytes], None], artifacts: str) -> Callable[[bytes], None]:
    """``func`` with every exception recorded in ``artifacts`` instead of raised."""
    counts: dict[str, int] = {}

    def one_input(data: bytes) -> None:
        try:
            func(data)
        except Exception as exc:
            fid, text = _fingerprint(exc)
            n = counts[fid] = counts.get(fid, 0) + 1
            if n == 1:
                with open(os.path.join(artifacts, f"finding-{fid}.txt"), "w") as f:
                    f.write(text + "\n\n" + "".join(traceback.format_exception(exc)))
                sys.stderr.write(f"FINDING {fid}: {text}\n")
            if n <= 3:
                name = f"finding-{fid}-{hashlib.sha1(data).hexdigest()}.bin"
                with open(os.path.join(artifacts, name), "wb") as f:
                    f.write(data)
            if n & (n - 1) == 0:  # powers of two: C exit() skips any atexit summary
                with open(os.path.join(artifacts, f"finding-{fid}.count"), "w") as f:
                    f.write(f"{n}\n")

    return one_input


def child_main(argv: Sequence[str]) -> None:
    """The fuzzing process (started by ``main`` through ``_BOOTSTRAP``); never returns."""
    import atheris

    # Recovery's and load's warnings would flood the log; findings are exceptions.
    logging.disable(logging.CRITICAL)
    func = resolve_target(argv[0])
    keep = os.environ.get(KEEP_GOING_ENV)
    one_input = _keep_going(func, keep) if keep else func
    atheris.Setup([sys.argv[0], *argv[1:]], one_input)
    atheris.Fuzz()


# -- the parent -----------------------------------------------------------------


@attrs.define
class Stats:
    """What libFuzzer reported (None where it did not say)."""

    runs: int | None = None
    exec_per_sec: int | None = None
    cov: int | None = None
    ft: int | None = None
    corpus_units: int | None = None
    new_units: int | None = None
    peak_rss_mb: int | None = None
    done_seconds: int | None = None


_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+.*?exec/s: (\d+)")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second")


def parse_stats(lines: Sequence[str]) -> Stats:
    """libFuzzer's last status line, its ``stat::`` lines and its ``Done`` line."""
    stats = Stats()
    for line in lines:
        m = _STATUS.match(line)
        if m:
            stats.runs, stats.cov, stats.ft, stats.corpus_units, stats.exec_per_sec = (
                int(m.group(1)),
                int(m.group(2)),
                int(m.group(3)),
                int(m.group(4)),
                int(m.group(5)),
            )
            continue
        m = _STAT.match(line)
        if m:
            key, value = m.group(1), int(m.group(2))
            if key == "number_of_executed_units":
                stats.runs = value
            elif key == "average_exec_per_sec":
                stats.exec_per_sec = value
            elif key == "new_units_added":
                stats.new_units = value
            elif key == "peak_rss_mb":
                stats.peak_rss_mb = value
            continue
        m = _DONE.match(line)
        if m:
            stats.runs, stats.done_seconds = int(m.group(1)), int(m.group(2))
    return stats


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m replay.fuzz.run",
        description="Fuzz one target with atheris and print inputs/s, coverage and the result.",
    )
    p.add_argument("target", help="log, snapshot or metadata (or module:function)")
    bound = p.add_mutually_exclusive_group(required=True)
    bound.add_argument("--runs", type=int, help="stop after this many inputs")
    bound.add_argument("--seconds", type=int, help="stop after this many seconds")
    bound.add_argument(
        "--replay", nargs="+", metavar="FILE", help="run the target once on each file (no atheris)"
    )
    p.add_argument("--corpus", help="corpus directory to use and grow (seeded if new)")
    p.add_argument("--artifacts", help="where crash inputs go (default: a new temp dir)")
    p.add_argument("--seed", type=int, help="libFuzzer's random seed (reproducible runs)")
    p.add_argument("--timeout", type=int, default=30, help="seconds one input may take")
    p.add_argument("--max-len", type=int, help="largest input libFuzzer makes")
    p.add_argument("--keep-going", action="store_true", help="record findings and go on")
    p.add_argument("--quiet", action="store_true", help="do not echo libFuzzer's output")
    p.add_argument("libfuzzer", nargs="*", help="more libFuzzer flags (after --)")
    return p.parse_args(argv)


def _child_command(args: argparse.Namespace, corpus: str, artifacts: str) -> list[str]:
    cmd = [sys.executable, "-c", _BOOTSTRAP, args.target, corpus]
    cmd.append(f"-runs={args.runs}" if args.runs is not None else f"-max_total_time={args.seconds}")
    cmd += [
        f"-timeout={args.timeout}",
        f"-artifact_prefix={artifacts}{os.sep}",
        "-print_final_stats=1",
    ]
    if args.seed is not None:
        cmd.append(f"-seed={args.seed}")
    if args.max_len is not None:
        cmd.append(f"-max_len={args.max_len}")
    return cmd + list(args.libfuzzer)


def _findings(artifacts: str) -> list[str]:
    if not os.path.isdir(artifacts):
        return []
    return sorted(
        os.path.join(artifacts, n)
        for n in os.listdir(artifacts)
        if n.startswith(("crash-", "timeout-", "oom-", "leak-", "slow-unit-"))
        or (n.startswith("finding-") and n.endswith(".txt"))
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        func = resolve_target(args.target)
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.replay:
        return _replay(func, args.replay)
    from replay.fuzz import corpus as corpus_mod
    from replay.fuzz.targets import FIXTURE_ENV, SCRATCH_ENV, scratch_parent

    work = tempfile.mkdtemp(prefix=f"sbx-fuzz-{args.target.replace(':', '-')}-")
    # The child's scratch space (tmpfs when there is one); the child cannot remove it.
    scratch = tempfile.mkdtemp(prefix="sbx-fuzz-run-", dir=scratch_parent())
    artifacts = args.artifacts or os.path.join(work, "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    env = dict(os.environ)
    env[SCRATCH_ENV] = scratch
    try:
        fixture_root = os.path.join(work, "fixture")
        corpus_mod.build_fixture(fixture_root)
        os.environ[FIXTURE_ENV] = env[FIXTURE_ENV] = fixture_root
        corpus_dir = args.corpus or os.path.join(work, "corpus")
        seed_flags = _write_seeds(args.target, corpus_dir, os.path.join(work, "tokens.dict"))
        if args.keep_going:
            env[KEEP_GOING_ENV] = artifacts
        cmd = _child_command(args, corpus_dir, artifacts) + seed_flags
        tail: deque[str] = deque(maxlen=400)
        started = time.monotonic()
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                tail.append(line.rstrip("\n"))
                if not args.quiet:
                    sys.stderr.write(line)
            code = child.wait()
        elapsed = time.monotonic() - started
        stats = parse_stats(list(tail))
        found = _findings(artifacts)
        if found and args.artifacts is None:
            # The evidence must outlive the work dir.
            kept = tempfile.mkdtemp(prefix=f"sbx-fuzz-{args.target.replace(':', '-')}-found-")
            shutil.copytree(artifacts, kept, dirs_exist_ok=True)
            artifacts = kept
        shown_corpus = corpus_dir if args.corpus else "(temporary, removed)"
        _print_summary(args.target, stats, elapsed, code, found, shown_corpus, artifacts)
        if code != 0 and args.quiet:
            sys.stderr.write("\n".join(list(tail)[-80:]) + "\n")
        return 0 if code == 0 and not found else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _replay(func: Callable[[bytes], None], paths: Sequence[str]) -> int:
    """Run the target on saved inputs, in this process: a finding's traceback, in full.

    The snapshot target builds a fresh fixture here, so a finding that
    depended on the fuzzing run's log digests may need that run's fixture
    (``SBX_FUZZ_FIXTURE``) to reproduce; decoding findings never do.
    """
    logging.disable(logging.CRITICAL)
    failed = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            func(data)
        except Exception:
            failed += 1
            print(f"{path}: FINDING", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _print_summary(
    target: str,
    stats: Stats,
    elapsed: float,
    code: int,
    found: list[str],
    corpus_dir: str,
    artifacts: str,
) -> None:
    runs = stats.runs or 0
    rate = runs / elapsed if elapsed > 0 else 0.0
    print(f"target: {target}")
    print(
        f"inputs: {runs} in {elapsed:.1f} s wall ({rate:.0f} inputs/s wall; "
        f"libFuzzer exec/s {stats.exec_per_sec})"
    )
    print(
        f"coverage: cov {stats.cov} ft {stats.ft} corpus {stats.corpus_units} units "
        f"(new {stats.new_units}); peak rss {stats.peak_rss_mb} MB"
    )
    print(f"corpus: {corpus_dir}")
    if code == 0 and not found:
        print("result: ok (no finding)")
        return
    print(f"result: FINDING (exit {code}); artifacts in {artifacts}:")
    for path in found:
        print(f"  {os.path.basename(path)}")


if __name__ == "__main__":
    sys.exit(main())
