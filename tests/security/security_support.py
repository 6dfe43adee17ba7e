"""Helpers for the attack tests: a small real log, and running an attack in a child.

Why a child process: on vulnerable code an attack hangs (a FIFO blocks an
open for ever) or leaves state behind; in a child the test sees the hang as
an expired safety timeout (a failure, never a pass) and the failure stays
contained. No assert depends on timing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import support

from eventlog import EventLog, UnsafeFileError

#: A hang on vulnerable code fails the test after this many seconds; a
#: correct run takes a fraction of one.
HANG = 60.0


def make_log(directory: Path, records: int = 5, segment_bytes: int = 8 << 20) -> list[Path]:
    """A closed log of ``records`` records; its segment files in order."""
    with EventLog.open(directory, durability="none", segment_bytes=segment_bytes) as log:
        for i in range(records):
            log.append({"n": i, "pad": "x" * 40})
    return sorted(directory.glob("*.log"))


def in_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child interpreter; a hang is a failure, never a pass."""
    try:
        return support.run_python(code, *args, timeout=HANG)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"hung for {HANG} s (killed): {code.strip()[:200]}") from exc


def sandboxctl(*args: str) -> subprocess.CompletedProcess[str]:
    """``sandboxctl ARGS``; a hang is a failure, never a pass."""
    try:
        return support.sandboxctl(*args, timeout=HANG)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"sandboxctl {' '.join(args)} hung for {HANG} s") from exc


def snapshot_of(directory: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry of ``directory``: (mode, content or link target); FIFOs unread."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for p in sorted(directory.iterdir()):
        st = os.lstat(p)
        if p.is_symlink():
            out[p.name] = (st.st_mode, os.readlink(p))
        elif p.is_file():
            out[p.name] = (st.st_mode, p.read_bytes())
        else:
            out[p.name] = (st.st_mode, "")
    return out


def refused_with_lock_replaced(
    tmp_path: Path, name: str, content: bytes, link: Callable[[Path, Path], None]
) -> tuple[Path, Path, str]:
    """A log in ``tmp_path/state`` whose LOCK is replaced by ``link(outside, LOCK)``,
    ``outside`` a file ``name`` holding ``content``: opening the log must raise
    UnsafeFileError. Returns the log dir, ``outside`` and the error's text."""
    d = tmp_path / "state"
    make_log(d)
    outside = tmp_path / name
    outside.write_bytes(content)
    (d / "LOCK").unlink()
    link(outside, d / "LOCK")
    with pytest.raises(UnsafeFileError) as info:
        EventLog.open(d, durability="none")
    return d, outside, str(info.value)
