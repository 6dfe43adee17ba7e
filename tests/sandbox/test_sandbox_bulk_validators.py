"""The bulk forms a snapshot's load uses give what the single-item ones give.

``validate_ids`` / ``validate_names`` (sandbox.ids), ``statuses_from_values``
(sandbox.event_decode), ``Registrar.reserve_many`` / ``TruncIndex.add_many`` and
``projection_entry.check_fields`` / ``check_all`` must accept exactly what a
loop of the single-item calls accepts and raise the same first error (type and
message), on good values, on each kind of bad value alone, and on a bad value
among good ones. Metadata's id and name validators are the ones ``sandbox.ids``
checks in bulk (checked here too, through ``Metadata`` itself).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import pytest
import support

from sandbox import PodSandboxConfig
from sandbox import events as ev
from sandbox.event_decode import status_from_values, statuses_from_values
from sandbox.ids import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    Registrar,
    TruncIndex,
    validate_id,
    validate_ids,
    validate_name,
    validate_names,
)
from sandbox.metadata import Metadata
from sandbox.projection import SANDBOX_COLUMNS, Projection
from sandbox.projection_entry import Entry, check_all, check_fields, metadata_of
from sandbox.snapshot_check import as_format_3
from sandbox.status import State, Status


class _Str(str):
    """A str subclass: the single validators accept one (isinstance)."""


GOOD_IDS: list[object] = ["a" * 64, "x", "A-b_c.d:e@f", "i" * MAX_ID_LENGTH, "é-id", _Str("sub")]
BAD_IDS: list[object] = [
    "",
    "i" * (MAX_ID_LENGTH + 1),
    "has space",
    "has/slash",
    "nul\x00",
    "tab\t",
    "nl\n",
    "\x7f",
    "no\u00a0break",
    "\u2028",
    "surrogate\ud800",
    5,
    None,
    b"bytes",
    ["a"],
]
GOOD_NAMES: list[object] = [
    "pod_ns_uid_0",
    "with space",
    "with/slash",
    "ünïcode",
    "n" * MAX_NAME_LENGTH,
    "\t\n",
    _Str("s"),
]
BAD_NAMES: list[object] = [
    "",
    "n" * (MAX_NAME_LENGTH + 1),
    "nul\x00",
    "ü\x00",
    "surrogate\udfff",
    3,
    None,
    b"name",
]


def _one_by_one(check: Callable[[object], object], values: Sequence[object]) -> Any:
    def loop() -> None:
        for value in values:
            check(value)

    return support.error_of(loop)


def _mixes(good: list[object], bad: list[object]) -> list[list[object]]:
    """Good values alone; each bad value alone, first, in the middle and last; two bad
    values (the first must win); empty."""
    out: list[list[object]] = [[], list(good), list(good) * 3]
    for value in bad:
        out += [[value], [value, *good], [*good, value, *good], [*good, value]]
    for a, b in itertools.permutations(bad, 2):
        out.append([good[0], a, good[1], b])
    return out


@pytest.mark.parametrize(
    ("bulk", "single", "good", "bad"),
    [
        (validate_ids, validate_id, GOOD_IDS, BAD_IDS),
        (validate_names, validate_name, GOOD_NAMES, BAD_NAMES),
    ],
    ids=["ids", "names"],
)
def test_bulk_id_and_name_checks_match_the_single_ones(
    bulk: Callable[[Sequence[object]], None],
    single: Callable[[object], object],
    good: list[object],
    bad: list[object],
) -> None:
    for value in good:
        assert single(value) is value
    for value in bad:
        assert support.error_of(lambda v=value: single(v)) is not None, value  # type: ignore[misc]
    for values in _mixes(good, bad):
        assert support.error_of(lambda v=values: bulk(v)) == _one_by_one(single, values), values  # type: ignore[misc]


def test_metadata_checks_ids_and_names_by_the_bulk_rules() -> None:
    config = PodSandboxConfig()
    for value in GOOD_IDS:
        Metadata(value, "name", config)  # type: ignore[arg-type]
    for value in GOOD_NAMES:
        Metadata("id", value, config)  # type: ignore[arg-type]
    for value in BAD_IDS:
        assert support.error_of(lambda v=value: Metadata(v, "n", config)) == support.error_of(  # type: ignore[misc]
            lambda v=value: validate_ids([v])  # type: ignore[misc]
        )
    for value in BAD_NAMES:
        assert support.error_of(lambda v=value: Metadata("i", v, config)) == support.error_of(  # type: ignore[misc]
            lambda v=value: validate_names([v])  # type: ignore[misc]
        )


GOOD_PATHS: list[object] = ["", "/run/netns/x", "relative", "ü/ü"]
BAD_PATHS: list[object] = ["/run/\x00x", "\x00", 7, None, b"/run"]


def test_bulk_field_check_matches_metadata() -> None:
    config = PodSandboxConfig()
    for paths in _mixes(GOOD_PATHS, BAD_PATHS):

        def build(ps: list[object] = paths) -> None:
            for p in ps:
                Metadata("id", "name", config, p)  # type: ignore[arg-type]

        got = support.error_of(lambda ps=paths: check_fields([], [], ps))  # type: ignore[misc]
        assert got == support.error_of(build), paths
    # ids first, then names, then paths, each its first error
    assert support.error_of(lambda: check_fields(["a b"], [""], ["\x00"])) == support.error_of(
        lambda: validate_id("a b")
    )
    assert support.error_of(lambda: check_fields(["ok"], [""], ["\x00"])) == support.error_of(
        lambda: validate_name("")
    )


def _entry(raw: bytes, name: str = "n", path: str = "") -> Entry:
    return Entry(name, path, None, raw, Status(State.READY, created_at=1))


def test_check_all_in_bulk_matches_one_by_one() -> None:
    good = msgpack.packb({}, use_bin_type=True)
    assert good is not None
    cases: list[dict[str, Entry]] = [
        {"a": _entry(good), "b": _entry(good, "m")},
        {"a": _entry(good), "b c": _entry(good, "m")},  # bad id
        {"a": _entry(good), "b": _entry(good, "")},  # bad name
        {"a": _entry(good), "b": _entry(good, "m", "/x\x00")},  # bad path
        {"a": _entry(good), "b": _entry(b"\xc1", "m")},  # unreadable config
        {"a": _entry(good), "b": _entry(msgpack.packb([1]), "m")},  # not a map
    ]

    def build_each(entries: dict[str, Entry]) -> None:
        # The reference: building each Metadata (one defect per case: the same error).
        for sandbox_id, entry in entries.items():
            metadata_of(sandbox_id, entry)

    for entries in cases:
        assert support.error_of(lambda e=entries: check_all(e)) == support.error_of(  # type: ignore[misc]
            lambda e=entries: build_each(e)  # type: ignore[misc]
        )
    assert support.error_of(lambda: check_all(cases[0])) is None


I64 = 2**63
GOOD_STATUSES: list[tuple[object, ...]] = [
    ("READY", 1, 2, None, None),
    ("NOTREADY", 0, -I64, I64 - 1, -I64),
    ("UNKNOWN", I64 - 1, I64 - 1, -5, 3),
]
BAD_STATUSES: list[tuple[object, ...]] = [
    ("GONE", 1, 2, None, None),
    (State.READY, 1, 2, None, None),
    ("READY", -1, 2, None, None),
    ("READY", I64, 2, None, None),
    ("READY", True, 2, None, None),
    ("READY", 1.0, 2, None, None),
    ("READY", 1, I64, None, None),
    ("READY", 1, "2", None, None),
    ("READY", 1, 2, -I64 - 1, None),
    ("READY", 1, 2, None, 2.5),
    ("READY", 1, 2, None),
    ("READY", 1, 2, None, None, None),
]


def test_bulk_statuses_match_the_single_ones() -> None:
    one = [status_from_values(*row) for row in GOOD_STATUSES]
    assert statuses_from_values(GOOD_STATUSES) == one
    assert all(type(st) is Status for st in statuses_from_values(GOOD_STATUSES))
    for rows in _mixes(GOOD_STATUSES, BAD_STATUSES):  # type: ignore[arg-type]
        got = support.error_of(lambda r=rows: statuses_from_values(r))  # type: ignore[misc]
        assert got == _one_by_one(lambda row: status_from_values(*row), rows), rows  # type: ignore[arg-type]


def _reserved(reg: Registrar) -> tuple[dict[str | None, str | None], int]:
    names = ["a", "b", "c", "x", "y", "z"]
    return {n: reg.get_id(n) for n in names}, len(reg)


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [("a", "1"), ("b", "2"), ("c", "3")],
        [("a", "1"), ("a", "1")],  # the same pair again: a no-op
        [("a", "1"), ("a", "2")],  # a name taken twice
        [("a", "1"), ("b", "1")],  # an id holding two names
        [("a", "1"), ("b", "2"), ("a", "3"), ("c", "2")],
    ],
)
@pytest.mark.parametrize("before", [[], [("x", "9")], [("a", "1")]])
def test_reserve_many_matches_reserve(
    pairs: list[tuple[str, str]], before: list[tuple[str, str]]
) -> None:
    bulk, single = Registrar(), Registrar()
    for reg in (bulk, single):
        for name, sid in before:
            reg.reserve(name, sid)

    def loop() -> None:
        for name, sid in pairs:
            single.reserve(name, sid)

    names, ids = [p[0] for p in pairs], [p[1] for p in pairs]
    assert support.error_of(lambda: bulk.reserve_many(names, ids)) == support.error_of(loop)
    assert _reserved(bulk) == _reserved(single)


def test_reserve_many_wants_pairs() -> None:
    with pytest.raises(ValueError, match="names for"):
        Registrar().reserve_many(["a"], [])


@pytest.mark.parametrize("sorted_first", [False, True])
def test_add_many_matches_add(sorted_first: bool) -> None:
    bulk, single = TruncIndex(), TruncIndex()
    for index in (bulk, single):
        index.add("abc1")
        if sorted_first:
            index.get("abc1")  # builds the sorted list, which adds must keep sorted
    ids = ["abd2", "abc3", "abd2", "zz"]
    bulk.add_many(ids)
    for sandbox_id in ids:
        single.add(sandbox_id)
    assert list(bulk) == list(single)
    for prefix in ("abd", "zz", "abc3"):
        assert bulk.get(prefix) == single.get(prefix)
    assert support.error_of(lambda: bulk.get("ab")) == support.error_of(lambda: single.get("ab"))


def _body() -> dict[str, Any]:
    env = ev.Envelope("test")
    proj = Projection()
    for i in range(4):
        md = Metadata(f"{i:02x}" * 32, f"pod{i}", PodSandboxConfig())
        proj.apply(i + 1, ev.sandbox_added(env(), md, Status(State.READY, pid=i, created_at=1)))
    return proj.to_snapshot()


@pytest.mark.parametrize("fmt", [3, 4])
@pytest.mark.parametrize(
    ("column", "value"),
    [(None, None), (0, "bad id"), (1, ""), (3, "/x\x00"), (2, b"\xc1"), (2, msgpack.packb([1]))],
)
def test_from_snapshot_with_check_raises_what_check_sandboxes_raises(
    column: int | None, value: object, fmt: int
) -> None:
    body = _body() if fmt == 4 else as_format_3(_body())
    if column is not None and fmt == 4:
        body[SANDBOX_COLUMNS[column]][2] = value
    elif column is not None:
        body["sandboxes"][2][column] = value
    checked = support.error_of(lambda: Projection.from_snapshot(body, check=True))
    assert checked == support.error_of(lambda: Projection.from_snapshot(body).check_sandboxes())
    assert (checked is None) == (column is None)
