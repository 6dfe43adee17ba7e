"""Where ``sandboxctl demo`` runs: its state dir, and whether it can make namespaces.

Why apart from the scenario: these decide whether the demo may run at all
and touch the machine outside the store's API - wiping only a directory the
demo itself marked, and clearing namespaces left in its own dir - so they
are kept where they can be read on their own (``replay.demo`` is the story).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import NoReturn

from sandbox import mounts
from sandbox import netns as nsmod
from sandbox.mounts import mounts_under

__all__ = [
    "MARKER",
    "UNSHARED_ENV",
    "DemoError",
    "netns_possible",
    "nsfs_mounts_on",
    "nsfs_mounts_under",
    "prepare_state_dir",
    "reexec_unshared",
    "scan",
    "sweep_netns",
    "umount_out_of_band",
    "unshare_works",
]

#: A file that marks a directory as made by the demo: only such a directory
#: is ever wiped by ``--force``.
MARKER = ".sandboxctl-demo"
#: Set in the environment of the re-executed demo under ``unshare -Urm``.
UNSHARED_ENV = "SANDBOXCTL_DEMO_UNSHARED"


class DemoError(Exception):
    """The demo cannot run here (state dir in use, ...): one line, exit 7."""


def scan(netns_dir: str) -> list[nsmod.Entry]:
    """The entries of ``netns_dir``; none if it cannot be read."""
    try:
        return nsmod.scan(netns_dir)
    except OSError:
        return []


def sweep_netns(netns_dir: str) -> None:
    """Unmount and unlink every namespace in ``netns_dir`` (the demo's own dir only)."""
    for entry in scan(netns_dir):
        if entry.kind in ("netns", "empty-file"):
            with contextlib.suppress(Exception):
                nsmod.remove_at(entry.path, netns_dir)


def nsfs_mounts_under(directory: str) -> int:
    """How many namespace mounts the kernel has on or below ``directory``."""
    return len(mounts_under(directory, fstype="nsfs"))


def nsfs_mounts_on(path: str) -> int:
    """Namespace mounts on ``path`` itself (stacked ones counted: a leak)."""
    real = os.path.realpath(path) if path else ""
    return sum(1 for m in mounts.mounts() if m.fstype == "nsfs" and m.mount_point in (path, real))


def umount_out_of_band(path: str) -> str:
    """Unmount ``path`` behind the store's back; returns what was done, as a command."""
    if shutil.which("umount"):
        done = subprocess.run(["umount", "-l", path], capture_output=True, check=False)
        if done.returncode == 0:
            return f"umount -l {path}"
    mounts.umount_detach(path)
    return f"umount2({path}, MNT_DETACH)"


def netns_possible() -> str:
    """'' if this process can make network namespaces, else why not."""
    probe_dir = tempfile.mkdtemp(prefix="sandboxctl-demo-probe-")
    try:
        path = os.path.join(probe_dir, "probe")
        try:
            nsmod.create_at(path, probe_dir)
        except Exception as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.strerror:
                return f"unshare/mount: {cause.strerror}"
            return str(exc)
        nsmod.remove_at(path, probe_dir)
        return ""
    finally:
        sweep_netns(probe_dir)
        with contextlib.suppress(OSError):
            os.rmdir(probe_dir)


def unshare_works() -> bool:
    """Whether ``unshare -Urm`` (a user + mount namespace) can run here."""
    if not shutil.which("unshare"):
        return False
    try:
        done = subprocess.run(
            ["unshare", "-Urm", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def reexec_unshared(state_dir: str, *, force: bool, json_output: bool) -> NoReturn:
    """Run the demo again as root of a user + mount namespace (``unshare -Urm``).

    Why: not root (or root without CAP_SYS_ADMIN, as in many containers), the
    demo may still mount namespaces on paths this user owns in there.
    """
    argv = [
        "unshare", "-Urm", sys.executable, "-m", "replay", "demo",
        "--state-dir", state_dir,
    ]  # fmt: skip
    if force:
        argv.append("--force")
    if json_output:
        argv += ["-o", "json"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("unshare", argv, {**os.environ, UNSHARED_ENV: "1"})


def prepare_state_dir(state_dir: str, *, force: bool) -> None:
    """Make ``state_dir`` a fresh, marked demo dir; refuse anything else.

    A non-empty directory is used only with ``force`` AND the demo's marker
    in it: the demo never wipes a directory it did not make (it could be a
    real node's state dir).
    """
    d = os.path.abspath(state_dir)
    if os.path.lexists(d) and not os.path.isdir(d):
        raise DemoError(f"{state_dir} exists and is not a directory")
    if os.path.isdir(d) and os.listdir(d):
        if not force:
            raise DemoError(
                f"{state_dir} is not empty; the demo needs a fresh state dir: choose "
                "another --state-dir, or pass --force to wipe a previous demo's dir"
            )
        if not os.path.exists(os.path.join(d, MARKER)):
            raise DemoError(
                f"{state_dir} is not empty and was not made by sandboxctl demo "
                f"(no {MARKER} file); refusing to wipe it, even with --force"
            )
        netns_dir = os.path.join(d, "netns")
        sweep_netns(netns_dir)
        if nsfs_mounts_under(d):
            raise DemoError(
                f"{state_dir} still has namespaces mounted under it; unmount them first"
            )
        shutil.rmtree(d)
    os.makedirs(os.path.join(d, "netns"), exist_ok=True)
    with open(os.path.join(d, MARKER), "w", encoding="utf-8") as f:
        f.write("made by sandboxctl demo; 'sandboxctl demo --force' may wipe this directory\n")
