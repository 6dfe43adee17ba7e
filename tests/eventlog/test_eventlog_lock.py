"""One writer per directory: across processes, within a process, after kills and forks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from eventlog_support import spawn

from eventlog import EventLog, LogLockedError


def readline(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        raise AssertionError(f"child said nothing; stderr: {proc.stderr.read()}")
    return line.strip()


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def try_open_in_child(d: Path) -> str:
    proc = spawn("try-open", str(d))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out.strip()


def test_second_writer_in_another_process_is_refused_with_our_pid(tmp_path: Path) -> None:
    with EventLog.open(tmp_path, durability="none") as log:
        log.append({"a": 1})
        answer = try_open_in_child(tmp_path)
        assert answer.startswith(f"locked {os.getpid()} "), answer
        assert f"pid {os.getpid()}" in answer
    assert try_open_in_child(tmp_path) == "opened 1"


def test_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path, durability="none")
    with pytest.raises(LogLockedError) as info:
        EventLog.open(tmp_path, durability="none")
    assert info.value.pid == os.getpid()
    # Through another path to the same directory, too.
    with pytest.raises(LogLockedError):
        EventLog.open(str(tmp_path) + "/.", durability="none")
    # The refused attempts must not have dropped our lock (POSIX locks drop on any close).
    assert try_open_in_child(tmp_path).startswith("locked")
    log.close()
    with EventLog.open(tmp_path, durability="none") as again:
        assert again.last_seq == 0


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    proc = spawn("hold", str(tmp_path))
    try:
        line = readline(proc)
        assert line == f"ready {proc.pid}"
        with pytest.raises(LogLockedError) as info:
            EventLog.open(tmp_path, durability="none")
        assert info.value.pid == proc.pid
        assert f"pid {proc.pid}" in str(info.value)
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL
    with EventLog.open(tmp_path, durability="none") as log:
        assert log.last_seq == 0


def test_forked_helper_does_not_keep_the_lock(tmp_path: Path) -> None:
    proc = spawn("hold-fork", str(tmp_path))
    helper_pid = 0
    try:
        lines = {readline(proc), readline(proc)}
        ready = next(line for line in lines if line.startswith("ready"))
        _, writer_pid, helper = ready.split()
        helper_pid = int(helper)
        assert int(writer_pid) == proc.pid
        # While the writer lives, its forked helper cannot open the log either.
        assert f"helper locked {proc.pid}" in lines
        kill(proc)
        os.kill(helper_pid, 0)  # the helper is still alive, holding every inherited fd
        with EventLog.open(tmp_path, durability="none") as log:
            log.append({"after": "writer died"})
    finally:
        kill(proc)
        if helper_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper_pid, signal.SIGKILL)


def test_lock_file_names_the_holder(tmp_path: Path) -> None:
    with EventLog.open(tmp_path, durability="none"):
        assert (tmp_path / "LOCK").read_text().strip() == str(os.getpid())
    assert (tmp_path / "LOCK").read_text() == ""
