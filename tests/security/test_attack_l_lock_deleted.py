"""Attack L: ``LOCK`` deleted while a writer holds it.

Before: the lock was a POSIX record lock on ``LOCK`` only; once the file was
unlinked a second writer created a new ``LOCK``, locked it, and both wrote:
the log ended with a repeated seq. Now the writers are kept apart by a
``flock`` on the directory itself, which no file in it can remove.

``flock`` is shared with a forked child, so this also keeps the promise that
a child spawned while the lock is held (close-on-exec) does not keep it
after the writer is killed (the forked case: tests/eventlog/test_eventlog_lock.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import support
from security_support import HANG, in_child, make_log

from eventlog import EventLog, read, verify

TRY_OPEN = """
import sys, eventlog
try:
    log = eventlog.EventLog.open(sys.argv[1], durability="always")
except eventlog.LogLockedError as exc:
    print("locked", exc.pid)
else:
    print("opened", log.append({"intruder": True}))
    log.close()
"""

HOLD_AND_SPAWN = """
import subprocess, sys, eventlog
log = eventlog.EventLog.open(sys.argv[1], durability="none")
# The child shares our stdin, the test's pipe: it lives until the test closes it.
# close_fds=False, as os.system or os.posix_spawn do: only close-on-exec protects.
child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], close_fds=False)
print("ready", child.pid, flush=True)
sys.stdin.read()
"""


def test_deleting_lock_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    d = tmp_path / "state"
    make_log(d, records=3)
    with EventLog.open(d, durability="always") as log:
        (d / "LOCK").unlink()
        cp = in_child(TRY_OPEN, str(d))
        assert cp.stdout.strip() == "locked None", (cp.stdout, cp.stderr)
        assert log.append({"writer": "still the only one"}) == 4
    assert [r.seq for r in read(d)] == [1, 2, 3, 4]
    assert verify(d).ok


def test_a_deleted_lock_is_recreated_by_the_next_writer(tmp_path: Path) -> None:
    d = tmp_path / "state"
    make_log(d, records=1)
    (d / "LOCK").unlink()
    assert in_child(TRY_OPEN, str(d)).stdout.strip() == "opened 2"
    assert (d / "LOCK").read_text() == ""


def test_a_spawned_child_does_not_keep_the_lock_after_the_writer_dies(tmp_path: Path) -> None:
    d = tmp_path / "state"
    make_log(d, records=1)
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_SPAWN, str(d)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(support.REPO)},
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        words = writer.stdout.readline().split()
        assert words[0] == "ready", words
        spawned = int(words[1])
        assert in_child(TRY_OPEN, str(d)).stdout.split()[0] == "locked"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=HANG)
        # The spawned child lives on (its stdin, the test's pipe, is still open) ...
        assert Path(f"/proc/{spawned}").exists()
        # ... and holds no lock: a new writer gets in.
        assert in_child(TRY_OPEN, str(d)).stdout.strip() == "opened 2"
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.stdin.close()  # the spawned child reads EOF and exits
        writer.stdout.close()
        writer.wait(timeout=HANG)
