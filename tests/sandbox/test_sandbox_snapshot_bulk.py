"""Snapshot body format 3: each config is its own msgpack bytes, checked in bulk.

A snapshot loads to exactly what a full replay of its log gives (reads,
``to_snapshot``, equality, the bytes of the next snapshot); a config in the
canonical stored form is proven valid without being decoded (it is decoded
on the first read), any other valid one goes through the full decode, and
anything that does not validate - a config, an id, a name, a netns path,
bytes that are not one map - refuses the snapshot. Body format 2 (configs as
maps) is still read. Speed is measured by ``replay.bench.openlive``, not here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest
import support

from sandbox import (
    Metadata,
    PodSandboxConfig,
    SnapshotError,
    State,
    Status,
    Store,
    config,
)
from sandbox import events as ev
from sandbox import snapshot as snap
from sandbox.projection import SANDBOX_COLUMNS, SNAPSHOT_FORMAT, Projection
from sandbox.snapshot_check import as_format_3
from sandbox.snapshot_format import assemble

#: Stands for an array nested 100,000 deep (msgpack will not write one): ``file_of``
#: puts the bytes of that array in its place.
DEEP = "<an array nested 100,000 deep>"
_DEEP_BYTES = b"\x91" * 100_000 + b"\xc0"
FULL = json.loads((Path(__file__).parent / "podconfigs" / "full-v1.json").read_text("utf-8"))
DIGEST = b"\x07" * 32
ENV = ev.Envelope("test")


def _events() -> list[dict[str, Any]]:
    """Adds of varied sandboxes (a full config, an empty one, a caller's netns path,
    states), a status change, a delete, and a store-owned netns path."""
    full = PodSandboxConfig.from_go_json(FULL)
    made = [support.sandbox(f"pod{i}", sid=f"{i:02x}" * 32) for i in range(5)]
    made.append(
        support.sandbox("full", sid="f" * 64, state=State.NOTREADY, netns_path="/run/netns/x")
    )
    out = [ev.sandbox_added(ENV(), sb.metadata, sb.status) for sb in made]
    out.append(
        ev.sandbox_added(
            ENV(), Metadata("e" * 64, "empty", PodSandboxConfig()), Status(State.UNKNOWN, pid=7)
        )
    )
    out.append(
        ev.sandbox_added(ENV(), Metadata("d" * 64, "full-v1", full), Status(State.READY, pid=9))
    )
    out.append(ev.status_updated(ENV(), "00" * 32, Status(State.NOTREADY, pid=0)))
    out.append(ev.sandbox_deleted(ENV(), "01" * 32))
    out.append(ev.netns_assigned(ENV(), "02" * 32, "/run/netns/cni-owned"))
    out.append(ev.netns_created(ENV(), "02" * 32, "/run/netns/cni-owned"))
    return out


def replayed(events: list[dict[str, Any]] | None = None) -> Projection:
    proj = Projection("/run/netns")
    for seq, event in enumerate(events if events is not None else _events(), 1):
        proj.apply(seq, event)
    return proj


def file_of(body: dict[str, Any]) -> bytes:
    """Snapshot bytes holding ``body`` as it is (no MAC, no log position)."""
    packed = msgpack.packb(body, use_bin_type=True)
    packed = packed.replace(msgpack.packb(DEEP), _DEEP_BYTES)
    return assemble(body["last_seq"], DIGEST, None, packed)


def load(data: bytes) -> Projection:
    return snap.decode_info(data, "/run/netns").projection


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every config ``PodSandboxConfig.from_go_json`` decodes, in order."""
    seen: list[object] = []
    real = config.PodSandboxConfig.from_go_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[PodSandboxConfig], data: object, **kwargs: Any) -> PodSandboxConfig:
        seen.append(data)
        made: PodSandboxConfig = real(cls, data, **kwargs)
        return made

    monkeypatch.setattr(config.PodSandboxConfig, "from_go_json", classmethod(counting))
    yield seen


# -- a snapshot loads to what a replay gives ------------------------------------------------


def test_a_loaded_snapshot_is_the_replay() -> None:
    truth = replayed()
    data = snap.encode(truth, DIGEST)
    body = msgpack.unpackb(data[snap.HEADER.size + len(DIGEST) : -32], raw=False)
    assert body["format"] == SNAPSHOT_FORMAT == 4
    assert all(type(config) is bytes for config in body["configs"])
    loaded = load(data)
    assert loaded == truth
    assert loaded.to_snapshot() == truth.to_snapshot()
    assert loaded.sandboxes() == truth.sandboxes()
    assert [loaded.sandbox(i) for i in truth.ids()] == [truth.sandbox(i) for i in truth.ids()]
    assert loaded.owned() == truth.owned() and loaded.last_seq == truth.last_seq
    # The next snapshot re-emits the stored bytes: byte for byte the replay's.
    assert snap.encode(loaded, DIGEST) == data
    assert snap.encode(load(snap.encode(loaded, DIGEST)), DIGEST) == data


