"""NetNS against the real kernel: create, use, remove, and what happens out of band."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pyroute2 import IPRoute
from support import run_threads

from sandbox import _linux
from sandbox.errors import ClosedNetNSError, StoreError, UnsafePathError
from sandbox.netns import (
    DEFAULT_NETNS_DIR,
    NetNS,
    create_at,
    is_live_netns,
    probe,
    remove_at,
    scan,
)

if TYPE_CHECKING:
    from conftest import Helpers, NetnsDirs

NS_GET_NSTYPE = 0xB703
CLONE_NEWNET = 0x40000000
# Root without any capability: can write its own files, cannot unshare or mount.
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


def test_default_dir() -> None:
    assert DEFAULT_NETNS_DIR == "/var/run/netns"


def test_constructing_a_handle_does_no_io() -> None:
    ns = NetNS(Path("/nonexistent/dir/cni-x"), Path("/nonexistent/dir"))
    assert ns.get_path() == "/nonexistent/dir/cni-x"
    assert ns.netns_dir == "/nonexistent/dir"
    assert ns == NetNS("/nonexistent/dir/cni-x", "/nonexistent/dir")
    assert ns.closed()  # asked of the kernel: nothing there


def test_new_makes_a_live_nsfs_mount(netns_dirs: NetnsDirs, kx: Helpers) -> None:
    d = netns_dirs("fresh", create=False)
    thread_ns = os.readlink("/proc/thread-self/ns/net")
    process_ns = os.readlink("/proc/self/ns/net")

    ns = NetNS.new(d)

    path = Path(ns.get_path())
    assert path.parent == d
    assert kx.cni_name.match(path.name), path.name
    assert stat.S_IMODE(d.stat().st_mode) == 0o755  # created, 0755
    [m] = kx.mounts_at(path)
    assert m.fstype == "nsfs" and m.root.startswith("net:[")
    assert kx.nsfs_magic(path) == 0x6E736673
    fd = os.open(path, os.O_RDONLY)
    try:
        assert fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    finally:
        os.close(fd)
    # A new namespace, not ours; and the caller never changed namespace.
    assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
    assert os.readlink("/proc/thread-self/ns/net") == thread_ns
    assert os.readlink("/proc/self/ns/net") == process_ns
    assert not ns.closed()
    assert is_live_netns(path)
    assert [e.kind for e in scan(d)] == ["netns"]

    ns.remove()
    assert not path.exists()
    assert kx.mounts_at(path) == []
    assert ns.closed()


def test_two_namespaces_are_distinct(netns_dir: Path) -> None:
    a, b = NetNS.new(netns_dir), NetNS.new(netns_dir)
    try:
        assert a.path != b.path
        assert os.stat(a.path).st_ino != os.stat(b.path).st_ino
    finally:
        a.remove()
        b.remove()


def test_namespace_is_usable_with_pyroute2(netns_dir: Path) -> None:
    ns = NetNS.new(netns_dir)
    try:
        # flags=0: pyroute2 must not create a namespace when the path is missing.
        with IPRoute(netns=ns.path, flags=0) as ipr:
            names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
            assert names == ["lo"]  # a brand-new namespace: loopback only
            (idx,) = ipr.link_lookup(ifname="lo")
            assert not ipr.get_links(idx)[0]["flags"] & 1  # IFF_UP: down at birth
            ipr.link("set", index=idx, state="up")
            assert ipr.get_links(idx)[0]["flags"] & 1
        # Seen again through a second handle: the state lives in the namespace.
        with IPRoute(netns=ns.path, flags=0) as ipr:
            (idx,) = ipr.link_lookup(ifname="lo")
            assert ipr.get_links(idx)[0]["flags"] & 1
    finally:
        ns.remove()


def test_remove_is_idempotent_and_load_after_remove_is_closed(netns_dir: Path) -> None:
    ns = NetNS.new(netns_dir)
    assert NetNS.load(ns.path, netns_dir) == ns
    ns.remove()
    ns.remove()  # no-op
    assert ns.closed()
    with pytest.raises(ClosedNetNSError, match="not a live network namespace"):
        NetNS.load(ns.path, netns_dir)
    assert os.listdir(netns_dir) == []


def test_load_accepts_pathlike_and_only_looks(netns_dir: Path) -> None:
    ns = NetNS.new(netns_dir)
    try:
        loaded = NetNS.load(Path(ns.path), netns_dir)
        assert loaded.get_path() == ns.path
        assert not loaded.closed()
    finally:
        ns.remove()


def test_closed_after_external_umount(netns_dir: Path, kx: Helpers) -> None:
    ns = NetNS.new(netns_dir)
    assert not ns.closed()
    subprocess.run(["umount", ns.path], check=True)
    # Not cached: the very next question sees it.
    assert ns.closed()
    # The placeholder stays behind on the underlying filesystem (not nsfs).
    assert os.path.isfile(ns.path) and os.path.getsize(ns.path) == 0
    assert kx.nsfs_magic(ns.path) != 0x6E736673
    assert probe(ns.path).kind == "empty-file"
    with pytest.raises(ClosedNetNSError):
        NetNS.load(ns.path, netns_dir)
    assert os.path.exists(ns.path)  # load never deletes
    ns.remove()  # unlinks the empty placeholder
    assert not os.path.lexists(ns.path)


def test_unlink_of_a_mounted_namespace_is_ebusy(netns_dir: Path) -> None:
    """The kernel refuses to unlink a mount point in the caller's mount
    namespace: containerd's 'unlinkat: device or resource busy' (#3667) came
    from unlinking before unmounting. remove() unmounts first."""
    ns = NetNS.new(netns_dir)
    with pytest.raises(OSError) as exc:
        os.unlink(ns.path)
    assert exc.value.errno == errno.EBUSY
    assert not ns.closed()
    ns.remove()
    assert not os.path.lexists(ns.path)


def test_closed_after_ip_netns_delete_style_removal(netns_dir: Path) -> None:
    """`ip netns delete` = umount + unlink, done by someone else."""
    ns = NetNS.new(netns_dir)
    subprocess.run(["umount", ns.path], check=True)
    subprocess.run(["rm", ns.path], check=True)
    assert ns.closed()
    assert probe(ns.path).kind == "missing"
    ns.remove()  # no-op


def test_unlink_from_another_mount_namespace_detaches_ours(netns_dir: Path, kx: Helpers) -> None:
    """Since Linux 3.18 an unlink in another mount namespace (where the path is
    not a mount point) succeeds and detaches the mount in ours: the namespace
    can vanish without any umount in this namespace. closed() sees it."""
    ns = NetNS.new(netns_dir)
    subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", 'umount "$1" && rm "$1"', "-",
         ns.path],
        check=True,
    )  # fmt: skip
    assert kx.mounts_at(ns.path) == []
    assert ns.closed()
    ns.remove()


def test_remove_detaches_stacked_mounts(netns_dir: Path, kx: Helpers) -> None:
    ns = NetNS.new(netns_dir)
    subprocess.run(["mount", "--bind", ns.path, ns.path], check=True)
    subprocess.run(["mount", "--bind", ns.path, ns.path], check=True)
    assert len(kx.mounts_at(ns.path)) == 3
    ns.remove()
    assert kx.mounts_at(ns.path) == []
    assert not os.path.lexists(ns.path)


def test_remove_while_someone_holds_the_namespace(netns_dir: Path) -> None:
    """A detached umount never fails on a busy namespace: the path goes, the
    namespace lives on for whoever holds it."""
    ns = NetNS.new(netns_dir)
    fd = os.open(ns.path, os.O_RDONLY)
    try:
        ns.remove()
        assert not os.path.lexists(ns.path)
        assert fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    finally:
        os.close(fd)


def test_new_from_many_threads(netns_dir: Path) -> None:
    made: list[NetNS] = []
    lock = threading.Lock()

    def worker(_i: int) -> None:
        for _ in range(5):
            ns = NetNS.new(netns_dir)
            with lock:
                made.append(ns)

    run_threads(4, worker)
    try:
        assert len({ns.path for ns in made}) == 20
        assert all(not ns.closed() for ns in made)
        inodes = {os.stat(ns.path).st_ino for ns in made}
        assert len(inodes) == 20
    finally:
        for ns in made:
            ns.remove()


def test_create_at_reuses_an_empty_placeholder(netns_dir: Path, kx: Helpers) -> None:
    path = netns_dir / "cni-reuse"
    path.touch()
    ns = create_at(path, netns_dir)
    assert ns.path == os.fspath(path)
    assert len(kx.mounts_at(path)) == 1 and not ns.closed()
    # ...but never over a live namespace, a file with content, a dir or a symlink.
    with pytest.raises(UnsafePathError, match="live network namespace"):
        create_at(path, netns_dir)
    assert len(kx.mounts_at(path)) == 1
    full = netns_dir / "cni-full"
    full.write_text("data")
    with pytest.raises(UnsafePathError, match="content"):
        create_at(full, netns_dir)
    assert full.read_text() == "data" and kx.mounts_at(full) == []
    (netns_dir / "cni-dir").mkdir()
    with pytest.raises(UnsafePathError, match="directory"):
        create_at(netns_dir / "cni-dir", netns_dir)
    (netns_dir / "cni-link").symlink_to(path)
    with pytest.raises(UnsafePathError, match="symlink"):
        create_at(netns_dir / "cni-link", netns_dir)
    assert len(kx.mounts_at(path)) == 1
    ns.remove()


def test_create_at_refuses_outside_netns_dir(netns_dirs: NetnsDirs, tmp_path: Path) -> None:
    d = netns_dirs("netns")
    with pytest.raises(UnsafePathError, match="outside the netns directory"):
        create_at(tmp_path / "elsewhere", d)
    assert not (tmp_path / "elsewhere").exists()


def test_failed_mount_unlinks_the_placeholder(netns_dir: Path, kx: Helpers) -> None:
    """A real failure, not a mock: the child runs as root without capabilities,
    so it can create the placeholder but unshare(CLONE_NEWNET) gets EPERM."""
    code = (
        "import sys\n"
        "from sandbox.netns import create_at\n"
        "from sandbox.errors import StoreError\n"
        "try:\n"
        "    create_at(sys.argv[1], sys.argv[2])\n"
        "except StoreError as e:\n"
        "    print('StoreError', e)\n"
    )
    path = netns_dir / "cni-noperm"
    out = subprocess.run(
        [*NO_CAPS, sys.executable, "-c", code, os.fspath(path), os.fspath(netns_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.startswith("StoreError"), out.stderr
    assert "Operation not permitted" in out.stdout
    assert os.fspath(path) in out.stdout
    assert not os.path.lexists(path)  # the placeholder it made is gone again
    assert kx.mounts_under(netns_dir) == []


def test_remove_without_privilege_fails_loudly_and_keeps_the_namespace(netns_dir: Path) -> None:
    ns = NetNS.new(netns_dir)
    code = (
        "import sys\n"
        "from sandbox.netns import NetNS\n"
        "try:\n"
        "    NetNS(sys.argv[1], sys.argv[2]).remove()\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [*NO_CAPS, sys.executable, "-c", code, ns.path, os.fspath(netns_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.startswith("StoreError"), out.stderr
    assert ns.path in out.stdout
    assert not ns.closed()
    ns.remove()


def test_remove_at_reports_what_it_did(netns_dir: Path) -> None:
    ns = NetNS.new(netns_dir)
    assert remove_at(ns.path, netns_dir) == "unmounted and unlinked"
    assert remove_at(ns.path, netns_dir) == "already gone"
    (netns_dir / "cni-empty").touch()
    assert remove_at(netns_dir / "cni-empty", netns_dir) == "unlinked empty placeholder"


def test_store_error_is_the_base(netns_dir: Path) -> None:
    assert issubclass(UnsafePathError, StoreError)
    assert issubclass(ClosedNetNSError, StoreError)


def test_helpers_agree_with_the_kernel_constants() -> None:
    assert _linux.NSFS_MAGIC == 0x6E736673
    assert _linux.NS_GET_NSTYPE == NS_GET_NSTYPE
    assert _linux.CLONE_NEWNET == CLONE_NEWNET


def test_the_leak_check_sees_a_leak(netns_dirs: NetnsDirs, kx: Helpers) -> None:
    """The teardown check that fails every other test on a leak really sees one."""
    d = netns_dirs("leaky")
    ns = NetNS.new(d)
    leaked = netns_dirs.check_and_clean()  # what teardown runs
    assert [m.mount_point for m in leaked] == [os.path.realpath(ns.path)]
    assert kx.mounts_under(d) == []  # and it cleaned up
    ns.remove()  # the placeholder


def test_a_placeholder_being_mounted_by_someone_else_is_not_reused(
    netns_dir: Path, kx: Helpers
) -> None:
    """A creator holds an exclusive flock on its placeholder until it is mounted."""
    path = netns_dir / "cni-in-flight"
    path.touch()
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(UnsafePathError, match="another creator"):
            create_at(path, netns_dir)
        assert kx.mounts_at(path) == []
    finally:
        os.close(fd)
    create_at(path, netns_dir).remove()


def _race(path: Path, netns_dir: Path, n: int) -> tuple[int, list[Exception]]:
    """n threads call create_at(path) at the same moment; returns (wins, refusals)."""
    barrier = threading.Barrier(n)
    wins: list[int] = []
    refusals: list[Exception] = []

    def racer(i: int) -> None:
        barrier.wait()
        try:
            create_at(path, netns_dir)
            wins.append(i)
        except UnsafePathError as e:
            refusals.append(e)

    run_threads(n, racer)
    return len(wins), refusals


def test_racing_creators_on_one_path_never_stack(netns_dir: Path, kx: Helpers) -> None:
    for round_ in range(10):
        path = netns_dir / f"cni-race-{round_}"
        if round_ % 2:
            path.touch()  # half the rounds start from a leftover placeholder
        wins, refusals = _race(path, netns_dir, 6)
        assert wins == 1, refusals
        assert len(refusals) == 5
        assert len(kx.mounts_at(path)) == 1
        NetNS(path, netns_dir).remove()
