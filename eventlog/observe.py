"""Timings a writer keeps for whoever reports on it: append and fsync latencies, group sizes.

Why a pull model and plain lists: metrics may cost at most 3% of an append
(counted in instructions), and a Python call per commit group into an
observer cost about 10% (measured with callgrind: 4,500 instructions on a
~50,000-instruction append). So the writer does only what it must at the
moment a figure exists - a clock read and a C-level ``list.append`` - and
everything else (bucketing into histograms, counters) happens when someone
reads: a metrics collector calls :meth:`Timings.drain` at scrape time and
takes counts (records, bytes, syncs, rotations) from ``EventLog.stats``,
which the writer keeps anyway.

- every fdatasync of a segment is timed (commit groups, the batch thread,
  rotation, close): a sync costs far more than the two clock reads;
- a commit group's size (appends sharing one write and fsync) is kept for
  each synced group (durability ``always``);
- append latency (the whole ``append``/``append_batch`` call, as the caller
  waits for it) is sampled, one call in ``every``: timing each would cost an
  append about 2%; a sampled histogram has the same shape, its count is the
  number of samples.

The eventlog stays free of any monitoring library: operators choose
Prometheus (``sandbox.metrics``), something else, or nothing - and a writer
opened without ``timings`` pays one ``is None`` test per append.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["Timings", "keep"]

T = TypeVar("T", int, float)

#: Each list is cut back to its newest half beyond this many figures, so a
#: writer nobody drains keeps bounded memory.
CAP = 65536


class Timings:
    """Raw figures since the last :meth:`drain` (appended by the writer, drained by a reader).

    ``append``: sampled append latencies in seconds (one call in ``every``);
    ``fsync``: every fdatasync's seconds; ``groups``: appends per synced
    commit group. Appends come from writer threads while a reader drains:
    ``drain`` removes only what it returns (``del lst[:n]``), so a figure
    appended meanwhile waits for the next drain instead of being lost.
    """

    __slots__ = ("append", "every", "fsync", "groups")

    def __init__(self, every: int = 16) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.append: list[float] = []
        self.fsync: list[float] = []
        self.groups: list[int] = []

    def drain(self) -> tuple[list[float], list[float], list[int]]:
        """The figures kept since the last drain: (append, fsync, groups)."""
        return _take(self.append), _take(self.fsync), _take(self.groups)


def keep(figures: list[T], value: T) -> None:
    """Append ``value``, cutting the list back when nobody has drained it for long."""
    figures.append(value)
    if len(figures) > CAP:
        del figures[: CAP // 2]


def _take(figures: list[T]) -> list[T]:
    n = len(figures)
    taken = figures[:n]
    del figures[:n]
    return taken
