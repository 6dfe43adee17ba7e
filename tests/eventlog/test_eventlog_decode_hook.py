"""The read path's typed-decode hook (``read(..., decode=)``, ``verify(..., decode=,
visit=)``): a parameter of eventlog, which knows nothing of what it builds.

The hook gets each wanted payload's bytes; what it returns becomes the record's
payload, and None sends the bytes through the reference decode exactly as before
(corruption included). Every other check - crcs, chain, seqs, batches - is made
the same, and ``verify``'s visitor sees each whole record once, in order.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from eventlog_support import payload_for, segments

from eventlog import CorruptLogError, EventLog, read, verify
from eventlog.format import (
    DIGEST_SIZE,
    RECORD_HEADER_SIZE,
    DecodedRecord,
    Record,
    encode_record,
    pack_payload,
)


def _log(d: Path, n: int = 12) -> None:
    with EventLog.open(d, durability="none", segment_bytes=1500) as log:
        for seq in range(1, n + 1, 3):
            log.append(payload_for(seq))
            log.append_batch([payload_for(seq + 1), payload_for(seq + 2)])


class Marker:
    """What a hook builds: the bytes it was given, tagged."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def test_a_hook_that_declines_reads_exactly_as_the_reference(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log(d)
    plain = list(read(d))
    hooked = list(read(d, decode=lambda _b: None))
    assert len(segments(d)) > 1
    assert [tuple(r) for r in hooked] == [tuple(r) for r in plain]
    assert all(type(r) is DecodedRecord for r in hooked)
    assert all(type(r) is Record for r in plain)


def test_the_hook_gets_each_payloads_bytes_and_builds_the_payload(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log(d)
    seen: list[bytes] = []

    def hook(data: bytes) -> Marker:
        seen.append(data)
        return Marker(data)

    records = list(read(d, 4, 10, decode=hook))
    assert [r.seq for r in records] == list(range(4, 11))
    # Records before from_seq are checked, not decoded; records after to_seq are not read.
    assert seen == [pack_payload(payload_for(seq)) for seq in range(4, 11)]
    assert [r.payload.data for r in records] == seen
    assert [r.digest for r in records] == [r.digest for r in read(d, 4, 10)]


def test_raw_records_take_no_hook(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log(d)
    with pytest.raises(ValueError, match="raw"):
        read(d, raw=True, decode=lambda _b: None)  # type: ignore[call-overload]


def _append_payload(d: Path, payload: bytes) -> None:
    """``payload`` as the next record, with valid crcs and chain."""
    last = list(read(d))[-1]
    record, _digest = encode_record(last.digest, last.seq + 1, 1, 0, payload, b"")
    with segments(d)[-1].open("ab") as f:
        f.write(record)


@pytest.mark.parametrize("payload", [b"\x93\x01\x02\x03", b"\x81\x01\x02", b"\xc1", b"\x80\x00"])
def test_a_declined_bad_payload_is_the_same_corruption(tmp_path: Path, payload: bytes) -> None:
    d = tmp_path / "log"
    _log(d)
    _append_payload(d, payload)
    with EventLog.open(d, durability="none") as log:  # a good record after it
        log.append(payload_for(99))
    with pytest.raises(CorruptLogError) as plain:
        list(read(d))
    with pytest.raises(CorruptLogError) as hooked:
        list(read(d, decode=lambda _b: None))
    assert (hooked.value.seq, hooked.value.offset, hooked.value.reason) == (
        plain.value.seq,
        plain.value.offset,
        plain.value.reason,
    )
    assert "payload" in plain.value.reason


def test_the_chain_is_checked_with_a_hook_too(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log(d)
    first = next(read(d))
    seg = segments(d)[0]
    data = bytearray(seg.read_bytes())
    body = first.offset + RECORD_HEADER_SIZE
    payload = pack_payload(payload_for(1))
    at = body + payload.index(b"\x01")  # the seq 1 in the payload: make it 2
    data[at] = 2
    # Both crcs still hold (the body crc is recomputed); the digest no longer follows.
    end = body + len(payload) + DIGEST_SIZE
    data[end : end + 4] = zlib.crc32(bytes(data[body:end])).to_bytes(4, "little")
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="chain digest mismatch"):
        list(read(d, decode=Marker))
    assert not verify(d, decode=Marker, visit=lambda _r: None).ok


def test_verify_visits_every_whole_record_once_in_order(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log(d, 30)
    visited: list[Any] = []
    report = verify(d, visit=visited.append)
    assert report.ok and report.records == 30 and report.last_seq == 30
    assert [r.seq for r in visited] == list(range(1, 31))
    assert [tuple(r) for r in visited] == [tuple(r) for r in read(d)]
    assert report == verify(d)

    typed: list[Any] = []
    report = verify(d, decode=Marker, visit=typed.append)
    assert report == verify(d)
    assert [r.payload.data for r in typed] == [pack_payload(payload_for(s)) for s in range(1, 31)]


def test_verify_visits_up_to_the_damage_and_reports_it_the_same(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log(d, 9)
    _append_payload(d, msgpack.packb([1, 2]))
    with EventLog.open(d, durability="none") as log:
        log.append(payload_for(11))
    visited: list[Any] = []
    report = verify(d, decode=lambda _b: None, visit=visited.append)
    assert not report.ok and report.problem is not None and report.problem.seq == 10
    assert [r.seq for r in visited] == list(range(1, 10))
    assert report == verify(d)


def test_an_unfinished_batch_is_never_visited(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log(d, 6)
    with EventLog.open(d, durability="none") as log:
        log.append_batch([payload_for(7), payload_for(8), payload_for(9)])
    seg = segments(d)[-1]
    data = seg.read_bytes()
    last_size = len(msgpack.packb(payload_for(9), use_bin_type=True)) + 72
    seg.write_bytes(data[: len(data) - last_size])  # the batch's last record is gone
    visited: list[Any] = []
    report = verify(d, visit=visited.append)
    assert report.ok and report.last_seq == 6 and report.torn_tail > 0
    assert [r.seq for r in visited] == list(range(1, 7))
