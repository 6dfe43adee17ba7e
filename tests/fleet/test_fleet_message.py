"""The message format: what travels is enough to re-verify, and hostile bodies are refused."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgpack
import pytest
from fleet_support import payload, write_log

import eventlog
from replay.fleet.feeder import shipped_from_log
from replay.fleet.message import (
    MESSAGE_VERSION,
    MSG_ID_HEADER,
    MessageFormatError,
    ShippedRecord,
    check_node,
    check_stream,
    decode,
    default_node_id,
    encode,
    node_of_subject,
    subject_for,
)


def _rec(**kw: object) -> ShippedRecord:
    base: dict[str, object] = {
        "node": "n1",
        "seq": 7,
        "time_ns": 123,
        "batch_left": 2,
        "payload_bytes": msgpack.packb({"type": "X", "v": 1}, use_bin_type=True),
        "prev_digest": b"\x01" * 32,
        "digest": b"\x02" * 32,
        "durable_seq": 5,
        "version": 2,
    }
    base.update(kw)
    return ShippedRecord(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_and_the_exact_payload_bytes() -> None:
    rec = _rec(keyed=True)
    body, headers = encode(rec)
    assert headers == {MSG_ID_HEADER: "n1:7"}
    back = decode(body, subject="SANDBOXLOG.n1", stream_seq=42)
    assert back == attrs_evolve(rec, stream_seq=42, subject="SANDBOXLOG.n1")
    assert back.payload_bytes == rec.payload_bytes
    assert back.payload == {"type": "X", "v": 1}
    assert back.segment == "nats:SANDBOXLOG.n1" and back.offset == 42


def attrs_evolve(rec: ShippedRecord, **kw: object) -> ShippedRecord:
    import attrs

    return attrs.evolve(rec, **kw)  # type: ignore[arg-type]


def test_the_body_carries_the_v2_record_fields() -> None:
    body, _ = encode(_rec())
    fields = msgpack.unpackb(body, raw=False)
    assert fields["v"] == MESSAGE_VERSION == 2
    assert (fields["durable_seq"], fields["format"]) == (5, 2)
    assert set(fields) == {
        "v",
        "node",
        "seq",
        "time_ns",
        "batch_left",
        "durable_seq",
        "format",
        "prev",
        "digest",
        "payload",
        "keyed",
    }


def test_a_message_of_the_previous_shape_is_a_version_1_record() -> None:
    """Streams shipped before format 2 stay readable: no durable_seq, no format key."""
    rec = _rec()
    old = {
        "v": 1,
        "node": rec.node,
        "seq": rec.seq,
        "time_ns": rec.time_ns,
        "batch_left": rec.batch_left,
        "prev": rec.prev_digest,
        "digest": rec.digest,
        "payload": rec.payload_bytes,
        "keyed": False,
    }
    back = decode(msgpack.packb(old, use_bin_type=True))
    assert (back.version, back.durable_seq) == (1, 0)
    assert (back.seq, back.payload_bytes, back.digest) == (rec.seq, rec.payload_bytes, rec.digest)


def test_records_from_a_real_log_carry_raw_bytes_and_chain(tmp_path: Path) -> None:
    write_log(tmp_path, 20, batch_every=5)
    recs = list(shipped_from_log(tmp_path, "n1"))
    assert [r.seq for r in recs] == list(range(1, 21))
    assert recs[0].prev_digest == bytes(32)
    for a, b in itertools.pairwise(recs):
        assert b.prev_digest == a.digest
    assert recs[0].payload == payload(0)
    # batches of three count down to 0
    assert [r.batch_left for r in recs[:3]] == [2, 1, 0]
    assert not recs[0].keyed
    # exactly the scanner's fields: payload bytes, durable_seq, format version
    raws = list(eventlog.read(tmp_path, raw=True))
    for rec, raw in zip(recs, raws, strict=True):
        assert isinstance(raw, eventlog.RawRecord)
        assert (rec.payload_bytes, rec.durable_seq, rec.version, rec.digest) == (
            raw.payload_bytes,
            raw.durable_seq,
            raw.version,
            raw.digest,
        )
    assert {r.version for r in recs} == {2}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 3}),
        msgpack.packb({"v": 1, "node": "n"}),
    ],
)
def test_malformed_bodies_are_a_clear_error(body: bytes) -> None:
    with pytest.raises(MessageFormatError):
        decode(body)


def test_field_types_and_ranges_are_checked() -> None:
    good, _ = encode(_rec())
    fields = msgpack.unpackb(good, raw=False)
    for key, bad in [
        ("seq", 0),
        ("seq", "7"),
        ("seq", True),
        ("time_ns", -1),
        ("batch_left", 1 << 32),
        ("prev", b"short"),
        ("digest", "not bytes"),
        ("payload", b"\xc1"),
        ("payload", msgpack.packb([1])),
        ("keyed", 1),
        ("durable_seq", -1),
        ("durable_seq", 7),  # not below its own seq: a record proves only earlier ones
        ("durable_seq", None),
        ("format", 3),  # a record format whose digest this code cannot recompute
        ("format", None),
    ]:
        broken = dict(fields, **{key: bad})
        with pytest.raises(MessageFormatError):
            decode(msgpack.packb(broken, use_bin_type=True))
    # a version 1 record proves nothing: durable_seq must be 0
    with pytest.raises(MessageFormatError, match="durable_seq"):
        decode(msgpack.packb(dict(fields, format=1), use_bin_type=True))
    assert decode(msgpack.packb(dict(fields, format=1, durable_seq=0), use_bin_type=True))


def test_node_and_stream_must_be_single_subject_tokens() -> None:
    assert check_node("node-1_a") == "node-1_a"
    for bad in ["", "a.b", "a*", ">", "a b", "x" * 129]:
        with pytest.raises(ValueError):
            check_node(bad)
    with pytest.raises(ValueError):
        check_stream("S.X")
    assert subject_for("S", "n") == "S.n"
    assert node_of_subject("S", "S.n") == "n"
    with pytest.raises(MessageFormatError):
        node_of_subject("S", "T.n")


def test_default_node_id_makes_a_hostname_a_token() -> None:
    assert default_node_id("web-1.example.com") == "web-1-example-com"
    assert check_node(default_node_id("odd host!"))
    assert default_node_id("") == "node"
