"""How the bench modules measure: scratch directories, interleaved rounds, raw loops.

Why one home: a ratio is only fair when the figure and its reference are
measured the same way (same scratch filesystem, same rounds, the same
bare write+fdatasync or Unpacker loop), so ``replay.bench.log``,
``.store`` and the others take these from here rather than each keeping
its own. Rows are ``replay.bench.rows.Row``. Imports only the standard
library and msgpack.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import msgpack

__all__ = [
    "best_of_rounds",
    "count_unpacked",
    "scratch",
    "write_fdatasync_loop",
]


@contextmanager
def scratch(parent: str | None, prefix: str) -> Iterator[str]:
    """A temporary directory under ``parent`` (system temp if None), removed afterwards."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def best_of_rounds(rounds: int, *fns: Callable[[], float]) -> list[float]:
    """Run the measurements interleaved ``rounds`` times; the best rate of each.

    Interleaving puts a figure and its reference under the same conditions
    (a shared VM's load comes and goes); the best round is the one least
    disturbed by others.
    """
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = max(best[i], fn())
    return best


def write_fdatasync_loop(
    path: str, record: bytes, count: int, timed: Callable[[Callable[[], None]], float]
) -> float:
    """``timed(loop)`` of ``count`` bare os.write + os.fdatasync calls of ``record``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:

        def loop() -> None:
            for _ in range(count):
                os.write(fd, record)
                os.fdatasync(fd)

        return timed(loop)
    finally:
        os.close(fd)


def count_unpacked(path: str) -> int:
    """How many msgpack objects a bare streaming ``msgpack.Unpacker`` reads from ``path``."""
    n = 0
    with open(path, "rb") as f:
        for _ in msgpack.Unpacker(f, raw=False, read_size=1 << 20):
            n += 1
    return n
