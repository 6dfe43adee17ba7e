"""Real crashes: SIGKILL at random moments and at every named crash point.

A child appends with durability "always" and prints each seq as soon as
``append`` returns (acknowledged). The parent kills it, reopens the log and
checks that every acknowledged record is there with its exact payload, and
that the log goes on.
"""

from __future__ import annotations

import random
import select
import signal
import time
from pathlib import Path

import pytest
from eventlog_support import broken_files, child_env, payload_for, segments, spawn

from eventlog import EventLog, crashpoints, read, verify


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_record(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    # seq -> the round whose child acknowledged it (payloads carry the round,
    # so a lost record re-appended by a later round would not match).
    acked: dict[int, int] = {}
    for round_no in range(30):
        proc = spawn("acks", str(tmp_path), "2048", str(round_no))
        assert proc.stdout is not None and proc.stderr is not None
        opened = proc.stdout.readline().strip()
        assert opened.startswith("open "), (opened, proc.stderr.read())
        # The child's recovery kept everything acknowledged before.
        assert int(opened.split()[1]) >= max(acked, default=0)
        lines: list[str] = []
        deadline = time.monotonic() + rng.uniform(0.0, 0.15)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.01)
            if ready:
                lines.append(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        lines.extend(proc.stdout.read().splitlines())
        proc.stdout.close()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, round_no
        acked.update((int(line), round_no) for line in lines if line.strip())
        # Before anyone repairs it, a reader already sees every acknowledged record.
        present = {r.seq: r.payload for r in read(tmp_path)}
        for seq, tag in acked.items():
            assert present.get(seq) == payload_for(seq) | {"round": tag}, (round_no, seq)
    assert len(acked) > 100, len(acked)
    with EventLog.open(tmp_path) as log:
        last = log.last_seq
        assert last >= max(acked)
        assert log.append({"after": "crashes"}) == last + 1
    records = list(read(tmp_path))
    assert [r.seq for r in records] == list(range(1, last + 2))
    for r in records[:-1]:
        assert r.payload == payload_for(r.seq) | {"round": r.payload["round"]}, r.seq
        if r.seq in acked:
            assert r.payload["round"] == acked[r.seq]
    assert len(segments(tmp_path)) > 3
    assert verify(tmp_path).ok


POINTS: dict[str, tuple[int, int, int] | None] = {
    # spec: (records acknowledged, fewest present after reopen, most present),
    # or None where it depends on when the first rotation happens.
    "append.before_write:kill:2": (1, 1, 1),
    "append.after_write:kill:2": (1, 1, 2),  # written, not synced: a kill keeps it
    "append.after_fsync:kill:2": (1, 2, 2),  # durable, just not acknowledged
    "batch.mid_write:kill:1": (3, 3, 3),  # half the batch written: all of it cut
    "rotate.after_sync_old:kill:1": None,
    "rotate.after_create:kill:1": None,
    "rotate.after_header:kill:1": None,
}


def test_every_eventlog_crash_point_is_covered() -> None:
    names = {spec.split(":")[0] for spec in POINTS}
    # compact.* points are killed in tests/eventlog/test_eventlog_compact.py.
    eventlog_points = {
        name
        for name, where in crashpoints.POINTS.items()
        if "eventlog" in where and not name.startswith("compact.")
    }
    assert eventlog_points == names


@pytest.mark.parametrize("spec", sorted(POINTS))
def test_crash_point(tmp_path: Path, spec: str) -> None:
    point = spec.split(":")[0]
    proc = spawn("crash", str(tmp_path), env=child_env(SANDBOX_CRASHPOINT=spec))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
    assert f"crashpoint {point} hit " in err
    acked = [int(line) for line in out.split()]
    assert acked == list(range(1, len(acked) + 1))
    expected = POINTS[spec]
    with EventLog.open(tmp_path) as log:
        last = log.last_seq
        assert last >= len(acked)
        if expected is not None:
            count, fewest, most = expected
            assert len(acked) == count
            assert fewest <= last <= most
        if point == "batch.mid_write":
            # Half a batch was on disk: recovery cut the whole batch.
            assert last == 3
            assert broken_files(tmp_path)
        if point == "rotate.after_create":
            assert any(b.read_bytes() == b"" for b in broken_files(tmp_path))
        # The log goes on, rotating again if it must.
        for _ in range(8):
            log.append(payload_for(log.last_seq + 1))
        total = log.last_seq
    records = list(read(tmp_path))
    assert [r.seq for r in records] == list(range(1, total + 1))
    assert all(r.payload == payload_for(r.seq) for r in records)
    report = verify(tmp_path)
    assert report.ok and report.torn_tail == 0
