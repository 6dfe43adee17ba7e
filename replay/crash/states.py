"""Crash states of a traced run: what a disk may hold after a power cut at a point.

The model (ALICE, Pillai et al., OSDI 2014; ext4 data=ordered as the field
notes describe it), applied to a :class:`~replay.crash.fsops.Trace`:

- a crash at point ``k`` means events ``0 .. k-1`` completed, the rest never
  happened;
- a file's data is durable up to its last completed ``fsync``/``fdatasync``
  (everything that completed before that sync STARTED); ``sync``/``syncfs``
  does that for every file and directory;
- the file's later ("unsynced") writes and truncates may persist partially
  and out of order: each 512-byte sector (kind ``sector``) or 4 KiB page
  (kind ``page``) of the file independently holds its durable content (zeros
  beyond the durable size) or its content after any one of the unsynced
  operations; the size is the size after any one of them (a write boundary),
  so "size persisted, data not" (zeros inside the size) and "data persisted,
  size not" (an older size) are both there. A zero block from a truncate is
  only taken when the truncate's size is;
- kind ``prefix``: the unsynced operations of each file persist as a prefix,
  in order (what the older power-loss model covers), from none to all;
- a create, mkdir, link, unlink or rename is durable once its directory was
  fsynced after it; until then it may be lost (kind ``dir``: any subset of a
  directory's unsynced entries persists, applied in their order, with the
  data as written or as synced). The other kinds keep every entry.

Files named in ``fixed`` (the log's ``LOCK``: advisory pid text that nothing
reads for correctness) keep their latest bytes, so that they do not
multiply every state count.

Per point and kind, the choices are enumerated exhaustively when there are
at most ``cap`` of them, otherwise ``samples`` are drawn from the given
seeded generator: the same seed and trace give the same states.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

import attrs

from replay.crash.fsops import (
    Ack,
    DirOp,
    Image,
    Link,
    Rename,
    Sync,
    SyncAll,
    Trace,
    Truncate,
    Unlink,
    Write,
)

__all__ = ["KINDS", "Choice", "FileChoice", "Model", "PointView", "digest"]

PREFIX = "prefix"
PAGE = "page"
SECTOR = "sector"
DIR = "dir"
RECOVERY = "recovery"
KINDS = (PREFIX, PAGE, SECTOR, DIR, RECOVERY)
GRAIN = {PAGE: 4096, SECTOR: 512}

DataOp = Write | Truncate
_T = TypeVar("_T")


@attrs.frozen
class FileView:
    """A file at a crash point: its durable bytes, then one version per unsynced op."""

    fid: int
    versions: tuple[bytes, ...]
    ops: tuple[DataOp, ...]

    @property
    def dirty(self) -> bool:
        return len(set(self.versions)) > 1

    def sizes(self) -> list[int]:
        """Indexes j of distinct sizes (the last op reaching each size)."""
        last: dict[int, int] = {}
        for j, v in enumerate(self.versions):
            last[len(v)] = j
        return sorted(last.values())

    def distinct(self) -> list[int]:
        """Index of the first version of each distinct content (the prefix states)."""
        first: dict[bytes, int] = {}
        for j, v in enumerate(self.versions):
            first.setdefault(v, j)
        return sorted(first.values())

    def blocks(self, grain: int) -> list[int]:
        """Block numbers whose content differs between versions."""
        top = max(len(v) for v in self.versions)
        return [
            b
            for b in range(math.ceil(top / grain))
            if len({_chunk(v, b, grain) for v in self.versions}) > 1
        ]

    def candidates(self, block: int, grain: int, size_index: int) -> list[int]:
        """Version indexes with distinct content for ``block`` (size choice ``size_index``)."""
        seen: dict[bytes, int] = {}
        for j, v in enumerate(self.versions):
            if j and isinstance(self.ops[j - 1], Truncate) and j > size_index:
                continue  # a truncate's zeros come with its size, never alone
            seen.setdefault(_chunk(v, block, grain), j)
        return sorted(seen.values())

    def render(self, size_index: int, grain: int, picks: dict[int, int]) -> bytes:
        """The bytes on disk: size of version ``size_index``, block b from ``picks[b]``."""
        size = len(self.versions[size_index])
        latest = self.versions[-1]
        out = bytearray(latest[:size].ljust(size, b"\0"))
        for b, j in picks.items():
            lo = b * grain
            if lo >= size:
                continue
            hi = min(size, lo + grain)
            out[lo:hi] = _chunk(self.versions[j], b, grain)[: hi - lo]
        return bytes(out)


def _chunk(data: bytes, block: int, grain: int) -> bytes:
    return data[block * grain : (block + 1) * grain].ljust(grain, b"\0")


def _apply(buf: bytearray, op: DataOp) -> None:
    if isinstance(op, Write):
        if op.offset > len(buf):
            buf.extend(bytes(op.offset - len(buf)))
        buf[op.offset : op.offset + len(op.data)] = op.data
    elif op.size < len(buf):
        del buf[op.size :]
    else:
        buf.extend(bytes(op.size - len(buf)))


@attrs.frozen
class FileChoice:
    """Size ``size_index`` and, per dirty block of ``grain`` bytes, a version index."""

    fid: int
    size_index: int
    grain: int
    picks: tuple[tuple[int, int], ...] = ()


@attrs.frozen
class Choice:
    """One crash state: the point, how it was chosen, and the choices made."""

    point: int
    kind: str
    files: tuple[FileChoice, ...] = ()
    #: (directory fid, bitmask of its unsynced entry operations that persist);
    #: a directory not listed keeps them all.
    dirs: tuple[tuple[int, int], ...] = ()


@attrs.frozen
class PointView:
    """Everything about crash point ``point`` that the choices need."""

    point: int
    files: dict[int, FileView]
    #: Directory fid -> its entry operations (event index, op): durable, unsynced.
    dir_ops: dict[int, tuple[tuple[tuple[int, DirOp], ...], tuple[tuple[int, DirOp], ...]]]

    def dirty_dirs(self) -> list[int]:
        return sorted(d for d, (_, unsynced) in self.dir_ops.items() if unsynced)


def digest(image: Image) -> str:
    """A name for the bytes of a tree: equal trees, equal digests."""
    h = hashlib.sha256()
    for path, fid in image.files():
        kind = b"d" if fid in image.entries else b"f"
        body = b"" if fid in image.entries else image.data.get(fid, b"")
        h.update(b"%s\0%s\0%d\0" % (kind, path.encode(), len(body)))
        h.update(body)
    return h.hexdigest()


class Model:
    """Crash points and crash states of one trace."""

    def __init__(self, trace: Trace, *, fixed: Sequence[str] = ("LOCK",)) -> None:
        self.trace = trace
        self.fixed = frozenset(fixed)
        events = trace.events
        self._data: dict[int, list[tuple[int, DataOp]]] = {}
        self._dirops: dict[int, list[tuple[int, DirOp]]] = {}
        self._syncs: dict[int, list[tuple[int, int]]] = {}
        self._all: list[tuple[int, int]] = []
        for i, e in enumerate(events):
            op = e.op
            if isinstance(op, (Write, Truncate)):
                self._data.setdefault(op.fid, []).append((i, op))
            elif isinstance(op, (Link, Unlink, Rename)):
                self._dirops.setdefault(op.parent, []).append((i, op))
            elif isinstance(op, Sync):
                self._syncs.setdefault(op.fid, []).append((i, e.start))
            elif isinstance(op, SyncAll):
                self._all.append((i, e.start))

    # -- points --------------------------------------------------------------

    def points(self) -> list[int]:
        """Crash points worth checking: before each non-ack event, and the end.

        A point just before an ack is dominated by the point after it (same
        disk states, fewer acknowledged records), so it is skipped.
        """
        events = self.trace.events
        return [k for k in range(len(events) + 1) if k == len(events) or not _is_ack(events[k])]

    def _cutoff(self, fid: int, point: int) -> int:
        """Line before which this fid's operations are durable at ``point``."""
        best = -1
        for syncs in (self._syncs.get(fid, ()), self._all):
            for i, start in syncs:
                if i >= point:
                    break
                best = max(best, start)
        return best

    def view(self, point: int) -> PointView:
        events = self.trace.events
        files: dict[int, FileView] = {}
        for fid in set(self._data) | set(self.trace.initial.data):
            ops = self._data.get(fid, [])
            done = [op for i, op in ops[: bisect.bisect_left([i for i, _ in ops], point)]]
            cut = self._cutoff(fid, point)
            durable = sum(1 for i, _ in ops if i < point and events[i].end < cut)
            buf = bytearray(self.trace.initial.data.get(fid, b""))
            for op in done[:durable]:
                _apply(buf, op)
            versions = [bytes(buf)]
            for op in done[durable:]:
                _apply(buf, op)
                versions.append(bytes(buf))
            files[fid] = FileView(fid, tuple(versions), tuple(done[durable:]))
        dir_ops: dict[int, tuple[tuple[tuple[int, DirOp], ...], tuple[tuple[int, DirOp], ...]]] = {}
        for dfid, dops in self._dirops.items():
            cut = self._cutoff(dfid, point)
            done_ops = [(i, op) for i, op in dops if i < point]
            durable_ops = tuple((i, op) for i, op in done_ops if events[i].end < cut)
            unsynced = tuple((i, op) for i, op in done_ops if events[i].end >= cut)
            dir_ops[dfid] = (durable_ops, unsynced)
        return PointView(point, files, dir_ops)

    def required_acks(self, point: int, guarantee: str) -> list[Ack]:
        """The acks a crash at ``point`` must keep (see WorkloadSpec.guarantee)."""
        events = self.trace.events
        if guarantee == "ack":
            return [e.op for e in events[:point] if isinstance(e.op, Ack)]
        last = -1
        for e in events[:point]:
            if isinstance(e.op, SyncAll) or (
                isinstance(e.op, Sync) and not self.trace.is_dir(e.op.fid)
            ):
                last = max(last, e.start)
        return [e.op for e in events[:point] if isinstance(e.op, Ack) and e.end < last]

    # -- choices -------------------------------------------------------------

    def _varied(self, view: PointView) -> list[FileView]:
        names = self.trace.names
        return [
            f
            for fid, f in sorted(view.files.items())
            if f.dirty and names.get(fid, "").rpartition("/")[2] not in self.fixed
        ]

    def choices(
        self, view: PointView, kind: str, rng: random.Random, *, cap: int, samples: int
    ) -> list[Choice]:
        """The states of ``kind`` at this point: all if at most ``cap``, else a sample."""
        if kind == PREFIX:
            return self._prefix_choices(view, rng, cap=cap, samples=samples)
        if kind in GRAIN:
            return self._block_choices(view, kind, rng, cap=cap, samples=samples)
        if kind == DIR:
            return self._dir_choices(view, rng, cap=cap, samples=samples)
        raise ValueError(f"no choices of kind {kind!r} (recovery states come from their trace)")

    def _prefix_choices(
        self, view: PointView, rng: random.Random, *, cap: int, samples: int
    ) -> list[Choice]:
        varied = self._varied(view)
        if not varied:
            return [Choice(view.point, PREFIX)]
        per_file = [[FileChoice(f.fid, j, 0) for j in f.distinct()] for f in varied]
        combos = _product_or_sample(per_file, rng, cap=cap, samples=samples)
        return [Choice(view.point, PREFIX, tuple(c)) for c in combos]

    def _block_choices(
        self, view: PointView, kind: str, rng: random.Random, *, cap: int, samples: int
    ) -> list[Choice]:
        grain = GRAIN[kind]
        varied = self._varied(view)
        if not varied:
            return []
        options: list[list[FileChoice]] = []
        total = 1
        for f in varied:
            blocks = f.blocks(grain)
            per_size = [
                (j, [f.candidates(b, grain, j) for b in blocks if b * grain < len(f.versions[j])])
                for j in f.sizes()
            ]
            count = sum(math.prod(len(c) for c in cands) for _, cands in per_size)
            total *= count
            if total > cap:
                options = []
                break
            opts = []
            for j, cands in per_size:
                live = [b for b in blocks if b * grain < len(f.versions[j])]
                for pick in itertools.product(*cands):
                    opts.append(FileChoice(f.fid, j, grain, tuple(zip(live, pick, strict=True))))
            options.append(opts)
        if options:
            combos = [list(c) for c in itertools.product(*options)]
            rng.shuffle(combos)
        else:
            combos = [[_random_blocks(f, grain, rng) for f in varied] for _ in range(samples)]
        return [Choice(view.point, kind, tuple(c)) for c in combos]

    def _dir_choices(
        self, view: PointView, rng: random.Random, *, cap: int, samples: int
    ) -> list[Choice]:
        dirty = view.dirty_dirs()
        if not dirty:
            return []
        per_dir = [[(d, mask) for mask in range(1 << len(view.dir_ops[d][1]))] for d in dirty]
        masks = _product_or_sample(per_dir, rng, cap=max(1, cap // 2), samples=samples)
        synced = tuple(FileChoice(f.fid, 0, 0) for f in self._varied(view))
        out = []
        for combo in masks:
            dirs = tuple(combo)
            out.append(Choice(view.point, DIR, (), dirs))
            if synced:
                out.append(Choice(view.point, DIR, synced, dirs))
        return out

    # -- building ------------------------------------------------------------

    def build(self, view: PointView, choice: Choice) -> Image:
        """The tree a crash in state ``choice`` leaves on disk."""
        masks = dict(choice.dirs)
        persisted: list[tuple[int, DirOp]] = []
        for dfid, (durable, unsynced) in view.dir_ops.items():
            persisted.extend(durable)
            mask = masks.get(dfid, -1)
            persisted.extend(io for n, io in enumerate(unsynced) if mask & (1 << n))
        persisted.sort(key=lambda io: io[0])
        entries = {d: dict(names) for d, names in self.trace.initial.entries.items()}
        for _, op in persisted:
            _apply_dirop(entries, op, self.trace.is_dir)
        chosen = {fc.fid: fc for fc in choice.files}
        data: dict[int, bytes] = {}
        for fid, f in view.files.items():
            fc = chosen.get(fid)
            if fc is None:
                data[fid] = f.versions[-1]
            elif fc.grain == 0:
                data[fid] = f.versions[fc.size_index]
            else:
                data[fid] = f.render(fc.size_index, fc.grain, dict(fc.picks))
        return Image(entries, data)

    def _target(self, op: object) -> str:
        names = self.trace.names
        if isinstance(op, (Write, Truncate, Sync)):
            return names.get(op.fid, "?") or "."
        if isinstance(op, (Link, Unlink)):
            return f"{names.get(op.parent, '?') or '.'}/{op.name}"
        if isinstance(op, Rename):
            return f"{names.get(op.parent, '?') or '.'}/{op.src}"
        return "ack" if isinstance(op, Ack) else "all"

    def describe(self, view: PointView, choice: Choice) -> str:
        """A line that says which state this is, for a report and its repro."""
        events = self.trace.events
        names = self.trace.names
        if choice.point < len(events):
            nxt = events[choice.point]
            where = f"crash before event {choice.point} ({nxt.call} {self._target(nxt.op)})"
        else:
            where = f"crash after the last event ({len(events)})"
        parts = [f"{choice.kind}: {where}"]
        for fc in choice.files:
            f = view.files[fc.fid]
            size = len(f.versions[fc.size_index])
            text = (
                f"{names.get(fc.fid, fc.fid)}: size {size} (durable {len(f.versions[0])}, "
                f"written {len(f.versions[-1])}, {len(f.ops)} unsynced op(s))"
            )
            if fc.grain:
                picks = " ".join(
                    f"@{b * fc.grain}:{'old' if j == 0 else f'op{j}'}" for b, j in fc.picks
                )
                text += f", {fc.grain}-byte blocks {picks or '(none inside the size)'}"
            else:
                text += f", first {fc.size_index} op(s) persisted"
            parts.append(text)
        for dfid, mask in choice.dirs:
            unsynced = view.dir_ops[dfid][1]
            lost = [_describe_dirop(op) for n, (_, op) in enumerate(unsynced) if not mask & 1 << n]
            parts.append(f"dir {names.get(dfid, '.') or '.'}: lost {', '.join(lost) or 'nothing'}")
        return "; ".join(parts)


def _is_ack(event: object) -> bool:
    return isinstance(getattr(event, "op", None), Ack)


def _apply_dirop(
    entries: dict[int, dict[str, int]], op: DirOp, is_dir: Callable[[int], bool]
) -> None:
    names = entries.setdefault(op.parent, {})
    if isinstance(op, Link):
        names[op.name] = op.fid
        if is_dir(op.fid):
            entries.setdefault(op.fid, {})
    elif isinstance(op, Unlink):
        names.pop(op.name, None)
    elif op.src in names:
        names[op.dst] = names.pop(op.src)


def _describe_dirop(op: DirOp) -> str:
    if isinstance(op, Link):
        return f"create {op.name}"
    if isinstance(op, Unlink):
        return f"unlink {op.name}"
    return f"rename {op.src} -> {op.dst}"


def _random_blocks(f: FileView, grain: int, rng: random.Random) -> FileChoice:
    j = rng.choice(f.sizes())
    live = [b for b in f.blocks(grain) if b * grain < len(f.versions[j])]
    picks = tuple((b, rng.choice(f.candidates(b, grain, j))) for b in live)
    return FileChoice(f.fid, j, grain, picks)


def _product_or_sample(
    options: list[list[_T]], rng: random.Random, *, cap: int, samples: int
) -> list[list[_T]]:
    """Every combination (one item per list) if at most ``cap``, else ``samples`` drawn."""
    if not options:
        return []
    total = math.prod(len(o) for o in options)
    if total <= cap:
        combos = [list(c) for c in itertools.product(*options)]
        rng.shuffle(combos)
        return combos
    return [[rng.choice(o) for o in options] for _ in range(samples)]
