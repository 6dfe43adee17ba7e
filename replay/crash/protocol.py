"""The messages a crash-test child sends its parent, and how they travel.

Why msgpack frames on a pipe: the child may be SIGKILLed in the middle of
writing a message. A streaming ``msgpack.Unpacker`` simply never yields a
truncated last frame, so the parent sees every complete message and nothing
half-written, with no framing code of our own. Payloads travel as the same
msgpack maps the log stores, so "same payload" is compared exactly.

Messages (maps, key ``k`` names the kind):

    hello  pid                       the child is up (its pid is in every envelope)
    open   last_seq, durable          Store.open returned
    begin  i, before                  op i is about to run (it is now in flight)
    ack    i, ok, error, message, result, before, after,
           records: [[seq, time_ns, digest, payload], ...], durable
                                      op i returned; these are the records it wrote
    done   ops                        the workload ended; the child waits to be killed
    fatal  error                      the child cannot go on (traceback)

``durable`` is ``[segment path, bytes on disk, [segment names], [snapshot
names]]`` as the log reported it after the command (``log.synced_offset``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import msgpack

HELLO = "hello"
OPEN = "open"
BEGIN = "begin"
ACK = "ack"
DONE = "done"
FATAL = "fatal"


class Sender:
    """Writes whole frames to a pipe fd (the child side)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._packer = msgpack.Packer(use_bin_type=True)

    def send(self, message: dict[str, Any]) -> None:
        data = memoryview(self._packer.pack(message))
        while data:
            n = os.write(self.fd, data)
            data = data[n:]


class Receiver:
    """Collects frames from a pipe fd as bytes arrive (the parent side)."""

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._unpacker.feed(data)
        for message in self._unpacker:
            if isinstance(message, dict):
                yield message
