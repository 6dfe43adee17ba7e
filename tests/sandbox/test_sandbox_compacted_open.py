"""A compacted store still opens, with the netns dir its log recorded.

Why: the recorded netns dir is the log's first record (NetNSDirRecorded), and
compaction removes the segments before the oldest kept snapshot - that record
with them. The snapshot carries the dir, so the store must take it from there:
reopening without --netns-dir uses it, naming another dir is still refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import support

import eventlog
from eventlog.compact import compact
from sandbox import Store
from sandbox.errors import NetNSDirMismatchError


def test_a_compacted_store_reopens_with_its_recorded_dir(tmp_path: Path) -> None:
    state, netns = tmp_path / "state", tmp_path / "netns"
    netns.mkdir()
    with Store.open(state, netns_dir=netns, segment_bytes=2048) as store:
        for i in range(60):
            store.add(support.sandbox(f"p{i}"))
        snap_seq = store.last_seq
        store.snapshot()
        store.add(support.sandbox("after"))
    compact(str(state), before_seq=snap_seq)
    history = eventlog.local_history(str(state))
    assert history is not None and history.first_seq > 1  # seq 1 is gone
    with Store.open(state, segment_bytes=2048) as store:  # no netns_dir given
        assert store.netns_dir == str(netns)
        assert len(store) == 61
    with pytest.raises(NetNSDirMismatchError, match=str(netns)):
        Store.open(state, netns_dir=tmp_path / "other")
