"""The child's view of fsync: what really reached the disk, and the broken build.

Why measure here rather than ask the log: the harness must judge a build
that may be broken, and a broken writer could claim more than it synced
(``synced_offset`` is the writer's own word). So the child wraps
``os.fdatasync`` and ``os.fsync`` - the writer looks both up at call time on
its ``os`` module, which is the process-wide module, so wrapping the module's
attributes is wrapping them as the writer sees them. After every REAL
successful sync of an fd the wrapper records ``(path, size)`` as durable,
the path from ``/proc/self/fd`` and the size from ``fstat`` taken just
BEFORE the sync: bytes written before the sync started are on disk once it
returns, whereas a size taken after it could include a concurrent writer's
unsynced bytes. The child reports these measured offsets (``durable``
below); the parent's power-loss simulation cuts from them.

The broken build (TEST ONLY, tests/crash/test_crash_broken_build.py):
``SANDBOX_TEST_FAULT=ack-before-fsync`` in the child's environment, read
only here, makes the wrapper skip the real sync of segment files (``*.log``)
and record nothing for them, while the writer carries on believing it
synced - so it acknowledges appends that a power cut can take away. Nothing
outside the crash child reads the variable; production code has no switch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: The environment variable that selects a fault (child only).
FAULT_ENV = "SANDBOX_TEST_FAULT"
#: Acknowledge ``always`` appends without syncing the segment.
ACK_BEFORE_FSYNC = "ack-before-fsync"
FAULTS = frozenset({ACK_BEFORE_FSYNC})

SEGMENT_SUFFIX = ".log"


def fault_from_env() -> str:
    """The fault named by ``SANDBOX_TEST_FAULT`` ("" for none); unknown names raise."""
    fault = os.environ.get(FAULT_ENV, "")
    if fault and fault not in FAULTS:
        raise ValueError(f"{FAULT_ENV}={fault!r}: unknown fault (known: {sorted(FAULTS)})")
    return fault


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


class SyncRecorder:
    """Records the bytes of each file that a real, successful sync made durable."""

    def __init__(self, fault: str = "") -> None:
        if fault and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault = fault
        self._lock = threading.Lock()
        self._durable: dict[str, int] = {}
        #: Syncs of segment files the fault skipped (the writer believed them done).
        self.skipped = 0

    def durable_size(self, path: str) -> int | None:
        """Bytes of ``path`` known durable, None if it was never synced here."""
        with self._lock:
            return self._durable.get(path)

    def durable(self) -> dict[str, int]:
        with self._lock:
            return dict(self._durable)

    def _wrap(self, real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            path = _fd_path(fd)
            if self.fault == ACK_BEFORE_FSYNC and path.endswith(SEGMENT_SUFFIX):
                with self._lock:
                    self.skipped += 1
                return None  # the broken build: no sync, nothing recorded
            size = os.fstat(fd).st_size
            real(fd)  # raises on failure: then nothing is recorded
            with self._lock:
                if size > self._durable.get(path, -1):
                    self._durable[path] = size
            return None

        return sync

    @contextmanager
    def installed(self) -> Iterator[SyncRecorder]:
        """Wrap ``os.fdatasync``/``os.fsync`` for the block; restore them after."""
        saved: dict[str, Any] = {name: getattr(os, name) for name in ("fdatasync", "fsync")}
        for name, real in saved.items():
            setattr(os, name, self._wrap(real))
        try:
            yield self
        finally:
            for name, real in saved.items():
                setattr(os, name, real)
