"""The bytes on disk are the ones FORMAT.md specifies (its worked example is checked)."""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from pathlib import Path

import msgpack
import pytest
from eventlog_support import REPO
from support import LOG_CRASH_POINTS

from eventlog import CorruptLogError, EventLog, crashpoints, read, verify
from eventlog.format import (
    FLAG_KEYED,
    MAGIC,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    ZERO_DIGEST,
    chain_digest,
    decode_record_header,
    decode_segment_header,
    encode_record,
    encode_segment_header,
    unpack_payload,
)

FORMAT_MD = REPO / "FORMAT.md"


def example_bytes() -> bytes:
    text = FORMAT_MD.read_text()
    block = re.search(
        r"<!-- example-segment-begin -->\n(.*?)<!-- example-segment-end -->", text, re.S
    )
    assert block, "FORMAT.md lost its worked example"
    out = bytearray()
    for line in block.group(1).splitlines():
        offset, *hexes = line.split()
        assert int(offset, 16) == len(out)
        out += bytes(int(h, 16) for h in hexes)
    return bytes(out)


T0 = 1_700_000_000_000_000_000


def test_worked_example_in_format_md_is_what_the_writer_writes(tmp_path: Path) -> None:
    expected = example_bytes()
    header = encode_segment_header(1, ZERO_DIGEST, keyed=False)
    first, digest1 = encode_record(ZERO_DIGEST, 1, T0, 0, msgpack.packb({"a": 1}), b"", 0)
    second, digest2 = encode_record(digest1, 2, T0 + 1, 0, msgpack.packb({"b": 2}), b"", 1)
    assert header + first + second == expected
    text = FORMAT_MD.read_text()
    assert digest1.hex() in text and digest2.hex() in text
    keyed_digest = encode_record(ZERO_DIGEST, 1, T0, 0, msgpack.packb({"a": 1}), b"secret", 0)[1]
    assert keyed_digest.hex() in text
    # And a real writer produces the same layout (only time_ns differs): with
    # durability "always" the second record carries the proof of the first.
    with EventLog.open(tmp_path, durability="always") as log:
        log.append({"a": 1})
        log.append({"b": 2})
    data = (tmp_path / "00000000000000000001.log").read_bytes()
    assert data[:SEGMENT_HEADER_SIZE] == expected[:SEGMENT_HEADER_SIZE]
    assert len(data) == len(expected)
    r2 = SEGMENT_HEADER_SIZE + len(first)
    for at in (SEGMENT_HEADER_SIZE, r2):
        assert data[at : at + 12] == expected[at : at + 12]  # payload_len and seq
        assert data[at + 20 : at + 32] == expected[at + 20 : at + 32]  # batch_left, durable_seq


def test_version_1_example_still_reads(tmp_path: Path) -> None:
    """The version 1 worked example (FORMAT.md's appendix) is a readable log."""
    text = FORMAT_MD.read_text()
    block = re.search(r"<!-- example-v1-begin -->\n(.*?)<!-- example-v1-end -->", text, re.S)
    assert block
    data = b"".join(
        bytes(int(h, 16) for h in line.split()[1:]) for line in block.group(1).splitlines()
    )
    v1 = (
        encode_segment_header(1, ZERO_DIGEST, keyed=False, version=1)
        + encode_record(ZERO_DIGEST, 1, T0, 0, msgpack.packb({"a": 1}), b"", version=1)[0]
    )
    assert data == v1
    (tmp_path / "00000000000000000001.log").write_bytes(data)
    assert [(r.seq, r.payload) for r in read(tmp_path)] == [(1, {"a": 1})]
    assert verify(tmp_path).ok


