"""Attack M: an input that never ends, or never opens.

``run /dev/zero`` and ``--key-file /dev/zero`` would read until memory runs
out; a FIFO with no writer blocks ``open`` for ever. Every file the CLI reads
is opened O_NONBLOCK, must be a regular file (``-`` is stdin only where a
command documents it: ``run -``), and is read with a bound: a pod config at
most one record (4 MiB), a key file at most 4 KiB (a key is 1 to 64 bytes).
Each refusal is one line and exit 7, at once. The CLI runs as a subprocess;
a hang fails the test through security_support's safety timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from security_support import HANG, sandboxctl
from support import REPO, fails, ok, sandbox

from sandbox import Store

POD = '{"metadata": {"name": "web", "namespace": "default", "uid": "u1"}}'


@pytest.fixture
def store(state_dir: Path, spare_netns_dir: Path) -> list[str]:
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none") as s:
        s.add(sandbox("web"))
    return ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_run_dev_zero_ends_at_once(store: list[str]) -> None:
    fails(sandboxctl(*store, "run", "/dev/zero"), 7, "/dev/zero")


def test_run_a_fifo_without_a_writer_does_not_hang(store: list[str], fifo: Path) -> None:
    fails(sandboxctl(*store, "run", str(fifo)), 7, "not a regular file")


@pytest.mark.parametrize("command", [["pods"], ["verify"], ["head"], ["audit"]])
def test_key_file_dev_zero_ends_at_once(store: list[str], command: list[str]) -> None:
    fails(sandboxctl(*store, "--key-file", "/dev/zero", *command), 7, "key file /dev/zero")


def test_key_file_fifo_does_not_hang(store: list[str], fifo: Path) -> None:
    fails(sandboxctl(*store, "--key-file", str(fifo), "pods"), 7, "not a regular file")


def test_a_big_key_file_is_refused_after_a_bounded_read(store: list[str], tmp_path: Path) -> None:
    big = tmp_path / "big.key"
    big.write_bytes(b"k" * (64 << 20))
    fails(sandboxctl(*store, "--key-file", str(big), "pods"), 7, "larger than 4096 bytes")
    small = tmp_path / "long.key"
    small.write_bytes(b"k" * 65)
    fails(sandboxctl(*store, "--key-file", str(small), "pods"), 7, "1 to 64 bytes")


def test_run_dash_reads_stdin_with_the_same_bound(state_dir: Path, spare_netns_dir: Path) -> None:
    """``run -`` is the documented stdin: a pod config piped in works..."""
    argv = [sys.executable, "-m", "replay", "--state-dir", str(state_dir)]
    argv += ["--netns-dir", str(spare_netns_dir), "run", "-"]
    env = {k: v for k, v in os.environ.items() if k != "SANDBOXCTL_STATE_DIR"}
    cp = subprocess.run(
        argv, input=POD, capture_output=True, text=True, cwd=REPO, env=env, timeout=HANG
    )
    assert len(ok(cp).strip()) == 64
    # ... and /dev/zero as stdin ends at the bound.
    with open("/dev/zero", "rb") as zero:
        cp = subprocess.run(
            argv, stdin=zero, capture_output=True, text=True, cwd=REPO, env=env, timeout=HANG
        )
    fails(cp, 7, "larger than")
