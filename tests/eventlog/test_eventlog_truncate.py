"""Cut the last segment at every byte offset: recovery keeps exactly the whole batches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from eventlog_support import (
    broken_files,
    record_spans,
    segments,
    small_payload,
    whole_prefix_end,
)

from eventlog import EventLog, read, verify
from eventlog.format import SEGMENT_HEADER_SIZE


def build(d: Path) -> None:
    """Three segments; the last holds singles, a batch of 3, singles, a batch of 2."""
    with EventLog.open(d, durability="none", segment_bytes=300) as log:
        while len(segments(d)) < 3:
            log.append(small_payload(log.last_seq + 1))
        # Fill the new last segment without rotating again.
        log.segment_bytes = 10**9
        log.append(small_payload(log.last_seq + 1))
        log.append(small_payload(log.last_seq + 1))
        s = log.last_seq + 1
        log.append_batch([small_payload(s), small_payload(s + 1), small_payload(s + 2)])
        log.append(small_payload(log.last_seq + 1))
        s = log.last_seq + 1
        log.append_batch([small_payload(s), small_payload(s + 1)])
        log.append(small_payload(log.last_seq + 1))


def _built(tmp_path: Path) -> tuple[Path, Path, bytes, list[tuple[int, int, int, int]]]:
    """A log built in tmp_path/src: (its dir, last segment, that segment's bytes, record spans)."""
    src = tmp_path / "src"
    build(src)
    last = segments(src)[-1]
    return src, last, last.read_bytes(), record_spans(last)


@pytest.mark.slow
def test_truncate_last_segment_at_every_offset(tmp_path: Path) -> None:
    src, last, original, spans = _built(tmp_path)
    assert len(spans) == 10
    first_seq = spans[0][2]
    for cut in range(len(original) + 1):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(src, d)
        seg = d / last.name
        with seg.open("r+b") as f:
            f.truncate(cut)
        if cut < SEGMENT_HEADER_SIZE:
            keep_end, keep_seq = SEGMENT_HEADER_SIZE, first_seq - 1
        else:
            keep_end, keep_seq = whole_prefix_end(spans, cut)
        with EventLog.open(d, durability="none") as log:
            assert log.last_seq == keep_seq, cut
            assert seg.stat().st_size == keep_end, cut
            broken = broken_files(d)
            if cut < SEGMENT_HEADER_SIZE:
                # A header that never made it: set aside whole, segment recreated.
                assert [b.read_bytes() for b in broken] == [original[:cut]], cut
                assert seg.read_bytes()[:SEGMENT_HEADER_SIZE] == original[:SEGMENT_HEADER_SIZE]
            elif cut > keep_end:
                assert [b.read_bytes() for b in broken] == [original[keep_end:cut]], cut
            else:
                assert broken == [], cut
            assert log.append({"after": cut}) == keep_seq + 1
        with EventLog.open(d, durability="none") as log:
            assert log.last_seq == keep_seq + 1, cut
        records = list(read(d))
        assert [r.seq for r in records] == list(range(1, keep_seq + 2)), cut
        assert [r.payload for r in records[:-1]] == [
            small_payload(s) for s in range(1, keep_seq + 1)
        ]
        assert records[-1].payload == {"after": cut}
        assert verify(d).ok, cut
        shutil.rmtree(d)


def test_readers_stop_quietly_at_a_cut_and_verify_reports_it(tmp_path: Path) -> None:
    """Without a writer to repair it, readers see the whole-batch prefix; verify says torn."""
    src, last, original, spans = _built(tmp_path)
    # Longest first, so each cut is a truncate (rewriting makes ext4 flush).
    for cut in reversed(range(SEGMENT_HEADER_SIZE, len(original) + 1)):
        os.truncate(last, cut)
        keep_end, keep_seq = whole_prefix_end(spans, cut)
        assert [r.seq for r in read(src)] == list(range(1, keep_seq + 1)), cut
        report = verify(src)
        assert report.ok, (cut, report)
        assert report.last_seq == keep_seq
        assert report.torn_tail == cut - keep_end, cut
    last.write_bytes(original)
