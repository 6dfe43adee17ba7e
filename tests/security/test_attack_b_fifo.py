"""Attack B: a FIFO in place of a segment or of ``LOCK``.

Before: every reader (``read``, ``verify``, ``end_position``, the writer's
recovery) blocked for ever in open() on a FIFO segment, and ``follow`` sat
there deaf to SIGTERM. Now every open is non-blocking and kind-checked: the
FIFO is an UnsafeFileError naming it; ``verify`` reports it, it does not
raise. Each attack runs in a child: on vulnerable code the child hangs and
the safety timeout fails the test.

(A FIFO in place of a ``*.snap`` is the snapshot reader's, sandbox/snapshot.py:
not covered here.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from security_support import in_child, make_log

from eventlog import EventLog, UnsafeFileError

PRELUDE = """
import sys, eventlog
d = sys.argv[1]
"""

ATTACKS = {
    "read": "print(sum(1 for _ in eventlog.read(d)))",
    "verify": "r = eventlog.verify(d); print('problem', r.problem.segment, r.problem.reason)",
    "end_position": "print('position', eventlog.end_position(d, 5, bytes(32)))",
    "writer-open": "eventlog.EventLog.open(d, durability='none')",
    # Ends only by an error: a follower that skipped the FIFO would tail for ever.
    "follow": "for _ in eventlog.follow(d, from_seq=1, poll_interval=0.05): pass",
}


def fifo_log(tmp_path: Path, which: int) -> tuple[Path, Path]:
    """A two-segment log whose segment ``which`` (0 or -1) is replaced by a FIFO."""
    d = tmp_path / "state"
    segs = make_log(d, records=20, segment_bytes=200)
    assert len(segs) >= 2
    victim = segs[which]
    victim.unlink()
    os.mkfifo(victim)
    return d, victim


@pytest.mark.parametrize("which", [0, -1], ids=["first-segment", "last-segment"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_fifo_segment_is_an_error_never_a_hang(tmp_path: Path, attack: str, which: int) -> None:
    d, victim = fifo_log(tmp_path, which)
    cp = in_child(PRELUDE + ATTACKS[attack], str(d))
    if attack == "writer-open" and which == 0:
        # Writer-open checks the last segment only (it must stay cheap); it
        # never opens the first one, so nothing hangs and nothing is touched.
        assert cp.returncode == 0, cp.stderr
    elif attack == "verify":
        assert cp.returncode == 0, cp.stderr  # verify reports, it does not raise
        assert cp.stdout.startswith(f"problem {victim} a FIFO"), cp.stdout
    elif attack == "end_position":
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.strip() == "position None"
    else:
        assert cp.returncode != 0, (cp.stdout, cp.stderr)
        last = cp.stderr.strip().splitlines()[-1]
        assert last.startswith("eventlog.errors.UnsafeFileError"), cp.stderr
        assert f"{victim} is a FIFO" in last
    assert victim.is_fifo()


def test_fifo_lock_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "state"
    make_log(d)
    (d / "LOCK").unlink()
    os.mkfifo(d / "LOCK")
    with pytest.raises(UnsafeFileError) as info:
        EventLog.open(d, durability="none")
    assert f"{d / 'LOCK'} is a FIFO" in str(info.value)
    assert (d / "LOCK").is_fifo()


def test_a_refused_lock_does_not_name_a_holder_by_reading_a_fifo(tmp_path: Path) -> None:
    # A second writer reads the holder's pid from LOCK: a FIFO there must not block it.
    d = tmp_path / "state"
    make_log(d)
    with EventLog.open(d, durability="none"):
        (d / "LOCK").unlink()
        os.mkfifo(d / "LOCK")
        cp = in_child(
            PRELUDE
            + """
try:
    eventlog.EventLog.open(d, durability="none")
except eventlog.LogLockedError as exc:
    print("locked", exc.pid)
""",
            str(d),
        )
    assert cp.stdout.strip() == "locked None", (cp.stdout, cp.stderr)
