"""The one model of a benchmark row, of a suite's result, and of repetitions' medians.

Why one model: every bench module (``log``, ``store``, ``openscale``,
``verify``, ``netns``, ``fleet``) measures a figure beside a raw reference
and builds a ``Row`` with ``Row.measured``; the runner takes medians over
repetitions with ``aggregate``, and the renderers (``replay.bench.render``)
print the same rows as a table, JSON or Markdown. A target is decided in
one place (``Target``), so pass/MISS means the same everywhere.

A row's ``ratio`` is ``value / reference`` unless its module says
otherwise (for a time per item the module may invert it so that higher is
still better); the row's ``target`` says which way it must go (``>= x`` or
``<= x``). Several repetitions give a median for value, reference and
ratio, with the min..max spread beside each. The ratio's median is taken
over the per-repetition ratios (each repetition measures a figure and its
reference back to back, so their ratio is steadier than the ratio of two
medians taken at different moments of a noisy machine).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

__all__ = [
    "Row",
    "Spread",
    "SuiteResult",
    "Target",
    "aggregate",
    "fmt_num",
    "skipped_rows",
]

Op = Literal[">=", "<="]

_TARGET_RE = re.compile(
    r"^\s*(>=|<=|\u2265|\u2264)\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(?:\s*/\s*([0-9]*\.?[0-9]+))?\s*(.*)$"
)
#: The keys of a row's loose dict form; anything else is kept as an extra.
_CORE_KEYS = frozenset(
    {"name", "value", "unit", "reference_name", "reference_value", "ratio", "target"}
)


@attrs.frozen
class Target:
    """The ratio a figure must reach (``>=``) or stay under (``<=``)."""

    op: Op
    value: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"

    @classmethod
    def parse(cls, spec: object) -> tuple[Target | None, str]:
        """``(target, remaining text)`` from a row's target as its module spells it.

        A number means ``>=``; a string starting with
        ``>=``/``<=`` and a number or fraction (``"<= 1/20 of creation"``)
        is parsed and the rest kept as a note; any other string ("reported",
        "reference only ...") has no target and becomes the note.
        """
        if spec is None:
            return None, ""
        if isinstance(spec, bool):
            raise TypeError(f"target must be a number or a string, got {spec!r}")
        if isinstance(spec, (int, float)):
            return (None, "") if math.isnan(spec) else (cls(">=", float(spec)), "")
        if isinstance(spec, Target):
            return spec, ""
        if isinstance(spec, Mapping) and spec.get("op") in (">=", "<="):
            return cls(spec["op"], float(spec["value"])), str(spec.get("note", ""))
        text = str(spec).strip()
        m = _TARGET_RE.match(text)
        if m is None:
            return None, text
        op: Op = ">=" if m.group(1) in (">=", "\u2265") else "<="
        value = float(m.group(2))
        if m.group(3):
            value /= float(m.group(3))
        return cls(op, value), m.group(4).strip()


@attrs.frozen
class Spread:
    """min..max of the repetitions a median was taken over."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"{fmt_num(self.low)}..{fmt_num(self.high)}"


def _num(x: object) -> float | None:
    """A float, or None for a missing/NaN/non-numeric figure."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    f = float(x)
    return None if math.isnan(f) or math.isinf(f) else f


@attrs.frozen
class Row:
    """One figure beside its reference, their ratio, the target for it and its mark.

    Bench modules build one per figure and repetition (``measured``); the
    runner's ``aggregate`` turns repetitions into one row with medians and
    spreads. ``verdict`` is the mark every renderer prints.
    """

    name: str
    group: str
    value: float | None
    unit: str
    reference_name: str
    reference_value: float | None
    ratio: float | None
    target: Target | None
    target_note: str = ""
    value_spread: Spread | None = None
    reference_spread: Spread | None = None
    ratio_spread: Spread | None = None
    reps: int = 1
    skipped: str | None = None
    note: str = ""
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def verdict(self) -> str:
        """``pass``, ``MISS``, ``n/a`` (no target or no ratio) or ``skip``."""
        if self.skipped is not None:
            return "skip"
        if self.target is None or self.ratio is None:
            return "n/a"
        return "pass" if self.target.met(self.ratio) else "MISS"

    @property
    def target_text(self) -> str:
        return "n/a" if self.target is None else str(self.target)

    @classmethod
    def measured(
        cls,
        name: str,
        value: float,
        reference_name: str,
        reference_value: float | None,
        target: object,
        *,
        unit: str,
        ratio: float | None = None,
        group: str = "",
        note: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> Row:
        """One repetition's figure beside its reference; ``ratio`` defaults to value / reference.

        ``target`` is spelled as the module likes it (see ``Target.parse``);
        ``group`` may be left to the runner (``aggregate`` fills it in).
        """
        value_f, ref_f = _num(value), _num(reference_value)
        if ratio is None and value_f is not None and ref_f:
            ratio = value_f / ref_f
        parsed, target_note = Target.parse(target)
        return cls(
            name=name,
            group=group,
            value=value_f,
            unit=unit,
            reference_name=reference_name,
            reference_value=ref_f,
            ratio=_num(ratio),
            target=parsed,
            target_note=target_note,
            note=note,
            extra=dict(extra or {}),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], group: str = "") -> Row:
        """A row from its loose dict form (the keys of ``to_dict``, a target as spelled)."""
        target, target_note = Target.parse(d.get("target"))
        extra = {k: v for k, v in d.items() if k not in _CORE_KEYS and k != "group"}
        skipped = extra.pop("skipped", None)
        note = str(extra.pop("note", "") or "")
        return cls(
            name=str(d["name"]),
            group=str(d.get("group") or group),
            value=_num(d.get("value")),
            unit=str(d.get("unit") or ""),
            reference_name=str(d.get("reference_name") or ""),
            reference_value=_num(d.get("reference_value")),
            ratio=_num(d.get("ratio")),
            target=target,
            target_note=target_note,
            skipped=None if skipped is None else str(skipped),
            note=note,
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: the measured keys first, then what the runner adds."""

        def spread(s: Spread | None) -> list[float] | None:
            return None if s is None else [s.low, s.high]

        return {
            "name": self.name,
            "group": self.group,
            "value": self.value,
            "unit": self.unit,
            "reference_name": self.reference_name,
            "reference_value": self.reference_value,
            "ratio": self.ratio,
            "target": None if self.target is None else str(self.target),
            "target_note": self.target_note,
            "verdict": self.verdict,
            "value_spread": spread(self.value_spread),
            "reference_spread": spread(self.reference_spread),
            "ratio_spread": spread(self.ratio_spread),
            "reps": self.reps,
            "skipped": self.skipped,
            "note": self.note,
            "extra": dict(self.extra),
        }


