"""The renderers of a bench run: table, JSON, Markdown, and the open-time plot.

Why apart from the row model (``replay.bench.rows``): the rows are what
every bench module builds and the runner aggregates; how they look is a
separate job with its own reader - the table is what people read, the JSON
is what scripts and CI logs keep, the Markdown goes into
docs/BENCHMARKS.md, the plot shows the open-scale figures. Every format
shows the same rows, columns and marks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .rows import Row, Spread, fmt_num

if TYPE_CHECKING:
    from .openscale import OpenPoint

__all__ = [
    "FORMATS",
    "Report",
    "plot_open_scale",
    "render",
    "render_json",
    "render_markdown",
    "render_table",
]

FORMATS = ("table", "json", "markdown")


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
    rps = row.extra.get("records_per_sync")
    if isinstance(rps, (int, float)) and not isinstance(rps, bool):
        parts.append(f"{rps:.1f} records per fdatasync")
    return "; ".join(parts)


_HEADERS = ("group", "benchmark", "value", "unit", "reference", "ref value", "ratio", "target")
_TAIL_HEADERS = ("mark", "reps", "note")
_NUMERIC_COLS = {2, 5, 6}


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


def _summary(report: Report) -> str:
    counts: dict[str, int] = {}
    for r in report.rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    parts = [f"{counts[k]} {k}" for k in ("pass", "MISS", "n/a", "skip") if counts.get(k)]
    return (
        f"{len(report.rows)} rows: " + ", ".join(parts) + f"; wall time {report.wall_seconds:.1f} s"
    )


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


_PLOT_LABELS = {
    "full": "full replay (no snapshot)",
    "snap99": "snapshot at 99% + 1% tail",
    "head": "snapshot at the last event",
}


def plot_open_scale(points: Sequence[OpenPoint], path: str, *, title: str = "") -> str:
    """Write a PNG of open time vs log size (log-log), medians with min..max bars.

    matplotlib comes with the optional ``bench`` extra; ImportError says so.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the plot needs matplotlib: pip install .[bench]") from exc

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [p.events for p in points]
    for variant, marker in (("full", "o"), ("snap99", "s"), ("head", "^")):
        meds = [p.median(variant) * 1000 for p in points]
        lows = [m - min(p.seconds[variant]) * 1000 for m, p in zip(meds, points, strict=True)]
        highs = [max(p.seconds[variant]) * 1000 - m for m, p in zip(meds, points, strict=True)]
        label = _PLOT_LABELS[variant]
        ax.errorbar(xs, meds, yerr=[lows, highs], marker=marker, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events in the log")
    ax.set_ylabel("Store.open time (ms, median; bars: min..max)")
    ax.set_title(title or "Store.open: snapshot + tail vs full replay")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
