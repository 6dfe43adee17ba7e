"""What the per-area benchmark modules share: result rows, scratch, rounds, a plain table.

``replay.bench.log``, ``.store``, ``.netns`` and ``.fleet`` each stay
runnable alone (``python -m replay.bench.<module>``) and return plain row
dicts (``name``, ``value``, ``unit``, ``reference_name``,
``reference_value``, ``ratio``, ``target``) that ``replay.bench.rows``
normalises for ``sandboxctl bench``. The dict is built here once, as are
the scratch directory, the interleaved rounds and the table their ``main``
prints. Imports only the standard library and msgpack.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgpack

__all__ = [
    "RowDict",
    "best_of_rounds",
    "count_unpacked",
    "format_table",
    "result_row",
    "scratch",
    "write_fdatasync_loop",
]

RowDict = dict[str, Any]


def result_row(
    name: str,
    value: float,
    reference_name: str,
    reference_value: float | None,
    target: float | str | None,
    *,
    unit: str,
    ratio: float | None = None,
) -> RowDict:
    """One figure beside its reference; ``ratio`` defaults to value / reference."""
    if ratio is None and reference_value:
        ratio = value / reference_value
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "reference_name": reference_name,
        "reference_value": reference_value,
        "ratio": ratio,
        "target": target,
    }


@contextmanager
def scratch(parent: str | None, prefix: str) -> Iterator[str]:
    """A temporary directory under ``parent`` (system temp if None), removed afterwards."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def best_of_rounds(rounds: int, *fns: Callable[[], float]) -> list[float]:
    """Run the measurements interleaved ``rounds`` times; the best rate of each.

    Interleaving puts a figure and its reference under the same conditions
    (a shared VM's load comes and goes); the best round is the one least
    disturbed by others.
    """
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = max(best[i], fn())
    return best


def write_fdatasync_loop(
    path: str, record: bytes, count: int, timed: Callable[[Callable[[], None]], float]
) -> float:
    """``timed(loop)`` of ``count`` bare os.write + os.fdatasync calls of ``record``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:

        def loop() -> None:
            for _ in range(count):
                os.write(fd, record)
                os.fdatasync(fd)

        return timed(loop)
    finally:
        os.close(fd)


def count_unpacked(path: str) -> int:
    """How many msgpack objects a bare streaming ``msgpack.Unpacker`` reads from ``path``."""
    n = 0
    with open(path, "rb") as f:
        for _ in msgpack.Unpacker(f, raw=False, read_size=1 << 20):
            n += 1
    return n


def _fmt_figure(x: float, unit: str) -> str:
    return f"{x:,.3f} s" if unit == "s" else f"{x:,.0f}"


def _met(ratio: float, target: float | str) -> bool:
    if isinstance(target, str) and target.startswith("<="):
        return ratio <= float(target[2:])
    return ratio >= float(target)


def format_table(
    rows: Sequence[RowDict],
    *,
    name_width: int,
    reference_width: int,
    target_width: int = 7,
    ratio_digits: int = 2,
) -> str:
    """A plain table, one line per figure (``ok`` is yes/NO against the target).

    A number as target means ``>=``, a string starting ``<=`` is an upper
    bound; a figure in seconds (unit ``s``) keeps three decimals.
    """
    lines = [
        f"{'benchmark':<{name_width}} {'value':>12}  {'reference':<{reference_width}} "
        f"{'ref value':>12} {'ratio':>7} {'target':>{target_width}}  ok"
    ]
    for r in rows:
        ratio, target, ref, unit = r["ratio"], r["target"], r["reference_value"], r["unit"]
        ok = "-" if target is None or ratio is None else ("yes" if _met(ratio, target) else "NO")
        refv = _fmt_figure(ref, unit) if ref else "-"
        shown_ratio = f"{ratio:.{ratio_digits}f}" if ratio is not None else "-"
        shown_target = (
            "-" if target is None else (target if isinstance(target, str) else f">={target:g}")
        )
        lines.append(
            f"{r['name']:<{name_width}} {_fmt_figure(r['value'], unit):>12}  "
            f"{r['reference_name']:<{reference_width}} {refv:>12} "
            f"{shown_ratio:>7} {shown_target:>{target_width}}  {ok}"
        )
        if "records_per_sync" in r:
            lines.append(f"{'':<{name_width}} ({r['records_per_sync']:.1f} records per fdatasync)")
    return "\n".join(lines)
