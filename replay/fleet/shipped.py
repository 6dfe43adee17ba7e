"""The shipper's durable note of what the stream acknowledged (``SHIPPED`` in the state dir).

Why: compaction (``sandboxctl compact``) may only drop history that exists
elsewhere. The stream is that elsewhere once it acknowledged a record, so the
shipper records the last acknowledged seq and its chain digest in the node's
state dir (``eventlog.write_shipped``: temp file, fsync, rename, directory
fsync), and ``eventlog.compact`` refuses to remove records above it.

Writing on every ack would add an fsync per record; the note lags instead:
at most every ``interval`` seconds, plus once when the shipper stops. A
lagging note is safe - it only keeps more history local than necessary.
"""

from __future__ import annotations

import logging
import os
import time

import eventlog

__all__ = ["ShippedRecorder"]

log = logging.getLogger("replay.fleet")

#: Seconds between two writes of ``SHIPPED`` while acks keep coming.
DEFAULT_INTERVAL = 2.0


class ShippedRecorder:
    """Remembers the last acknowledged ``(seq, digest)`` and writes it now and then."""

    def __init__(self, state_dir: str | os.PathLike[str], interval: float = DEFAULT_INTERVAL):
        self.state_dir = os.fspath(state_dir)
        self.interval = interval
        self._seq = 0
        self._digest = b""
        self._written = -1
        self._last_write = 0.0

    def acked(self, seq: int, digest: bytes | None) -> None:
        """An ack for ``seq`` (digest None: not known here, the note waits for the next)."""
        if digest is not None and seq > self._seq:
            self._seq, self._digest = seq, digest
        if time.monotonic() - self._last_write >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Write the note if it moved. A failure is logged, never fatal: shipping goes on."""
        if self._seq == self._written or self._seq == 0:
            return
        self._last_write = time.monotonic()
        try:
            eventlog.write_shipped(self.state_dir, self._seq, self._digest)
        except OSError as exc:
            log.warning("could not record the shipped seq %d: %s", self._seq, exc)
            return
        self._written = self._seq
