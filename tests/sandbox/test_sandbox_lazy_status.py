"""A snapshot's statuses are checked at load and built on first use.

``event_decode.status_rows`` must accept exactly the rows
``status_from_values``' fast check accepts (keeping them as rows), hand any
other to ``statuses_from_values`` (which builds or raises), and so raise what
that raises, first error first. A projection loaded from a snapshot then holds
rows until a status is read; its reads, ``to_snapshot`` and equality are what
a projection of built Statuses gives, before and after the first read.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
import support

from sandbox import PodSandboxConfig
from sandbox import events as ev
from sandbox.event_decode import (
    _fast_status,
    _rows_pass_fast,
    status_from_values,
    status_rows,
    statuses_from_values,
)
from sandbox.metadata import Metadata
from sandbox.projection import SANDBOX_COLUMNS, Projection
from sandbox.snapshot_check import as_format_3
from sandbox.status import State, Status

I64 = 2**63


class _Pid(enum.IntEnum):
    """An int subclass: the reference constructor accepts one, the fast check does not."""

    ONE = 1


GOOD: list[tuple[object, ...]] = [
    ("READY", 1, 2, None, None),
    ("NOTREADY", 0, -I64, I64 - 1, -I64),
    ("UNKNOWN", I64 - 1, I64 - 1, -5, 3),
    ("READY", 0, 0, 0, 0),
    ("READY", 7, 1, None, I64 - 1),
]
#: Rows the fast check refuses that the reference constructor still accepts.
SLOW_GOOD: list[tuple[object, ...]] = [
    (State.READY, 1, 2, None, None),
    ("READY", _Pid.ONE, 2, None, None),
]
BAD: list[Any] = [
    ("GONE", 1, 2, None, None),
    ("READY", -1, 2, None, None),
    ("READY", I64, 2, None, None),
    ("READY", True, 2, None, None),
    ("READY", 1.0, 2, None, None),
    ("READY", 1, I64, None, None),
    ("READY", 1, -I64 - 1, None, None),
    ("READY", 1, "2", None, None),
    ("READY", 1, 2, -I64 - 1, None),
    ("READY", 1, 2, I64, None),
    ("READY", 1, 2, None, 2.5),
    ("READY", 1, 2, None, -I64 - 1),
    ("READY", 1, 2, False, None),
    ("READY", 1, 2, None),
    ("READY", 1, 2, None, None, None),
    (None, 1, 2, None, None),
    7,
    None,
]


def _mixes(good: Sequence[Any], bad: Sequence[Any]) -> list[list[Any]]:
    """Good rows alone, each bad one alone, among good ones (first, middle, last),
    and two bad ones in both orders."""
    out: list[list[Any]] = [list(good), []]
    for b in bad:
        out += [[b], [b, *good], [*good[:2], b, *good[2:]], [*good, b]]
    out += [[good[0], a, b] for a, b in itertools.permutations(bad[:6], 2)]
    return out


@pytest.mark.parametrize("rows", _mixes(GOOD, BAD + SLOW_GOOD))
def test_the_column_check_is_the_fast_check(rows: list[Any]) -> None:
    def each() -> bool:
        return all(_fast_status(*row) is not None for row in rows)

    fast = support.error_of(each)
    assert _rows_pass_fast(rows) == (fast is None and each())


@pytest.mark.parametrize("rows", _mixes(GOOD, BAD + SLOW_GOOD))
def test_status_rows_raise_and_build_what_statuses_from_values_does(rows: list[Any]) -> None:
    got = support.error_of(lambda: status_rows(rows))
    assert got == support.error_of(lambda: statuses_from_values(rows))
    if got is not None:
        return
    out = status_rows(rows)
    built = [st if isinstance(st, Status) else status_from_values(*st) for st in out]
    assert built == statuses_from_values(rows)
    if _rows_pass_fast(rows):
        assert all(type(row) is tuple for row in out)
    else:  # the fast check could not vouch for them: built now, as before
        assert all(type(st) is Status for st in out)


def test_rows_given_as_lists_are_copied() -> None:
    rows = [["READY", 1, 2, None, None]]
    out = status_rows(rows)
    rows[0][1] = 99
    assert out == [("READY", 1, 2, None, None)]


def _projection() -> Projection:
    env = ev.Envelope("test")
    proj = Projection()
    statuses = [
        Status(State.READY, pid=1, created_at=5),
        Status(State.NOTREADY, pid=0, created_at=-3, exited_at=9, exit_status=137),
        Status(State.UNKNOWN, pid=2, created_at=I64 - 1, exited_at=None, exit_status=0),
    ]
    for i, st in enumerate(statuses):
        md = Metadata(f"{i:02x}" * 32, f"pod{i}", PodSandboxConfig())
        proj.apply(i + 1, ev.sandbox_added(env(), md, st))
    return proj


@pytest.mark.parametrize("check", [False, True])
def test_a_loaded_projection_builds_its_statuses_on_first_use(check: bool) -> None:
    truth = _projection()
    body = truth.to_snapshot()
    loaded = Projection.from_snapshot(body, check=check)
    entries = loaded._sandboxes
    assert all(type(e.status) is tuple for e in entries.values())
    assert loaded == truth and loaded.to_snapshot() == body
    first = truth.ids()[0]
    assert loaded.state_of(first) is truth.state_of(first)
    assert type(entries[first].status) is Status  # built once, then kept
    assert type(entries[truth.ids()[1]].status) is tuple
    for sandbox_id in truth.ids():
        assert loaded.status_of(sandbox_id) == truth.status_of(sandbox_id)
    assert loaded.sandboxes() == truth.sandboxes()
    assert loaded == truth and loaded.to_snapshot() == body


def test_a_status_update_replaces_a_row_not_yet_built() -> None:
    truth = _projection()
    loaded = Projection.from_snapshot(truth.to_snapshot())
    sandbox_id = truth.ids()[2]
    update = ev.status_updated(ev.Envelope("test")(), sandbox_id, Status(State.NOTREADY, pid=0))
    for proj in (truth, loaded):
        proj.apply(4, update)
    assert loaded == truth and loaded.sandboxes() == truth.sandboxes()


# Format 4 has no row to be of the wrong length (its columns' lengths are checked).
@pytest.mark.parametrize(
    ("bad", "fmt"),
    [(row, fmt) for fmt in (3, 4) for row in BAD if isinstance(row, tuple)
     if fmt == 3 or len(row) == 5],
)  # fmt: skip
def test_a_bad_status_refuses_the_snapshot(bad: tuple[object, ...], fmt: int) -> None:
    body = _projection().to_snapshot()
    if fmt == 4:  # by column: the five status columns
        for key, value in zip(SANDBOX_COLUMNS[4:9], bad, strict=True):
            body[key][1] = value
    else:
        body = as_format_3(body)
        body["sandboxes"][1][4] = list(bad)
    expected = support.error_of(lambda: status_from_values(*bad))
    assert expected is not None
    got = support.error_of(lambda: Projection.from_snapshot(body))
    assert got is not None and got[0] is ValueError
    assert repr(expected[0](expected[1])) in got[1]
