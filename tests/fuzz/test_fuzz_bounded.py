"""The real fuzzer, bounded: each target for a few thousand inputs, in a subprocess.

Fails on any finding, with the runner's summary, the Python traceback and
the crashing input (as bytes, ready to paste into tests/fuzz/
test_fuzz_regressions.py). A fixed libFuzzer seed makes a CI run
reproducible. The runner itself is checked against planted crashes and a
planted hang (tests/fuzz/fuzz_selftest.py), so that a broken runner cannot
pass by finding nothing.

Inputs per target are sized for well under 60 s in total on a loaded
2-core machine (log ~600-1500 inputs/s, snapshot ~15k/s, metadata ~6k/s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RUNS = {"log": 3000, "snapshot": 5000, "metadata": 5000}


def _run(
    target: str, artifacts: Path, *extra: str, timeout: float = 180, scratch: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SBX_FUZZ_FIXTURE", None)
    env.pop("SBX_FUZZ_TMP", None)
    env.pop("SANDBOX_CRASHPOINT", None)
    if scratch is not None:
        env["SBX_FUZZ_TMP"] = str(scratch)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(HERE), *filter(None, [env.get("PYTHONPATH")])]
    )
    cmd = [sys.executable, "-m", "replay.fuzz.run", target, "--quiet"]
    cmd += ["--artifacts", str(artifacts), *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _explain(cp: subprocess.CompletedProcess[str], artifacts: Path) -> str:
    parts = [f"exit {cp.returncode}", cp.stdout, cp.stderr[-6000:]]
    for path in sorted(artifacts.iterdir()) if artifacts.is_dir() else []:
        if path.suffix == ".txt":
            parts.append(f"--- {path.name}\n{path.read_text()[:4000]}")
        elif path.suffix != ".count":
            parts.append(f"--- {path.name} (input for a regression test)\n{path.read_bytes()!r}")
    return "\n".join(parts)


#: Targets whose bounded run takes over ~10 s on two cores: left out of the
#: quick loop (-m "not slow"), still run by ./dev test and CI.
SLOW_TARGETS = {"log"}


@pytest.mark.parametrize(
    "target",
    [pytest.param(t, marks=pytest.mark.slow) if t in SLOW_TARGETS else t for t in sorted(RUNS)],
)
def test_bounded_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cp = _run(target, artifacts, "--runs", str(RUNS[target]), "--seed", "1", scratch=scratch)
    assert cp.returncode == 0 and "result: ok" in cp.stdout, _explain(cp, artifacts)
    assert list(scratch.iterdir()) == [], "the runner left scratch files behind"
    summary = dict(line.split(": ", 1) for line in cp.stdout.splitlines() if ": " in line)
    assert summary["target"] == target
    assert summary["inputs"].startswith(f"{RUNS[target]} in "), cp.stdout
    assert "cov None" not in summary["coverage"], cp.stdout  # libFuzzer's stats were read


def test_runner_reports_a_crash_with_its_input(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    cp = _run("fuzz_selftest:crashes", artifacts, "--runs", "200")
    assert cp.returncode == 1, _explain(cp, artifacts)
    assert "result: FINDING" in cp.stdout
    assert "IndexError: planted" in cp.stderr
    crashes = [p for p in artifacts.iterdir() if p.name.startswith("crash-")]
    assert [p.read_bytes() for p in crashes] == [b"seed"]


@pytest.mark.slow
def test_runner_reports_a_hang(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    cp = _run("fuzz_selftest:hangs", artifacts, "--runs", "200", "--timeout", "1")
    assert cp.returncode == 1, _explain(cp, artifacts)
    assert any(p.name.startswith("timeout-") for p in artifacts.iterdir()), _explain(cp, artifacts)


def test_runner_keep_going_records_findings_and_finishes(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    cp = _run("fuzz_selftest:crashes", artifacts, "--runs", "300", "--keep-going")
    assert cp.returncode == 1, _explain(cp, artifacts)
    assert "inputs: 300 in " in cp.stdout, cp.stdout
    texts = [p for p in artifacts.iterdir() if p.suffix == ".txt"]
    assert len(texts) == 1 and "IndexError" in texts[0].read_text()
    inputs = [p.read_bytes() for p in artifacts.iterdir() if p.suffix == ".bin"]
    assert inputs == [b"seed"]


def test_runner_refuses_an_unknown_target(tmp_path: Path) -> None:
    cp = _run("no-such-target", tmp_path / "artifacts", "--runs", "1")
    assert cp.returncode == 2 and "unknown target" in cp.stderr


def test_runner_replays_saved_inputs_without_atheris(tmp_path: Path) -> None:
    seed, other = tmp_path / "seed.bin", tmp_path / "other.bin"
    seed.write_bytes(b"seed")
    other.write_bytes(b"other")
    cp = _run("fuzz_selftest:crashes", tmp_path / "artifacts", "--replay", str(other), str(seed))
    assert cp.returncode == 1, _explain(cp, tmp_path / "artifacts")
    assert f"{other}: ok" in cp.stdout
    assert f"{seed}: FINDING" in cp.stderr and "IndexError: planted" in cp.stderr
