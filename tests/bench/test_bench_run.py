"""Smoke test of ``sandboxctl bench``: every row, numeric figures, in seconds.

Why: the benchmarks are only run by hand and by CI's ``--quick``; a broken
row function or a renamed row would otherwise go unnoticed until someone
needs the figures. ``--plan tiny`` runs every suite with sizes that take
seconds; nothing is asserted on time (DESIGN.md: tests never assert on
wall-clock time), only that each expected row is there with numbers, or is
skipped with a reason (no root, no nats-server, no ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

from replay.bench.commands import add_bench_parser, run_bench
from replay.bench.plan import Plan
from replay.bench.runner import GROUPS, expected_names, run


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sandboxctl")
    sub = parser.add_subparsers(dest="command")
    add_bench_parser(sub)
    return parser.parse_args(["bench", *argv])


def _bench_nsfs_mounts(scratch: Path) -> list[str]:
    """nsfs mounts the benchmark could have made (other tests may run alongside)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f if " - nsfs " in line]
    return [p for p in points if "/netns-bench-" in p or p.startswith(str(scratch))]


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_parser_defaults() -> None:
    args = _parse([])
    assert args.func is run_bench
    assert (args.quick, args.output, args.plot, args.only, args.skip) == (
        False,
        "table",
        None,
        None,
        None,
    )
    args = _parse(["--quick", "-o", "markdown", "--only", "log,open", "--plot", "x.png"])
    assert args.quick and args.output == "markdown" and args.only == ["log", "open"]


def test_parser_rejects_unknown_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["--only", "log,nope"])
    assert "unknown group" in capsys.readouterr().err


@pytest.mark.slow
def test_run_bench_tiny_produces_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _bench_nsfs_mounts(tmp_path)
    plot = tmp_path / "open-time.png"
    saved = tmp_path / "run.json"
    argv = ["--plan", "tiny", "-o", "json", "--dir", str(tmp_path), "--plot", str(plot)]
    code = run_bench(_parse([*argv, "--save-json", str(saved)]))
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert json.loads(saved.read_text()) == doc

    machine = doc["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["filesystem"] != "unknown"
    for key in ("cpu_model", "memory_bytes", "kernel", "python", "msgpack"):
        assert machine[key]

    rows = doc["rows"]
    by_group: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_group.setdefault(str(row["group"]), []).append(row)
    assert list(by_group) == list(GROUPS)
    for group, names in expected_names(Plan.tiny()).items():
        got = [str(r["name"]) for r in by_group[group]]
        for name in names:
            assert name in got, (group, name, got)

    for row in rows:
        if row["verdict"] == "skip":
            assert re.match(r"skipped: \S", str(row["skipped"])), row
            continue
        assert _number(row["value"]), row
        assert row["unit"], row
        if row["reference_value"] is not None:
            assert _number(row["reference_value"]), row
        assert row["verdict"] in ("pass", "MISS", "n/a"), row
        if row["target"] is not None:
            assert _number(row["ratio"]), row
    # Skipped only for the documented reasons, never for an error.
    assert not [r for r in rows if str(r.get("skipped") or "").startswith("error")]
    if os.geteuid() == 0:
        assert all(r["verdict"] != "skip" for r in by_group["netns"])

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _bench_nsfs_mounts(tmp_path) == before, "the netns benchmark leaked a namespace"
    assert not list(tmp_path.glob("sandboxctl-bench-*")), "scratch dir left behind"


def test_table_and_markdown_render_from_a_real_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bench(_parse(["--plan", "tiny", "--only", "verify", "-q"])) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[1] == "command: sandboxctl bench --plan tiny --only verify"
    assert "verify 1,000 records (checksums + chain)" in table and "ratio" in table
    assert run_bench(_parse(["--plan", "tiny", "--only", "verify", "-q", "-o", "markdown"])) == 0
    md = capsys.readouterr().out
    assert "| verify: verify 1,000 records (checksums + chain) |" in md


def test_plot_needs_the_open_group(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = run_bench(_parse(["--plan", "tiny", "--only", "log", "--plot", str(tmp_path / "p.png")]))
    assert code == 2
    assert "--plot needs the 'open' group" in capsys.readouterr().err


def test_missing_bench_extra_skips_with_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "eventsourcing", None)  # as if not installed
    result = run(Plan.tiny(), groups=["eventsourcing"])
    assert [r.name for r in result.report.rows] == expected_names(Plan.tiny())["eventsourcing"]
    for row in result.report.rows:
        assert row.verdict == "skip"
        assert row.skipped == "skipped: pip install .[bench]"
    assert result.errors == []


def test_netns_rows_say_they_need_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = run(Plan.tiny(), groups=["netns"])
    assert [r.name for r in result.report.rows] == expected_names(Plan.tiny())["netns"]
    assert {r.skipped for r in result.report.rows} == {
        "skipped: needs root (creates network namespaces)"
    }


def test_plot_without_matplotlib_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = run_bench(
        _parse(["--plan", "tiny", "--only", "open", "-q", "--plot", str(tmp_path / "p.png")])
    )
    assert code == 1
    assert "pip install .[bench]" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
