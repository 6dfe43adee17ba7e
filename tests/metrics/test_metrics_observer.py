"""The log's raw timings, without any metrics library (eventlog.observe).

Why: metrics must cost an append almost nothing, so the writer only keeps
figures (a clock read, a list append) and a reader drains them. These tests
pin what is kept: every fdatasync, one append in ``every``, group sizes, and
a bound on memory when nobody drains.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventlog import EventLog, Timings, observe


def test_every_fsync_and_every_nth_append_is_kept(tmp_path: Path) -> None:
    timings = Timings(every=4)
    with EventLog.open(tmp_path / "log", timings=timings) as log:
        for i in range(20):
            log.append({"i": i})
        appends, fsyncs, groups = timings.drain()
        assert len(appends) == 5  # appends 4, 8, 12, 16, 20
        assert len(fsyncs) == log.stats.syncs and len(groups) == 20  # one group per append
        assert all(s >= 0 for s in appends + fsyncs)
        assert timings.drain() == ([], [], [])  # drained figures are gone


def test_durability_none_keeps_no_fsync(tmp_path: Path) -> None:
    timings = Timings(every=1)
    with EventLog.open(tmp_path / "log", durability="none", timings=timings) as log:
        log.append({"a": 1})
        log.append_batch([{"b": 1}, {"b": 2}])
    appends, fsyncs, groups = timings.drain()
    assert len(appends) == 2 and fsyncs == [] and groups == []


def test_undrained_timings_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "CAP", 10)
    figures: list[float] = []
    for i in range(100):
        observe.keep(figures, float(i))
    assert len(figures) <= 10 and figures[-1] == 99.0


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Timings(every=0)
