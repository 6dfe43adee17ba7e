"""The fuzz targets called directly: every seed, and hand-made hostile inputs.

These run without atheris (the targets are plain functions) and in well
under a second each; tests/fuzz/test_fuzz_bounded.py runs the real fuzzer.
Hostile inputs are built in code from real logs, snapshots and blobs, never
from byte layouts: the log's format is changing under these tests.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import msgpack
import pytest

import eventlog
from replay.fuzz import corpus, logcase, targets
from replay.fuzz.fixture import make_sandbox

TARGET_NAMES = sorted(targets.TARGETS)


@pytest.fixture(scope="module")
def seeds() -> dict[str, list[bytes]]:
    return {name: corpus.seeds(name) for name in TARGET_NAMES}


def _segment(seq: int) -> str:
    """DESIGN.md's segment file name for a first seq."""
    return f"{seq:020d}.log"


def _real_log(tmp_path: Path, n: int = 5, **open_args: object) -> list[tuple[str, bytes]]:
    d = str(tmp_path / f"log-{n}-{len(open_args)}")
    with eventlog.EventLog.open(d, durability="none", **open_args) as log:  # type: ignore[arg-type]
        for i in range(n):
            log.append({"i": i, "pad": "p" * (i * 20)})
    return logcase.read_dir(d, suffix=".log")


# -- seeds ----------------------------------------------------------------------


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_every_seed_passes_its_target(name: str, seeds: dict[str, list[bytes]]) -> None:
    assert len(seeds[name]) >= 5
    for seed in seeds[name]:
        targets.TARGETS[name](seed)


def test_log_seeds_include_clean_logs_with_records(
    tmp_path: Path, seeds: dict[str, list[bytes]]
) -> None:
    """A seed corpus of broken logs only would never fuzz the agreement checks."""
    clean = 0
    for i, seed in enumerate(seeds["log"]):
        d = str(tmp_path / str(i))
        logcase.write_dir(d, logcase.decode(seed).files)
        report = eventlog.verify(d)
        clean += report.ok and report.records > 0 and report.torn_tail == 0
    assert clean >= 3


def test_snapshot_seeds_decode_and_resealing_matches_the_format() -> None:
    fx = targets.fixture()
    assert targets.resealing_works(), "sandbox/snapshot.py seals differently: update reseal()"
    positions = 0
    for seed in corpus.snapshot_seeds():
        info = targets.snap.decode_info(seed, fx.netns_dir)
        positions += info.position is not None
    assert positions >= 3
    assert fx.last_seq >= 10 and len(fx.truth) == fx.last_seq + 1


def test_logcase_round_trips_and_never_fails_to_decode() -> None:
    files = [(_segment(1), b"abc"), (_segment(7), b""), ("LOCK", b"123\n")]
    assert logcase.decode(logcase.encode(files, control=9)) == logcase.LogCase(9, tuple(files))
    for junk in (b"", b"\x00", b"\xff" * 50, b"\x01\x05../..\xff\xff\xff\xff", bytes(range(256))):
        case = logcase.decode(junk)
        assert all("/" not in name and name not in (".", "..") for name, _ in case.files)


# -- the log target: hostile directories ------------------------------------------


