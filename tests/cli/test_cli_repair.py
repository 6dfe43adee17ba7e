"""``sandboxctl repair``, end to end: a state dir made by ``sandboxctl run``, damaged
by a flipped bit, shown without ``--cut`` (nothing changes, exit 6) and cut with it
(exit 0; ``verify`` passes, ``audit`` shows the ``LogRepaired`` event, ``pods``
and ``run`` work again)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import fails, ok, sandboxctl

import eventlog
from eventlog.format import RECORD_HEADER_SIZE

SEGMENT = "00000000000000000001.log"


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def make_pods(g: list[str], tmp_path: Path, names: list[str]) -> list[str]:
    ids = []
    for name in names:
        config = tmp_path / f"{name}.json"
        config.write_text(
            json.dumps({"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"}})
        )
        ids.append(ok(sandboxctl(*g, "run", str(config))).strip())
    return ids


def damage(state_dir: Path, seq: int, key: bytes | None = None) -> int:
    """Flip a bit in record ``seq``'s payload; returns the record's offset."""
    (rec,) = [r for r in eventlog.read(state_dir, key=key) if r.seq == seq]
    seg = state_dir / SEGMENT
    data = bytearray(seg.read_bytes())
    data[rec.offset + RECORD_HEADER_SIZE + 5] ^= 0x01
    seg.write_bytes(bytes(data))
    return rec.offset


@pytest.mark.slow
def test_repair_shows_then_cuts_a_corrupt_log(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    ids = make_pods(g, tmp_path, ["web", "db", "cache"])
    snap = ok(sandboxctl(*g, "snapshot")).strip()
    make_pods(g, tmp_path, ["queue"])
    assert ok(sandboxctl(*g, "repair")) == "log is clean: nothing to repair\n"
    original = (state_dir / SEGMENT).read_bytes()
    offset = damage(state_dir, 3)  # db's add (seq 1 records the netns dir, 2 adds web)
    fails(sandboxctl(*g, "audit"), 6, "seq 3")

    before = files(state_dir)
    cp = sandboxctl(*g, "repair")
    assert cp.returncode == 6, (cp.stdout, cp.stderr)
    assert cp.stdout.startswith(f"DAMAGED: {SEGMENT} at offset {offset} (seq 3): ")
    assert f"> {offset // 16 * 16:08x}  " in cp.stdout, "a hex dump, the damaged line marked"
    aside = len(original) - offset
    assert f"--cut would keep seqs 1..2, set aside {aside} bytes in 1 file:" in cp.stdout
    doc = json.loads(sandboxctl(*g, "repair", "-o", "json").stdout)
    assert doc["clean"] is False and doc["repaired"] is None
    assert (doc["damage"]["segment"], doc["damage"]["offset"], doc["damage"]["seq"]) == (
        SEGMENT,
        offset,
        3,
    )
    assert doc["damage"]["cut_point"] == {"seq": 2, "segment": SEGMENT, "offset": offset}
    assert files(state_dir) == before, "repair without --cut changes nothing"

    out = ok(sandboxctl(*g, "repair", "--cut"))
    assert f"REPAIRED: kept seqs 1..2; {aside} bytes set aside in 1 file: {SEGMENT}.broken" in out
    assert f"set aside: {Path(snap).name}.broken" in out, "the snapshot of the cut history"
    assert "recorded as LogRepaired at seq 3" in out
    assert (state_dir / f"{SEGMENT}.broken").read_bytes() == before[SEGMENT][offset:]
    assert (state_dir / SEGMENT).read_bytes()[:offset] == original[:offset]
    assert (state_dir / f"{Path(snap).name}.broken").read_bytes() == before[Path(snap).name]

    assert ok(sandboxctl(*g, "verify")).startswith("OK: 3 records (seq 1..3)")
    trail = ok(sandboxctl(*g, "audit", "--type", "logrepaired"))
    assert re.search(
        rf"^3 .* LogRepaired .* log repaired: cut at seq 2, {aside} bytes set aside "
        r"\(record body crc mismatch",
        trail,
        re.M,
    ), trail
    (entry,) = [
        json.loads(line) for line in ok(sandboxctl(*g, "audit", "-o", "jsonl")).splitlines()
    ][2:]
    assert entry["type"] == "LogRepaired" and entry["sandbox_id"] == ""
    assert entry["changes"]["log"]["broken_files"] == [f"{SEGMENT}.broken"]
    assert entry["changes"]["log"]["damage_seq"] == 3
    assert ok(sandboxctl(*g, "pods", "-q")) == ids[0] + "\n"
    assert ok(sandboxctl(*g, "repair")) == "log is clean: nothing to repair\n"
    make_pods(g, tmp_path, ["db"])  # the store opens and writes again; the name is free
    assert ok(sandboxctl(*g, "verify")).startswith("OK: 4 records")


@pytest.mark.slow
def test_repair_of_a_keyed_log_needs_its_key(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"0123456789abcdef")
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    gk = [*g, "--key-file", str(key_file)]
    make_pods(gk, tmp_path, ["a", "b", "c"])
    damage(state_dir, 3, key=key_file.read_bytes())
    before = files(state_dir)
    fails(sandboxctl(*g, "repair", "--cut"), 7, "--key-file")
    assert files(state_dir) == before
    cp = sandboxctl(*gk, "repair")
    assert cp.returncode == 6 and "would keep seqs 1..2" in cp.stdout
    ok(sandboxctl("repair", "--cut", *gk[:2], "--key-file", str(key_file)))
    assert ok(sandboxctl(*gk, "verify")).startswith("OK: 3 records")


def test_damage_a_cut_cannot_fix_is_refused(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    make_pods(g, tmp_path, ["a"])
    (state_dir / SEGMENT).rename(state_dir / "00000000000000000002.log")  # history head removed
    before = files(state_dir)
    cp = sandboxctl(*g, "repair")
    assert cp.returncode == 6 and "a cut cannot fix this" in cp.stdout
    fails(sandboxctl(*g, "repair", "--cut"), 6, "a cut cannot fix this")
    assert files(state_dir) == before
    fails(sandboxctl("--state-dir", str(tmp_path / "absent"), "repair"), 3)