def test_layouts_match_the_tables() -> None:
    header = encode_segment_header(42, bytes(range(32)), keyed=True)
    assert len(header) == SEGMENT_HEADER_SIZE == 64
    assert header[:8] == MAGIC == b"SBXEVLOG"
    version, flags, reserved, first_seq = struct.unpack_from("<HHIQ", header, 8)
    assert (version, flags, reserved, first_seq) == (2, FLAG_KEYED, 0, 42)
    assert header[24:56] == bytes(range(32))
    assert header[56:60] == bytes(4)
    assert struct.unpack_from("<I", header, 60)[0] == zlib.crc32(header[:60])
    decoded = decode_segment_header(header, "x")
    assert decoded.keyed and decoded.first_seq == 42

    payload = msgpack.packb({"k": "v"})
    record, digest = encode_record(b"\x01" * 32, 7, 99, 3, payload, b"key", 5)
    assert len(record) == len(payload) + 72
    h = decode_record_header(record)
    assert (h.payload_len, h.seq, h.time_ns, h.batch_left) == (len(payload), 7, 99, 3)
    assert h.durable_seq == 5 and struct.unpack_from("<Q", record, 24)[0] == 5
    assert h.crc_ok and h.header_crc == zlib.crc32(record[:32])
    assert record[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + len(payload)] == payload
    assert record[-36:-4] == digest
    assert (
        digest
        == hashlib.blake2b(
            b"\x01" * 32 + record[:32] + payload, digest_size=32, key=b"key"
        ).digest()
    )
    assert digest == chain_digest(b"\x01" * 32, record[:32], payload, b"key")
    assert struct.unpack_from("<I", record, len(record) - 4)[0] == zlib.crc32(payload + digest)
    # The crc residue readers rely on.
    assert zlib.crc32(record[RECORD_HEADER_SIZE:]) == 0x2144DF1C


@pytest.mark.parametrize(
    "patch,reason",
    [
        ((0, b"X"), "wrong magic"),
        ((8, b"\x01"), "crc"),
        ((60, b"\x00"), "crc"),
    ],
)
def test_bad_segment_headers(patch: tuple[int, bytes], reason: str) -> None:
    header = bytearray(encode_segment_header(1, ZERO_DIGEST, keyed=False))
    offset, value = patch
    header[offset : offset + len(value)] = value
    with pytest.raises(CorruptLogError, match=reason):
        decode_segment_header(bytes(header), "seg")


def test_header_field_checks_behind_a_good_crc() -> None:
    def forge(**fields: int | bytes) -> bytes:
        values = {"version": 2, "flags": 0, "r1": 0, "first": 1, "prev": ZERO_DIGEST, "r2": 0}
        values.update(fields)
        body = struct.pack(
            "<8sHHIQ32sI",
            MAGIC,
            values["version"],
            values["flags"],
            values["r1"],
            values["first"],
            values["prev"],
            values["r2"],
        )
        return body + struct.pack("<I", zlib.crc32(body))

    cases: list[tuple[dict[str, int | bytes], str]] = [
        ({"version": 3}, "format version 3; this eventlog reads versions 1-2"),
        ({"version": 0}, "format version 0"),
        ({"flags": 4}, "unknown segment flags"),
        ({"r1": 1}, "reserved"),
        ({"r2": 1}, "reserved"),
        ({"first": 0}, "first_seq is 0"),
        ({"prev": b"\x01" * 32}, "genesis segment has a non-zero prev_digest"),
    ]
    for fields, reason in cases:
        with pytest.raises(CorruptLogError, match=reason):
            decode_segment_header(forge(**fields), "seg")


def test_unpack_payload_is_strict() -> None:
    assert unpack_payload(msgpack.packb({"a": [1, b"x"]})) == {"a": [1, b"x"]}
    for bad in (b"\x93\x01\x02\x03", b"\x81\x01\x02", b"\xdf\x80\x00\x00\x00", b"\x81\xa1\xff\x01"):
        with pytest.raises(ValueError):
            unpack_payload(bad)


def test_crash_points_are_registered_by_name() -> None:
    for name in LOG_CRASH_POINTS:
        assert name in crashpoints.POINTS
        assert name in FORMAT_MD.read_text()
