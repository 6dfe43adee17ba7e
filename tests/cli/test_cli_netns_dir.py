"""sandboxctl and the store's recorded netns dir; ``run --netns`` all or nothing, also for
a plain user (a real setpriv'd subprocess, no unshare)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import support
from support import fails, ok, sandboxctl

POD = Path(__file__).resolve().parents[1] / "sandbox" / "podconfigs" / "crictl-pod-config.json"
NOBODY = 65534


def test_stop_without_netns_dir_uses_the_recorded_one(state_dir: Path, netns_dir: Path) -> None:
    s, n = str(state_dir), str(netns_dir)
    sid = ok(sandboxctl("--state-dir", s, "--netns-dir", n, "run", str(POD), "--netns")).strip()
    assert len(support.nsfs_mounts_under(netns_dir)) == 1
    ok(sandboxctl("--state-dir", s, "stop", sid))  # no --netns-dir
    assert support.nsfs_mounts_under(netns_dir) == []
    ok(sandboxctl("--state-dir", s, "rm", sid))
    assert os.listdir(netns_dir) == []


def test_another_netns_dir_is_exit_7_naming_the_recorded_one(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    s = str(state_dir)
    sid = ok(sandboxctl("--state-dir", s, "--netns-dir", str(spare_netns_dir), "run", str(POD)))
    other = str(tmp_path / "other")
    line = fails(sandboxctl("--state-dir", s, "--netns-dir", other, "stop", sid.strip()), 7)
    assert str(spare_netns_dir) in line and "--netns-dir" in line
    ok(sandboxctl("--state-dir", s, "stop", sid.strip()))


def test_the_environment_variable_works_like_the_flag(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = str(state_dir)
    monkeypatch.setenv("SANDBOXCTL_NETNS_DIR", str(spare_netns_dir))
    sid = ok(sandboxctl("--state-dir", s, "run", str(POD))).strip()
    monkeypatch.setenv("SANDBOXCTL_NETNS_DIR", str(tmp_path / "other"))
    fails(sandboxctl("--state-dir", s, "stop", sid), 7, str(spare_netns_dir))
    monkeypatch.delenv("SANDBOXCTL_NETNS_DIR")
    ok(sandboxctl("--state-dir", s, "stop", sid))


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory a plain user (65534) owns, outside root-only tmp dirs."""
    if os.geteuid() != 0 or support.in_user_namespace() or shutil.which("setpriv") is None:
        pytest.skip("needs the real root and setpriv to run a plain user's process")
    d = Path(tempfile.mkdtemp(prefix="sandboxctl-nobody-"))
    os.chown(d, NOBODY, NOBODY)
    try:
        yield d
    finally:
        support.clean_and_check(d)
        shutil.rmtree(d)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX")}
    env["PYTHONPATH"] = str(support.REPO)
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run(
        [*cmd, sys.executable, "-m", "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd="/",
    )


def test_a_plain_user_gets_one_line_and_no_sandbox(nobody_dir: Path) -> None:
    pod = nobody_dir / "pod.json"
    shutil.copy(POD, pod)
    os.chown(pod, NOBODY, NOBODY)
    s, n = str(nobody_dir / "state"), str(nobody_dir / "netns")
    probe = _as_nobody("--help")
    if probe.returncode != 0:
        pytest.skip(f"this venv is not usable by uid {NOBODY}: {probe.stderr[-200:]}")
    line = fails(_as_nobody("--state-dir", s, "--netns-dir", n, "run", str(pod), "--netns"), 1)
    assert "CAP_SYS_ADMIN" in line and "unshare -Urm" in line
    assert len(line) < 250
    assert json.loads(ok(_as_nobody("--state-dir", s, "pods", "-o", "json")))["items"] == []
    audit = ok(_as_nobody("--state-dir", s, "audit", "-o", "json"))
    assert "NetNSCreateFailed" in audit and "SandboxDeleted" in audit
    # the next write says nothing about it: there is nothing left to retry
    sid = ok(_as_nobody("--state-dir", s, "run", str(pod))).strip()
    stopped = _as_nobody("--state-dir", s, "stop", sid)
    assert stopped.returncode == 0 and stopped.stderr == "", stopped.stderr
