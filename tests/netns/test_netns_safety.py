"""What NetNS refuses to touch. Each refusal must leave the target exactly as it was.

containerd's LoadNetNS removed whatever path it was handed; here load takes
any path, as the seed's LoadNetNS does, but only looks (ClosedNetNSError for
anything that is not a live network namespace), and remove only unmounts
nsfs mounts and unlinks empty placeholders that sit directly inside the
handle's netns_dir - also for a handle loaded from somewhere else.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sandbox.errors import ClosedNetNSError, UnsafePathError
from sandbox.netns import (
    DEFAULT_NETNS_DIR,
    NetNS,
    check_in_dir,
    is_live_netns,
    probe,
    remove_at,
    scan,
)

if TYPE_CHECKING:
    from conftest import Helpers, NetnsDirs


def fingerprint(path: Path) -> tuple[object, ...]:
    """Everything about a path that a refusal must not change."""
    st = os.lstat(path)
    content: object = None
    if path.is_symlink():
        content = os.readlink(path)
    elif path.is_dir():
        content = sorted(os.listdir(path))
    elif path.is_file() and st.st_size > 0:  # (an nsfs file cannot be read)
        content = hashlib.sha256(path.read_bytes()).hexdigest()
    return (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, content)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    return d


def refuse_remove(path: str | os.PathLike[str], netns_dir: Path, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        NetNS(path, netns_dir).remove()
    with pytest.raises(exc):
        remove_at(path, netns_dir)


def test_remove_and_load_refuse_a_file_outside_netns_dir(netns_dir: Path, outside: Path) -> None:
    victim = outside / "empty"  # an EMPTY file: removable if it were inside
    victim.touch()
    before = fingerprint(victim)
    refuse_remove(victim, netns_dir, UnsafePathError)
    with pytest.raises(ClosedNetNSError, match="empty placeholder"):
        NetNS.load(victim, netns_dir)
    assert fingerprint(victim) == before


@pytest.mark.parametrize("target", ["/etc", "/etc/hostname", "/", "/proc/self/ns/net"])
def test_system_paths_are_refused(netns_dir: Path, target: str) -> None:
    before = os.lstat(target)
    refuse_remove(target, netns_dir, UnsafePathError)
    with pytest.raises(ClosedNetNSError):  # /proc/self/ns/net is a symlink: not followed
        NetNS.load(target, netns_dir)
    after = os.lstat(target)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_dotdot_and_odd_names_are_refused(netns_dir: Path, outside: Path) -> None:
    victim = outside / "victim"
    victim.touch()
    before = fingerprint(victim)
    for p in (
        f"{netns_dir}/../outside/victim",
        f"{netns_dir}/.",
        f"{netns_dir}/..",
        f"{netns_dir}/",
        os.fspath(netns_dir),
        "",
    ):
        refuse_remove(p, netns_dir, UnsafePathError)
        with pytest.raises(ClosedNetNSError):
            NetNS.load(p, netns_dir)
    assert fingerprint(victim) == before
    assert netns_dir.is_dir()


def test_dotdot_through_a_symlinked_dir_is_resolved_like_the_kernel(
    netns_dir: Path, outside: Path
) -> None:
    """<netns_dir>/link/../victim is, for the kernel, <outside's parent>/victim -
    not <netns_dir>/victim as a lexical normpath would say."""
    (outside / "sub").mkdir()
    (netns_dir / "link").symlink_to(outside / "sub")
    victim = outside / "victim"
    victim.touch()
    decoy = netns_dir / "victim"
    decoy.touch()
    before = fingerprint(victim), fingerprint(decoy)
    refuse_remove(f"{netns_dir}/link/../victim", netns_dir, UnsafePathError)
    assert (fingerprint(victim), fingerprint(decoy)) == before


def test_symlink_inside_netns_dir_pointing_out_is_refused(netns_dir: Path, outside: Path) -> None:
    target = outside / "empty"
    target.touch()
    link = netns_dir / "cni-link"
    link.symlink_to(target)
    before = fingerprint(link), fingerprint(target)
    refuse_remove(link, netns_dir, UnsafePathError)
    with pytest.raises(ClosedNetNSError, match="symlink"):
        NetNS.load(link, netns_dir)
    assert (fingerprint(link), fingerprint(target)) == before


def test_symlink_to_a_live_namespace_is_not_followed(netns_dirs: NetnsDirs, kx: Helpers) -> None:
    d = netns_dirs("netns")
    elsewhere = NetNS.new(netns_dirs("other"))
    try:
        for target in (elsewhere.path, "/proc/self/ns/net", "/proc/1/ns/net"):
            link = d / "cni-ns-link"
            link.symlink_to(target)
            assert not is_live_netns(link)
            assert probe(link).kind == "symlink"
            assert NetNS(link, d).closed()
            refuse_remove(link, d, UnsafePathError)
            with pytest.raises(ClosedNetNSError, match="symlink"):
                NetNS.load(link, d)
            assert os.readlink(link) == target
            link.unlink()
        assert not elsewhere.closed()
        assert len(kx.mounts_at(elsewhere.path)) == 1
    finally:
        elsewhere.remove()


def test_live_namespace_outside_the_handles_dir_is_refused(netns_dirs: NetnsDirs) -> None:
    mine, theirs = netns_dirs("mine"), netns_dirs("theirs")
    other = NetNS.new(theirs)
    try:
        refuse_remove(other.path, mine, UnsafePathError)
        # Loading it is fine (any path, as LoadNetNS); removing through that
        # handle is not: the namespace is not inside the handle's netns_dir.
        loaded = NetNS.load(other.path, mine)
        assert loaded.get_path() == other.path and not loaded.closed()
        with pytest.raises(UnsafePathError, match="outside the netns directory"):
            loaded.remove()
        assert not other.closed()
    finally:
        other.remove()


@pytest.fixture
def foreign_netns(outside: Path) -> Iterator[Path]:
    """A live network namespace (this process's own) bind-mounted on an empty file
    outside every netns_dir - what another tool (CNI, a test rig) may hand over."""
    point = outside / "their-netns"
    point.touch()
    subprocess.run(["mount", "--bind", "/proc/self/ns/net", point], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", point], check=False)


def test_load_takes_a_live_namespace_at_any_path(foreign_netns: Path, kx: Helpers) -> None:
    """As the seed's LoadNetNS(path): no directory rule, only "is it live?"."""
    loaded = NetNS.load(foreign_netns)
    assert loaded.get_path() == os.fspath(foreign_netns)
    assert loaded.netns_dir == DEFAULT_NETNS_DIR
    assert not loaded.closed()
    assert NetNS.load(str(foreign_netns)) == loaded
    # Its handle may not remove it: the path is not inside the handle's netns_dir.
    with pytest.raises(UnsafePathError, match="outside the netns directory"):
        loaded.remove()
    assert is_live_netns(foreign_netns) and len(kx.mounts_at(foreign_netns)) == 1


def test_a_loaded_handle_removes_only_inside_its_netns_dir(
    foreign_netns: Path, outside: Path, netns_dir: Path, kx: Helpers
) -> None:
    with pytest.raises(UnsafePathError):
        NetNS.load(foreign_netns, netns_dir).remove()
    assert is_live_netns(foreign_netns)
    # Given the directory it really lives in, the same handle is the owner's.
    NetNS.load(foreign_netns, outside).remove()
    assert kx.mounts_at(foreign_netns) == [] and not foreign_netns.exists()


def test_load_of_paths_that_cannot_be_namespaces_is_closed(netns_dir: Path, outside: Path) -> None:
    plain = outside / "plain"
    plain.write_text("x")
    before = fingerprint(plain)
    for p in (
        "",
        "relative/missing",
        f"{outside}/absent",
        f"{plain}/below-a-file",
        f"{outside}/{'n' * 300}",
        f"{outside}/nul\0byte",
        plain,
    ):
        with pytest.raises(ClosedNetNSError, match="not a live network namespace"):
            NetNS.load(p, netns_dir)
    assert fingerprint(plain) == before


def test_non_empty_file_is_refused(netns_dir: Path) -> None:
    f = netns_dir / "cni-00000000-0000-4000-8000-000000000000"
    f.write_bytes(b"not a namespace")
    before = fingerprint(f)
    refuse_remove(f, netns_dir, UnsafePathError)
    with pytest.raises(ClosedNetNSError, match="content"):
        NetNS.load(f, netns_dir)
    assert fingerprint(f) == before


def test_directory_is_refused(netns_dir: Path) -> None:
    d = netns_dir / "cni-dir"
    d.mkdir()
    (d / "inside").write_text("x")
    before = fingerprint(d)
    refuse_remove(d, netns_dir, UnsafePathError)
    with pytest.raises(ClosedNetNSError, match="directory"):
        NetNS.load(d, netns_dir)
    assert fingerprint(d) == before
    assert (d / "inside").read_text() == "x"


def test_fifo_is_refused_without_blocking(netns_dir: Path) -> None:
    fifo = netns_dir / "cni-fifo"
    os.mkfifo(fifo)
    assert probe(fifo).kind == "other"
    refuse_remove(fifo, netns_dir, UnsafePathError)
    with pytest.raises(ClosedNetNSError):
        NetNS.load(fifo, netns_dir)
    assert fifo.is_fifo()


@pytest.fixture
def bind_mounted(netns_dir: Path, outside: Path) -> Iterator[tuple[Path, Path]]:
    """An empty file inside netns_dir with another (empty) file bind-mounted on it."""
    source = outside / "source"
    source.touch()
    point = netns_dir / "cni-bound"
    point.touch()
    subprocess.run(["mount", "--bind", source, point], check=True)
    try:
        yield point, source
    finally:
        subprocess.run(["umount", point], check=False)


def test_a_mount_of_another_filesystem_is_refused(
    bind_mounted: tuple[Path, Path], netns_dir: Path, kx: Helpers
) -> None:
    """Empty, regular, inside netns_dir - but a mount point that is not nsfs:
    not ours to unmount (statx's mount-root bit sees same-filesystem binds)."""
    point, source = bind_mounted
    entry = probe(point)
    assert entry.kind == "other" and entry.mounted and not entry.nsfs
    refuse_remove(point, netns_dir, UnsafePathError)
    with pytest.raises(ClosedNetNSError):
        NetNS.load(point, netns_dir)
    assert len(kx.mounts_at(point)) == 1
    assert source.exists()


def test_nsfs_mount_of_another_namespace_type(netns_dir: Path, kx: Helpers) -> None:
    """An nsfs mount that is not a network namespace is never 'live' (load
    refuses it); remove may take it off - it is an nsfs mount at one of our
    paths - and unlink the empty placeholder under it."""
    point = netns_dir / "cni-uts"
    point.touch()
    subprocess.run(["mount", "--bind", "/proc/self/ns/uts", point], check=True)
    entry = probe(point)
    assert entry.kind == "other" and entry.nsfs
    assert not is_live_netns(point)
    with pytest.raises(ClosedNetNSError, match="not a network namespace"):
        NetNS.load(point, netns_dir)
    NetNS(point, netns_dir).remove()
    assert kx.mounts_at(point) == [] and not point.exists()


def test_namespace_over_a_file_with_content_is_unmounted_but_the_file_kept(
    netns_dir: Path, kx: Helpers
) -> None:
    """If the file under our nsfs mount turns out to have content (not the
    placeholder we made), the mount goes but the file stays."""
    point = netns_dir / "cni-over-content"
    point.write_text("keep me")
    subprocess.run(["mount", "--bind", "/proc/self/ns/net", point], check=True)
    assert probe(point).kind == "netns"
    with pytest.raises(UnsafePathError, match="content"):
        NetNS(point, netns_dir).remove()
    assert kx.mounts_at(point) == []
    assert point.read_text() == "keep me"


def test_check_in_dir_accepts_relative_and_pathlike(netns_dir: Path) -> None:
    cwd = os.getcwd()
    try:
        os.chdir(netns_dir)
        expected = os.path.join(os.path.realpath(netns_dir), "cni-a")
        assert check_in_dir("cni-a", netns_dir) == expected
        assert check_in_dir(Path("cni-a"), ".") == expected
    finally:
        os.chdir(cwd)


def test_netns_dir_through_a_symlink(netns_dirs: NetnsDirs, tmp_path: Path) -> None:
    """/var/run is a symlink to /run on most systems: the same directory under
    two spellings is one netns_dir."""
    real = netns_dirs("real")
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    ns = NetNS.new(alias)
    try:
        assert NetNS.load(real / os.path.basename(ns.path), alias).path
        assert [e.kind for e in scan(real)] == ["netns"]
    finally:
        NetNS(real / os.path.basename(ns.path), alias).remove()
    assert os.listdir(real) == []


def test_scan_never_touches_anything(netns_dir: Path, outside: Path) -> None:
    (netns_dir / "cni-file").write_text("x")
    (netns_dir / "cni-empty").touch()
    (netns_dir / "cni-dir").mkdir()
    (netns_dir / "cni-link").symlink_to(outside)
    os.mkfifo(netns_dir / "cni-fifo")
    ns = NetNS.new(netns_dir)
    try:
        before = {p.name: fingerprint(p) for p in netns_dir.iterdir()}
        kinds = {os.path.basename(e.path): e.kind for e in scan(netns_dir)}
        assert kinds == {
            "cni-file": "file",
            "cni-empty": "empty-file",
            "cni-dir": "dir",
            "cni-link": "symlink",
            "cni-fifo": "other",
            os.path.basename(ns.path): "netns",
        }
        assert {p.name: fingerprint(p) for p in netns_dir.iterdir()} == before
    finally:
        ns.remove()
    assert scan(netns_dir / "missing") == []
