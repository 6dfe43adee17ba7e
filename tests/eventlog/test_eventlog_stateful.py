"""A model list against the real log: appends, batches, reopens and torn tails."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventlog import EventLog, read, verify
from eventlog.format import RECORD_OVERHEAD, SEGMENT_HEADER_SIZE

text = st.text(st.characters(codec="utf-8"), max_size=12)
values = st.one_of(
    st.integers(-(2**63), 2**64 - 1), text, st.binary(max_size=20), st.none(), st.booleans()
)
payloads = st.dictionaries(text, values | st.lists(values, max_size=3), max_size=4)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="eventlog-stateful-"))
        self.log: EventLog | None = self._open()
        self.model: list[dict[str, Any]] = []
        # For each seq (index seq - 1): the last seq of the batch it belongs to.
        self.batch_end: list[int] = []

    def _open(self) -> EventLog:
        return EventLog.open(self.dir, durability="none", segment_bytes=400)

    @rule(payload=payloads)
    def append(self, payload: dict[str, Any]) -> None:
        assert self.log is not None
        seq = self.log.append(payload)
        assert seq == len(self.model) + 1
        self.model.append(payload)
        self.batch_end.append(seq)

    @rule(batch=st.lists(payloads, min_size=1, max_size=5))
    def append_batch(self, batch: list[dict[str, Any]]) -> None:
        assert self.log is not None
        seqs = self.log.append_batch(batch)
        first = len(self.model) + 1
        assert seqs == list(range(first, first + len(batch)))
        self.model.extend(batch)
        self.batch_end.extend([seqs[-1]] * len(batch))

    @rule()
    def reopen(self) -> None:
        assert self.log is not None
        self.log.close()
        self.log = self._open()
        assert self.log.last_seq == len(self.model)

    @precondition(lambda self: len(self.model) > 0)
    @rule(fraction=st.floats(0, 1))
    def truncate_tail(self, fraction: float) -> None:
        """Cut the last segment anywhere, as a crash would; reopen repairs it."""
        assert self.log is not None
        self.log.close()
        self.log = None
        last = sorted(self.dir.glob("*.log"))[-1]
        size = last.stat().st_size
        cut = int(size * fraction)
        os.truncate(last, cut)
        # Whole records of the last segment that end before the cut survive...
        first_in_last = int(last.name[:20])
        keep = first_in_last - 1
        pos = SEGMENT_HEADER_SIZE
        for seq in range(first_in_last, len(self.model) + 1):
            pos += RECORD_OVERHEAD + len(msgpack.packb(self.model[seq - 1], use_bin_type=True))
            if pos > cut or cut < SEGMENT_HEADER_SIZE:
                break
            keep = seq
        # ...but only whole batches.
        while keep > 0 and self.batch_end[keep - 1] > keep:
            keep -= 1
        del self.model[keep:]
        del self.batch_end[keep:]
        self.log = self._open()
        assert self.log.last_seq == keep

    @invariant()
    def log_matches_model(self) -> None:
        if self.log is None:
            return
        assert self.log.last_seq == len(self.model)
        records = list(read(self.dir))
        assert [r.seq for r in records] == list(range(1, len(self.model) + 1))
        assert [r.payload for r in records] == self.model
        assert verify(self.dir).ok

    def teardown(self) -> None:
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LogMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
TestLogMachine = LogMachine.TestCase
