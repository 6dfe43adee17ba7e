"""Where the newest snapshot says the log stood: a hint for the writer-open check.

Why a separate, header-only read: ``EventLog.open(start=...)`` checks the
last segment only from a known position when it holds, so a store opening
from a snapshot pays for the tail, not the whole segment (FORMAT.md,
"Recovery (writer open)"). Reading the position must not cost what it
saves: ``read_snapshot_info`` decodes and validates the whole projection,
so this reads the snapshot's header alone. Nothing is trusted here - the log
checks the position against its own bytes, and a wrong, stale or forged one
costs the full check, never an error or a wrong state.
"""

from __future__ import annotations

import os
import struct

import eventlog
from eventlog import files
from sandbox.snapshot import _HEADER, _NAME_LEN, _OFFSET, FORMAT_VERSION
from sandbox.snapshot_files import MAGIC, list_snapshots

__all__ = ["newest_position"]

#: The header, digest, segment name and offset fit well within this.
_HEAD_BYTES = 4096


def newest_position(directory: str | os.PathLike[str]) -> eventlog.Position | None:
    """The log position the newest snapshot records, from its header; None if none."""
    for _seq, path in list_snapshots(directory)[:1]:
        try:
            with files.reading(path) as f:
                head = f.read(_HEAD_BYTES)
            magic, version, _flags, seq, _body, dlen = _HEADER.unpack_from(head)
            if magic != MAGIC or version != FORMAT_VERSION:
                return None
            at = _HEADER.size + dlen
            (n,) = _NAME_LEN.unpack_from(head, at)
            name = head[at + 2 : at + 2 + n].decode("ascii")
            (offset,) = _OFFSET.unpack_from(head, at + 2 + n)
            return eventlog.Position(name, offset, seq, bytes(head[_HEADER.size : at]))
        except (OSError, eventlog.EventLogError, struct.error, UnicodeDecodeError):
            return None
    return None
