"""``load``: a read-only store view of the state at any point of the log.

Why a separate, read-only view rather than ``Store.open``: a Store takes the
writer lock, replays, and *reconciles* (touches the kernel). An auditor or a
test engineer asking "what did the node believe at seq 4,210?" must not do
any of that - it must work while the node's agent is running, on a copy of a
state dir taken from a broken machine, and as a user who cannot write there.
So ``load`` never locks, never writes, never creates the state dir, and only
ever reads the log and the snapshot files.

The view answers the Store's read API (``get``, ``[]``, ``in``, ``len``,
``iter``, ``list``, prefix lookup) from a ``sandbox.projection.Projection``
folded up to the chosen point:

``upto_seq=k``
    the state right after event k. The newest *valid* snapshot at or before k
    is the starting point (valid: it is a regular file, it decodes, its
    content validates as events do, it carries a MAC under ``key`` when one
    is given, and the log's chain digest at its seq equals the digest the
    snapshot recorded, so a snapshot of another history is never trusted),
    then the log from there to k. A skipped snapshot is logged as a warning.
``at=t`` (int ns or datetime)
    the state after the longest prefix of the log whose records were all
    written at or before t (record ``time_ns`` is the writer's wall clock per
    record, so a clock stepped backwards cannot pull a later event in). This
    needs every record time before the point, which a snapshot does not
    carry, so it is always a full read from seq 1.
neither
    the state after the last whole record now on disk.

A point beyond the end of the log is an error (``PointOutOfRangeError``)
rather than silently the current state: "after event 900" of a 500-event
log is a wrong number, not a question with an answer.

A URL instead of a state dir is handed to the loader registered for its
scheme (``register_source``): ``replay`` registers the fleet's, so that
``load("nats://host:4222", node="n1")`` reads node n1's records from the
fleet stream. This module knows no scheme itself - the read side below the
fleet must not depend on it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import attrs

import eventlog
from eventlog.format import Record
from replay.errors import PointOutOfRangeError, StateDirMissingError
from replay.progress import LogProgress
from replay.timespec import TimeLike, to_ns
from sandbox import snapshot as snap
from sandbox.netns import DEFAULT_NETNS_DIR
from sandbox.projection import Projection
from sandbox.reads import NO_GUARD, Reads

__all__ = ["StoreView", "check_point", "check_state_dir", "load"]

_NO_LIMIT = 2**63 - 1

log = logging.getLogger(__name__)


def check_state_dir(state_dir: str | os.PathLike[str]) -> str:
    """The state dir as a str; ``StateDirMissingError`` if it is not a directory.

    Every read-side entry point calls this first: a reader must never create
    a state dir, and a typo must not read as an empty store.
    """
    path = os.fspath(state_dir)
    if not os.path.isdir(path):
        raise StateDirMissingError(path)
    return path


def check_point(upto_seq: int | None, at: TimeLike | None) -> None:
    """Refuse a point ``load`` cannot mean: both kinds at once, or a seq that is not one.

    Every loader of a view (a state dir's, the fleet stream's) asks this
    first, so a point means the same whichever source it is asked of.
    """
    if upto_seq is not None and at is not None:
        raise ValueError("give upto_seq or at, not both")
    if upto_seq is not None and (isinstance(upto_seq, bool) or not isinstance(upto_seq, int)):
        raise TypeError(f"upto_seq must be an int, got {type(upto_seq).__name__}")
    if upto_seq is not None and upto_seq < 0:
        raise ValueError(f"upto_seq must be >= 0, got {upto_seq}")


class FoldedRecord(Protocol):
    """What a view needs of the last record folded in (a local or a shipped one)."""

    @property
    def time_ns(self) -> int: ...
    @property
    def digest(self) -> bytes: ...


def has_log(state_dir: str) -> bool:
    """Whether the directory holds any segment file (an empty dir is an empty log)."""
    return any(n.endswith(".log") for n in os.listdir(state_dir))


@attrs.define(eq=False)
class StoreView(Reads):
    """The store's state at one point of the log; read-only.

    ``seq`` is the last event folded in (0 for the empty state), ``time_ns``
    its writer's wall-clock time (None at seq 0) and ``head`` the log's chain
    digest after it (hex; all zeros at seq 0) - the value ``verify --head``
    takes. ``snapshot`` is the snapshot file the view started from, if any.
    """

    projection: Projection
    state_dir: str
    time_ns: int | None = None
    head: str = "00" * 32
    snapshot: str | None = None

    @classmethod
    def after(
        cls,
        projection: Projection,
        state_dir: str,
        last: FoldedRecord | None,
        snapshot: str | None = None,
    ) -> StoreView:
        """The view of ``projection`` whose last folded record was ``last`` (None: none)."""
        if last is None:
            return cls(projection, state_dir, snapshot=snapshot)
        return cls(projection, state_dir, last.time_ns, last.digest.hex(), snapshot)

    @property
    def seq(self) -> int:
        return self.projection.last_seq

    # -- the Store's read API ----------------------------------------------------

    def resolve(self, id_or_prefix: str) -> str:
        """Full id of an exact id or unique prefix (NotFoundError, AmbiguousPrefixError,
        InvalidIDError)."""
        return self._resolve(id_or_prefix)

    def _read_projection(self) -> Projection:
        return self.projection

    def _read_guard(self) -> AbstractContextManager[object]:
        return NO_GUARD  # nothing else folds into a view's projection

    def _not_found_where(self) -> str:
        return f" at seq {self.seq}"

    # -- following -----------------------------------------------------------

    def apply(self, record: Record) -> None:
        """Fold one more record in (used by ``follow``; the view is then live)."""
        self.projection.apply(record.seq, record.payload)
        self.time_ns = record.time_ns
        self.head = record.digest.hex()

    def __repr__(self) -> str:
        return f"<StoreView {self.state_dir} at seq {self.seq} ({len(self)} sandboxes)>"


def _fold(
    records: Iterable[Record],
    projection: Projection,
    *,
    until_ns: int | None = None,
    progress: LogProgress | None = None,
) -> tuple[Record | None, Record | None]:
    """Apply records in order; returns (last applied, first refused by ``until_ns``).

    The garbage collector is paused, as in ``sandbox.snapshot.replay``: a
    replay makes many long-lived dicts and collections over them dominate.
    """
    last: Record | None = None
    apply = projection.apply
    with snap.gc_paused():
        for rec in records:
            if until_ns is not None and rec.time_ns > until_ns:
                return last, rec
            apply(rec.seq, rec.payload)
            last = rec
            if progress is not None:
                progress.at(rec.segment, rec.offset)
    return last, None


def close_records(it: Iterable[Any]) -> None:
    """Close a record iterator that has a ``close`` (a generator, a reader); else nothing."""
    close = getattr(it, "close", None)
    if close is not None:
        close()


class SourceLoader(Protocol):
    """Loads a view from a source that is not a state dir (a URL of a registered scheme)."""

    def __call__(
        self,
        source: str,
        upto_seq: int | None,
        at: TimeLike | None,
        *,
        netns_dir: str,
        node: str | None,
        stream: str | None,
    ) -> StoreView: ...


#: URL scheme (lower case) -> its loader; filled by ``register_source``.
_SOURCES: dict[str, SourceLoader] = {}


def register_source(schemes: Iterable[str], loader: SourceLoader) -> None:
    """Make ``load(URL, ...)`` call ``loader`` for a URL with one of ``schemes``.

    Why a registry: the fleet reads a node's state from NATS and returns the
    same ``StoreView``; plugging it in here keeps this module free of it (and
    of its client) while ``replay.load`` still takes either kind of source.
    """
    for scheme in schemes:
        _SOURCES[scheme.lower()] = loader


def _source_loader(source: object) -> SourceLoader | None:
    if not isinstance(source, str) or "://" not in source:
        return None
    return _SOURCES.get(source.split("://", 1)[0].lower())


def load(
    state_dir: str | os.PathLike[str],
    upto_seq: int | None = None,
    at: TimeLike | None = None,
    *,
    key: bytes | None = None,
    netns_dir: str = DEFAULT_NETNS_DIR,
    progress: bool | None = False,
    node: str | None = None,
    stream: str | None = None,
) -> StoreView:
    """The read-only state after event ``upto_seq``, as of wall time ``at``, or now.

    ``state_dir`` may also be a URL of a registered scheme (``register_source``),
    read by its loader with ``node`` and ``stream``: NATS server URL(s)
    (``nats://host:4222``, several comma-separated) give node ``node``'s state
    from the fleet stream ``stream`` (``replay.fleet.view.load_fleet``, which
    also raises the fleet errors; ``key`` and ``progress`` are not used there -
    ``replay.fleet.fleet_verify`` checks a shipped chain).

    Never takes the writer lock; safe while a writer appends (a record being
    written is not seen yet). ``key`` checks a keyed log's chain.
    ``netns_dir`` only shapes the ``NetNS`` handles of the view's sandboxes.
    ``progress``: True draws a bar on stderr, None draws it if stderr is a
    terminal, False (the API default) never.

    Raises ``StateDirMissingError``, ``PointOutOfRangeError`` (a seq beyond
    the log's end), ``eventlog.CorruptLogError`` (a bad record before the
    point), and the sandbox package's event errors (an event this code cannot
    read).
    """
    source_loader = _source_loader(state_dir)
    if source_loader is not None:
        assert isinstance(state_dir, str)
        return source_loader(state_dir, upto_seq, at, netns_dir=netns_dir, node=node, stream=stream)
    check_point(upto_seq, at)
    d = check_state_dir(state_dir)
    until_ns = to_ns(at) if at is not None else None
    if not has_log(d):
        if upto_seq:
            raise PointOutOfRangeError(f"{d} has an empty log; there is no seq {upto_seq}")
        return StoreView(Projection(netns_dir), d)
    bar = LogProgress(d, "replaying", enabled=None if progress is None else progress)
    with bar:
        if until_ns is not None:
            return _load_at(d, until_ns, key=key, netns_dir=netns_dir, bar=bar)
        return _load_upto(d, upto_seq, key=key, netns_dir=netns_dir, bar=bar)


def _load_at(
    d: str, until_ns: int, *, key: bytes | None, netns_dir: str, bar: LogProgress
) -> StoreView:
    projection = Projection(netns_dir)
    records = iter(eventlog.read(d, key=key))
    try:
        last, _refused = _fold(records, projection, until_ns=until_ns, progress=bar)
    finally:
        close_records(records)
    return StoreView.after(projection, d, last)


def _load_upto(
    d: str, upto_seq: int | None, *, key: bytes | None, netns_dir: str, bar: LogProgress
) -> StoreView:
    target = _NO_LIMIT if upto_seq is None else upto_seq
    if target == 0:
        return StoreView(Projection(netns_dir), d)
    for seq, path in snap.list_snapshots(d):
        if seq == 0 or seq > target:
            continue
        try:
            info = snap.read_snapshot_info(path, netns_dir, key=key)
        except snap.SnapshotError as exc:
            # As the store does: a snapshot is never an authority; say why it was not used.
            log.warning("snapshot %s skipped: %s", path, exc)
            continue
        projection = info.projection
        # From the snapshot's recorded log position when it checks out; the log's
        # digest at its seq must be the snapshot's either way (never trusted).
        records = snap.tail_records(d, info, to_seq=target, key=key)
        try:
            last, _ = _fold(records, projection, progress=bar)
        except eventlog.PositionMismatchError as exc:
            log.warning("snapshot %s skipped: another history: %s", path, exc.reason)
            continue
        finally:
            close_records(records)
        if last is None:  # the point is the snapshot's own seq: its record's time
            last = eventlog.read_record(d, seq, key=key)
            if last is None or last.digest != info.digest:
                continue
        view = StoreView.after(projection, d, last, path)
        break
    else:
        projection = Projection(netns_dir)
        records = iter(eventlog.read(d, from_seq=1, to_seq=target, key=key))
        try:
            last, _ = _fold(records, projection, progress=bar)
        finally:
            close_records(records)
        view = StoreView.after(projection, d, last)
    if upto_seq is not None and view.seq < upto_seq:
        raise PointOutOfRangeError(
            f"seq {upto_seq} is beyond the end of the log in {d} (last seq {view.seq})"
        )
    return view
