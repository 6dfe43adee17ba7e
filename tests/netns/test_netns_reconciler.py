"""The reconciler against real namespaces: every rule, foreign entries, errors, idempotence."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventlog import crashpoints
from sandbox.netns import DEFAULT_NETNS_DIR, NetNS, create_at, probe
from sandbox.ownership import NetNSState
from sandbox.reconciler import ReconcileReport, reconcile

if TYPE_CHECKING:
    from conftest import FakeStore, Helpers, NetnsDirs

A, C, R = NetNSState.ASSIGNED, NetNSState.CREATED, NetNSState.REMOVING


def cni(d: Path) -> Path:
    return d / f"cni-{uuid.uuid4()}"


def run(store: FakeStore, d: Path | str) -> ReconcileReport:
    return reconcile(store.owned(), d, store.record)


def assert_idle(store: FakeStore, d: Path | str) -> ReconcileReport:
    """A second run changes nothing and never calls record."""
    calls = len(store.calls)
    report = run(store, d)
    assert not report.changed, report
    assert len(store.calls) == calls
    return report


# -- ASSIGNED ---------------------------------------------------------------


def test_assigned_missing_is_created_exactly_once(
    netns_dir: Path, store: FakeStore, kx: Helpers
) -> None:
    p = store.own("sb1", cni(netns_dir), A)
    report = run(store, netns_dir)
    assert report.created == (p,) and report.adopted == ()
    assert store.calls == [("created", "sb1", p, "created")]
    assert len(kx.mounts_at(p)) == 1 and not NetNS(p, netns_dir).closed()
    assert store.state(p) is C
    assert_idle(store, netns_dir)
    assert len(kx.mounts_at(p)) == 1
    NetNS(p, netns_dir).remove()


def test_assigned_creates_a_missing_netns_dir(netns_dirs: NetnsDirs, store: FakeStore) -> None:
    d = netns_dirs("not-yet", create=False)
    p = store.own("sb1", cni(d), A)
    assert run(store, d).created == (p,)
    assert oct(d.stat().st_mode & 0o777) == oct(0o755)
    NetNS(p, d).remove()


def test_assigned_already_live_is_adopted_not_created_twice(
    netns_dir: Path, store: FakeStore, kx: Helpers
) -> None:
    """Crash after the effect, before the record (cri #568's leak window)."""
    p = store.own("sb1", cni(netns_dir), A)
    create_at(p, netns_dir)
    inode = os.stat(p).st_ino
    report = run(store, netns_dir)
    assert report.created == (p,) and report.adopted == (p,)
    [(kind, sid, path, reason)] = store.calls
    assert (kind, sid, path) == ("created", "sb1", p) and "adopted" in reason
    assert len(kx.mounts_at(p)) == 1
    assert os.stat(p).st_ino == inode  # the same namespace, not a new one
    assert_idle(store, netns_dir)
    NetNS(p, netns_dir).remove()


def test_assigned_with_empty_placeholder_is_created(
    netns_dir: Path, store: FakeStore, kx: Helpers
) -> None:
    """Crash between placeholder and mount."""
    p = store.own("sb1", cni(netns_dir), A)
    Path(p).touch()
    report = run(store, netns_dir)
    assert report.created == (p,) and report.adopted == ()
    assert len(kx.mounts_at(p)) == 1 and probe(p).kind == "netns"
    assert_idle(store, netns_dir)
    NetNS(p, netns_dir).remove()


@pytest.mark.parametrize("occupant", ["file", "dir", "symlink"])
def test_assigned_path_occupied_is_an_error_and_the_others_proceed(
    netns_dir: Path, store: FakeStore, kx: Helpers, occupant: str
) -> None:
    bad = store.own("bad", cni(netns_dir), A)
    if occupant == "file":
        Path(bad).write_text("someone's data")
    elif occupant == "dir":
        Path(bad).mkdir()
    else:
        Path(bad).symlink_to("/etc/hostname")
    good1 = store.own("good1", cni(netns_dir), A)
    good2 = store.own("good2", cni(netns_dir), A)
    report = run(store, netns_dir)
    assert report.created == (good1, good2)
    [(path, message)] = report.errors
    assert path == bad and "bad" in message and "not touched" in message
    assert report.changed
    assert os.path.lexists(bad) and probe(bad).kind == occupant
    if occupant == "file":
        assert Path(bad).read_text() == "someone's data"
    assert kx.mounts_at(bad) == []
    assert store.state(bad) is A  # still owned, still reported next time
    again = run(store, netns_dir)
    assert [p for p, _ in again.errors] == [bad] and not again.created
    for p in (good1, good2):
        NetNS(p, netns_dir).remove()


# -- CREATED ----------------------------------------------------------------


def test_created_live_is_left_alone(netns_dir: Path, store: FakeStore) -> None:
    ns = NetNS.new(netns_dir)
    store.own("sb1", ns.path, C)
    report = assert_idle(store, netns_dir)
    assert report == ReconcileReport()
    ns.remove()


def test_created_unmounted_out_of_band_is_closed_not_recreated(
    netns_dir: Path, store: FakeStore, kx: Helpers
) -> None:
    ns = NetNS.new(netns_dir)
    store.own("sb1", ns.path, C)
    subprocess.run(["umount", ns.path], check=True)
    report = run(store, netns_dir)
    assert report.closed == (ns.path,) and report.created == ()
    assert store.calls == [
        ("closed", "sb1", ns.path, "unmounted out of band: placeholder left"),
    ]
    assert not os.path.lexists(ns.path)  # our leftover placeholder removed
    assert kx.mounts_at(ns.path) == []  # and no empty namespace in its place
    assert store.state(ns.path) is NetNSState.CLOSED
    assert_idle(store, netns_dir)


def test_created_deleted_out_of_band_is_closed(netns_dir: Path, store: FakeStore) -> None:
    ns = NetNS.new(netns_dir)
    store.own("sb1", ns.path, C)
    subprocess.run(["umount", ns.path], check=True)
    os.unlink(ns.path)  # = ip netns delete
    report = run(store, netns_dir)
    assert report.closed == (ns.path,)
    assert store.calls == [("closed", "sb1", ns.path, "path missing")]
    assert not os.path.lexists(ns.path)
    assert_idle(store, netns_dir)


def test_created_replaced_by_a_file_is_closed_and_the_file_kept(
    netns_dir: Path, store: FakeStore
) -> None:
    ns = NetNS.new(netns_dir)
    store.own("sb1", ns.path, C)
    subprocess.run(["umount", ns.path], check=True)
    Path(ns.path).write_text("someone else's now")
    report = run(store, netns_dir)
    assert report.closed == (ns.path,)
    assert "replaced out of band" in store.calls[0][3]
    assert Path(ns.path).read_text() == "someone else's now"
    # No longer ours: from now on it is foreign.
    assert assert_idle(store, netns_dir).foreign == (ns.path,)


def test_created_with_a_foreign_mount_on_it_is_an_error(
    netns_dir: Path, store: FakeStore, tmp_path: Path, kx: Helpers
) -> None:
    ns = NetNS.new(netns_dir)
    store.own("sb1", ns.path, C)
    subprocess.run(["umount", ns.path], check=True)
    src = tmp_path / "src"
    src.write_text("x")
    subprocess.run(["mount", "--bind", src, ns.path], check=True)
    try:
        report = run(store, netns_dir)
        assert [p for p, _ in report.errors] == [ns.path] and not report.closed
        assert store.calls == [] and len(kx.mounts_at(ns.path)) == 1
    finally:
        subprocess.run(["umount", ns.path], check=True)
    ns.remove()


def test_reboot_all_gone_all_closed_none_created(
    netns_dir: Path, store: FakeStore, kx: Helpers
) -> None:
    """cri #948: after a reboot every namespace is gone; teardown state must be
    recorded, not papered over with fresh empty namespaces."""
    paths = [store.own(f"sb{i}", NetNS.new(netns_dir).path, C) for i in range(20)]
    subprocess.run(["umount", *paths], check=True)
    # half of them also lost their placeholder (tmpfs /run after a reboot)
    for p in paths[::2]:
        os.unlink(p)
    report = run(store, netns_dir)
    assert sorted(report.closed) == sorted(paths)
    assert report.created == () and report.errors == ()
    assert {c[0] for c in store.calls} == {"closed"}
    assert kx.mounts_under(netns_dir) == []
    assert os.listdir(netns_dir) == []
    assert_idle(store, netns_dir)


# -- REMOVING ---------------------------------------------------------------


def test_removing_removes_and_records(netns_dir: Path, store: FakeStore, kx: Helpers) -> None:
    live = store.own("live", NetNS.new(netns_dir).path, R)
    gone = store.own("gone", cni(netns_dir), R)
    placeholder = store.own("placeholder", cni(netns_dir), R)
    Path(placeholder).touch()
    report = run(store, netns_dir)
    assert report.removed == (live, gone, placeholder)
    assert [(c[0], c[1]) for c in store.calls] == [
        ("removed", "live"),
        ("removed", "gone"),
        ("removed", "placeholder"),
    ]
    assert store.calls[1][3] == "already gone"
    assert os.listdir(netns_dir) == [] and kx.mounts_under(netns_dir) == []
    assert_idle(store, netns_dir)


def test_removing_refuses_a_path_holding_content(netns_dir: Path, store: FakeStore) -> None:
    bad = store.own("bad", cni(netns_dir), R)
    Path(bad).write_text("not a namespace")
    ok = store.own("ok", NetNS.new(netns_dir).path, R)
    report = run(store, netns_dir)
    assert report.removed == (ok,)
    assert [p for p, _ in report.errors] == [bad]
    assert Path(bad).read_text() == "not a namespace"


# -- foreign ----------------------------------------------------------------


def test_foreign_entries_are_listed_and_never_touched(
    netns_dir: Path, store: FakeStore, kx: Helpers, tmp_path: Path
) -> None:
    theirs = NetNS.new(netns_dir)  # someone else's cni-<uuid> namespace, same dir
    f_content = cni(netns_dir)
    f_content.write_text("containerd was here")
    f_empty = cni(netns_dir)
    f_empty.touch()  # an empty cni- file: maybe someone's creation in flight
    f_dir = cni(netns_dir)
    f_dir.mkdir()
    f_link = netns_dir / "cni-link"
    f_link.symlink_to(tmp_path)
    f_other = netns_dir / "my-ip-netns-name"
    f_other.touch()
    mine = store.own("mine", NetNS.new(netns_dir).path, C)
    removing = store.own("bye", NetNS.new(netns_dir).path, R)

    report = run(store, netns_dir)

    foreign = {theirs.path, *map(os.fspath, (f_content, f_empty, f_dir, f_link, f_other))}
    assert set(report.foreign) == foreign
    assert report.removed == (removing,)
    assert [c[0] for c in store.calls] == ["removed"]
    assert not theirs.closed() and len(kx.mounts_at(theirs.path)) == 1
    assert f_content.read_text() == "containerd was here"
    assert f_empty.exists() and f_dir.is_dir() and f_link.is_symlink() and f_other.exists()
    assert not NetNS(mine, netns_dir).closed()

    again = assert_idle(store, netns_dir)
    assert set(again.foreign) == foreign
    theirs.remove()
    NetNS(mine, netns_dir).remove()


def test_real_ip_netns_add_namespace_in_the_system_dir_is_foreign(store: FakeStore) -> None:
    """The real shared directory: a namespace made by `ip netns add` with a
    containerd-style cni- name must be left alone by a reconcile that owns
    nothing."""
    name = f"cni-{uuid.uuid4()}"
    path = os.path.join(DEFAULT_NETNS_DIR, name)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        report = reconcile([], DEFAULT_NETNS_DIR, store.record)
        assert path in report.foreign
        assert not report.changed and store.calls == []
        assert probe(path).kind == "netns"
        listed = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
        assert name in listed.stdout
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    assert not os.path.lexists(path)


def test_terminal_entries_are_not_owned(netns_dir: Path, store: FakeStore) -> None:
    """A path whose ownership ended (CLOSED/REMOVED) is foreign if it reappears."""
    p = store.own("sb1", cni(netns_dir), NetNSState.CLOSED)
    q = store.own("sb2", cni(netns_dir), NetNSState.REMOVED)
    Path(p).touch()
    Path(q).write_text("x")
    report = reconcile(list(store.entries.values()), netns_dir, store.record)
    assert set(report.foreign) == {p, q} and not report.changed
    assert Path(p).exists() and Path(q).exists()


def test_owned_path_outside_netns_dir_is_an_error(
    netns_dirs: NetnsDirs, store: FakeStore, kx: Helpers
) -> None:
    d, elsewhere = netns_dirs("netns"), netns_dirs("elsewhere")
    out = NetNS.new(elsewhere)
    store.own("outside", out.path, R)
    good = store.own("good", cni(d), A)
    report = run(store, d)
    assert report.created == (good,)
    [(path, message)] = report.errors
    assert path == out.path and "outside the netns directory" in message
    assert not out.closed()
    out.remove()
    NetNS(good, d).remove()


# -- errors, record failures, idempotence ------------------------------------


class PoisonedLog(Exception):
    """Stands in for eventlog's LogPoisonedError: every append after an fsync error fails."""


def test_record_failure_is_caught_and_the_others_proceed(
    netns_dir: Path, store: FakeStore, kx: Helpers
) -> None:
    paths = [store.own(f"sb{i}", cni(netns_dir), A) for i in range(3)]
    store.fail_on = lambda kind, path: PoisonedLog("log poisoned") if path == paths[0] else None
    report = run(store, netns_dir)
    assert report.created == tuple(paths[1:])
    [(path, message)] = report.errors
    assert path == paths[0] and "PoisonedLog" in message and "log poisoned" in message
    # The effect happened but was not recorded: the next run adopts it.
    assert len(kx.mounts_at(paths[0])) == 1 and store.state(paths[0]) is A
    store.fail_on = None
    report = run(store, netns_dir)
    assert report.created == (paths[0],) and report.adopted == (paths[0],)
    assert_idle(store, netns_dir)
    assert all(len(kx.mounts_at(p)) == 1 for p in paths)
    for p in paths:
        NetNS(p, netns_dir).remove()


def test_every_record_failing_still_visits_every_entry(netns_dir: Path, store: FakeStore) -> None:
    a = store.own("a", cni(netns_dir), A)
    b = store.own("b", NetNS.new(netns_dir).path, R)
    store.fail_on = lambda kind, path: PoisonedLog("poisoned")
    report = run(store, netns_dir)
    assert [p for p, _ in report.errors] == [a, b]
    assert probe(a).kind == "netns" and probe(b).kind == "missing"  # both effects done
    store.fail_on = None
    report = run(store, netns_dir)
    assert report.adopted == (a,) and report.removed == (b,)
    NetNS(a, netns_dir).remove()


def test_mixed_run_then_second_run_does_nothing(
    netns_dir: Path, store: FakeStore, kx: Helpers
) -> None:
    assigned = store.own("assigned", cni(netns_dir), A)
    adopt = store.own("adopt", cni(netns_dir), A)
    create_at(adopt, netns_dir)
    live = store.own("live", NetNS.new(netns_dir).path, C)
    lost = store.own("lost", NetNS.new(netns_dir).path, C)
    subprocess.run(["umount", lost], check=True)
    removing = store.own("removing", NetNS.new(netns_dir).path, R)
    foreign = NetNS.new(netns_dir)

    first = run(store, netns_dir)
    assert first.created == (assigned, adopt) and first.adopted == (adopt,)
    assert first.closed == (lost,) and first.removed == (removing,)
    assert first.foreign == (foreign.path,) and first.errors == ()
    assert first.changed

    second = assert_idle(store, netns_dir)
    assert second == ReconcileReport(foreign=(foreign.path,))
    for p in (assigned, adopt, live):
        assert len(kx.mounts_at(p)) == 1
        NetNS(p, netns_dir).remove()
    foreign.remove()


def test_reconcile_mid_crash_point_in_process(netns_dir: Path, store: FakeStore) -> None:
    """reconcile.mid fires after the first action of a run with two or more."""
    paths = [store.own(f"sb{i}", cni(netns_dir), A) for i in range(3)]
    crashpoints.arm("reconcile.mid", "raise")
    try:
        with pytest.raises(crashpoints.CrashPointHit):
            run(store, netns_dir)
    finally:
        crashpoints.disarm()
    assert [c[2] for c in store.calls] == [paths[0]]
    assert [probe(p).kind for p in paths] == ["netns", "missing", "missing"]
    assert run(store, netns_dir).created == tuple(paths[1:])
    # a run with a single action never hits it
    one = store.own("one", cni(netns_dir), A)
    crashpoints.arm("reconcile.mid", "raise")
    try:
        assert run(store, netns_dir).created == (one,)
    finally:
        crashpoints.disarm()
    for p in [*paths, one]:
        NetNS(p, netns_dir).remove()


def test_pathlike_netns_dir_and_string_paths_match(netns_dir: Path, store: FakeStore) -> None:
    ns = NetNS.new(netns_dir)
    store.own("sb1", ns.path, C)
    assert reconcile(store.owned(), os.fspath(netns_dir), store.record) == ReconcileReport()
    assert reconcile(store.owned(), netns_dir, store.record) == ReconcileReport()
    ns.remove()


def test_duplicate_owned_path_is_an_error(netns_dir: Path) -> None:
    from sandbox.ownership import OwnedNetNS

    p = os.fspath(cni(netns_dir))
    calls: list[tuple[str, str, str, str]] = []
    owned = [OwnedNetNS("a", p, A), OwnedNetNS("b", p, A)]
    report = reconcile(owned, netns_dir, lambda *c: calls.append(c))
    assert report.created == (p,) and [e[0] for e in report.errors] == [p]
    assert len(calls) == 1
    NetNS(p, netns_dir).remove()


# -- the report ---------------------------------------------------------------


def test_report_changed_merge_and_to_dict() -> None:
    assert not ReconcileReport().changed
    assert not ReconcileReport(foreign=("/x",)).changed
    assert ReconcileReport(errors=(("/x", "bad"),)).changed
    assert ReconcileReport(closed=("/x",)).changed
    a = ReconcileReport(created=("/a",), foreign=("/f",))
    b = ReconcileReport(created=("/b",), adopted=("/b",), foreign=("/f",), errors=(("/e", "m"),))
    m = a.merge(b)
    assert m.created == ("/a", "/b") and m.adopted == ("/b",) and m.foreign == ("/f",)
    assert m.to_dict() == {
        "created": ["/a", "/b"],
        "adopted": ["/b"],
        "removed": [],
        "closed": [],
        "foreign": ["/f"],
        "errors": [{"path": "/e", "message": "m"}],
        "changed": True,
    }


def test_scoped_run_without_scan(netns_dir: Path, store: FakeStore, kx: Helpers) -> None:
    """scan_foreign=False looks only at the owned paths (a store's run for one sandbox)."""
    other = NetNS.new(netns_dir)
    p = store.own("sb1", cni(netns_dir), A)
    report = reconcile(store.owned(), netns_dir, store.record, scan_foreign=False)
    assert report.created == (p,) and report.foreign == ()
    again = reconcile(store.owned(), netns_dir, store.record, scan_foreign=False)
    assert again == ReconcileReport()
    assert len(kx.mounts_at(p)) == 1 and not other.closed()
    NetNS(p, netns_dir).remove()
    other.remove()