def test_canonical_configs_are_proven_without_a_decode_and_decoded_on_first_read(
    decodes: list[object],
) -> None:
    truth = replayed()
    data = snap.encode(truth, DIGEST)
    truth_sandboxes = truth.sandboxes()
    decodes.clear()
    loaded = load(data)
    assert decodes == [], "a config in stored form was decoded to be checked"
    assert loaded.sandboxes() == truth_sandboxes
    assert len(decodes) == len(truth)
    loaded.sandboxes()
    assert len(decodes) == len(truth), "a config was decoded twice"


def _with_config(body: dict[str, Any], row: int, config_map: object) -> dict[str, Any]:
    body["sandboxes"][row][2] = msgpack.packb(config_map, use_bin_type=True)
    return body


@pytest.mark.parametrize(
    "form",
    [
        {"Hostname": "h", "METADATA": {"Name": "n", "attempt": 2}},
        {"linux": {"security_context": {"namespace_options": {"host_network": True}}}},
        {"hostname": None, "labels": {"a": None}, "dns_config": {"servers": [None, "x"]}},
        {"port_mappings": [{"protocol": 9}]},
        {"hostname": "h", "not_a_field": [1, {"x": None}]},
    ],
    ids=["re-cased", "v1alpha1", "nils", "newer-enum", "unknown-key"],
)
def test_a_valid_config_in_another_form_loads_through_the_full_decode(
    form: dict[str, Any], decodes: list[object]
) -> None:
    """Such a config was never written by this store, but a log may carry one: the
    snapshot holding it loads to what replaying that log gives."""
    events = _events()
    events[0]["metadata"]["config"] = form
    truth = replayed(events)
    data = snap.encode(truth, DIGEST)
    truth_sandboxes = truth.sandboxes()
    decodes.clear()
    loaded = load(data)
    assert decodes == [form], "only the config not in stored form is decoded, once"
    assert loaded == truth and loaded.sandboxes() == truth_sandboxes
    assert len(decodes) == len(truth), "its Metadata was kept for the first read"


# -- what refuses a snapshot ----------------------------------------------------------------


def _set(body: dict[str, Any], row: int, column: int, value: object) -> None:
    """Field ``column`` of a format 3 row (0..5) of ``body``, in either format (format 4's
    status is five columns: set them all from a list of five)."""
    if "sandboxes" in body:
        body["sandboxes"][row][column] = value
    elif column == 4:
        for key, one in zip(SANDBOX_COLUMNS[4:9], value, strict=True):  # type: ignore[call-overload]
            body[key][row] = one
    else:
        body[SANDBOX_COLUMNS[9 if column == 5 else column]][row] = value


def _get(body: dict[str, Any], row: int, column: int) -> Any:
    if "sandboxes" in body:
        return body["sandboxes"][row][column]
    return body[SANDBOX_COLUMNS[column]][row]


def _bad_bodies() -> Iterator[tuple[str, Callable[[dict[str, Any]], object]]]:
    def config_bytes(raw: bytes) -> Callable[[dict[str, Any]], object]:
        return lambda body: _set(body, 0, 2, raw)

    good = msgpack.packb({"hostname": "abc"}, use_bin_type=True)
    yield "config-not-a-map", config_bytes(msgpack.packb(None))
    yield "config-a-list", config_bytes(msgpack.packb([]))
    yield "config-empty-bytes", config_bytes(b"")
    yield "config-trailing-bytes", config_bytes(good + b"\x00")
    yield "config-bad-utf8", config_bytes(good.replace(b"abc", b"\xff\xfe\xfd"))
    yield "config-surrogate", config_bytes(good.replace(b"abc", b"\xed\xa0\x80"))
    yield "config-wrong-type", config_bytes(msgpack.packb({"hostname": 5}))
    yield "config-out-of-range", config_bytes(msgpack.packb({"metadata": {"attempt": -1}}))
    yield "config-a-map-in-format-3-or-4", lambda body: _set(body, 0, 2, {})
    yield "config-bytes-in-format-2", lambda body: body.__setitem__("format", 2)
    yield "status-nested-deep", lambda body: _set(body, 0, 4, [DEEP, 1, 2, None, None])
    yield "format-1", lambda body: body.__setitem__("format", 1)
    yield "format-3-or-4-the-other", lambda body: body.__setitem__("format", 7 - body["format"])
    yield "format-5", lambda body: body.__setitem__("format", 5)
    yield "format-str", lambda body: body.__setitem__("format", "3")
    yield "format-bool", lambda body: body.__setitem__("format", True)
    yield "netns-path-nul", lambda body: _set(body, 0, 3, "/run/x\x00")
    yield "id-with-slash", lambda body: _set(body, 0, 0, "a/b")
    yield "id-too-long", lambda body: _set(body, 0, 0, "a" * 300)
    yield "id-twice", lambda body: _set(body, 1, 0, _get(body, 0, 0))
    yield "name-empty", lambda body: _set(body, 0, 1, "")
    yield "name-taken-twice", lambda body: _set(body, 1, 1, _get(body, 0, 1))
    yield "owned-path-relative", lambda body: _set(body, 0, 5, ["x/y"])
    yield "status-bogus", lambda body: _set(body, 0, 4, ["BOGUS", 1, 2, None, None])
    yield "status-pid-negative", lambda body: _set(body, 0, 4, ["ready", -1, 2, None, None])
    # Format 4 only (format 3 has no columns): every column must be as long as the ids.
    for key in SANDBOX_COLUMNS:
        yield f"column-{key}-short", lambda body, key=key: body.get(key, [0]).pop()
    yield "column-missing", lambda body: body.pop("pids", body.pop("sandboxes", None))
    yield "rows-and-columns", lambda body: body.setdefault("sandboxes", [])


