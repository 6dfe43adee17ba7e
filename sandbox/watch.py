"""Keep a store's namespaces reconciled while it is open.

Two triggers drive ``store.reconcile()`` from one worker thread:

* a watchdog observer on netns_dir: a created / deleted / moved / modified
  entry schedules a reconcile ``debounce`` seconds later (bursts - a CNI
  plugin touching several files, our own creations - collapse into one
  run). Open / close-without-write events are ignored: the reconciler's own
  liveness checks open every entry, and reacting to them would loop.
  inotify is only a hint: NOTES.md measured that a creation fires before the
  mount and that events coalesce, which the reconciler's kernel checks absorb;
* a periodic resync every ``resync_interval`` seconds, because an external
  ``umount`` of a namespace sends no inotify event at all (cri #950).

Reconcile errors are logged, never raised into the thread (it keeps going).
``stop()`` (called by ``store.close()``) stops the observer and joins both.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

if TYPE_CHECKING:
    from sandbox.store import Store

__all__ = ["Watcher"]

log = logging.getLogger(__name__)

_RELEVANT = frozenset({"created", "deleted", "moved", "modified"})


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        super().__init__()
        self._watcher = watcher

    def on_any_event(self, event: Any) -> None:
        if event.event_type in _RELEVANT:
            self._watcher.poke()


class Watcher:
    """Watchdog observer + debounced reconcile + periodic resync for one store."""

    def __init__(self, store: Store, *, resync_interval: float, debounce: float) -> None:
        if resync_interval <= 0:
            raise ValueError(f"resync_interval must be > 0 seconds, got {resync_interval}")
        if debounce < 0:
            raise ValueError(f"debounce must be >= 0 seconds, got {debounce}")
        self._store = store
        self.resync_interval = resync_interval
        self.debounce = debounce
        self._cond = threading.Condition()
        self._due: float | None = None  # monotonic time of a pending debounced run
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"sandbox-watch {store.netns_dir}", daemon=True
        )
        self._observer: Any = None
        #: Completed reconcile runs (for tests and diagnostics).
        self.runs = 0

    def start(self) -> None:
        netns_dir = self._store.netns_dir
        try:
            os.makedirs(netns_dir, mode=0o755, exist_ok=True)
            observer = Observer()
            observer.schedule(_Handler(self), netns_dir, recursive=False)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except OSError as exc:
            # No inotify (limits, odd filesystems): the periodic resync still works.
            log.warning("cannot watch %s (%s); relying on periodic resync", netns_dir, exc)
        self._thread.start()

    def poke(self) -> None:
        """Schedule a reconcile ``debounce`` seconds from now (if none is pending)."""
        with self._cond:
            if self._due is None:
                self._due = time.monotonic() + self.debounce
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        next_resync = time.monotonic() + self.resync_interval
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    wake = next_resync if self._due is None else min(self._due, next_resync)
                    if now >= wake:
                        break
                    self._cond.wait(wake - now)
                if self._stopping:
                    return
                self._due = None
            try:
                self._store.reconcile()
            except Exception as exc:  # a closed store, a poisoned log, a kernel error
                if self._store.closed:
                    return
                log.error("background reconcile of %s failed: %s", self._store.netns_dir, exc)
            self.runs += 1
            next_resync = time.monotonic() + self.resync_interval
