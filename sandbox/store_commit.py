"""Store-level group commit: concurrent commands share one log append and one fsync.

A command validates against the *command view* (the durable projection plus
the events of commands in flight), applies its events to that view and
*reserves* them here, all under the store's command lock, so reservations
are in seq order. It then releases the command lock and ``wait``s: the first
waiter with no group in flight becomes the *leader*, takes every reserved
ticket (in seq order), writes their events with one ``log.append_batch`` (one
write, one fsync with ``durability="always"``), applies them to the durable
projection (under the store's read lock) in seq order, and wakes the rest.
Readers only ever see the durable projection: nothing that is not on disk
(apply-after-commit, as etcd applies only committed entries).

One ``append_batch`` per group keeps seqs in reservation order without an
ordering lock around the log call: the store is the log's only appender and
one leader writes at a time. A group's commands become one all-or-nothing
batch in the log; each was acknowledged only after the group's fsync, so a
crash loses none that returned (and a torn group, none of which returned, is
cut whole).

Failures: a group whose append raises (a poisoned log, a simulated crash)
fails every command in it, and every command reserved after it (they were
validated against the failed events), without writing them: ``failed`` is set
until the store, under its command lock, ``drain``s and rebuilds its command
view from the durable projection (``take_failure``). A failure to *apply* a
written group (or a seq the log did not predict) is ``broken``: the log has
events the projection lacks, only a reopen can resync.

Lock order: the store's ``_cmd`` -> this module's mutex; the leader takes
the store's ``_read`` with no other lock held and never takes ``_cmd``, so a
thread holding ``_cmd`` may ``drain`` (snapshot, close, ``head``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from eventlog.errors import RecordTooLargeError
from eventlog.format import pack_payload, unpack_payload
from sandbox import events as ev
from sandbox.errors import StoreError
from sandbox.projection import Projection

if TYPE_CHECKING:
    from sandbox.logport import LogPort
    from sandbox.metadata import Metadata

__all__ = ["Pipeline", "Sequencer", "Ticket", "prepare"]

_allocate_lock = threading.Lock


class Ticket:
    """One command's events, reserved at seqs ``first``.. and waiting to be durable."""

    __slots__ = ("done", "error", "events", "first", "handed", "lock", "payloads", "prime")

    def __init__(
        self,
        first: int,
        payloads: list[dict[str, Any]],
        events: list[ev.Event],
        prime: tuple[str, Metadata] | None,
    ) -> None:
        self.first = first
        self.payloads = payloads
        self.events = events
        self.prime = prime
        self.done = False
        self.error: BaseException | None = None
        #: Set by the leader that hands this ticket's owner the lead.
        self.handed = False
        #: The lock its owner sleeps on (held from birth; released once).
        self.lock: threading.Lock | None = None

    @property
    def seqs(self) -> list[int]:
        return list(range(self.first, self.first + len(self.events)))


def prepare(
    events: list[ev.Event],
    first: int,
    prime: tuple[str, Metadata] | None,
    max_record_bytes: int | None,
) -> Ticket:
    """A ticket for ``events`` at seqs ``first``..: refused now (nothing reserved,
    nothing written) if the log would refuse a payload, so a group never fails
    for one command's payload.

    The events are kept as a replay will read them back, not as the Python
    objects they were built from: a str subclass (a str Enum as a name), a
    tuple for a list, would otherwise make the live projection differ from
    the replayed one.
    """
    payloads = [event.to_payload() for event in events]
    datas = [pack_payload(payload) for payload in payloads]
    if max_record_bytes is not None:
        for data in datas:
            if len(data) > max_record_bytes:
                raise RecordTooLargeError(
                    f"payload of {len(data)} bytes exceeds max_record_bytes {max_record_bytes}"
                )
    as_read = [ev.decode(unpack_payload(data)) for data in datas]
    return Ticket(first, payloads, as_read, prime)