def test_log_target_on_hostile_directories(tmp_path: Path) -> None:
    one = _real_log(tmp_path)
    ((name, seg),) = one
    many = _real_log(tmp_path, 12, segment_bytes=200)
    assert len(many) >= 3
    keyed = _real_log(tmp_path, 3, key=b"k")
    cases: list[list[tuple[str, bytes]]] = [
        [],
        [(name, b"")],
        [(name, b"\x00" * 4096)],
        [(name, b"\xff" * 4096)],
        [(name, seg * 2)],  # the whole segment twice: a header in the middle
        [(_segment(0), seg)],  # seq 0 is not a name a log can have
        [(_segment(2), seg)],  # history head removed
        [(name, seg), (_segment(2), seg)],  # seq repeated across segments
        [(name, seg), (_segment(10**19), b"")],  # a far gap, torn at creation
        [(name, seg[: len(seg) // 2]), (_segment(9), seg[len(seg) // 2 :])],  # split wrong
        many[:1] + many[2:4],  # a middle segment missing
        [*many[:2], (many[2][0], many[2][1][:70])],  # last segment cut after its header
        [*many[:3], (_segment(99), bytes(64))],  # zero header last
        keyed,
        [(keyed[0][0], keyed[0][1]), (_segment(4), seg)],  # keyed then unkeyed
        [(name, seg), (name + ".broken", seg)],
    ]
    # Single bit flips and byte runs through the whole segment (format-blind).
    for at in range(0, len(seg), max(1, len(seg) // 40)):
        flipped = bytearray(seg)
        flipped[at] ^= 0x10
        cases.append([(name, bytes(flipped))])
        cases.append([(name, seg[:at] + bytes(len(seg) - at))])  # zeroed from here on
        cases.append([(name, seg[:at] + b"\xff" * 8 + seg[at + 8 :])])
    for files in cases:
        targets.fuzz_log(logcase.encode(files[: logcase.MAX_FILES], control=len(files)))


def test_log_target_reports_a_disagreement_as_a_finding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The oracle has teeth: a writer that refuses a clean log is a finding."""
    files = _real_log(tmp_path)

    def refuse(*_args: object, **_kwargs: object) -> eventlog.EventLog:
        raise eventlog.CorruptLogError("x", 0, 1, "planted")

    monkeypatch.setattr(eventlog.EventLog, "open", refuse)
    with pytest.raises(targets.FuzzFinding, match="refuses"):
        targets.fuzz_log(logcase.encode(files))


# -- the snapshot target: hostile files -------------------------------------------


def test_snapshot_target_on_hostile_files() -> None:
    fx = targets.fixture()
    real = fx.snapshots[2]
    cases = [b"", b"\x00" * 31, b"\x00" * 200, real[:10], real[:-1], real + b"\x00", real[::-1]]
    for at in range(0, len(real), max(1, len(real) // 60)):
        for mask in (0x01, 0x80):
            flipped = bytearray(real)
            flipped[at] ^= mask
            cases.append(bytes(flipped))  # fuzz_snapshot also tries it resealed
        cases.append(real[:at] + b"\xff" * 8 + real[at + 8 :])
        cases.append(real[:at])
    for data in cases:
        targets.fuzz_snapshot(data)


def test_snapshot_target_reports_a_wrong_load_as_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    fx = targets.fixture()
    wrong = targets.snap.load(fx.state_dir, to_seq=3, netns_dir=fx.netns_dir)
    monkeypatch.setattr(targets.snap, "load", lambda *_a, **_k: wrong)
    with pytest.raises(targets.FuzzFinding, match="wrong state"):
        targets.fuzz_snapshot(fx.snapshots[2])


# -- the metadata target: hostile blobs --------------------------------------------


def _blob_variants() -> list[bytes]:
    real = make_sandbox(1).metadata.to_json()
    doc = json.loads(real)
    out = [
        b"",
        b"null",
        b"[]",
        b'"v1"',
        b"{}",
        b'{"Version":"v1","Metadata":null}',
        b'{"Version":"v1","Metadata":[]}',
        b'{"Version":1,"Metadata":{}}',
        b'{"Version":"v1","Metadata":{"ID":"a b","Name":"n"}}',
        b'{"Version":"v1","Metadata":{"ID":"a","Name":"n","Config":{"metadata":[]}}}',
        b'{"Version":"v1","Metadata":{"ID":"a","Name":"n","NetNSPath":"\\u0000"}}',
        b'{"Version":"v1","Metadata":{"ID":"\\ud800","Name":"\\udfff"}}',
        b'{"Version":"v1","Metadata":{"ID":"a","Name":"n","Config":{"port_mappings":[{"protocol":99}]}}}',
        b'{"Version":"v1","Metadata":{"ID":"a","Name":"n","Config":{"linux":{"security_context":'
        b'{"run_as_user":{"value":1e400}}}}}}',
        b'{"Version":"v1","Metadata":{"ID":"a","Name":"n","Config":{"hostname":NaN}}}',
        b'{"Version":"v1","Metadata":{"ID":"a","Name":"n","Config":{"metadata":{"attempt":'
        + b"9" * 5000
        + b"}}}}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"\xff\xfe" + '{"Version":"v1","Metadata":{"ID":"a","Name":"b"}}'.encode("utf-16-le"),
        b"\xef\xbb\xbf" + real,
        real[:-1],
        real.replace(b'"Version"', b'"VERSION"'),
        real.replace(b"{", b'{"Version":"v2",', 1),
        real.replace(b'"Name"', b'"name"').replace(b'"ID"', b'"id"'),
        real.replace(b'"ID"', b'"ID":"dup","ID"'),
        real + b" trailing",
    ]
    doc["Metadata"]["Config"] = {"labels": {"k": ["not", "a", "string"]}}
    out.append(json.dumps(doc).encode())
    return out


def test_metadata_target_on_hostile_blobs() -> None:
    for blob in _blob_variants():
        targets.fuzz_metadata(blob)


def test_metadata_event_form_survives_msgpack() -> None:
    """What the target's last oracle checks, on a real blob."""
    md = make_sandbox(1).metadata
    packed = msgpack.packb(md.to_event_dict(), use_bin_type=True)
    assert msgpack.unpackb(packed, raw=False) == md.to_event_dict()


def test_scratch_space_is_private_and_reused() -> None:
    targets.fuzz_log(corpus.log_seeds()[0])
    scratch = targets._scratch_dir()
    assert os.path.isdir(scratch)
    assert {"open", "read"} <= set(os.listdir(scratch))


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_dictionaries_are_libfuzzer_syntax(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.dict"
    count = corpus.write_dictionary(name, str(path))
    lines = path.read_text(encoding="ascii").splitlines()
    assert count == len(lines) >= 10
    assert all(
        re.fullmatch(r'kw\d+="([\x20-\x21\x23-\x5b\x5d-\x7e]|\\x[0-9a-f]{2})+"', ln) for ln in lines
    )
