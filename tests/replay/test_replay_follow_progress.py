"""replay.follow sees another process's appends; the progress bar only on a terminal."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from support import REPO, sandbox

import replay
from eventlog.format import Record
from replay.progress import LogProgress, Progress
from replay.timespec import Point, TimeSpecError, human_duration, parse_point, parse_time
from replay.view import StoreView
from sandbox import Store

WRITER = textwrap.dedent(
    """
    import sys, time, uuid
    from sandbox import Store, Metadata, PodSandboxConfig, Sandbox, State, Status
    state_dir, netns_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Store.open(state_dir, netns_dir=netns_dir, actor="other-process") as store:
        for i in range(n):
            md = Metadata(uuid.uuid4().hex * 2, f"p{i}_ns_u_0", PodSandboxConfig())
            store.add(Sandbox(md, Status(State.READY)))
            time.sleep(0.05)
    """
)


def _writer(state_dir: Path, netns_dir: Path, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state_dir), str(netns_dir), str(n)],
        cwd=REPO,
        text=True,
    )


def test_follow_sees_another_process_within_a_deadline(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        store.add(sandbox("before"))
    seen: list[tuple[int, int]] = []
    with replay.follow(state_dir, poll_interval=0.2) as follower:
        assert follower.seq == 2 and len(follower.view) == 1  # seq 1: the netns dir
        proc = _writer(state_dir, spare_netns_dir, 5)
        deadline = time.monotonic() + 20
        for record, view in follower:
            seen.append((record.seq, len(view)))
            assert record.payload["env"]["actor"] == "other-process"
            if len(view) == 6 or time.monotonic() > deadline:
                break
        assert proc.wait(timeout=30) == 0
    assert seen == [(3, 2), (4, 3), (5, 4), (6, 5), (7, 6)]
    assert replay.load(state_dir).projection == follower.view.projection


def test_follow_callbacks_on_a_thread_and_close(state_dir: Path, spare_netns_dir: Path) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        store.add(sandbox("first"))
    got: list[int] = []
    arrived = threading.Event()

    def on_event(record: Record, view: StoreView) -> None:
        got.append(record.seq)
        if len(view) == 3:
            arrived.set()

    follower = replay.follow(state_dir, from_seq=1, on_event=on_event, poll_interval=0.2)
    follower.start()
    proc = _writer(state_dir, spare_netns_dir, 2)
    assert arrived.wait(20), got
    follower.close()
    assert proc.wait(timeout=30) == 0
    assert got == [1, 2, 3, 4] and follower.error is None  # 1: the netns dir record


def test_follow_entries_describe_each_change(state_dir: Path, spare_netns_dir: Path) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        sb = store.add(sandbox("x"))
        store.delete(sb.id)
    with replay.follow(state_dir, from_seq=1) as follower:
        it = follower.entries()
        recorded, _ = next(it)
        added, _ = next(it)
        deleted, view = next(it)
    assert recorded.type == "NetNSDirRecorded"
    assert added.type == "SandboxAdded" and deleted.type == "SandboxDeleted"
    assert deleted.name == sb.name and len(view) == 0


class Tty(io.StringIO):
    """A stream that says it is a terminal (the real-terminal runs are in tests/cli)."""

    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal(state_dir: Path, spare_netns_dir: Path) -> None:
    plain = io.StringIO()
    with Progress(100, "reading", stream=plain) as bar:
        bar.update(50)
    assert plain.getvalue() == "", "not a terminal: nothing at all"

    tty = Tty()
    with Progress(1024 * 1024, "reading", stream=tty) as bar:
        bar.update(512 * 1024)
    text = tty.getvalue()
    assert "reading " in text and " 50%" in text and "0.5/1.0 MiB" in text
    assert "\x1b[" in text and "━" in text, "a coloured bar"
    assert text.endswith("\x1b[2K"), "the bar is erased at the end"
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as store:
        store.add(sandbox("one"))
    lp = LogProgress(state_dir, "x", stream=Tty())
    assert lp.total > 0 and lp.enabled


def test_progress_units_spinner_and_literal_labels() -> None:
    runs = Tty()
    with Progress(10, "crashtest", stream=runs, unit="runs") as bar:
        bar.update(3)
    assert "3/10" in runs.getvalue() and "runs" in runs.getvalue()
    unmeasured = Tty()
    with Progress(0, "verifying [bold]x[/bold]", stream=unmeasured) as bar:
        bar.update(0)
    assert "verifying [bold]x[/bold]" in unmeasured.getvalue(), "a label is never markup"
    never = Tty()
    with Progress(10, "idle", stream=never):
        pass
    assert never.getvalue() == "", "no update, no bar"


def test_a_run_off_a_terminal_never_imports_rich() -> None:
    code = (
        "import io, sys\n"
        "from replay.progress import Progress\n"
        "with Progress(10, 'x', stream=io.StringIO()) as bar:\n"
        "    bar.update(5)\n"
        "print('rich' in sys.modules)\n"
    )
    cp = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert cp.returncode == 0 and cp.stdout == "False\n", (cp.stdout, cp.stderr)


def test_time_specs() -> None:
    now = 1_700_000_000 * 10**9
    assert parse_time("10m", now_ns=now) == now - 600 * 10**9
    assert parse_time("1h30m", now_ns=now) == now - 5400 * 10**9
    assert parse_time("1700000000") == now
    assert parse_time("@1700000000.5") == now + 500_000_000
    assert parse_time("2023-11-14T22:13:20Z") == now
    assert parse_time("2023-11-15T00:13:20+02:00") == now
    with pytest.raises(TimeSpecError):
        parse_time("yesterday")
    assert parse_point("12") == Point(seq=12)
    assert parse_point("@1700000000") == Point(at=now)
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(150) == "2 minutes"
    assert human_duration(3600) == "About an hour"
    assert human_duration(3 * 86400) == "3 days"
