"""Attack I: a pod name that drives the terminal or forges a table row.

A client that may create pods chooses their names; the operator reads them in
``sandboxctl pods`` and ``audit`` on a terminal. A name holding ESC, BEL, CR or
LF must reach the terminal as visible escapes (one row per sandbox, one per
event, the title untouched, the screen not cleared), while ``-o json`` keeps
the exact string for programs.

Output is read as bytes (``text=True`` would turn a CR into a newline and hide
the very thing tested) from the CLI run as a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

#: Each one an attack on its own, then one with all of them and a rich markup.
NAMES = [
    "title\x1b]0;owned\x07",  # OSC: sets the terminal's title
    "cr\rforged",  # CR: the rest of the line overwrites the start
    "lf\n0123456789abc       1 minute ago        Ready               fake",  # a forged row
    "clear\x1b[2J",  # CSI: clears the screen
    "c1\x9b31mdel\x7f\u202e",  # C1 CSI, DEL, a bidi override
    "all\x1b]0;owned\x07\r\n\x1b[2J[bold]x[/bold]\\x1b",
]


def ctl(*args: str) -> bytes:
    """``python -m replay ARGS``: exit 0, no traceback; stdout as bytes."""
    env = {k: v for k, v in os.environ.items() if k != "SANDBOXCTL_STATE_DIR"}
    cp = subprocess.run(
        [sys.executable, "-m", "replay", *args], capture_output=True, env=env, cwd=REPO, timeout=120
    )
    assert cp.returncode == 0, (args, cp.returncode, cp.stdout, cp.stderr)
    assert b"Traceback" not in cp.stderr
    return cp.stdout


def assert_inert(out: bytes, rows: int) -> None:
    """No control byte but the newline ending each line, and one line per row."""
    bad = sorted({b for b in out if (b < 0x20 and b != 0x0A) or b == 0x7F})
    assert not bad, f"control bytes {bad} in table output:\n{out!r}"
    text = out.decode("utf-8")
    assert all(c.isprintable() for c in text.replace("\n", "")), text
    assert text.endswith("\n") and text.count("\n") == rows, text


def make_pods(tmp_path: Path, state_dir: Path) -> tuple[list[str], list[str]]:
    ids = []
    for i, name in enumerate(NAMES):
        config = tmp_path / f"pod{i}.json"
        config.write_text(
            json.dumps({"metadata": {"name": name, "namespace": "default", "uid": f"u{i}"}})
        )
        ids.append(ctl("--state-dir", str(state_dir), "run", str(config)).decode().strip())
    return ids, NAMES


@pytest.mark.slow
def test_tables_escape_control_characters_json_keeps_them(tmp_path: Path, state_dir: Path) -> None:
    ids, names = make_pods(tmp_path, state_dir)
    g = ("--state-dir", str(state_dir))

    pods = ctl(*g, "pods")
    assert_inert(pods, 1 + len(names))
    text = pods.decode()
    assert "title\\x1b]0;owned\\x07" in text, "the escape is shown, not performed"
    assert "[bold]x[/bold]\\\\x1b" in text, "markup is data; a typed backslash is doubled"

    events = len(json.loads(ctl(*g, "audit", "-o", "json")))
    assert events == 1 + len(names), "NetNSDirRecorded, then one SandboxAdded per run"
    assert_inert(ctl(*g, "audit"), 1 + events)
    assert_inert(ctl(*g, "history", "--upto", str(events)), 1 + len(names))
    assert_inert(ctl(*g, "diff", "0", str(events)), 1 + len(names))
    assert_inert(ctl(*g, "inspect", ids[-1], "-o", "table"), 16)

    doc = json.loads(ctl(*g, "pods", "-o", "json"))
    by_id = {item["id"]: item["metadata"]["name"] for item in doc["items"]}
    assert by_id == dict(zip(ids, names, strict=True)), "JSON keeps the exact string"
    first, *trail = [json.loads(line) for line in ctl(*g, "audit", "-o", "jsonl").splitlines()]
    assert first["type"] == "NetNSDirRecorded" and first["name"] is None
    assert [e["name"].rsplit("_", 3)[0] for e in trail] == names
