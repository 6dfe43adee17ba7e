"""One result row of ``sandboxctl bench``, the aggregation of repetitions, and rendering.

Why a type of its own: the per-area benchmark modules (``replay.bench.log``,
``.store``, ``.netns``, ``.fleet``) return plain dicts (``name``, ``value``,
``unit``, ``reference_name``, ``reference_value``, ``ratio``, ``target``) so
that each stays runnable alone, and they spell a target in different ways
(a bare float meaning ">=", or a sentence such as ``"<= 0.05 of creation"``).
The runner needs one shape to take medians over repetitions, decide
pass/miss the same way everywhere, and print the same table in every
format, so every dict is normalised here once.

A row's ``ratio`` is the one its module computed (``value / reference`` for
throughputs; for a time per item the module may invert it so that higher
is still better); the row's ``target`` says which way it must go
(``>= x`` or ``<= x``). Several repetitions give a median for value,
reference and ratio, with the min..max spread beside each. The ratio's
median is taken over the per-repetition ratios (each repetition measures a
figure and its reference back to back, so their ratio is steadier than the
ratio of two medians taken at different moments of a noisy machine).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

__all__ = [
    "FORMATS",
    "Report",
    "Row",
    "Spread",
    "Target",
    "aggregate",
    "fmt_num",
    "render",
    "render_json",
    "render_markdown",
    "render_table",
    "skipped_rows",
]

FORMATS = ("table", "json", "markdown")

Op = Literal[">=", "<="]

_TARGET_RE = re.compile(
    r"^\s*(>=|<=|\u2265|\u2264)\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(?:\s*/\s*([0-9]*\.?[0-9]+))?\s*(.*)$"
)
#: The keys every module's row dict carries; anything else is kept as an extra.
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
        """``(target, remaining text)`` from a module's ``target`` field.

        A number means ``>=`` (``replay.bench.log``); a string starting with
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
    """One figure beside its reference, their ratio and the target for it."""

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
    def from_dict(cls, d: Mapping[str, Any], group: str = "") -> Row:
        """Normalise one row dict of a per-area module (one repetition)."""
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
        """The JSON shape: the module keys first, then what the runner adds."""

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


def aggregate(samples: Sequence[Sequence[Mapping[str, Any]]], group: str) -> list[Row]:
    """Median (and min..max) per row name over repetitions of one row function.

    ``samples[i]`` is what repetition i returned. Rows keep the order in which
    their names first appear. A skipped row stays skipped; numeric extras
    (``records_per_sync``) get their median too.
    """
    order: list[str] = []
    by_name: dict[str, list[Row]] = {}
    for rep in samples:
        for d in rep:
            row = d if isinstance(d, Row) else Row.from_dict(d, group)
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


# -- rendering -----------------------------------------------------------------------------


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


def _with_spread(x: float | None, s: Spread | None) -> str:
    return fmt_num(x) if s is None else f"{fmt_num(x)} ({s})"


def _note(row: Row) -> str:
    parts = []
    if row.skipped is not None:
        parts.append(row.skipped)
    if row.target_note:
        parts.append(row.target_note)
    if row.note:
        parts.append(row.note)
    rps = _num(row.extra.get("records_per_sync"))
    if rps is not None:
        parts.append(f"{rps:.1f} records per fdatasync")
    return "; ".join(parts)


_HEADERS = ("group", "benchmark", "value", "unit", "reference", "ref value", "ratio", "target")
_TAIL_HEADERS = ("mark", "reps", "note")


def _cells(row: Row) -> list[str]:
    return [
        row.group,
        row.name,
        _with_spread(row.value, row.value_spread),
        row.unit,
        row.reference_name or "-",
        _with_spread(row.reference_value, row.reference_spread),
        _with_spread(row.ratio, row.ratio_spread),
        row.target_text,
        row.verdict,
        str(row.reps),
        _note(row),
    ]


@attrs.frozen
class Report:
    """Everything one ``sandboxctl bench`` run prints: facts on top, then rows."""

    title: str
    command: str
    facts: Sequence[tuple[str, str]]
    rows: Sequence[Row]
    wall_seconds: float
    facts_json: Mapping[str, Any] = attrs.field(factory=dict)
    settings: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def misses(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "MISS"]


def _summary(report: Report) -> str:
    counts: dict[str, int] = {}
    for r in report.rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    parts = [f"{counts[k]} {k}" for k in ("pass", "MISS", "n/a", "skip") if counts.get(k)]
    return (
        f"{len(report.rows)} rows: " + ", ".join(parts) + f"; wall time {report.wall_seconds:.1f} s"
    )


_NUMERIC_COLS = {2, 5, 6}


def render_table(report: Report) -> str:
    """Aligned plain text for a terminal: facts as ``key: value`` lines, then the rows."""
    lines = [report.title, f"command: {report.command}"]
    width = max((len(k) for k, _ in report.facts), default=0) + 1
    lines += [f"{(k + ':').ljust(width)} {v}" for k, v in report.facts]
    lines.append("")
    table = [list(_HEADERS + _TAIL_HEADERS)] + [_cells(r) for r in report.rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for j, cells in enumerate(table):
        parts = []
        for i, cell in enumerate(cells):
            right = i in _NUMERIC_COLS and j > 0
            parts.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown section: facts as a list, rows as a table."""
    lines = [f"**{_md_escape(report.title)}**", "", f"Command: `{report.command}`", ""]
    lines += [f"- {k}: {_md_escape(v)}" for k, v in report.facts]
    lines.append("")
    headers = [*_HEADERS[1:], *_TAIL_HEADERS]
    lines.append("| " + " | ".join(headers) + " |")
    align = ["---:" if i + 1 in _NUMERIC_COLS else "---" for i in range(len(headers))]
    lines.append("| " + " | ".join(align) + " |")
    for row in report.rows:
        cells = _cells(row)[1:]
        cells[0] = f"{row.group}: {row.name}" if row.group else row.name
        if row.verdict == "MISS":
            cells[7] = "**MISS**"
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    lines.append("")
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    """One JSON document: machine facts, settings, rows (medians + spreads), wall time."""
    doc = {
        "title": report.title,
        "command": report.command,
        "machine": dict(report.facts_json) or dict(report.facts),
        "settings": dict(report.settings),
        "wall_seconds": report.wall_seconds,
        "rows": [r.to_dict() for r in report.rows],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def render(report: Report, fmt: str) -> str:
    """``table``, ``json`` or ``markdown``."""
    if fmt == "table":
        return render_table(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
