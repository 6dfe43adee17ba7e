"""sandboxctl follow (live, Ctrl-C ends it cleanly) and sandboxctl demo (end to end)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO, nsfs_mounts_under, read_ready, sandbox, sandboxctl

from sandbox import Store


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "replay", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@contextlib.contextmanager
def _follow_from(state_dir: Path, fmt: str, seq: int) -> Iterator[subprocess.Popen[str]]:
    """``sandboxctl follow --from SEQ -o FMT`` as a child; killed if still running at the end."""
    proc = _spawn("--state-dir", str(state_dir), "follow", "--from", str(seq), "-o", fmt)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_pending: dict[int, bytes] = {}


def _read_lines(proc: subprocess.Popen[str], want: int, deadline_s: float) -> list[str]:
    """Up to ``want`` lines of the child's stdout, waiting at most ``deadline_s``.

    Reads the pipe's fd directly (support.read_ready says why).
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = _pending.pop(fd, b"")
    lines: list[str] = []
    deadline = time.monotonic() + deadline_s
    while True:
        while b"\n" in buf and len(lines) < want:
            line, buf = buf.split(b"\n", 1)
            lines.append(line.decode() + "\n")
        if len(lines) >= want or time.monotonic() > deadline:
            break
        chunk = read_ready(fd)
        if chunk == b"":
            break
        buf += chunk or b""
    _pending[fd] = buf
    return lines


@pytest.mark.parametrize("fmt", ["jsonl", "table"])
def test_follow_prints_events_from_another_process_and_sigint_ends_it(
    state_dir: Path, spare_netns_dir: Path, fmt: str
) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        store.add(sandbox("existing"))
    # Seq 1 records the netns dir, 2 adds "existing". --from 3: whether the follower
    # has finished starting when the writer below appends or not, records 3 and 4
    # are what it must print.
    with _follow_from(state_dir, fmt, 3) as proc:
        if fmt == "table":
            assert len(_read_lines(proc, 1, 20)) == 1  # the header
        with Store.open(state_dir, netns_dir=spare_netns_dir, actor="writer") as store:
            sb = store.add(sandbox("live"))
            store.delete(sb.id)
        lines = _read_lines(proc, 2, 20)  # generous: it normally takes milliseconds
        assert len(lines) == 2, lines
        if fmt == "jsonl":
            events = [json.loads(line) for line in lines]
            assert [e["seq"] for e in events] == [3, 4]
            assert [e["type"] for e in events] == ["SandboxAdded", "SandboxDeleted"]
            assert events[0]["actor"] == "writer" and events[0]["sandbox_id"] == sb.id
        else:
            assert lines[0].startswith("3 ") and "SandboxAdded" in lines[0]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err == ""


def test_follow_from_a_past_seq_then_sigterm(state_dir: Path, spare_netns_dir: Path) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        for i in range(3):
            store.add(sandbox(f"p{i}"))
    with _follow_from(state_dir, "jsonl", 2) as proc:
        lines = _read_lines(proc, 2, 20)
        assert [json.loads(line)["seq"] for line in lines] == [2, 3]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and err == ""


@pytest.mark.slow
def test_demo_runs_to_the_end_and_leaves_nothing_mounted(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo-state"
    cp = sandboxctl("demo", "--state-dir", str(demo_dir), timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "Traceback" not in cp.stderr
    out = cp.stdout
    assert "0 failed" in out and "✗" not in out
    for words in (
        "SIGKILL",
        "created exactly once",
        "recorded as closed",
        "verify: the log is clean",
    ):
        assert words in out
    assert nsfs_mounts_under(tmp_path) == [], "the demo removes every namespace it made"
    assert list((demo_dir / "netns").iterdir()) == []
    assert sorted(p.name for p in demo_dir.glob("*.log"))  # the log stays, to explore
    assert sandboxctl("--state-dir", str(demo_dir), "verify").returncode == 0
    # A non-empty dir is refused; --force wipes only a previous demo's dir.
    again = sandboxctl("demo", "--state-dir", str(demo_dir))
    assert again.returncode == 7 and "--force" in again.stderr
    other = tmp_path / "not-a-demo"
    other.mkdir()
    (other / "precious").write_text("keep me")
    refused = sandboxctl("demo", "--state-dir", str(other), "--force")
    assert refused.returncode == 7 and (other / "precious").read_text() == "keep me"
    forced = sandboxctl("demo", "--state-dir", str(demo_dir), "--force", "-o", "json", timeout=300)
    assert forced.returncode == 0, forced.stderr
    doc = json.loads(forced.stdout)
    assert doc["ok"] is True and all(c["status"] != "failed" for c in doc["checks"])
    assert nsfs_mounts_under(tmp_path) == []


def test_demo_without_namespaces_skips_those_checks(tmp_path: Path) -> None:
    cp = sandboxctl("demo", "--state-dir", str(tmp_path / "d"), "--no-netns", "-o", "json")
    assert cp.returncode == 0, cp.stderr
    checks = {c["name"]: c["status"] for c in json.loads(cp.stdout)["checks"]}
    assert checks["the interrupted intent's namespace was created exactly once"] == "skipped"
    assert checks["every acknowledged event is in the log after the crash"] == "passed"
    assert os.listdir(tmp_path / "d" / "netns") == []
