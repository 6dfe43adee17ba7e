"""Kill -9 a process that is adding sandboxes: every acknowledged add survives."""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import eventlog
from sandbox import Projection, Store

REPO = Path(__file__).resolve().parents[2]

ADDER = """
import sys
from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, Sandbox, State, Status, Store
state_dir, netns_dir, prefix = sys.argv[1:4]
store = Store.open(state_dir, netns_dir=netns_dir, durability="always")
print("open", flush=True)
i = 0
while True:
    sid = f"{prefix}-{i:06d}"
    cfg = PodSandboxConfig(metadata=PodSandboxMetadata(name=sid, uid=sid, namespace="crash"))
    store.add(Sandbox(Metadata(sid, "name-" + sid, cfg), Status(State.READY, pid=i)))
    if i % 3 == 0:
        store.update_status(sid, lambda old: Status(State.NOTREADY, old.pid, old.created_at))
    print(sid, flush=True)
    i += 1
"""


def _run_and_kill(state_dir: Path, netns_dir: Path, prefix: str, after: float) -> list[str]:
    """Start the adder, SIGKILL it ``after`` seconds after it opened; the acked ids."""
    env = dict(os.environ)
    env.pop("SANDBOX_CRASHPOINT", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-c", ADDER, str(state_dir), str(netns_dir), prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    acked: list[str] = []
    buf = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline: float | None = None
    opened_by = time.monotonic() + 60
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if deadline is None and now > opened_by:
                raise AssertionError("the child did not open the store in time")
            if sel.select(timeout=0.01):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break  # died on its own: reported below
                buf += chunk
                if deadline is None and b"open\n" in buf:
                    deadline = time.monotonic() + after
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        buf += proc.stdout.read()
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr
    for line in buf.decode().splitlines():
        if line != "open":
            acked.append(line)
    return acked


@pytest.mark.slow
def test_sigkill_during_adds_loses_no_acknowledged_add(
    state_dir: Path, unused_netns_dir: Path
) -> None:
    rng = random.Random(20171031)
    acked_all: list[str] = []
    for round_ in range(5):
        acked = _run_and_kill(state_dir, unused_netns_dir, f"r{round_}", rng.uniform(0.05, 0.4))
        acked_all += acked
        with Store.open(state_dir, netns_dir=unused_netns_dir, durability="always") as store:
            missing = [sid for sid in acked_all if sid not in store]
            assert not missing, f"round {round_}: acknowledged adds lost: {missing[:5]}"
            for sid in acked[-3:]:
                sb = store[sid]
                assert sb.metadata.config.metadata is not None
                assert sb.metadata.config.metadata.name == sid
            # The log is whole and replays to the same state.
            replayed = Projection(store.netns_dir)
            for rec in eventlog.read(state_dir):
                replayed.apply(rec.seq, rec.payload)
            assert replayed == store.projection()
    assert len(acked_all) > 5, "the child never got to add anything"
