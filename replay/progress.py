"""A progress bar on stderr for long reads (verify, audit, history over big logs).

Why it exists: an operator who runs ``sandboxctl verify`` on a log of millions
of records wants to see that it is moving; a script that captures stderr wants
nothing but the one-line error a failure prints. So the bar draws only when the
stream is a terminal and is a no-op otherwise. No third-party dependency: a
node agent's tooling should not pull a UI library in.

Progress is counted in bytes of log read, because that is what is known up
front without reading the log (the sum of the segment file sizes), whereas the
number of records is only known at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from eventlog.closing import Closing

T = TypeVar("T")

_WIDTH = 30
_INTERVAL_S = 0.1  # redraw at most ten times a second: a redraw costs a write(2)


class Progress(Closing):
    """A single-line bar: ``label [#####.....]  45%  12.3 MiB/27.0 MiB``.

    Use as a context manager; call ``update(done)`` with the absolute amount
    done. On exit the line is cleared so that the command's real output starts
    on a clean line. ``enabled`` is decided once, from ``stream.isatty()``,
    unless forced (tests).
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        unit: str = "bytes",
    ) -> None:
        self.total = max(0, total)
        self.label = label
        self.unit = unit
        self._stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self._stream.isatty()
            except (AttributeError, ValueError):  # closed or odd stream
                enabled = False
        self.enabled = enabled
        self._done = 0
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int) -> None:
        """Record that ``done`` units (absolute, not a delta) are finished."""
        if not self.enabled:
            return
        self._done = done
        now = time.monotonic()
        if now - self._last_draw >= _INTERVAL_S:
            self._last_draw = now
            self._draw()

    def close(self) -> None:
        """Erase the bar (if one was drawn) so later output starts clean."""
        if self.enabled and self._drawn:
            try:
                self._stream.write("\r\x1b[2K")
                self._stream.flush()
            except (OSError, ValueError):
                pass
            self._drawn = False

    def render(self) -> str:
        """The bar's text for the current position (no control characters)."""
        if self.total <= 0:  # nothing to measure against: the label says what runs
            return self.label
        frac = min(1.0, self._done / self.total)
        filled = int(frac * _WIDTH)
        bar = "#" * filled + "." * (_WIDTH - filled)
        return (
            f"{self.label} [{bar}] {frac * 100:3.0f}%  "
            f"{self._fmt(self._done)}/{self._fmt(self.total)}"
        )

    def _fmt(self, n: int) -> str:
        if self.unit != "bytes":
            return f"{n} {self.unit}"
        value = float(n)
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if value < 1024 or suffix == "GiB":
                return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
            value /= 1024
        return f"{n} B"  # pragma: no cover - loop always returns

    def _draw(self) -> None:
        try:
            self._stream.write("\r\x1b[2K" + self.render())
            self._stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            self.enabled = False


def log_bytes(state_dir: str | os.PathLike[str]) -> tuple[list[tuple[str, int]], int]:
    """The segment files of a log in order with their sizes, and the total.

    Used to turn a record's (segment, offset) into bytes done: the sum of the
    earlier segments' sizes plus the offset inside its own.
    """
    entries: list[tuple[str, int]] = []
    try:
        names = sorted(n for n in os.listdir(state_dir) if n.endswith(".log"))
    except OSError:
        return [], 0
    for name in names:
        try:
            entries.append((name, os.stat(os.path.join(state_dir, name)).st_size))
        except OSError:
            continue
    return entries, sum(size for _, size in entries)


class LogProgress(Progress):
    """A ``Progress`` over a log directory, advanced by the records read."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        segments, total = log_bytes(state_dir)
        super().__init__(total, label, stream=stream, enabled=enabled)
        self._base: dict[str, int] = {}
        acc = 0
        for name, size in segments:
            self._base[name] = acc
            acc += size

    def at(self, segment: str, offset: int) -> None:
        """Advance to a record's position (its segment path or name, its offset)."""
        if not self.enabled:
            return
        self.update(self._base.get(os.path.basename(segment), 0) + offset)


def track(items: Iterable[T], progress: LogProgress) -> Iterator[T]:
    """Yield ``items`` (records with ``segment`` and ``offset``), advancing the bar."""
    for item in items:
        progress.at(getattr(item, "segment", ""), getattr(item, "offset", 0))
        yield item
