"""sandboxctl on a real pseudo-terminal draws a coloured progress bar; piped, it
prints no escape code at all, and ``-o json`` is the same bytes either way.

The terminal is a real pty (Python's ``pty.openpty``) with a window size, as an
operator's would be; output is read as bytes until the child closes it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import pytest
from support import REPO, sandbox

from sandbox import Store

SGR = re.compile(rb"\x1b\[[0-9;]*m")  # a colour (Select Graphic Rendition)


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("SANDBOXCTL_STATE_DIR", "NO_COLOR")}
    out.update(TERM="xterm-256color", **extra)
    return out


def on_pty(*args: str) -> tuple[bytes, bytes]:
    """Run ``python -m replay ARGS`` with stderr (and stdin) on a pty and stdout on
    a file, as ``sandboxctl verify -o json > out.json`` typed at a terminal does;
    returns (stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # stdout to a file, not a pipe: nobody could drain a pipe while the pty is read.
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "replay", *args],
            stdin=slave,
            stdout=out,
            stderr=slave,
            env=env(),
            cwd=REPO,
            start_new_session=True,
        )
        os.close(slave)
        terminal = bytearray()
        try:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every copy of the child's side is closed
                    break
                if not chunk:
                    break
                terminal += chunk
        finally:
            os.close(master)
        assert proc.wait(timeout=120) == 0, bytes(terminal)
        out.seek(0)
        return out.read(), bytes(terminal)


def piped(*args: str) -> subprocess.CompletedProcess[bytes]:
    cp = subprocess.run(
        [sys.executable, "-m", "replay", *args],
        capture_output=True,
        env=env(FORCE_COLOR="1"),  # rich would colour a pipe for this: the CLI must not
        cwd=REPO,
        timeout=120,
    )
    assert cp.returncode == 0, cp
    return cp


@pytest.fixture
def store_dir(state_dir: Path, spare_netns_dir: Path) -> Path:
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as store:
        for i in range(200):
            store.add(sandbox(f"pod{i}"))
    return state_dir


def test_progress_in_colour_on_a_terminal_json_unchanged(store_dir: Path) -> None:
    g = ("--state-dir", str(store_dir))
    stdout, terminal = on_pty(*g, "verify", "-o", "json")
    assert b"verifying checksums and chain" in terminal and b"checking events" in terminal
    assert SGR.search(terminal), "the bar is coloured"
    assert terminal.rstrip(b"\r\n").endswith(b"\x1b[2K"), "and erased at the end"
    assert stdout == piped(*g, "verify", "-o", "json").stdout, "-o json: the same bytes"
    assert b"\x1b" not in stdout

    stdout, terminal = on_pty(*g, "audit", "-o", "jsonl")
    assert b"reading the audit trail" in terminal and SGR.search(terminal)
    assert stdout == piped(*g, "audit", "-o", "jsonl").stdout


@pytest.mark.parametrize(
    "command",
    [
        ["pods"],
        ["audit"],
        ["verify"],
        ["history", "--upto", "100"],
        ["log"],
        ["diff", "1", "200"],
        ["audit", "-o", "jsonl"],
        ["pods", "-o", "json"],
    ],
)
def test_a_piped_run_has_no_escape_codes(store_dir: Path, command: list[str]) -> None:
    cp = piped("--state-dir", str(store_dir), *command)
    assert cp.stdout and b"\x1b" not in cp.stdout and b"\x1b" not in cp.stderr
