"""Helpers shared by the eventlog tests (not a test module).

Child processes run ``eventlog_child.py`` with the repository on PYTHONPATH,
so they import the same ``eventlog`` as the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack

from eventlog import CorruptLogError, EventLog, Position, end_position
from eventlog.format import RECORD_OVERHEAD, SEGMENT_HEADER_SIZE
from eventlog.writer import Durability

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve().parent / "eventlog_child.py"


def payload_for(seq: int) -> dict[str, Any]:
    """The payload the tests and children write at ``seq`` (sizes vary with seq)."""
    return {"seq": seq, "pad": "x" * ((seq * 7919) % 300), "k": [seq, seq * 2]}


def append_noting_position(
    log: EventLog, d: Path, positions: dict[int, Position], seq: int, *, batch: bool
) -> None:
    """Append ``payload_for(seq)`` (a batch with ``payload_for(seq + 1000)`` when
    ``batch``) and note in ``positions`` the end position after it."""
    if batch:
        log.append_batch([payload_for(seq), payload_for(seq + 1000)])
    else:
        log.append(payload_for(seq))
    pos = end_position(d, log.last_seq, log.head)
    assert pos is not None
    positions[log.last_seq] = pos


def small_payload(seq: int) -> dict[str, Any]:
    return {"i": seq}


def record_size(payload: dict[str, Any]) -> int:
    """Bytes a record with ``payload`` takes on disk."""
    return RECORD_OVERHEAD + len(msgpack.packb(payload, use_bin_type=True))


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.pop("SANDBOX_CRASHPOINT", None)
    env.update(extra)
    return env


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``eventlog_child.py`` with ``args``; stdout/stderr are text pipes."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or child_env(),
    )


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def broken_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".broken" in p.name)


def zero(path: Path, start: int, end: int) -> None:
    """Zero bytes ``start`` to ``end`` of ``path``: what a torn or lost write leaves."""
    with path.open("r+b") as f:
        f.seek(start)
        f.write(bytes(end - start))


def reopen(d: Path, durability: Durability = "always") -> tuple[str, int]:
    """('torn'|'clean', last_seq) after a writer open ('torn': it cut and set bytes
    aside), ('corrupt', 0) if it refused."""
    try:
        with EventLog.open(d, durability=durability) as log:
            return ("torn" if broken_files(d) else "clean", log.last_seq)
    except CorruptLogError:
        return ("corrupt", 0)


def record_spans(segment: Path) -> list[tuple[int, int, int, int]]:
    """(start, end, seq, batch_left) of every record in a well-formed segment."""
    import struct

    data = segment.read_bytes()
    spans = []
    pos = SEGMENT_HEADER_SIZE
    while pos < len(data):
        length, seq, _time, left, _crc = struct.unpack_from("<IQQII", data, pos)
        end = pos + RECORD_OVERHEAD + length
        spans.append((pos, end, seq, left))
        pos = end
    assert pos == len(data)
    return spans


def whole_prefix_end(spans: list[tuple[int, int, int, int]], cut: int) -> tuple[int, int]:
    """(end offset, last seq) of the whole batches that fit before ``cut``.

    Returns (SEGMENT_HEADER_SIZE, seq before the segment's first) when none fit.
    """
    end = SEGMENT_HEADER_SIZE
    last = spans[0][2] - 1 if spans else 0
    for _start, stop, seq, left in spans:
        if stop > cut:
            break
        if left == 0:
            end, last = stop, seq
    return end, last
