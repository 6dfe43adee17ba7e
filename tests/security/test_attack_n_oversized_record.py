"""Attack N: a pod whose event is bigger than one log record.

A pod config just under the 4 MiB read bound can still make an event over
the log's 4 MiB record limit (the sandbox's name, status and metadata come
with it). The writer refuses it (``RecordTooLargeError``, nothing written);
the CLI must say so in one line naming the limit, exit 7 (the input is too
large), not "internal error"/exit 1 - and the log must stay as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

from security_support import sandboxctl
from support import fails, ok

import eventlog


def test_an_annotation_too_big_for_one_record_is_exit_7(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"metadata": {"name": "a", "namespace": "d", "uid": "u"}}))
    ok(sandboxctl(*g, "run", str(small)))
    head = ok(sandboxctl(*g, "head"))
    limit = eventlog.DEFAULT_MAX_RECORD_BYTES
    big = tmp_path / "big.json"
    doc = {
        "metadata": {"name": "b", "namespace": "d", "uid": "v"},
        "annotations": {"x": "a" * (limit - 300)},
    }
    big.write_text(json.dumps(doc))
    assert big.stat().st_size <= limit, "within the read bound: the record limit is what is hit"
    fails(sandboxctl(*g, "run", str(big)), 7, f"max_record_bytes {limit}")
    assert ok(sandboxctl(*g, "head")) == head, "nothing was written"


def test_a_6_mib_annotation_is_exit_7(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.json"
    doc = {"metadata": {"name": "b", "namespace": "d", "uid": "v"}, "annotations": {}}
    doc["annotations"] = {"x": "a" * (6 << 20)}
    big.write_text(json.dumps(doc))
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    fails(sandboxctl(*g, "run", str(big)), 7, str(eventlog.DEFAULT_MAX_RECORD_BYTES))
