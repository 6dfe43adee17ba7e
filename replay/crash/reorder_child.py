"""The traced child of the reorder model: a workload on EventLog, or a recovery.

    python -P replay/crash/reorder_child.py workload --name single|threads|batch \
        --seed S --log-dir D --ack-file F
    python -P replay/crash/reorder_child.py recover --name W --log-dir D

(Started by file name with ``-P``: it imports nothing but eventlog, not the
``replay`` package and the sandbox layer behind it.)

It runs under ``strace`` (``replay.crash.trace``), so it does nothing but
the work: open the log, append, and after every append (or append_batch)
RETURNS write one JSON line ``{"seqs": [...], "payloads": [...]}`` to the
ack file with a single ``write`` - outside the traced directory, but seen by
strace, so each acknowledgement has its place among the file operations.
``recover`` opens the log (writer-open recovery) and closes it: the model
then crashes that recovery too.

The broken builds (TEST ONLY): ``SANDBOX_TEST_FAULT`` in the child's
environment, read only here and before eventlog is imported (a writer that
bound ``os.fdatasync`` at import still gets the broken one):

``fsync-noop``    ``os.fsync`` and ``os.fdatasync`` return without syncing;
``dirsync-noop``  ``os.fsync`` of a directory returns without syncing.

Either makes a writer acknowledge what a crash can take away; the model
must report it (tests/crash/test_crash_reorder.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

FAULT_ENV = "SANDBOX_TEST_FAULT"
FSYNC_NOOP = "fsync-noop"
DIRSYNC_NOOP = "dirsync-noop"
FAULTS = (FSYNC_NOOP, DIRSYNC_NOOP)


@attrs.frozen
class WorkloadSpec:
    """One workload: how the log is opened and what is appended.

    ``guarantee`` says which acknowledged records a crash must keep:
    ``ack`` - every one whose append returned (durability ``always``);
    ``sync`` - those acknowledged before a sync of the log that then
    completed (durability ``batch``: its documented loss window).
    """

    name: str
    durability: Literal["always", "batch"]
    segment_bytes: int
    threads: int
    appends: int
    batch_every: int
    guarantee: Literal["ack", "sync"]
    pad: tuple[int, int] = (8, 700)
    batch_interval: float = 0.05


WORKLOADS: dict[str, WorkloadSpec] = {
    # One thread, one record per write and fdatasync; 4 KiB segments rotate
    # every few records.
    "single": WorkloadSpec("single", "always", 4096, 1, 90, 0, "ack"),
    # 8 threads at once: group commit puts several records (and whole
    # append_batch calls) into one write.
    "threads": WorkloadSpec("threads", "always", 8192, 8, 14, 5, "ack", pad=(8, 400)),
    # Acknowledged before the sync: the loss window is the model's guarantee.
    "batch": WorkloadSpec("batch", "batch", 4096, 1, 90, 9, "sync", batch_interval=0.002),
}


def payload(spec: WorkloadSpec, seed: int, thread: int, n: int) -> dict[str, Any]:
    """The deterministic, unique payload of append ``n`` of ``thread``."""
    rng = random.Random(f"reorder:{spec.name}:{seed}:{thread}:{n}")
    size = rng.randint(*spec.pad)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return {"w": spec.name, "t": thread, "n": n, "pad": "".join(rng.choices(alphabet, k=size))}


def install_fault(name: str) -> None:
    """Break ``os.fsync``/``os.fdatasync`` as ``name`` says ("" leaves them alone)."""
    if not name:
        return
    if name not in FAULTS:
        raise SystemExit(f"{FAULT_ENV}={name!r}: unknown fault (known: {', '.join(FAULTS)})")
    real_fsync = os.fsync

    def noop(fd: Any) -> None:
        return None

    def fsync_files_only(fd: Any) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return None
        real_fsync(fd)
        return None

    if name == FSYNC_NOOP:
        os.fsync = noop
        os.fdatasync = noop
    else:
        os.fsync = fsync_files_only


class _Acks:
    """The ack file: one ``write`` per acknowledgement, from any thread."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def ack(self, seqs: list[int], payloads: list[dict[str, Any]]) -> None:
        line = (json.dumps({"seqs": seqs, "payloads": payloads}) + "\n").encode()
        if os.write(self.fd, line) != len(line):
            raise OSError("short write of an ack line")


def _thread_work(
    log: Any, spec: WorkloadSpec, seed: int, thread: int, acks: _Acks, start: threading.Barrier
) -> None:
    start.wait()
    n = 0
    for i in range(spec.appends):
        if spec.batch_every and i % spec.batch_every == spec.batch_every - 1:
            batch = [payload(spec, seed, thread, n + k) for k in range(2 + i % 3)]
            n += len(batch)
            acks.ack(log.append_batch(batch), batch)
            if spec.durability == "batch":
                time.sleep(0.004)  # let the sync thread run: several loss windows
        else:
            p = payload(spec, seed, thread, n)
            n += 1
            acks.ack([log.append(p)], [p])


def run_workload(spec: WorkloadSpec, seed: int, log_dir: str, ack_file: str) -> None:
    from eventlog import EventLog

    acks = _Acks(ack_file)
    log = EventLog.open(
        log_dir,
        durability=spec.durability,
        segment_bytes=spec.segment_bytes,
        batch_interval=spec.batch_interval,
    )
    start = threading.Barrier(spec.threads)
    errors: list[BaseException] = []

    def target(thread: int) -> Callable[[], None]:
        def work() -> None:
            try:
                _thread_work(log, spec, seed, thread, acks, start)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        return work

    threads = [threading.Thread(target=target(t)) for t in range(spec.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    if errors:
        raise errors[0]


def run_recovery(spec: WorkloadSpec, log_dir: str) -> None:
    from eventlog import EventLog

    EventLog.open(log_dir, durability="always", segment_bytes=spec.segment_bytes).close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reorder_child.py")
    p.add_argument("mode", choices=("workload", "recover"))
    p.add_argument("--name", choices=sorted(WORKLOADS), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-dir", required=True)
    p.add_argument("--ack-file", default="")
    args = p.parse_args(argv)
    install_fault(os.environ.get(FAULT_ENV, ""))
    spec = WORKLOADS[args.name]
    if args.mode == "workload":
        run_workload(spec, args.seed, args.log_dir, args.ack_file)
    else:
        run_recovery(spec, args.log_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
