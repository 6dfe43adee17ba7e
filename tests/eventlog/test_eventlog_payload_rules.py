"""The payload decoding rules of FORMAT.md ("Payload"), pinned where a faster
decoder would be tempted to differ.

Readers decode every payload as ``msgpack.unpackb(raw=False,
strict_map_key=True)`` does (the format's reference): string or binary keys
in EVERY map (not only the top one), binary keys accepted, ext values
returned as the reference returns them, and a nesting verdict that does not
depend on how deep in the Python stack the reader happens to run.
(``msgspec.msgpack.Decoder(dict[str, Any])`` was measured as a replacement
and differs on each of these: docs/BENCHMARKS.md.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from eventlog import CorruptLogError, EventLog, read, verify
from eventlog.format import encode_record, unpack_payload


def _log_with(d: Path, payload: bytes) -> None:
    """Two ordinary records, then ``payload`` as seq 3 with valid crcs and chain."""
    with EventLog.open(d, durability="none") as log:
        log.append({"n": 1})
        log.append({"n": 2})
    last = list(read(d))[-1]
    record, _digest = encode_record(last.digest, 3, 1, 0, payload, b"")
    (seg,) = sorted(d.glob("*.log"))
    with seg.open("ab") as f:
        f.write(record)


NESTED_BAD_KEYS = {
    "int key in a nested map": b"\x81\xa1a\x81\x01\x02",
    "nil key in a nested map": b"\x81\xa1a\x81\xc0\x02",
    "float key in a nested map": b"\x81\xa1a\x81\xca\x00\x00\x00\x00\x02",
    "array key in a nested map": b"\x81\xa1a\x81\x90\x02",
    "int key in a map in a list": b"\x81\xa1a\x91\x81\x01\x02",
    "invalid utf-8 in a nested value": b"\x81\xa1a\x81\xa1b\xa2\xff\xfe",
    "surrogate in a value": b"\x81\xa1a\xa3\xed\xa0\x80",
}


@pytest.mark.parametrize("name", sorted(NESTED_BAD_KEYS))
def test_nested_maps_follow_the_key_rules_too(tmp_path: Path, name: str) -> None:
    d = tmp_path / "log"
    _log_with(d, NESTED_BAD_KEYS[name])
    with pytest.raises(CorruptLogError, match="payload") as info:
        list(read(d))
    assert info.value.seq == 3
    report = verify(d)
    assert not report.ok and report.problem is not None and report.problem.seq == 3


ACCEPTED = {
    "binary key at the top": b"\x81\xc4\x01x\x02",
    "binary key in a nested map": b"\x81\xa1a\x81\xc4\x01x\x02",
    "ext value": b"\x81\xa1a\xd4\x05\x00",
    "timestamp value": b"\x81\xa1a\xd6\xff\x00\x00\x00\x01",
    "largest u64": b"\x81\xa1a\xcf" + b"\xff" * 8,
    "duplicate keys (the last wins)": b"\x82\xa1a\x01\xa1a\x02",
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_what_the_reference_accepts_is_read_as_it_decodes_it(tmp_path: Path, name: str) -> None:
    d = tmp_path / "log"
    payload = ACCEPTED[name]
    _log_with(d, payload)
    records = list(read(d))
    assert [r.seq for r in records] == [1, 2, 3]
    expected = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    assert records[-1].payload == expected
    assert type(records[-1].payload) is dict
    assert unpack_payload(payload) == expected
    assert verify(d).ok


def _at_depth(depth: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` called ``depth`` Python frames deeper than here."""
    if depth:
        return _at_depth(depth - 1, fn)
    return fn()


@pytest.mark.parametrize("nesting", [500, 900, 5000])
def test_the_nesting_verdict_does_not_depend_on_the_callers_stack(
    tmp_path: Path, nesting: int
) -> None:
    d = tmp_path / "log"
    payload = b"\x81\xa1a" + b"\x91" * nesting + b"\x80"
    _log_with(d, payload)

    def outcome() -> str:
        try:
            return f"ok {len(list(read(d)))}"
        except CorruptLogError as exc:
            return f"corrupt at {exc.seq}"

    top = outcome()
    deep = _at_depth(min(600, sys.getrecursionlimit() - 200), outcome)
    assert deep == top
    assert top == ("corrupt at 3" if nesting >= 1000 else "ok 3")
