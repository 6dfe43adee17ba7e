"""Re-verifying a node's chain from shipped records alone (no NATS needed here).

Each test takes the records a real log yields, as the shipper would send
them, damages them the way a stream can be damaged, and checks that the
far-side verifier names the defect at the right seq.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import msgpack
from fleet_support import payload, write_log

from eventlog import EventLog
from eventlog.format import (
    ZERO_DIGEST,
    encode_record,
    encode_segment_header,
    pack_payload,
    segment_name,
)
from replay.fleet.chain import (
    BATCH,
    CHAIN,
    DIGEST,
    DUPLICATE,
    EMPTY,
    GAP,
    HEAD,
    KEY_REQUIRED,
    MALFORMED,
    VERSION,
    WRONG_NODE,
    ChainChecker,
    record_digest,
    verify_records,
)
from replay.fleet.feeder import shipped_from_log
from replay.fleet.message import ShippedRecord, decode, encode


def _records(tmp_path: Path, n: int = 30, **kw: object) -> list[ShippedRecord]:
    write_log(tmp_path, n, batch_every=10, **kw)  # type: ignore[arg-type]
    return list(shipped_from_log(tmp_path, "n1", key=kw.get("key")))  # type: ignore[arg-type]


def _kinds(report: object) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in report.problems]  # type: ignore[attr-defined]


def test_an_intact_chain_verifies_and_reports_the_head(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    report = verify_records("n1", recs)
    assert report.ok, report.problems
    assert (report.records, report.first_seq, report.last_seq) == (30, 1, 30)
    assert report.head == recs[-1].digest


def test_the_digest_is_the_logs_own(tmp_path: Path) -> None:
    recs = _records(tmp_path, 5)
    prev = bytes(32)
    for r in recs:
        assert record_digest(prev, r) == r.digest
        prev = r.digest


def test_an_altered_payload_is_caught_at_its_seq(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    evil = dict(recs[11].payload, id="someone-else")
    recs[11] = attrs.evolve(recs[11], payload_bytes=msgpack.packb(evil, use_bin_type=True))
    report = verify_records("n1", recs)
    assert _kinds(report) == [(DIGEST, 12)]


def test_an_altered_header_field_is_caught(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    recs[4] = attrs.evolve(recs[4], time_ns=recs[4].time_ns + 1)
    assert _kinds(verify_records("n1", recs)) == [(DIGEST, 5)]


def test_a_re_signed_record_breaks_the_chain_after_it(tmp_path: Path) -> None:
    """An attacker who recomputes the edited record's digest moves the break, not removes it."""
    recs = _records(tmp_path)
    evil = msgpack.packb(dict(recs[11].payload, id="x"), use_bin_type=True)
    forged = attrs.evolve(recs[11], payload_bytes=evil)
    forged = attrs.evolve(forged, digest=record_digest(forged.prev_digest, forged))
    recs[11] = forged
    assert _kinds(verify_records("n1", recs)) == [(CHAIN, 13)]


