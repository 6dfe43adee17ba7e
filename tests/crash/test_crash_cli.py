"""``sandboxctl crashtest`` as the CLI will run it: parser, exit codes, output."""

from __future__ import annotations

import argparse
import json

import pytest

from replay.crash.commands import add_crashtest_parser


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sandboxctl")
    sub = parser.add_subparsers(dest="command")
    add_crashtest_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_json_output_and_exit_zero(capsys: pytest.CaptureFixture[str], crash_dir: str) -> None:
    code = _run(
        [
            "crashtest",
            *("--runs", "3", "--seed", "9", "--points", "append.after_write,sigkill"),
            *("--workdir", crash_dir, "-o", "json"),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True and out["seed"] == 9
    assert [r["point"] for r in out["results"]] == [
        "append.after_write",
        "sigkill",
        "append.after_write",
    ]
    assert (
        out["results"][0]["repro"]
        == "sandboxctl crashtest --runs 1 --seed 9 --points append.after_write"
    )


def test_table_output(capsys: pytest.CaptureFixture[str], crash_dir: str) -> None:
    code = _run(
        [
            "crashtest",
            *("--runs", "2", "--seed", "4", "--points", "store.after_intent", "--power-loss"),
            *("--workdir", crash_dir),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].split() == [
        "CRASH",
        "POINT",
        "RUNS",
        "FIRED",
        "ACKED",
        "EVENTS",
        "VIOLATIONS",
    ]
    assert "seed 4, 2 runs, power loss" in out and "no violations" in out


def test_unknown_point_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["crashtest", "--points", "no.such.point"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sandboxctl crashtest: error: unknown crash point(s) no.such.point")
    assert len(err.strip().splitlines()) == 1


def test_list_points(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["crashtest", "--list-points", "-o", "json"]) == 0
    points = [p["point"] for p in json.loads(capsys.readouterr().out)]
    assert "append.after_fsync" in points and "sigkill" in points
