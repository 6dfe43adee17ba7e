"""Write commands wait for the writer lock (``--lock-timeout``, as ``flock -w``).

The lock itself refuses at once; the CLI polls it until the deadline, so
that eight ``sandboxctl run`` started together on one store all succeed,
while a lock held for longer than ``--lock-timeout`` ends with exit 8 and a
line naming the holder's pid. Real processes on a real state dir; no assert
depends on timing (the held lock is held until the command has given up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, fails, ok, sandboxctl

from sandbox import Store


def _pod(tmp_path: Path, i: int) -> Path:
    path = tmp_path / f"pod{i}.json"
    meta = {"name": f"p{i}", "namespace": "default", "uid": f"u{i}"}
    path.write_text(json.dumps({"metadata": meta}))
    return path


def test_eight_parallel_runs_on_one_store_all_succeed(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SANDBOXCTL_STATE_DIR"}
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "replay", *g, "run", str(_pod(tmp_path, i))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for i in range(8)
    ]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    for (out, err), code in results:
        assert code == 0, (code, err)
        assert len(out.strip()) == 64
    ids = {out.strip() for (out, _), _ in results}
    listed = ok(sandboxctl(*g, "pods", "-q")).split()
    assert sorted(listed) == sorted(ids) and len(ids) == 8


@pytest.mark.slow
def test_a_held_lock_ends_with_exit_8_naming_the_holder(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    pod = _pod(tmp_path, 0)
    with Store.open(state_dir, netns_dir=spare_netns_dir, durability="none"):
        for argv in (
            ["run", str(pod)],
            ["snapshot"],
            ["reconcile"],
            ["stop", "abc"],
            ["rm", "abc"],
        ):
            cp = sandboxctl(*g, "--lock-timeout", "0.2", *argv)
            line = fails(cp, 8, f"pid {os.getpid()}")
            assert "--lock-timeout" in line, line
        # 0: do not wait at all (the library's own behaviour).
        fails(sandboxctl(*g, "--lock-timeout", "0", "run", str(pod)), 8, f"pid {os.getpid()}")
    # Released: the same command now works.
    ok(sandboxctl(*g, "--lock-timeout", "0.2", "run", str(pod)))


def test_a_bad_lock_timeout_is_a_usage_error(state_dir: Path) -> None:
    for bad in ("abc", "-1", "nan", "inf"):
        fails(sandboxctl("--state-dir", str(state_dir), "--lock-timeout", bad, "snapshot"), 2)
