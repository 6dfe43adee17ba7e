"""The crash-test child: run a seeded workload against a Store until killed.

    python -m replay.crash.child --state-dir D --netns-dir N --seed S \
        [--max-ops K] [--report-fd F]

Why a separate process started with ``python -m``: the point of the harness
is a real ``kill -9`` of a real writer, and the crash points are armed from
``SANDBOX_CRASHPOINT`` when ``eventlog.crashpoints`` is imported - so each
run needs a fresh interpreter whose environment names its crash point. The
module imports only what it uses (the store, msgpack, the workload) to keep
start-up cheap; the harness's own checks are never imported here.

After every command returns, the child reports it on the pipe (see
``protocol``): the op index, its result or error, ``last_seq`` before and
after, the records it wrote read back from the log (seq, digest, payload),
and what is durable - measured by wrapping ``os.fdatasync``/``os.fsync``
(``faults.SyncRecorder``), not the writer's own claim. It never judges
anything itself: judging is the parent's job, after the child is dead.

The broken build: ``SANDBOX_TEST_FAULT=ack-before-fsync`` in the child's
environment (read only by ``faults``, only here) makes that wrapper skip the
real sync of segment files, so the writer acknowledges appends that were
never synced (tests/crash/test_crash_broken_build.py).

When the workload ends (``--max-ops``) the child says ``done`` and blocks on
stdin; the parent kills it (every run ends in SIGKILL), and if the parent
itself dies the child sees EOF and exits instead of lingering.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import traceback
from typing import Any

from replay.crash import faults, protocol, storeio
from replay.crash import workload as wl


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m replay.crash.child")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--netns-dir", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--max-ops", type=int, default=200)
    p.add_argument("--report-fd", type=int, default=-1, help="pipe fd for reports (-1: none)")
    return p.parse_args(argv)


class _NullSender(protocol.Sender):
    def __init__(self) -> None:
        super().__init__(-1)

    def send(self, message: dict[str, Any]) -> None:
        return None


def _wait_for_kill() -> None:
    """Block until the parent kills us; exit quietly if the parent is gone."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass


def run(state_dir: str, netns_dir: str, seed: int, max_ops: int, out: protocol.Sender) -> int:
    """The child's work: open, run the workload reporting each ack, wait to be killed.

    Shared by ``main`` (``python -m``) and the harness's fork path. Returns
    the exit code for the rare case the child is not killed (parent gone).
    """
    out.send({"k": protocol.HELLO, "pid": os.getpid()})
    try:
        synced = faults.SyncRecorder(faults.fault_from_env())
    except ValueError:
        out.send({"k": protocol.FATAL, "error": traceback.format_exc()})
        return 3
    with synced.installed():
        return _run(state_dir, netns_dir, seed, max_ops, out, synced)


def _run(
    state_dir: str,
    netns_dir: str,
    seed: int,
    max_ops: int,
    out: protocol.Sender,
    synced: faults.SyncRecorder,
) -> int:
    try:
        store = storeio.open_store(state_dir, netns_dir)
    except Exception:
        out.send({"k": protocol.FATAL, "error": traceback.format_exc()})
        return 3
    out.send(
        {"k": protocol.OPEN, "last_seq": store.last_seq, "durable": storeio.durable(store, synced)}
    )
    ops = 0
    for op in itertools.islice(wl.Workload(seed).ops(), max_ops):
        before = store.last_seq
        out.send({"k": protocol.BEGIN, "i": op.index, "before": before})
        error = ""
        message = ""
        result: Any = None
        try:
            result = storeio.execute(store, op, netns_dir)
        except Exception as e:
            error = type(e).__name__
            message = str(e)
            if error not in storeio.EXPECTED_ERRORS:
                message = traceback.format_exc()
        after = store.last_seq
        try:
            records = storeio.records_between(state_dir, before, after)
        except Exception:
            out.send({"k": protocol.FATAL, "error": traceback.format_exc()})
            break
        out.send(
            {
                "k": protocol.ACK,
                "i": op.index,
                "ok": not error,
                "error": error,
                "message": message,
                "result": result,
                "before": before,
                "after": after,
                "records": records,
                "durable": storeio.durable(store, synced),
            }
        )
        ops += 1
        if error and error not in storeio.EXPECTED_ERRORS:
            break  # the store misbehaved: report and stop, do not pile errors up
    out.send({"k": protocol.DONE, "ops": ops})
    sys.stderr.flush()
    _wait_for_kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out: protocol.Sender = _NullSender() if args.report_fd < 0 else protocol.Sender(args.report_fd)
    code = run(args.state_dir, args.netns_dir, args.seed, args.max_ops, out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit, no store close: the store is left as a crash leaves it


if __name__ == "__main__":
    sys.exit(main())
