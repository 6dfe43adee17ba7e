"""``follow(..., decode=)``: the follower takes the read path's typed-decode hook.

The hook builds each followed record's payload from its bytes (None: the
reference map), exactly as ``read(..., decode=)``; every other check is the
same, and a raw follower takes no hook.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from eventlog_support import payload_for

from eventlog import EventLog, follow, read
from eventlog.format import DecodedRecord, pack_payload


def _log(d: Path, n: int) -> None:
    with EventLog.open(d, durability="none", segment_bytes=1500) as log:
        for seq in range(1, n + 1):
            log.append(payload_for(seq))


def _followed(d: Path, n: int, **kwargs: object) -> list[DecodedRecord]:
    out: list[DecodedRecord] = []
    stop = threading.Event()
    with follow(d, stop=stop, poll_interval=3600, **kwargs) as follower:  # type: ignore[arg-type]
        for record in follower:
            out.append(record)  # type: ignore[arg-type]
            if len(out) == n:
                stop.set()
    return out


def test_the_hook_builds_each_followed_payload(tmp_path: Path) -> None:
    _log(tmp_path, 20)
    records = _followed(tmp_path, 20, decode=lambda data: ("built", data))
    assert [r.seq for r in records] == list(range(1, 21))
    assert [r.payload for r in records] == [
        ("built", pack_payload(payload_for(seq))) for seq in range(1, 21)
    ]
    assert [r.digest for r in records] == [r.digest for r in read(tmp_path)]


def test_a_declining_hook_follows_exactly_as_the_reference(tmp_path: Path) -> None:
    _log(tmp_path, 20)
    hooked = _followed(tmp_path, 20, decode=lambda _b: None)
    assert [tuple(r) for r in hooked] == [tuple(r) for r in read(tmp_path)]
    assert all(type(r) is DecodedRecord for r in hooked)


def test_a_raw_follower_takes_no_hook(tmp_path: Path) -> None:
    _log(tmp_path, 1)
    with pytest.raises(ValueError, match="raw"):
        follow(tmp_path, raw=True, decode=lambda _b: None)
