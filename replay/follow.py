"""``follow``: a live, read-only projection of a log another process appends to.

A dashboard, a test harness or ``sandboxctl follow`` wants the store's state
as it changes, without being the writer (one writer per log) and without
polling ``load``. ``follow(state_dir)`` loads the current state (snapshot +
tail, as ``load``), then tails the log with ``eventlog.follow`` (inotify as a
wake-up hint, byte offsets as the truth) and folds each new record in.

Two ways to use it::

    # 1. iterate: each new record with the view right after it
    with replay.follow(state_dir) as f:
        for record, view in f:
            print(record.seq, len(view))

    # 2. callbacks, on a background thread
    f = replay.follow(state_dir, on_event=lambda rec, view: ...)
    f.start()
    ...
    f.close()           # stops the thread and the inotify watch

The view is one object updated in place (``view.seq`` moves on): read what
you need inside the loop or callback. Iteration (and the thread) end after
``close()`` (any thread) or ``request_stop()`` (safe in a signal handler);
an event already being folded is finished first. ``entries()`` yields audit
entries (``replay.audit.AuditEntry``: who, what, summary) instead of raw
records - what ``sandboxctl follow`` prints.

Reading the view from another thread (a metrics scrape): hold ``lock``,
which is held while each record is folded in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import eventlog
from eventlog.closing import Closing
from eventlog.format import Record
from replay.audit import AuditEntry, describe
from replay.view import StoreView, check_state_dir, load
from sandbox.netns import DEFAULT_NETNS_DIR

__all__ = ["Follower", "follow"]

Callback = Callable[[Record, StoreView], None]


class Follower(Closing):
    """A live view; see the module docstring. Build it with ``follow``."""

    def __init__(
        self,
        view: StoreView,
        records: eventlog.Follower,
        stop: threading.Event,
        on_event: Callback | None,
    ) -> None:
        self.view = view
        self._stop = stop
        self._callbacks: list[Callback] = [on_event] if on_event is not None else []
        self._thread: threading.Thread | None = None
        self._records = records
        self._names: dict[str, str] = {sb.id: sb.name for sb in view.list()}
        self.error: BaseException | None = None
        #: Held while a record is folded into ``view``: hold it to read the view
        #: from another thread.
        self.lock = threading.Lock()

    @property
    def seq(self) -> int:
        """The last seq folded into ``view``."""
        return self.view.seq

    def on_event(self, callback: Callback) -> None:
        """Call ``callback(record, view)`` after each record is folded in."""
        self._callbacks.append(callback)

    def __iter__(self) -> Iterator[tuple[Record, StoreView]]:
        for record in self._records:
            with self.lock:
                self.view.apply(record)
            for callback in self._callbacks:
                callback(record, self.view)
            yield record, self.view

    def entries(self) -> Iterator[tuple[AuditEntry, StoreView]]:
        """Like iterating, but each record described as an audit entry (computed
        against the state before it, so the entry says what changed)."""
        for record in self._records:
            entry = describe(self.view.projection, record, self._names)
            with self.lock:
                self.view.apply(record)
            for callback in self._callbacks:
                callback(record, self.view)
            yield entry, self.view

    def run(self) -> None:
        """Fold records and call the callbacks until ``close()``."""
        for _ in self:
            pass

    def start(self) -> None:
        """Run on a daemon thread; an exception there ends it and is kept in ``error``."""
        if self._thread is not None:
            return

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # surfaced through .error, not lost on a thread
                self.error = exc

        self._thread = threading.Thread(target=target, name="replay-follow", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask iteration to end soon (within ~50 ms); only sets an Event, so it is
        safe in a signal handler. ``close()`` still releases the watch."""
        self._stop.set()

    def close(self) -> None:
        """Stop following and release the inotify watch (idempotent; from any thread)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._records.close()


def follow(
    state_dir: str | os.PathLike[str],
    *,
    from_seq: int | None = None,
    key: bytes | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
    poll_interval: float = 1.0,
    on_event: Callback | None = None,
    stop: threading.Event | None = None,
) -> Follower:
    """A live view of the store in ``state_dir``; see the module docstring.

    ``from_seq``: also report the records from that seq on (default: only
    records appended from now on). ``stop``: an Event that, once set, ends
    iteration (the same as ``request_stop``; set it before the follower exists
    to cover the initial load, as ``sandboxctl follow`` does for Ctrl-C).
    """
    d = check_state_dir(state_dir)
    if from_seq is not None and from_seq < 1:
        raise ValueError(f"from_seq must be >= 1, got {from_seq}")
    # The state just before the first record to report: with from_seq the
    # history from there on is reported too, then the live tail.
    upto = None if from_seq is None else from_seq - 1
    view = load(d, upto_seq=upto, key=key, netns_dir=netns_dir)
    stop = stop if stop is not None else threading.Event()
    records = eventlog.follow(d, view.seq + 1, key=key, stop=stop, poll_interval=poll_interval)
    return Follower(view, records, stop, on_event)
