"""``sandboxctl repair``: show the damage that needs a person, and cut it when told to.

The event log refuses, on purpose, every defect a crash cannot explain
(``CorruptLogError``): the store does not open until a person decides. This
is what they decide with. Without ``--cut`` it only reads: the damage
(segment, offset, seq, reason, a hex dump) and what a cut would set aside.
With ``--cut`` it cuts the log back to the last whole batch before the
damage (``eventlog.repair.cut``: every cut byte is kept in ``.broken``
files) and then records the repair in the log itself, as a ``LogRepaired``
event, so that the history says where it was cut and why.

Snapshots of the cut history (``<seq>.snap`` beyond the kept seq) are set
aside too (renamed ``.broken``, never deleted): ``verify`` would rightly
call them a history the log no longer has. That happens while the writer
lock is held for the ``LogRepaired`` append, since only a writer makes
snapshots.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from eventlog import EventLog
from eventlog.repair import Damage, RepairResult, cut, diagnose
from eventlog.segments import broken_path, fsync_dir
from replay.view import check_state_dir, has_log
from sandbox import events as ev
from sandbox import snapshot as snap

__all__ = ["RepairReport", "repair_log"]


@attrs.frozen
class RepairReport:
    """What ``repair`` found and, with ``--cut``, did.

    ``damage`` is None for a clean log. ``result`` is set once the log was
    cut; ``event_seq`` is then the seq of the ``LogRepaired`` event and
    ``snapshots`` the names the stale snapshots now have.
    """

    state_dir: str
    damage: Damage | None
    result: RepairResult | None = None
    event_seq: int | None = None
    snapshots: tuple[str, ...] = ()

    @property
    def damaged(self) -> bool:
        """Whether the log is still damaged (found and not cut)."""
        return self.damage is not None and self.result is None

    def to_dict(self) -> dict[str, Any]:
        damage = self.damage
        result = self.result
        return {
            "state_dir": self.state_dir,
            "clean": damage is None,
            "damage": None if damage is None else _damage_dict(damage),
            "repaired": None
            if result is None
            else {
                "kept_seq": result.kept_seq,
                "segment": result.segment,
                "size": result.size,
                "bytes_set_aside": result.bytes_set_aside,
                "broken_files": list(result.broken_files),
                "header_rewritten": result.header_rewritten,
                "snapshots_set_aside": list(self.snapshots),
                "event_seq": self.event_seq,
            },
        }

    def text(self) -> str:
        """The report for a person."""
        damage = self.damage
        if damage is None:
            return "log is clean: nothing to repair\n"
        lines = [f"DAMAGED: {_where(damage)}: {_printable(damage.reason)}"]
        if damage.dump:
            lines.append(damage.dump.rstrip("\n"))
        result = self.result
        if damage.cut_point is None:
            lines.append(_printable(damage.unrepairable))
        elif result is None:
            lines.append(f"--cut {_plan(damage)}:")
            lines += [
                f"  {p.name} from offset {p.offset} ({p.size} bytes"
                + (", the whole file)" if p.offset == 0 else ")")
                for p in damage.set_aside
            ]
            lines.append("nothing was changed; 'sandboxctl repair --cut' cuts the log there")
        else:
            kept = f"seqs 1..{result.kept_seq}" if result.kept_seq else "no records"
            lines.append(
                f"REPAIRED: kept {kept}; {result.bytes_set_aside} bytes set aside in "
                f"{_files(len(result.broken_files))}: {', '.join(result.broken_files)}"
            )
            if result.header_rewritten:
                lines.append(f"{result.segment} was written anew (header only)")
            if self.snapshots:
                lines.append("snapshots of the cut history set aside: " + ", ".join(self.snapshots))
            lines.append(f"recorded as LogRepaired at seq {self.event_seq}")
        return "\n".join(lines) + "\n"


def _printable(text: str) -> str:
    """Control characters escaped: a reason cannot drive the terminal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _where(damage: Damage) -> str:
    seq = f" (seq {damage.seq})" if damage.seq is not None else ""
    return f"{os.path.basename(damage.segment)} at offset {damage.offset}{seq}"


def _plan(damage: Damage) -> str:
    point = damage.cut_point
    assert point is not None
    kept = f"seqs 1..{point.seq}" if point.seq else "no records"
    return (
        f"would keep {kept}, set aside {damage.bytes_set_aside} bytes "
        f"in {_files(len(damage.set_aside))}"
    )


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _damage_dict(damage: Damage) -> dict[str, Any]:
    point = damage.cut_point
    return {
        "segment": os.path.basename(damage.segment),
        "offset": damage.offset,
        "seq": damage.seq,
        "reason": damage.reason,
        "hex_dump": damage.dump,
        "repairable": point is not None,
        "unrepairable": damage.unrepairable or None,
        "cut_point": None if point is None else attrs.asdict(point),
        "set_aside": [attrs.asdict(p) for p in damage.set_aside],
        "bytes_set_aside": damage.bytes_set_aside,
        "plan": None if point is None else _plan(damage),
    }


def _set_aside_snapshots(state_dir: str, kept_seq: int) -> tuple[str, ...]:
    """Rename every snapshot beyond ``kept_seq`` to ``.broken``; their new names."""
    moved: list[str] = []
    for seq, path in sorted(snap.list_snapshots(state_dir)):
        if seq > kept_seq:
            target = broken_path(path)
            os.rename(path, target)
            moved.append(os.path.basename(target))
    if moved:
        fsync_dir(state_dir)
    return tuple(moved)


def repair_log(
    state_dir: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    cut_log: bool = False,
    actor: str | None = None,
) -> RepairReport:
    """Diagnose the log in ``state_dir``; with ``cut_log``, cut it and record the repair.

    Raises ``StateDirMissingError`` for a missing state dir, ``KeyRequiredError``
    for a keyed log without ``key``, ``UnrepairableError`` (a CorruptLogError)
    when ``cut_log`` meets damage no cut can fix, and ``LogLockedError`` while
    a writer holds the log.
    """
    d = os.path.abspath(check_state_dir(state_dir))
    if not has_log(d):
        return RepairReport(d, None)
    damage = diagnose(d, key=key)
    if damage is None or not cut_log:
        return RepairReport(d, damage)
    result = cut(d, damage, key=key)
    point = damage.cut_point
    assert point is not None  # cut refuses damage without one
    with EventLog.open(d, durability="always", key=key) as log:
        snapshots = _set_aside_snapshots(d, result.kept_seq)
        event = ev.log_repaired(
            ev.Envelope(actor)(),
            damage_segment=os.path.basename(damage.segment),
            damage_offset=damage.offset,
            damage_seq=damage.seq,
            reason=damage.reason,
            cut_seq=point.seq,
            cut_segment=point.segment,
            cut_offset=point.offset,
            bytes_set_aside=result.bytes_set_aside,
            broken_files=list(result.broken_files),
            snapshots_set_aside=list(snapshots),
        )
        seq = log.append(event)
    return RepairReport(d, damage, result, seq, snapshots)
