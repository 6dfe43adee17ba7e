"""Forging snapshot files the way an attacker would (attacks D, E, K).

An attacker with write access to the state dir but not the log's key can
read the records, fold them, and write any projection as a snapshot with a
correct checksum and the log's real chain digest. These helpers do exactly
that with the project's own encoder (no key), so a forgery has the shape the
code under test writes, whatever its version.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import msgpack

import eventlog
from sandbox import _linux
from sandbox import events as ev
from sandbox import snapshot as snap
from sandbox.projection import Projection


def fold(state_dir: Path, netns_dir: Path, upto: int, key: bytes | None) -> Projection:
    """The projection after record ``upto``, read from the log."""
    proj = Projection(str(netns_dir))
    for rec in eventlog.read(state_dir, to_seq=upto, key=key):
        proj.apply(rec.seq, rec.payload)
    return proj


def head_at(state_dir: Path, seq: int, key: bytes | None) -> bytes:
    """The log's real chain digest after record ``seq``."""
    return next(iter(eventlog.read(state_dir, from_seq=seq, to_seq=seq, key=key))).digest


def forge_snapshot(
    state_dir: Path,
    netns_dir: Path,
    last_seq: int,
    lies: list[dict[str, Any]],
    key_to_read: bytes | None,
) -> str:
    """A snapshot at ``last_seq`` (the log's real digest there, no MAC) whose
    projection is the real fold up to ``last_seq - len(lies)`` followed by ``lies``."""
    proj = fold(state_dir, netns_dir, last_seq - len(lies), key_to_read)
    for i, lie in enumerate(lies):
        proj.apply(last_seq - len(lies) + 1 + i, lie)
    data = snap.encode(proj, head_at(state_dir, last_seq, key_to_read))
    return snap.write_snapshot(state_dir, last_seq, data, keep=100)


def rewrite_body(path: str, mutate: Any) -> None:
    """Replace the body of snapshot ``path`` by ``mutate(body)``, with a valid checksum."""
    info = snap.read_snapshot_info(path)
    body = msgpack.unpackb(msgpack.packb(info.projection.to_snapshot()), raw=False)
    mutate(body)
    data = snap._assemble(info.seq, info.digest, None, msgpack.packb(body, use_bin_type=True))
    Path(path).write_bytes(data)


def ghost_events(ghost: Any, path: str) -> list[dict[str, Any]]:
    """The lies: a sandbox the log never added, owning ``path``, its removal requested."""
    env = ev.Envelope("attacker")()
    return [
        ev.sandbox_added(env, ghost.metadata, ghost.status),
        ev.netns_assigned(env, ghost.id, path),
        ev.netns_remove_requested(env, ghost.id, path),
    ]


def drop_namespace(path: str) -> None:
    """Unmount and unlink a namespace the test made (never through the code under test)."""
    with contextlib.suppress(FileNotFoundError):  # vulnerable code may have removed it
        _linux.umount_detach(path)
        os.unlink(path)