class Sequencer:
    """Hands reserved tickets to the log in seq order, then applies them once durable.

    Wake-ups after LevelDB's writer queue (as eventlog/commit.py): a waiter
    that finds a group in flight sleeps on its own lock; the leader releases
    the lock of each ticket it completed and hands the lead to the head of
    the queue that built up meanwhile. Nobody is woken to find nothing to do.
    """

    def __init__(self, log_: LogPort, durable: Projection, read_lock: threading.Lock) -> None:
        self._log = log_
        self._durable = durable
        self._read = read_lock
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._drainers = 0
        self._queue: list[Ticket] = []
        self._leading = False
        self._last = 0
        #: The error of a failed group, until ``take_failure``: later tickets fail with it.
        self.failed: BaseException | None = None
        #: Set when a written group could not be applied: the store must be reopened.
        self.broken: BaseException | None = None

    def reserve(self, ticket: Ticket) -> None:
        """Queue ``ticket`` (the store's command lock held: queue order is seq order)."""
        with self._mutex:
            self._queue.append(ticket)

    def wait(self, ticket: Ticket) -> None:
        """Return once ``ticket``'s events are durable and applied; raise its failure."""
        lock: threading.Lock | None = None
        with self._mutex:
            if ticket.done:
                lead = False
            elif ticket.handed or not self._leading:
                # Handed the lead, or no group in flight: then the ticket is queued.
                self._leading, lead = True, True
            else:
                ticket.lock = lock = _allocate_lock()
                lock.acquire()
                lead = False
        if lock is not None:
            lock.acquire()  # released once: the ticket is done, or handed the lead
            ticket.lock = None
            lead = not ticket.done
        if lead:
            self._lead()
        if ticket.error is not None:
            raise ticket.error

    def drain(self) -> None:
        """Until nothing is reserved or in flight (leading groups itself if need be).
        Called with the store's command lock held, so nothing new is reserved."""
        with self._mutex:
            while self._queue or self._leading:
                if self._leading:
                    self._drainers += 1
                    try:
                        self._idle.wait()
                    finally:
                        self._drainers -= 1
                else:
                    self._leading = True
                    self._mutex.release()
                    try:
                        self._lead()
                    finally:
                        self._mutex.acquire()

    @property
    def idle(self) -> bool:
        """Nothing reserved or in flight: the durable projection is the command view."""
        with self._mutex:
            return not self._queue and not self._leading

    def take_failure(self) -> BaseException | None:
        """Drain, then return and clear ``failed`` (the store drops its view then)."""
        self.drain()
        with self._mutex:
            failed, self.failed = self.failed, None
            return failed

    def _lead(self) -> None:
        """As leader (``_leading`` set by the caller): write and apply every queued
        ticket as one group, complete them, hand the lead on (or give it up)."""
        if self._last > 1:
            self._gather(self._last)
        with self._mutex:
            group, self._queue = self._queue, []
            error = self.failed
        self._last = len(group)
        try:
            if error is None:
                error = self._write(group)
        finally:
            with self._mutex:
                if error is not None and self.failed is None:
                    self.failed = error
                for ticket in group:
                    ticket.error = error
                    ticket.done = True
                sleepers = [t.lock for t in group if t.lock is not None]
                heir = self._queue[0] if self._queue else None
                if heir is None:
                    self._leading = False
                    if self._drainers:
                        self._idle.notify_all()
                else:
                    heir.handed = True
                    if heir.lock is not None:
                        sleepers.append(heir.lock)
            for lock in sleepers:
                lock.release()

    def _gather(self, expected: int) -> None:
        """Before taking a group: yield the GIL while the queue still grows toward the
        last group's size. The threads the last group woke are runnable and about
        to reserve; without this the first one back leads a group of one while the
        rest queue behind it (groups alternate 1, n-1: two fsyncs per n commands).
        A heuristic only: any group is correct, and no time is waited on."""
        seen = -1
        for _ in range(8):
            queued = len(self._queue)  # a racy read is fine: it only steers the yield
            if queued >= expected or queued == seen:
                return
            seen = queued
            time.sleep(0)

    def _write(self, group: list[Ticket]) -> BaseException | None:
        """Append the group's events as one batch and apply them; the error, if any."""
        if not group:
            return None
        payloads = [p for ticket in group for p in ticket.payloads]
        try:
            if len(payloads) == 1:
                seqs = [self._log.append(payloads[0])]
            else:
                seqs = self._log.append_batch(payloads)
        except BaseException as exc:  # every ticket of the group must learn of it
            return exc
        first = group[0].first
        try:
            if seqs[0] != first or len(seqs) != len(payloads):
                raise StoreError(
                    f"the log wrote seqs {seqs[0]}..{seqs[-1]}, the store reserved "
                    f"{first}..{first + len(payloads) - 1}: another writer appended"
                )
            durable = self._durable
            with self._read:
                for ticket in group:
                    _apply(durable, ticket)
        except BaseException as exc:
            # The log has it, the projection does not: only a reopen can resync.
            self.broken = exc
            return exc
        return None


def _apply(proj: Projection, ticket: Ticket) -> None:
    for seq, event in zip(ticket.seqs, ticket.events, strict=True):
        proj.apply(seq, event)
    if ticket.prime is not None:
        proj.prime(*ticket.prime)


class Pipeline:
    """The Store's write side: the command view and the ``Sequencer``. Every method
    but ``wait`` is called with the store's command lock held, the store writable:
    ``view()`` to check a command's rules, ``reserve`` its events, release the
    lock, ``wait``."""

    def __init__(self, log_: LogPort, durable: Projection, read_lock: threading.Lock) -> None:
        self.seq = Sequencer(log_, durable, read_lock)
        self._log = log_
        self._durable = durable
        self._read = read_lock
        self._view: Projection | None = None
        self._broken: BaseException | None = None

    @property
    def broken(self) -> BaseException | None:
        """Why the store can no longer write (the log and the projections differ)."""
        return self._broken or self.seq.broken

    def view(self) -> Projection:
        """The command view: the durable projection plus the events in flight.

        With nothing in flight it is the durable projection itself (no leader can
        change it then: only reservations, made under the command lock, start one).
        The first command that overlaps another builds a separate view and keeps it
        (a failed group drops it): it drains the commands in flight, then copies the
        durable projection, O(n) once, without the read lock (nothing changes it
        while the store is drained and the command lock held), so readers go on.
        """
        if self.seq.failed is not None:
            # A group failed: the view holds events that were never written.
            self.seq.take_failure()
            self._view = None
        view = self._view
        if view is None:
            if self.seq.idle:
                return self._durable
            if self.seq.take_failure() is not None:
                return self._durable  # drained: the failed group's events are gone
            durable = self._durable
            view = Projection.from_snapshot(durable.to_snapshot(), durable.netns_dir)
            self._view = view
        return view

    def wait(self, ticket: Ticket) -> None:
        """Without the command lock: until ``ticket`` is durable and applied."""
        self.seq.wait(ticket)

    def reserve(self, events: list[ev.Event], prime: Metadata | None = None) -> Ticket:
        """Apply ``events`` (their rules checked against ``view()``) to the command
        view and queue them for the next group commit."""
        view = self.view()
        primed = (events[0].id, prime) if prime is not None else None
        max_bytes = getattr(self._log, "max_record_bytes", None)
        ticket = prepare(events, view.last_seq + 1, primed, max_bytes)
        if view is not self._durable:  # else applied once durable
            try:
                _apply(view, ticket)
            except BaseException as exc:
                self._broken = exc  # half applied to the view: only a reopen can resync
                raise
        self.seq.reserve(ticket)
        return ticket
