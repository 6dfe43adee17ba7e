"""Child-process workloads for the eventlog tests: ``python eventlog_child.py MODE ...``.

Each mode prints what the parent needs on stdout, one line at a time,
flushed, so the parent can kill it at any moment and still know what was
acknowledged.
"""

from __future__ import annotations

import os
import sys
import time

from eventlog_support import payload_for

from eventlog import EventLog, LogLockedError


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def acks(directory: str, segment_bytes: int, tag: int) -> None:
    """Append forever (durability always); print every acknowledged seq."""
    log = EventLog.open(directory, durability="always", segment_bytes=segment_bytes)
    say(f"open {log.last_seq}")

    def payload(seq: int) -> dict[str, object]:
        return payload_for(seq) | {"round": tag}

    op = 0
    while True:
        op += 1
        seq = log.last_seq + 1
        if op % 7 == 0:
            got = log.append_batch([payload(seq + i) for i in range(3)])
            assert got == [seq, seq + 1, seq + 2], got
            for s in got:
                say(str(s))
        else:
            assert log.append(payload(seq)) == seq
            say(str(seq))


def hold(directory: str) -> None:
    EventLog.open(directory, durability="none")
    say(f"ready {os.getpid()}")
    time.sleep(120)


def hold_fork(directory: str) -> None:
    """Hold the writer lock, then fork a helper that outlives us."""
    EventLog.open(directory, durability="none")
    writer_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        # The helper: it inherited every descriptor, the lock's included.
        try:
            EventLog.open(directory, durability="none")
            say("helper opened")
        except LogLockedError as exc:
            say(f"helper locked {exc.pid}")
        time.sleep(120)
        os._exit(0)
    say(f"ready {writer_pid} {pid}")
    time.sleep(120)


def try_open(directory: str) -> None:
    try:
        log = EventLog.open(directory, durability="none")
    except LogLockedError as exc:
        say(f"locked {exc.pid} {exc}")
        return
    say(f"opened {log.last_seq}")
    log.close()


def append(directory: str, count: int, segment_bytes: int, durability: str) -> None:
    """Append ``count`` records (some in batches), pausing now and then."""
    with EventLog.open(
        directory,
        durability=durability,  # type: ignore[arg-type]
        segment_bytes=segment_bytes,
    ) as log:
        op = 0
        while log.last_seq < count:
            op += 1
            seq = log.last_seq + 1
            if op % 5 == 0 and seq + 2 <= count:
                log.append_batch([payload_for(seq + i) for i in range(3)])
            else:
                log.append(payload_for(seq))
            if op % 40 == 0:
                time.sleep(0.01)
    say("done")


def crash_workload(directory: str) -> None:
    """Singles, a batch, singles - with SANDBOX_CRASHPOINT set, it dies somewhere."""
    log = EventLog.open(directory, durability="always", segment_bytes=400)
    for _ in range(3):
        say(str(log.append(payload_for(log.last_seq + 1))))
    seq = log.last_seq + 1
    for s in log.append_batch([payload_for(seq + i) for i in range(4)]):
        say(str(s))
    for _ in range(10):
        say(str(log.append(payload_for(log.last_seq + 1))))
    log.close()
    say("finished")


def main(argv: list[str]) -> None:
    mode, directory, *rest = argv
    if mode == "acks":
        acks(directory, int(rest[0]), int(rest[1]))
    elif mode == "hold":
        hold(directory)
    elif mode == "hold-fork":
        hold_fork(directory)
    elif mode == "try-open":
        try_open(directory)
    elif mode == "append":
        append(directory, int(rest[0]), int(rest[1]), rest[2])
    elif mode == "crash":
        crash_workload(directory)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