def skipped_rows(names: Iterable[str], group: str, reason: str, unit: str = "") -> list[Row]:
    """Rows that say why they were not measured (missing extra, not root, an error)."""
    return [
        Row(
            name=n,
            group=group,
            value=None,
            unit=unit,
            reference_name="",
            reference_value=None,
            ratio=None,
            target=None,
            reps=0,
            skipped=reason,
        )
        for n in names
    ]


def _median_spread(xs: Sequence[float | None]) -> tuple[float | None, Spread | None]:
    vals = [x for x in xs if x is not None]
    if not vals:
        return None, None
    return statistics.median(vals), (Spread(min(vals), max(vals)) if len(vals) > 1 else None)


def aggregate(samples: Sequence[Sequence[Row | Mapping[str, Any]]], group: str) -> list[Row]:
    """Median (and min..max) per row name over repetitions of one row function.

    ``samples[i]`` is what repetition i returned (rows, or their dict form);
    a row without a group gets ``group``. Rows keep the order in which
    their names first appear. A skipped row stays skipped; numeric extras
    (``records_per_sync``) get their median too.
    """
    order: list[str] = []
    by_name: dict[str, list[Row]] = {}
    for rep in samples:
        for d in rep:
            row = Row.from_dict(d, group) if not isinstance(d, Row) else d
            if not row.group:
                row = attrs.evolve(row, group=group)
            if row.name not in by_name:
                order.append(row.name)
                by_name[row.name] = []
            by_name[row.name].append(row)
    out: list[Row] = []
    for name in order:
        reps = by_name[name]
        first = reps[-1]
        measured = [r for r in reps if r.skipped is None]
        if not measured:
            out.append(first)
            continue
        value, value_spread = _median_spread([r.value for r in measured])
        ref, ref_spread = _median_spread([r.reference_value for r in measured])
        ratio, ratio_spread = _median_spread([r.ratio for r in measured])
        extra: dict[str, Any] = {}
        for key in first.extra:
            xs = [_num(r.extra.get(key)) for r in measured]
            if all(x is not None for x in xs):
                extra[key] = statistics.median([x for x in xs if x is not None])
            else:
                extra[key] = measured[-1].extra.get(key)
        out.append(
            attrs.evolve(
                measured[-1],
                value=value,
                value_spread=value_spread,
                reference_value=ref,
                reference_spread=ref_spread,
                ratio=ratio,
                ratio_spread=ratio_spread,
                reps=len(measured),
                extra=extra,
            )
        )
    return out


@attrs.frozen
class SuiteResult:
    """What one suite (a group: log, store, ...) gave in a run.

    Why a type: a suite that cannot run or fails still shows its rows (with
    the reason as ``skipped``), and the run's exit status depends on
    whether any suite failed, so the rows travel with the failure, if any.
    """

    group: str
    rows: Sequence[Row]
    error: str | None = None

    @classmethod
    def not_run(cls, group: str, names: Iterable[str], reason: str, *, failed: bool) -> SuiteResult:
        """The suite's expected rows, each saying ``reason``; an error if ``failed``."""
        return cls(group, skipped_rows(names, group, reason), reason if failed else None)


def fmt_num(x: float | None) -> str:
    """About three significant digits, thousands separated; "-" for no figure."""
    if x is None or math.isnan(x):
        return "-"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a == 0:
        return "0"
    return f"{x:.3g}"
