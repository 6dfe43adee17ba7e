"""Rendering for people (tables) and for scripts (json, jsonl).

Why one module: every command must print the same way - a table laid out as
``crictl`` lays its tables out (Go's tabwriter with minimum cell width 20 and
three spaces of padding), one pretty JSON document for ``-o json``, and one
compact JSON object per line for ``-o jsonl`` on streams, flushed per line so
that ``sandboxctl follow -o jsonl | jq`` sees each event as it arrives.

Why every table cell goes through ``printable``: a cell holds what a client
wrote (a pod name, a label, a reason) and a table goes to a person's terminal.
A raw ESC, CR or LF there can forge a row or drive the terminal (retitle it,
clear it), so the table renderers escape every character that is not
printable, the way Python's ``ascii()`` writes it (``\\x1b``, ``\\r``,
``\\n``, ``\\u202e``), and double a backslash so that an escape can never be
faked by typing one. JSON is for programs: it keeps the exact string (its own
encoding already makes a control character harmless).

Why the tables are not drawn by ``rich``: crictl's layout is what scripts cut
with ``awk`` and what the golden files pin, a streamed table (``follow``)
cannot be measured up front, and rich fits a table to the terminal's width by
folding or cutting cells - hiding data. docs/CLI.md has the figures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

FORMATS = ("table", "json")
STREAM_FORMATS = ("table", "json", "jsonl")

#: crictl: tabwriter.NewWriter(os.Stdout, 20, 1, 3, ' ', 0)
MIN_WIDTH = 20
PADDING = 3


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped, and ``\\`` doubled.

    Non-printable is Python's ``str.isprintable``: the C0 and C1 controls,
    DEL, and the invisible format characters (bidi overrides, zero-width
    joiners) that can make a cell read as something it is not.
    """
    if text.isprintable() and "\\" not in text:
        return text  # the common case: one scan, no copy
    return "".join("\\\\" if c == "\\" else c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _cell(value: object) -> str:
    return "" if value is None else printable(str(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Lay ``rows`` out under ``headers`` the way crictl does.

    Every column but the last is padded to max(20, widest cell + 3); the last
    is left ragged, and no line carries trailing blanks. Every cell is
    escaped with ``printable``: one row of data is one line of output.
    """
    cells = [[_cell(h) for h in headers]] + [[_cell(c) for c in r] for r in rows]
    ncols = max(len(r) for r in cells)
    widths = [0] * ncols
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            if i == len(row) - 1:
                parts.append(cell)
            else:
                parts.append(cell.ljust(max(MIN_WIDTH, widths[i] + PADDING)))
        lines.append("".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """``key: value`` lines with the keys aligned, for single-object detail
    (escaped as table cells are: a value cannot add a line of its own)."""
    items = [(printable(k), _cell(v)) for k, v in pairs]
    if not items:
        return ""
    width = max(len(k) for k, _ in items) + 1
    return "".join(f"{(k + ':').ljust(width)} {v}".rstrip() + "\n" for k, v in items)


def to_json(obj: Any) -> str:
    """One JSON document, indented, keys in the order the code built them."""
    return json.dumps(obj, indent=2, ensure_ascii=False, default=_default) + "\n"


def to_jsonl(obj: Any) -> str:
    """One compact JSON object on one line."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_default) + "\n"


def _default(obj: object) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    return str(obj)


def emit(text: str, stream: TextIO | None = None) -> None:
    """Write and flush (streams must reach a pipe as they happen)."""
    out = stream if stream is not None else sys.stdout
    out.write(text)
    out.flush()


class StreamTable:
    """A table printed row by row as data arrives (follow, log, audit).

    A streamed table cannot measure its columns first, so widths are fixed up
    front (at least crictl's 20, or the given width + padding); a longer cell
    pushes its row out rather than being cut - nothing is ever hidden. Cells
    are escaped with ``printable``, as in ``table``.
    """

    def __init__(self, columns: Sequence[tuple[str, int]]) -> None:
        self.columns = list(columns)

    def header(self) -> str:
        return self.row([name for name, _ in self.columns])

    def row(self, cells: Sequence[object]) -> str:
        parts = []
        last = len(self.columns) - 1
        for i, ((_name, width), cell) in enumerate(zip(self.columns, cells, strict=True)):
            text = _cell(cell)
            parts.append(text if i == last else text.ljust(max(width, len(text) + PADDING)))
        return "".join(parts).rstrip() + "\n"