def test_gaps_and_duplicates_are_named(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    damaged = recs[:5] + recs[7:20] + [recs[3]] + recs[20:]
    report = verify_records("n1", damaged)
    kinds = _kinds(report)
    assert (GAP, 8) in kinds
    assert (DUPLICATE, 4) in kinds
    assert "seqs 6..7 missing" in report.problems[0].detail
    assert report.last_seq == 30


def test_a_chain_must_start_at_seq_1(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    assert _kinds(verify_records("n1", recs[2:]))[0] == (GAP, 3)


def test_an_incomplete_trailing_batch_is_reported(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    assert recs[0].batch_left == 2
    report = verify_records("n1", recs[:2])
    assert _kinds(report) == [(BATCH, 2)]


def test_a_record_of_another_node_is_refused(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    recs[3] = attrs.evolve(recs[3], node="n2")
    kinds = _kinds(verify_records("n1", recs))
    assert kinds[0] == (WRONG_NODE, 4)


def test_malformed_bytes_and_emptiness(tmp_path: Path) -> None:
    recs = _records(tmp_path, 3)
    checker = ChainChecker("n1")
    for r in recs:
        body, _ = encode(r)
        checker.feed_bytes(body, "SANDBOXLOG.n1", r.seq)
    checker.feed_bytes(b"\x00garbage", "SANDBOXLOG.n1", 99)
    report = checker.report()
    assert _kinds(report) == [(MALFORMED, None)]
    assert report.problems[0].stream_seq == 99
    assert _kinds(ChainChecker("n1").report()) == [(EMPTY, None)]


def test_a_keyed_chain_needs_its_key(tmp_path: Path) -> None:
    key = b"k" * 32
    recs = _records(tmp_path, 12, key=key)
    assert all(r.keyed for r in recs)
    assert verify_records("n1", recs, key=key).ok
    assert _kinds(verify_records("n1", recs)) == [(KEY_REQUIRED, 1)]
    wrong = verify_records("n1", recs, key=b"w" * 32)
    assert not wrong.ok and wrong.problems[0].kind == DIGEST


def test_a_pinned_head_must_be_in_the_chain(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    assert verify_records("n1", recs, head=recs[9].digest).ok
    assert _kinds(verify_records("n1", recs[:9], head=recs[9].digest)) == [(HEAD, None)]


def test_the_digest_covers_durable_seq(tmp_path: Path) -> None:
    """A v2 record's durable_seq is signed: claiming another proof breaks the digest."""
    recs = _records(tmp_path)
    assert recs[4].durable_seq == 0  # write_log uses durability "none": nothing proven
    recs[4] = attrs.evolve(recs[4], durable_seq=2)
    assert _kinds(verify_records("n1", recs)) == [(DIGEST, 5)]


def _write_v1_log(directory: Path, count: int) -> None:
    """A version 1 log as the code of format 1 wrote it: 28-byte headers, no durable_seq."""
    directory.mkdir()
    blob = encode_segment_header(1, ZERO_DIGEST, keyed=False, version=1)
    prev = ZERO_DIGEST
    for i in range(count):
        body = pack_payload(payload(i, "old"))
        record, prev = encode_record(prev, i + 1, 1_000 + i, 0, body, b"", version=1)
        blob += record
    (directory / segment_name(1)).write_bytes(blob)


def test_a_log_upgraded_from_version_1_verifies_across_the_change(tmp_path: Path) -> None:
    """Each record is recomputed with its own format's signed header, across the upgrade."""
    d = tmp_path / "log"
    _write_v1_log(d, 8)
    with EventLog.open(d, durability="always") as log:  # continues in a v2 segment
        for i in range(8, 16):
            log.append(payload(i, "old"))
    recs = list(shipped_from_log(d, "n1"))
    assert [r.version for r in recs] == [1] * 8 + [2] * 8
    assert {r.durable_seq for r in recs[:8]} == {0}
    assert recs[-1].durable_seq == 15  # each "always" append proves the one before
    for r in recs:  # what travels is enough: the decoded message recomputes the same digest
        body, _ = encode(r)
        back = decode(body)
        assert (back.version, back.durable_seq) == (r.version, r.durable_seq)
        assert record_digest(r.prev_digest, back) == r.digest
    report = verify_records("n1", recs)
    assert report.ok, report.problems
    assert report.head == recs[-1].digest

    # A v2 record passed off as version 1 (or the reverse) no longer matches its digest,
    # and a version going back is named as such.
    back_to_v1 = attrs.evolve(recs[9], version=1, durable_seq=0)
    kinds = _kinds(verify_records("n1", [*recs[:9], back_to_v1, *recs[10:]]))
    assert kinds == [(VERSION, 10), (DIGEST, 10)]
    as_v2 = attrs.evolve(recs[3], version=2)
    assert _kinds(verify_records("n1", [*recs[:3], as_v2, *recs[4:]])) == [
        (DIGEST, 4),
        (VERSION, 5),
    ]
