"""Clearing a crash run's directories: detach every mount under one, then empty it.

Why the harness needs this: a killed child leaves namespace bind mounts
behind, and a simulated power loss must drop them the way a reboot empties
``/run/netns``. The mount table and ``umount2`` come from ``sandbox.mounts``
(the one parser, with full ``\\NNN`` unescaping); only the clearing is the
harness's. Never called on a directory the harness did not make.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from sandbox import mounts

#: Stacked mounts need one detach each; more rounds than this is a loop.
_MAX_ROUNDS = 64


def clear(directory: str | os.PathLike[str], *, remove_dir: bool = False) -> list[str]:
    """Detach every mount under ``directory`` (deepest first), then empty it.

    Returns the mount points that were detached. With ``remove_dir`` the
    directory itself goes too.
    """
    detached: list[str] = []
    top = os.path.realpath(directory)
    for _ in range(_MAX_ROUNDS):
        found = sorted(mounts.mounts_under(directory), key=lambda m: -len(m.mount_point))
        found = [m for m in found if m.mount_point != top]
        if not found:
            break
        for m in found:
            try:
                mounts.umount_detach(m.mount_point)
                detached.append(m.mount_point)
            except OSError:
                pass
    base = os.fspath(directory)
    if remove_dir:
        shutil.rmtree(base, ignore_errors=True)
    elif os.path.isdir(base):
        for entry in os.scandir(base):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    return detached
