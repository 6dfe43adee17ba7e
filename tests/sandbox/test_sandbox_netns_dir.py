"""A store keeps its netns dir (recorded in its log), and add(create_netns=True) is all
or nothing: real namespaces, real read-only mounts, real logs."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import support
from support import MakeSandbox, add_with_netns

import eventlog
from replay.audit import audit
from sandbox import NetNSDirMismatchError, NetNSSetupError, Store
from sandbox import events as ev
from sandbox.netns import DEFAULT_NETNS_DIR, is_live_netns
from sandbox.netnsdir import same_dir
from sandbox.netnsfail import reason


def types(state_dir: Path) -> list[str]:
    return [r.payload["type"] for r in eventlog.read(state_dir)]


def payloads(state_dir: Path, kind: str) -> list[dict[str, Any]]:
    return [r.payload for r in eventlog.read(state_dir) if r.payload["type"] == kind]


# -- A: the netns dir is recorded and used -----------------------------------------------


def test_a_new_store_records_its_netns_dir_first(state_dir: Path, spare_netns_dir: Path) -> None:
    Store.open(state_dir, netns_dir=spare_netns_dir).close()
    assert types(state_dir) == [ev.NETNS_DIR_RECORDED]
    with Store.open(state_dir) as store:
        assert store.netns_dir == str(spare_netns_dir)
    assert types(state_dir) == [ev.NETNS_DIR_RECORDED]  # recorded once


def test_a_new_store_without_a_dir_records_the_default(state_dir: Path) -> None:
    Store.open(state_dir).close()
    assert payloads(state_dir, ev.NETNS_DIR_RECORDED)[0]["netns_dir"] == DEFAULT_NETNS_DIR


def test_reopened_without_the_dir_it_removes_the_namespace(
    state_dir: Path, netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        _, path = add_with_netns(store, make_sandbox("s1"))
    assert is_live_netns(path)
    with Store.open(state_dir) as store:  # no netns_dir: the recorded one
        assert store.netns_dir == str(netns_dir)
        store.remove_netns("s1")
        assert not os.path.lexists(path)
        store.delete("s1")
    assert not support.nsfs_mounts_under(netns_dir)


def test_an_open_naming_another_dir_is_refused(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    Store.open(state_dir, netns_dir=spare_netns_dir).close()
    other = tmp_path / "other"
    with pytest.raises(NetNSDirMismatchError, match=str(spare_netns_dir)):
        Store.open(state_dir, netns_dir=other)
    # refused before anything was written, and the lock was released
    assert types(state_dir) == [ev.NETNS_DIR_RECORDED]
    Store.open(state_dir).close()


def test_two_names_of_one_dir_are_the_same_dir(state_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert same_dir(str(link), str(real))
    assert not same_dir(str(real), str(tmp_path / "else"))
    if os.path.isdir("/run/netns") and os.path.isdir("/var/run/netns"):
        assert same_dir("/run/netns", "/var/run/netns")
    Store.open(state_dir, netns_dir=real).close()
    with Store.open(state_dir, netns_dir=link) as store:  # another spelling: accepted
        assert store.netns_dir == str(real)  # the recorded one is used


def test_run_netns_and_var_run_netns_are_one_store_dir(state_dir: Path) -> None:
    if not (os.path.isdir("/run/netns") and os.path.isdir("/var/run/netns")):
        pytest.skip("needs /run/netns and /var/run/netns on this machine")
    Store.open(state_dir, netns_dir="/var/run/netns").close()
    Store.open(state_dir, netns_dir="/run/netns").close()  # no refusal, nothing made


def _old_log(state_dir: Path, *paths: str) -> None:
    """A log as the code before NetNSDirRecorded wrote it (no record of the dir)."""
    env = ev.Envelope("old")()
    with eventlog.EventLog.open(state_dir) as log:
        for i, path in enumerate(paths):
            sid = f"old{i}"
            log.append(ev.sandbox_added(env, support.sandbox(sid, sid=sid).metadata, _ready()))
            log.append(ev.netns_assigned(env, sid, path))
            log.append(ev.sandbox_deleted(env, sid))


def _ready() -> Any:
    return support.sandbox("x").status


def test_an_old_log_gets_the_dir_of_its_assigned_paths(state_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "old-netns"
    _old_log(state_dir, str(d / f"cni-{uuid.uuid4()}"), str(d / f"cni-{uuid.uuid4()}"))
    with Store.open(state_dir) as store:
        assert store.netns_dir == str(d)
    recorded = payloads(state_dir, ev.NETNS_DIR_RECORDED)
    assert [p["netns_dir"] for p in recorded] == [str(d)]
    with Store.open(state_dir) as store:  # found again, not recorded twice
        assert store.netns_dir == str(d)
    assert len(payloads(state_dir, ev.NETNS_DIR_RECORDED)) == 1
    with pytest.raises(NetNSDirMismatchError, match=str(d)):
        Store.open(state_dir, netns_dir=tmp_path / "elsewhere")


def test_an_old_log_naming_another_dir_than_asked_is_refused(
    state_dir: Path, tmp_path: Path
) -> None:
    d = tmp_path / "old-netns"
    _old_log(state_dir, str(d / f"cni-{uuid.uuid4()}"))
    with pytest.raises(NetNSDirMismatchError, match=str(d)):
        Store.open(state_dir, netns_dir=tmp_path / "elsewhere")
    assert ev.NETNS_DIR_RECORDED not in types(state_dir)


def test_an_old_log_whose_paths_disagree_is_refused(state_dir: Path, tmp_path: Path) -> None:
    _old_log(state_dir, str(tmp_path / "a" / "cni-1"), str(tmp_path / "b" / "cni-2"))
    with pytest.raises(NetNSDirMismatchError, match="2 directories"):
        Store.open(state_dir)
    assert ev.NETNS_DIR_RECORDED not in types(state_dir)


def test_an_old_log_without_assigned_paths_records_the_given_dir(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    _old_log(state_dir)
    with eventlog.EventLog.open(state_dir) as log:
        log.append(ev.sandbox_added(ev.Envelope()(), support.sandbox("p").metadata, _ready()))
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        assert len(store) == 1
    assert types(state_dir) == [ev.SANDBOX_ADDED, ev.NETNS_DIR_RECORDED]
    with Store.open(state_dir) as store:
        assert store.netns_dir == str(spare_netns_dir)


# -- B: a namespace that cannot be made leaves nothing behind -------------------------


@pytest.fixture
def read_only_netns_dir(tmp_path: Path) -> Iterator[Path]:
    """A netns dir on a read-only bind mount: creating a placeholder there fails (EROFS)."""
    support.skip_unless_root("bind-mounts a read-only netns dir")
    d = tmp_path / "ro-netns"
    d.mkdir()
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], check=True, capture_output=True)
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=True, capture_output=True)
        support.clean_and_check(tmp_path)


def _check_undone(state_dir: Path, sandbox_id: str) -> None:
    kinds = types(state_dir)
    at = kinds.index(ev.NETNS_CREATE_FAILED)
    assert kinds[at - 2 : at + 2] == [
        ev.SANDBOX_ADDED,
        ev.NETNS_ASSIGNED,
        ev.NETNS_CREATE_FAILED,
        ev.SANDBOX_DELETED,
    ], kinds
    failed = payloads(state_dir, ev.NETNS_CREATE_FAILED)[-1]
    assert failed["id"] == sandbox_id and failed["reason"]
    with Store.open(state_dir) as store:
        assert sandbox_id not in store and store.get(sandbox_id) is None
        assert not store.projection().owned()
        # nothing left to retry (a netns dir that cannot exist is still reported as such)
        assert all("cni-" not in path for path, _ in store.last_reconcile_report.errors)
    assert types(state_dir) == kinds  # the reopen had nothing to do
    entries = [e for e in audit(state_dir) if e.sandbox_id == sandbox_id]
    assert [e.type for e in entries] == [
        ev.SANDBOX_ADDED,
        ev.NETNS_ASSIGNED,
        ev.NETNS_CREATE_FAILED,
        ev.SANDBOX_DELETED,
    ]
    assert "could not be created" in entries[2].summary


def test_add_whose_namespace_cannot_be_made_leaves_no_sandbox(
    state_dir: Path, read_only_netns_dir: Path, make_sandbox: MakeSandbox
) -> None:
    with Store.open(state_dir, netns_dir=read_only_netns_dir) as store:
        with pytest.raises(NetNSSetupError, match="not added") as err:
            store.add(make_sandbox("s1"), create_netns=True)
        assert "\n" not in str(err.value)
        assert "s1" not in store and len(store) == 0
        store.add(make_sandbox("s2"))  # the store stays usable; the name is free again
        store.add(make_sandbox("s3", name="s1"))
    _check_undone(state_dir, "s1")
    assert os.listdir(read_only_netns_dir) == []


def test_add_under_a_regular_file_leaves_no_sandbox(
    state_dir: Path, tmp_path: Path, make_sandbox: MakeSandbox
) -> None:
    support.skip_unless_root("root ignores permissions: only the path can make it fail")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with Store.open(state_dir, netns_dir=blocker / "netns") as store:
        with pytest.raises(NetNSSetupError):
            store.add(make_sandbox("s1"), create_netns=True)
        assert len(store) == 0
    _check_undone(state_dir, "s1")


def test_the_reason_names_the_missing_capability_and_the_way_round() -> None:
    line = reason((("/x", "a\nlong  error"),), privileged=False)
    assert "CAP_SYS_ADMIN" in line and "unshare -Urm" in line and "\n" not in line
    assert reason((("/x", "a\nlong  error"),), privileged=True) == "a long error"
    assert len(reason((("/x", "y" * 1000),), privileged=True)) <= 200
