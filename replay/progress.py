"""A progress bar on stderr for long reads (verify, audit, history over big logs).

Why it exists: an operator who runs ``sandboxctl verify`` on a log of millions
of records wants to see that it is moving; a script that captures stderr wants
nothing but the one-line error a failure prints. So the bar draws only when the
stream is a terminal and is a no-op otherwise.

Why ``rich`` draws it: it fits the bar to the terminal's width (a hand-drawn
line wider than the terminal wraps, and ``\\r`` then erases only its last
part), shows rate and time left, animates a spinner while a step cannot be
measured, and erases itself at the end. It is imported on the first draw
only, so a run whose stderr is not a terminal - every script, every pipe -
never loads it and never sees an escape code.

Progress is counted in bytes of log read, because that is what is known up
front without reading the log (the sum of the segment file sizes), whereas the
number of records is only known at the end.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TextIO, TypeVar

from eventlog.closing import Closing

if TYPE_CHECKING:
    import rich.progress

T = TypeVar("T")

_INTERVAL_S = 0.1  # hand rich a new position at most ten times a second


class Progress(Closing):
    """A single-line bar: ``label ━━━━━━╺━━━━━  45%  12.3/27.0 MiB  3.1 MiB/s  0:00:04``.

    Use as a context manager; call ``update(done)`` with the absolute amount
    done. The bar appears on the first ``update`` and is erased on exit, so
    that the command's real output starts on a clean line. ``enabled`` is
    decided once, from ``stream.isatty()``, unless forced (tests). A
    ``total`` of 0 means "cannot be measured": a spinner and the label.
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
        self._last_push = 0.0
        self._live: tuple[rich.progress.Progress, rich.progress.TaskID] | None = None

    def update(self, done: int) -> None:
        """Record that ``done`` units (absolute, not a delta) are finished."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_push < _INTERVAL_S:
            return  # rich's own thread redraws; a push per record would cost a lock
        self._last_push = now
        try:
            if self._live is None:
                self._live = self._start(done)
            bar, task = self._live
            bar.update(task, completed=done)
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self.enabled = False

    def close(self) -> None:
        """Erase the bar (if one was drawn) so later output starts clean."""
        live, self._live = self._live, None
        if live is not None:
            with contextlib.suppress(OSError, ValueError):  # the terminal is gone
                live[0].stop()

    def _start(self, done: int) -> tuple[rich.progress.Progress, rich.progress.TaskID]:
        from rich.console import Console
        from rich.progress import Progress as RichProgress

        # The caller decided this is a terminal (or forced it): rich must agree.
        console = Console(file=self._stream, force_terminal=True)
        bar = RichProgress(
            *self._columns(),
            console=console,
            transient=True,
            redirect_stdout=False,  # stdout stays byte-for-byte the command's output
            redirect_stderr=False,
        )
        task = bar.add_task(self.label, total=self.total or None, completed=done)
        bar.start()
        return bar, task

    def _columns(self) -> list[rich.progress.ProgressColumn]:
        from rich import progress as rp

        label = rp.TextColumn("{task.description}", markup=False)
        if self.total <= 0:
            return [rp.SpinnerColumn(), label, rp.TimeElapsedColumn()]
        if self.unit == "bytes":
            amount: list[rp.ProgressColumn] = [
                rp.DownloadColumn(binary_units=True),
                rp.TransferSpeedColumn(),
            ]
        else:
            amount = [rp.MofNCompleteColumn(), rp.TextColumn(self.unit)]
        return [label, rp.BarColumn(), rp.TaskProgressColumn(), *amount, rp.TimeRemainingColumn()]


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
