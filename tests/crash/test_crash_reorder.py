"""The reorder model (``sandboxctl crashtest --model reorder``): crash states beyond prefixes.

What is tested, and why each matters:

- the strace parser rebuilds, byte for byte, the files a real process left
  (threads, dup, O_APPEND, pwrite, writev, lseek, ftruncate, rename,
  unlink): every crash state is built from that model, so a wrong offset
  would make every verdict meaningless;
- the crash-state model on hand-built traces: an unsynced write yields the
  out-of-order states (an early sector lost, a later one and the new size
  kept), a synced one never varies, an unsynced create may be lost until its
  directory is fsynced;
- the model can fail: a build whose fsync is a no-op, and one whose
  directory fsync is a no-op, are caught (SANDBOX_TEST_FAULT, read only by
  the traced child);
- the real build on a bounded sample (CI) and on legal states that the
  format-v1 recovery refused (a lost sector inside a group-commit write with
  intact records after it; a lost first sector of an unsynced append): format
  v2 decides them by proof and reopens them; on the v1 code these tests fail.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from replay.crash import fsops, reorder, reorder_child, states, trace
from replay.crash.commands import add_crashtest_parser
from replay.crash.fsops import Ack, Event, Link, Sync, Trace, Write
from replay.crash.reorder_checks import check_state

SEED = 20261206
HERE = Path(__file__).resolve().parent

# -- the parser ----------------------------------------------------------------

OPS_SCRIPT = r"""
import os, sys, threading
root = sys.argv[1]
os.mkdir(os.path.join(root, "d"))
a = os.path.join(root, "d", "a")
fd = os.open(a, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
os.write(fd, b"head" * 100)
os.fdatasync(fd)
dup = os.dup(fd)
lock = threading.Lock()  # writes in one order (as the log's writer does); syncs overlap
def work(t):
    for i in range(20):
        with lock:
            os.write(dup, bytes([65 + t]) * (37 + i))
        os.fdatasync(dup)
threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
os.writev(fd, [b"vec", b"tor"])
os.ftruncate(fd, 1000)
os.write(fd, b"after-truncate")
b = os.path.join(root, "b")
fb = os.open(b, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fb, b"0123456789")
os.lseek(fb, 2, os.SEEK_SET)
os.write(fb, b"xy")
os.pwrite(fb, b"P", 8)
os.write(fb, b"z")
os.rename(a, os.path.join(root, "d", "renamed"))
c = os.path.join(root, "gone")
with open(c, "wb") as f:
    f.write(b"bye")
os.unlink(c)
dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)
"""


def _tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


def test_parser_rebuilds_the_files_a_real_process_wrote(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    trace_file = str(tmp_path / "ops.strace")
    cmd = trace.strace_command(trace_file, [sys.executable, "-c", OPS_SCRIPT, str(root)])
    subprocess.run(cmd, check=True, timeout=120)
    tr = trace.parse_trace(trace_file, str(root))
    model = states.Model(tr)
    end = len(tr.events)
    image = model.build(model.view(end), states.Choice(end, states.PREFIX))
    rebuilt = tmp_path / "rebuilt"
    image.materialize(str(rebuilt))
    assert _tree(rebuilt) == _tree(root)
    calls = {e.call for e in tr.events}
    assert {"write", "writev", "pwrite64", "ftruncate", "rename", "unlink", "mkdir"} <= calls
    # The root was fsynced at the end, d never: only d's entries may still be lost.
    assert [tr.names[d] for d in model.view(end).dirty_dirs()] == ["d"]


def test_acks_are_placed_after_the_sync_of_their_record(tmp_path: Path) -> None:
    """An ack (written after append returned) follows the fdatasync of its write."""
    tr = reorder.record_workload(reorder_child.WORKLOADS["single"], SEED, str(tmp_path))
    issued = reorder.issued_records(tr)
    assert sorted(issued) == list(range(1, len(issued) + 1))
    assert len(issued) == reorder_child.WORKLOADS["single"].appends
    model = states.Model(tr)
    for index, _ack in tr.acks():
        # Crashing right after the ack: the record's bytes are durable.
        view = model.view(index + 1)
        segment_views = [f for fid, f in view.files.items() if tr.names[fid].endswith(".log")]
        assert all(not f.ops for f in segment_views), tr.names


# -- the model on hand-built traces -----------------------------------------------


def _trace(ops: list[Any]) -> Trace:
    events = tuple(Event(i, i, op, type(op).__name__.lower()) for i, op in enumerate(ops))
    names = {0: "", 1: "f"}
    return Trace("/nowhere", events, fsops.Image.empty(), names, frozenset({0}))


def _images(model: states.Model, kind: str, point: int) -> list[bytes]:
    view = model.view(point)
    rng = random.Random(1)
    found = model.choices(view, kind, rng, cap=10_000, samples=10)
    return [model.build(view, c).data.get(1, b"") for c in found]


def test_an_unsynced_write_persists_out_of_order() -> None:
    synced = b"s" * 700
    tail = b"t" * 1200  # bytes 700..1900: sectors 1, 2 and 3 of the file
    model = states.Model(
        _trace([Link(0, "f", 1), Write(1, 0, synced), Sync(1), Sync(0), Write(1, 700, tail)])
    )
    images = _images(model, states.SECTOR, 5)
    written = synced + tail
    lost_early = written[:700] + bytes(1024 - 700) + written[1024:]
    assert lost_early in images  # sector 1 lost, sectors 2-3 and the new size kept
    assert synced in images  # the old size
    assert written in images
    assert synced + bytes(1200) in images  # size persisted, data not
    assert all(img[:700] == synced for img in images)  # synced bytes never vary
    # With the sync completed, nothing varies any more.
    synced_model = states.Model(
        _trace([Link(0, "f", 1), Write(1, 0, synced), Sync(0), Write(1, 700, tail), Sync(1)])
    )
    assert set(_images(synced_model, states.SECTOR, 5)) <= {written}
    assert _images(synced_model, states.PREFIX, 5) == [written]


def _uniform_pages(image: bytes) -> bool:
    return all(len(set(image[o : o + 4096])) <= 1 for o in range(0, len(image), 4096))


def test_page_states_lose_whole_pages_sector_states_whole_sectors() -> None:
    model = states.Model(_trace([Link(0, "f", 1), Sync(0), Write(1, 0, b"w" * 9000)]))
    pages = set(_images(model, states.PAGE, 3))
    assert len(pages) == 1 + 2**3  # size 0, or size 9000 with each of 3 pages kept or lost
    assert all(_uniform_pages(p) for p in pages)
    sectors = _images(model, states.SECTOR, 3)  # 2**18 combinations: sampled
    assert len(sectors) == 10 and not all(_uniform_pages(s) for s in sectors)


def test_an_unsynced_create_may_be_lost_until_its_directory_is_synced() -> None:
    ops: list[Any] = [Link(0, "f", 1), Write(1, 0, b"x"), Sync(1)]
    model = states.Model(_trace(ops))
    view = model.view(3)
    assert view.dirty_dirs() == [0]
    kept = [
        "f" in model.build(view, c).entries[0]
        for c in model.choices(view, states.DIR, random.Random(0), cap=64, samples=4)
    ]
    assert False in kept and True in kept
    synced = states.Model(_trace([*ops, Sync(0)]))
    assert synced.view(4).dirty_dirs() == []
    assert synced.choices(synced.view(4), states.DIR, random.Random(0), cap=64, samples=4) == []


def test_batch_guarantee_covers_only_acks_before_a_completed_sync() -> None:
    first = Ack((1,), ({"n": 1},))
    second = Ack((2,), ({"n": 2},))
    model = states.Model(
        _trace([Link(0, "f", 1), Write(1, 0, b"a"), first, Sync(1), Write(1, 1, b"b"), second])
    )
    assert model.required_acks(3, "sync") == []  # the sync has not completed
    assert model.required_acks(6, "sync") == [first]  # second came after the sync
    assert model.required_acks(6, "ack") == [first, second]


# -- the model can fail ---------------------------------------------------------


def test_a_build_whose_fsync_is_a_noop_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(reorder_child.FAULT_ENV, reorder_child.FSYNC_NOOP)
    report = reorder.run_reorder(60, SEED, ("single",))
    assert not report.ok
    assert report.fault == reorder_child.FSYNC_NOOP
    lost = [
        v
        for v in report.violations
        if v.check == "acked" and "lost" in v.message and v.kind != states.DIR
    ]
    assert len({v.state for v in lost}) >= 5, report.to_table()


def test_a_build_whose_directory_fsync_is_a_noop_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(reorder_child.FAULT_ENV, reorder_child.DIRSYNC_NOOP)
    report = reorder.run_reorder(60, SEED, ("single",))
    assert not report.ok
    lost = [
        v
        for v in report.violations
        if v.kind == states.DIR and "lost create" in v.state and v.check in ("acked", "open")
    ]
    assert lost, report.to_table()
    # File data is still synced: only states that lose entries lose anything.
    assert {v.kind for v in report.violations} <= {states.DIR, states.RECOVERY}, report.to_table()


# -- the real build ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ci_report() -> reorder.ReorderReport:
    """The bounded CI sample: a few hundred states over the three workloads."""
    seed = int(os.environ.get("SANDBOX_CRASHTEST_SEED") or SEED)
    report = reorder.run_reorder(300, seed, reorder.WORKLOAD_NAMES)
    print("\n" + report.to_table())
    return report


def _result(report: reorder.ReorderReport, name: str) -> Any:
    return next(r for r in report.results if r.name == name)


@pytest.mark.slow
@pytest.mark.crashtest_ci
def test_ci_sample_explores_every_kind(ci_report: reorder.ReorderReport) -> None:
    assert sum(r.states for r in ci_report.results) == 300
    for r in ci_report.results:
        assert r.states == 100 and r.acks > 0, r.to_dict()
        for kind in (states.PREFIX, states.PAGE, states.SECTOR, states.DIR):
            assert r.by_kind[kind] > 0, (kind, r.to_dict())
    assert _result(ci_report, "single").recovery_runs > 0
    assert _result(ci_report, "single").by_kind[states.RECOVERY] > 0


@pytest.mark.slow
@pytest.mark.crashtest_ci
def test_ci_sample_single_thread_has_no_violation(ci_report: reorder.ReorderReport) -> None:
    assert not _result(ci_report, "single").violations, ci_report.to_table()


@pytest.mark.slow
@pytest.mark.crashtest_ci
def test_ci_sample_threads_has_no_violation(ci_report: reorder.ReorderReport) -> None:
    assert not _result(ci_report, "threads").violations, ci_report.to_table()


@pytest.mark.slow
@pytest.mark.crashtest_ci
def test_ci_sample_batch_has_no_violation(ci_report: reorder.ReorderReport) -> None:
    assert not _result(ci_report, "batch").violations, ci_report.to_table()


@pytest.mark.slow
def test_same_seed_same_states() -> None:
    one = reorder.run_reorder(40, SEED, ("single",))
    two = reorder.run_reorder(40, SEED, ("single",))
    assert one.results[0].fingerprint == two.results[0].fingerprint != ""
    other = reorder.run_reorder(40, SEED + 1, ("single",))
    assert other.results[0].fingerprint != one.results[0].fingerprint


# -- two legal states format v1 refuses ------------------------------------------


def _check(model: states.Model, view: states.PointView, choice: states.Choice, tmp: Path) -> Any:
    tr = model.trace
    image = model.build(view, choice)
    image.materialize(str(tmp / "state"))
    required = reorder.required_records(model.required_acks(choice.point, "ack"))
    return check_state(
        str(tmp / "state" / "log"),
        required,
        reorder.issued_records(tr),
        segment_bytes=1 << 20,
    )


def _segment_writes(tr: Trace) -> list[tuple[int, Write]]:
    return [
        (i, e.op)
        for i, e in enumerate(tr.events)
        if isinstance(e.op, Write) and tr.names[e.op.fid].endswith(".log")
    ]


def test_lost_first_sector_of_an_unsynced_append_reopens(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    acks = str(tmp_path / "acks.jsonl")
    trace_file = str(tmp_path / "align.strace")
    child = [sys.executable, "-P", str(HERE / "reorder_align_child.py")]
    cmd = trace.strace_command(trace_file, [*child, str(root / "log"), acks, "3"])
    started = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    assert int(started.stdout.split()[-1]) % 512 == 512 - 3
    tr = trace.parse_trace(trace_file, str(root), ack_file=acks)
    model = states.Model(tr)
    index, write = _segment_writes(tr)[-1]
    view = model.view(index + 1)  # written, not yet fdatasynced
    f = view.files[write.fid]
    assert len(f.ops) == 1
    first = write.offset // 512
    picks = tuple((b, 0 if b == first else 1) for b in f.blocks(512))
    choice = states.Choice(index + 1, states.SECTOR, (states.FileChoice(write.fid, 1, 512, picks),))
    data = model.build(view, choice).data[write.fid]
    assert data[write.offset : write.offset + 3] == bytes(3)
    assert data[(first + 1) * 512 :] == f.versions[1][(first + 1) * 512 :]
    result = _check(model, view, choice, tmp_path)
    assert result.ok, result.violations


def test_zeroed_sector_inside_a_group_commit_write_reopens(tmp_path: Path) -> None:
    tr = reorder.record_workload(reorder_child.WORKLOADS["threads"], SEED, str(tmp_path))
    model = states.Model(tr)
    index, write = max(_segment_writes(tr), key=lambda iw: len(iw[1].data))
    view = model.view(index + 1)
    f = view.files[write.fid]
    blocks = f.blocks(512)
    if len(blocks) < 4:
        pytest.skip("no group-commit write spanned 4 sectors in this run")
    m = len(f.versions) - 1
    picks = tuple((b, 0 if b == blocks[1] else m) for b in blocks)
    choice = states.Choice(index + 1, states.SECTOR, (states.FileChoice(write.fid, m, 512, picks),))
    result = _check(model, view, choice, tmp_path)
    assert result.ok, result.violations


# -- the CLI ---------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sandboxctl")
    add_crashtest_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_reorder_json_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["crashtest", "--model", "reorder", "--states", "12", "--workload", "single"]
    code = _cli([*argv, "--seed", "5", "-o", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True and out["seed"] == 5 and out["states"] == 12
    assert [w["workload"] for w in out["workloads"]] == ["single"]
    assert set(out["workloads"][0]["states_by_kind"]) == set(states.KINDS)
    assert _cli(["crashtest", "--states", "5"]) == 2  # a reorder option, points model
    assert "go with --model reorder" in capsys.readouterr().err


def test_cli_reorder_reports_a_broken_build(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(reorder_child.FAULT_ENV, reorder_child.FSYNC_NOOP)
    argv = ["crashtest", "--model", "reorder", "--states", "20", "--workload", "single"]
    code = _cli([*argv, "--seed", "5"])
    out = capsys.readouterr().out
    assert code == 1
    assert "build: fsync-noop" in out and "CAUSES" in out
    assert "repro: sandboxctl crashtest --model reorder --workload single --seed 5" in out
