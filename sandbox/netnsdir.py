"""Which netns dir a store uses: the one its log recorded, fixed when it was created.

Why it is recorded: the reconciler only acts inside the store's netns dir, so a
store reopened without the dir it was created with (``sandboxctl stop``
without ``--netns-dir``) would log removals it can never carry out and leave
its namespaces mounted. The log says which dir is the store's; an open naming
another is refused rather than guessed at.

Where it is recorded: a ``NetNSDirRecorded`` event, the first record of a new
log. An open learns it from its own load (replay folds that record; every
snapshot carries it, so a compacted log keeps it too: sandbox/store_open.py)
and reads the log here only when the load found none. A log written before
the event existed gets it recorded on its next open, after its history: the
dir is then the common parent of the paths its ``NetNSAssigned`` records
named (or the caller's / the default when it assigned none). From then on
its snapshots carry it; until the first snapshot after that, finding it
takes one pass over the records up to it.

Two spellings of one directory (``/var/run/netns`` and ``/run/netns``) are the
same dir: compared by ``realpath``, and by device and inode when both exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import attrs

import eventlog
from sandbox import events as ev
from sandbox.errors import NetNSDirMismatchError
from sandbox.netns import DEFAULT_NETNS_DIR

__all__ = ["NetNSDirChoice", "choose", "choose_recorded", "same_dir"]


@attrs.frozen
class NetNSDirChoice:
    """The netns dir to open with; ``record``: the log has none yet, append it now."""

    netns_dir: str
    record: bool


def same_dir(a: str, b: str) -> bool:
    """Whether two paths name one directory (realpath; else device and inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def choose(
    state_dir: str, last_seq: int, requested: str | None, *, key: bytes | None = None
) -> NetNSDirChoice:
    """The netns dir for a store whose log (in ``state_dir``) ends at ``last_seq``.

    ``requested``: the caller's dir (absolute) or None for "the recorded one".
    A recorded dir wins; a requested one that is not the same directory raises
    ``NetNSDirMismatchError`` naming the recorded dir. With none recorded: the
    dir of the log's assigned paths (which must agree), else ``requested``,
    else the default - to be recorded (``record=True``).
    """
    recorded, assigned = _scan(state_dir, last_seq, key)
    if recorded is not None:
        return choose_recorded(state_dir, recorded, requested)
    dirs: list[str] = []
    for path in assigned:
        parent = os.path.dirname(path)
        if not any(same_dir(parent, d) for d in dirs):
            dirs.append(parent)
    if len(dirs) > 1:
        raise NetNSDirMismatchError(
            f"{state_dir}: its log assigned namespaces in {len(dirs)} directories "
            f"({', '.join(dirs)}); expected one netns dir per store, cannot record one"
        )
    if dirs:
        if requested is not None and not same_dir(requested, dirs[0]):
            raise NetNSDirMismatchError(
                f"{state_dir}: this store's namespaces live in {dirs[0]} (the paths its log "
                f"assigned), not {requested}; run with --netns-dir {dirs[0]} or without it"
            )
        return NetNSDirChoice(dirs[0], record=True)
    return NetNSDirChoice(requested if requested is not None else DEFAULT_NETNS_DIR, record=True)


def choose_recorded(state_dir: str, recorded: str | None, requested: str | None) -> NetNSDirChoice:
    """The choice when the recorded dir is known from elsewhere (None: never recorded).

    A compacted log has lost its first record: its snapshot carries the
    recorded dir instead (``Projection.recorded_netns_dir``). A store that
    never recorded one (its log predates the record and was compacted) gets
    the requested dir or the default recorded now.
    """
    if recorded is None:
        return NetNSDirChoice(requested if requested is not None else DEFAULT_NETNS_DIR, True)
    if requested is not None and not same_dir(requested, recorded):
        raise NetNSDirMismatchError(
            f"{state_dir}: this store's netns dir is {recorded} (recorded in its log), "
            f"not {requested}; run with --netns-dir {recorded} or without --netns-dir"
        )
    return NetNSDirChoice(recorded, record=False)


def _scan(state_dir: str, last_seq: int, key: bytes | None) -> tuple[str | None, list[str]]:
    """The recorded dir (None if none) and, when there is none, every assigned path.

    Reads the first records; only a log without the record there (written
    before it existed) is read further, and only up to the record.
    """
    assigned: list[str] = []
    if last_seq == 0:
        return None, assigned
    for payload in _payloads(state_dir, last_seq, key):
        kind = payload.get("type")
        if kind == ev.NETNS_DIR_RECORDED:
            recorded = ev.decode(payload)
            assert isinstance(recorded, ev.NetNSDirRecorded)
            return recorded.netns_dir, assigned
        if kind == ev.NETNS_ASSIGNED:
            path = payload.get("path")
            if isinstance(path, str):
                assigned.append(path)
    return None, assigned


def _payloads(state_dir: str, last_seq: int, key: bytes | None) -> Iterator[dict[str, object]]:
    records = iter(eventlog.read(state_dir, from_seq=1, to_seq=last_seq, key=key))
    try:
        for rec in records:
            yield rec.payload
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
