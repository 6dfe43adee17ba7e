"""Format 2 snapshots (each config embedded as a map) are still read - as the msgpack
reference decodes them, the way format 2 always was.

The typed body layout reads an embedded config as ``Any``: it would take an int map
key deep inside a config (which no log record can hold: payloads are read with str
keys only) and turn a msgpack timestamp into a ``datetime`` that no longer packs, so
the load differed from the replay and the next ``snapshot()`` failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import support

import eventlog
import replay
from sandbox import Store
from sandbox import snapshot as snap
from sandbox.projection import Projection
from sandbox.snapshot_check import as_format_3

NETNS = "/nonexistent-netns-dir-of-a-test"


def _store_with_a_timestamp_in_a_config(state: Path) -> None:
    """Two pods; the second's config carries a msgpack timestamp under a key the CRI
    schema does not know (a log payload may hold one; the codec ignores the key)."""
    with Store.open(state, netns_dir=NETNS, durability="none") as store:
        store.add(support.sandbox("p0"))
    sb = support.sandbox("p1")
    config = dict(sb.metadata.config.to_go_json())
    config["x_vendor"] = msgpack.Timestamp(1, 0)
    metadata = {"id": sb.id, "name": sb.name, "config": config, "netns_path": ""}
    event = {"type": "SandboxAdded", "v": 1, "id": sb.id, "env": None, "metadata": metadata}
    with eventlog.EventLog.open(state, durability="none") as log:
        log.append({**event, "status": sb.status.to_event_dict()})


def _write_format_2(state: Path, mutate_config: Any = None) -> str:
    """Replace the newest snapshot's body by the same content in format 2."""
    with Store.open(state, netns_dir=NETNS, durability="none") as store:
        path = store.snapshot()
    info = snap.read_snapshot_info(path, NETNS)
    body = as_format_3(info.projection.to_snapshot())
    body["format"] = 2
    for row in body["sandboxes"]:
        row[2] = msgpack.unpackb(row[2], raw=False)
        if mutate_config is not None:
            mutate_config(row[2])
    data = snap._assemble(info.seq, info.digest, None, msgpack.packb(body, use_bin_type=True))
    Path(path).write_bytes(data)
    return path


def test_a_format_2_config_loads_as_the_replay_reads_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _store_with_a_timestamp_in_a_config(state)
    path = _write_format_2(state)
    info = snap.read_snapshot_info(path, NETNS)
    with Store.open(state, netns_dir=NETNS, durability="none") as store:
        assert store.load_result is not None and store.load_result.snapshot == path
        assert store.projection() == info.projection
        replayed = Projection(NETNS)
        for rec in eventlog.read(state, to_seq=info.seq):
            replayed.apply(rec.seq, rec.payload)
        assert info.projection == replayed
        store.snapshot()  # packs the loaded config again: a datetime would not pack
    result = replay.verify(state, netns_dir=NETNS)
    assert result.ok, result.problems


def test_a_format_2_config_with_an_int_key_inside_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _store_with_a_timestamp_in_a_config(state)

    def int_key(config: dict[str, Any]) -> None:
        config["x_vendor"] = {1: "no log record can hold an int key"}

    path = _write_format_2(state, int_key)
    try:
        snap.read_snapshot_info(path, NETNS)
    except snap.SnapshotError as exc:
        assert "int is not allowed for map key" in str(exc)
    else:
        raise AssertionError("a format 2 config with an int map key was loaded")
    with Store.open(state, netns_dir=NETNS, durability="none") as store:
        assert store.load_result is not None and store.load_result.snapshot is None
        assert len(store) == 2