@pytest.mark.parametrize("fmt", [3, 4])
@pytest.mark.parametrize("mutate", [m for _, m in _bad_bodies()], ids=[n for n, _ in _bad_bodies()])
def test_a_snapshot_whose_content_does_not_validate_is_refused(
    mutate: Callable[[dict[str, Any]], object], fmt: int
) -> None:
    truth = replayed()
    body = truth.to_snapshot() if fmt == 4 else as_format_3(truth.to_snapshot())
    assert load(file_of(body)) == truth, "the unmutated body loads"
    mutate(body)
    if fmt == 3 and body == as_format_3(truth.to_snapshot()):
        return  # a column mutation: nothing of a format 3 body changed
    with pytest.raises(SnapshotError):
        load(file_of(body))


# -- older bodies ------------------------------------------------------------------------------


def as_format_2(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as this store wrote it before format 3: each config the map itself."""
    body = as_format_3(body)
    rows = [[*row[:2], msgpack.unpackb(row[2], raw=False), *row[3:]] for row in body["sandboxes"]]
    return {**body, "format": 2, "sandboxes": rows}


def test_a_format_2_snapshot_still_loads_and_the_next_one_is_format_4(
    decodes: list[object],
) -> None:
    truth = replayed()
    old = as_format_2(truth.to_snapshot())
    truth_sandboxes = truth.sandboxes()
    decodes.clear()
    loaded = load(file_of(old))
    assert len(decodes) == len(truth), "format 2 configs are checked by the full decode"
    assert loaded == truth and loaded.sandboxes() == truth_sandboxes
    assert len(decodes) == len(truth), "and their Metadata kept for the first read"
    assert snap.encode(loaded, DIGEST) == snap.encode(truth, DIGEST)
    for config_map in ({"metadata": {"namespace": [1, 2]}}, {"hostname": DEEP}):
        bad = as_format_2(truth.to_snapshot())
        bad["sandboxes"][0][2] = config_map
        with pytest.raises(SnapshotError):
            load(file_of(bad))


def test_from_snapshot_reads_every_format_and_refuses_others() -> None:
    truth = replayed()
    assert Projection.from_snapshot(truth.to_snapshot()) == truth
    assert Projection.from_snapshot(as_format_3(truth.to_snapshot())) == truth
    assert Projection.from_snapshot(as_format_2(truth.to_snapshot())) == truth
    for fmt in (1, 3, 5, "4", None):
        with pytest.raises(ValueError):
            Projection.from_snapshot({**truth.to_snapshot(), "format": fmt})


def test_the_bulk_check_uses_every_validator_metadata_has() -> None:
    """Without a config to build, the bulk check runs Metadata's validators of its other
    fields: this breaks if Metadata gains a field or a converter the check does not know."""
    fields = attrs.fields(Metadata)
    assert [f.name for f in fields] == ["id", "name", "config", "netns_path"]
    assert all(f.validator is not None for f in fields)
    assert [f.name for f in fields if f.converter is not None] == ["netns_path"]


# -- through the store ---------------------------------------------------------------------------


def test_a_store_opened_from_a_snapshot_reads_what_a_full_replay_reads(
    tmp_path: Path, unused_netns_dir: Path
) -> None:
    state = tmp_path / "state"
    full = PodSandboxConfig.from_go_json(FULL)
    with Store.open(state, netns_dir=unused_netns_dir, durability="none") as store:
        for i in range(20):
            sb = support.sandbox(f"p{i}", sid=f"{i:02x}" * 32)
            if i == 3:
                sb = attrs.evolve(sb, metadata=attrs.evolve(sb.metadata, config=full))
            store.add(sb)
        store.delete("05" * 32)
        path = store.snapshot()
        store.add(support.sandbox("after", sid="ab" * 32))
        truth = store.list()
    with Store.open(state, netns_dir=unused_netns_dir, durability="none") as store:
        assert store.load_result is not None and store.load_result.snapshot == path
        assert store.list() == truth
        assert store["03" * 32].metadata.config == full
