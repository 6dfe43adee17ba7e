"""The rendering of bench rows, with fixed rows: no benchmark runs here.

Why: the table is what people read and the JSON is what scripts (and CI
logs) keep, so the normalisation of the per-area modules' dicts (targets as
floats or sentences), the pass/MISS decision, the medians and spreads, and
the three formats are pinned down with known numbers.
"""

from __future__ import annotations

import json

import pytest

from replay.bench.render import Report, render, render_json, render_markdown, render_table
from replay.bench.rows import Row, Spread, Target, aggregate, fmt_num, skipped_rows


def _dict(name: str, value: float, ref: float, target: object, unit: str = "records/s") -> dict:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "reference_name": "raw loop",
        "reference_value": ref,
        "ratio": value / ref,
        "target": target,
    }


def _report(rows: list[Row]) -> Report:
    return Report(
        title="sandboxctl bench (test)",
        command="sandboxctl bench --quick",
        facts=[("cpus", "2 x Test CPU"), ("bench dir", "/tmp (ext4 on /dev/vda)")],
        rows=rows,
        wall_seconds=12.34,
        facts_json={"cpu_count": 2},
        settings={"reps": 3},
    )


@pytest.fixture
def rows() -> list[Row]:
    samples = [
        [_dict("append always, 1 thread", 900, 1000, 0.8), _dict("read 10 records", 40, 100, 0.5)],
        [_dict("append always, 1 thread", 800, 1000, 0.8), _dict("read 10 records", 45, 100, 0.5)],
        [_dict("append always, 1 thread", 1000, 1000, 0.8), _dict("read 10 records", 50, 100, 0.5)],
    ]
    out = aggregate(samples, "log")
    out.append(
        Row.from_dict(
            {
                "name": "reconcile: no-op over 10 live",
                "value": 0.2,
                "unit": "ms",
                "reference_name": "reconcile: create 10",
                "reference_value": 10.0,
                "ratio": 0.02,
                "target": "<= 1/20 of creation",
            },
            "netns",
        )
    )
    out.append(
        Row.from_dict(
            {**_dict("verify 10 records", 60, 100, None), "note": "no target in the issue"},
            "verify",
        )
    )
    reason = "skipped: pip install .[bench]"
    out += skipped_rows(["eventsourcing: rebuild"], "eventsourcing", reason)
    return out


@pytest.mark.parametrize(
    ("spec", "op", "value", "note"),
    [
        (0.8, ">=", 0.8, ""),
        (8, ">=", 8.0, ""),
        (">= 0.7 (throughput vs raw)", ">=", 0.7, "(throughput vs raw)"),
        ("<= 0.05 of creation", "<=", 0.05, "of creation"),
        ("<= 1/20 of creation", "<=", 0.05, "of creation"),
        ("\u2264 0.05", "<=", 0.05, ""),
        ({"op": ">=", "value": 10}, ">=", 10.0, ""),
    ],
)
def test_target_parse(spec: object, op: str, value: float, note: str) -> None:
    target, rest = Target.parse(spec)
    assert target == Target(op, pytest.approx(value))  # type: ignore[arg-type]
    assert rest == note


@pytest.mark.parametrize("spec", [None, float("nan"), "reported (throughput vs raw)", "n/a"])
def test_target_parse_no_target(spec: object) -> None:
    target, _rest = Target.parse(spec)
    assert target is None


def test_aggregate_takes_medians_and_spreads(rows: list[Row]) -> None:
    append, read = rows[0], rows[1]
    assert append.name == "append always, 1 thread"
    assert append.group == "log"
    assert append.value == 900
    assert append.value_spread == Spread(800, 1000)
    assert append.reference_spread == Spread(1000, 1000)
    assert append.ratio == pytest.approx(0.9)
    assert append.reps == 3
    assert append.verdict == "pass"
    assert read.ratio == pytest.approx(0.45)
    assert read.verdict == "MISS"


def test_verdicts(rows: list[Row]) -> None:
    assert [r.verdict for r in rows] == ["pass", "MISS", "pass", "n/a", "skip"]
    assert rows[3].target_text == "n/a"


def test_fmt_num() -> None:
    assert fmt_num(None) == "-"
    assert fmt_num(1234567.8) == "1,234,568"
    assert fmt_num(12.345) == "12.3"
    assert fmt_num(1.2345) == "1.23"
    assert fmt_num(0.0456) == "0.0456"
    assert fmt_num(0.00012) == "0.00012"
    assert fmt_num(0) == "0"


def test_table(rows: list[Row]) -> None:
    text = render_table(_report(rows))
    lines = text.splitlines()
    assert lines[0] == "sandboxctl bench (test)"
    assert "command: sandboxctl bench --quick" in lines
    assert any(line.startswith("cpus:") and "2 x Test CPU" in line for line in lines)
    header = next(line for line in lines if line.startswith("group"))
    for col in ("benchmark", "value", "reference", "ratio", "target", "mark", "note"):
        assert col in header
    row = next(line for line in lines if "append always, 1 thread" in line)
    assert "900 (800..1,000)" in row
    assert "0.9 (0.8..1.00)" in row
    assert ">= 0.8" in row and row.split()[-2:] == ["pass", "3"]
    assert "MISS" in next(line for line in lines if "read 10 records" in line)
    skipped = next(line for line in lines if "eventsourcing: rebuild" in line)
    assert "skip" in skipped and "skipped: pip install .[bench]" in skipped
    assert lines[-1] == "5 rows: 2 pass, 1 MISS, 1 n/a, 1 skip; wall time 12.3 s"


def test_json(rows: list[Row]) -> None:
    doc = json.loads(render_json(_report(rows)))
    assert doc["command"] == "sandboxctl bench --quick"
    assert doc["machine"] == {"cpu_count": 2}
    assert doc["settings"] == {"reps": 3}
    assert doc["wall_seconds"] == 12.34
    by_name = {r["name"]: r for r in doc["rows"]}
    append = by_name["append always, 1 thread"]
    assert append["value"] == 900
    assert append["value_spread"] == [800, 1000]
    assert append["target"] == ">= 0.8"
    assert append["verdict"] == "pass"
    noop = by_name["reconcile: no-op over 10 live"]
    assert noop["target"] == "<= 0.05" and noop["target_note"] == "of creation"
    skipped = by_name["eventsourcing: rebuild"]
    assert skipped["verdict"] == "skip" and skipped["value"] is None
    assert skipped["skipped"] == "skipped: pip install .[bench]"
    assert by_name["verify 10 records"]["target"] is None
    assert by_name["verify 10 records"]["verdict"] == "n/a"


def test_markdown(rows: list[Row]) -> None:
    text = render_markdown(_report(rows))
    lines = text.splitlines()
    assert "Command: `sandboxctl bench --quick`" in lines
    assert "- cpus: 2 x Test CPU" in lines
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    widths = {line.count("|") - line.count("\\|") for line in table}
    assert len(widths) == 1, "every table line has the same number of cells"
    assert "| log: append always, 1 thread |" in table[2]
    assert "**MISS**" in table[3]
    assert "eventsourcing: eventsourcing: rebuild" in table[-1]


def test_render_dispatch(rows: list[Row]) -> None:
    report = _report(rows)
    assert render(report, "table") == render_table(report)
    assert render(report, "json") == render_json(report)
    assert render(report, "markdown") == render_markdown(report)
    with pytest.raises(ValueError, match="unknown format"):
        render(report, "xml")
