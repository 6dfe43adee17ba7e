"""The fast config check (sandbox/config_check.py) is a subset of ``from_go_json``.

Soundness: whenever ``config_check.is_canonical(raw)`` accepts msgpack bytes,
``PodSandboxConfig.from_go_json`` of the map they decode to (as a snapshot load
decodes them, ``projection_entry.unpack_config``) accepts it too, and yields
the same config as one built independently from what msgspec decoded. The
corpus: every recorded pod config (tests/sandbox/podconfigs, the Go
recordings' inputs and outputs), hypothesis-made configs of the whole
schema, and variants of them with wrong types, out-of-range and huge
integers, bool for int, unknown enum values, unknown and re-cased keys, nils,
deep nesting, ext types, bad UTF-8, encoded surrogates, truncation and
trailing bytes. ``test_the_property_check_catches_an_unsound_fast_check``
shows the checker fails when the fast check accepts everything.

Completeness (what makes it fast): every config in the canonical stored form
(``to_go_json``, as ``Store.add`` writes it) is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import InvalidConfigError, PodSandboxConfig, schema
from sandbox.config import Message, message_class
from sandbox.config_check import STRUCTS, is_canonical, struct_for
from sandbox.gojson import INT_RANGES, loads
from sandbox.projection_entry import unpack_config

FIXTURES = Path(__file__).parent / "podconfigs"
RECORDED = json.loads((FIXTURES / "go" / "recorded.json").read_text(encoding="utf-8"))
ROOT = schema.ROOT

# -- the checker -------------------------------------------------------------------------


def _from_struct(value: Any, name: str) -> Message:
    """The config msgspec decoded, built through the classes' own constructors."""
    kwargs: dict[str, Any] = {}
    for fld in schema.MESSAGES[name].fields:
        item = getattr(value, fld.name)
        if item is msgspec.UNSET:
            continue
        if fld.type in schema.MESSAGES:
            if fld.label == "repeated":
                item = [_from_struct(one, fld.type) for one in item]
            else:
                item = _from_struct(item, fld.type)
        kwargs[fld.name] = item
    return message_class(name)(**kwargs)


def check_subset(raw: bytes, fast: Callable[[bytes], bool] = is_canonical) -> bool:
    """Whether ``fast`` accepted ``raw``; AssertionError if it accepted what
    ``from_go_json`` refuses, or reads it differently."""
    if not fast(raw):
        return False
    try:
        config = PodSandboxConfig.from_go_json(unpack_config(raw))
        struct = msgspec.msgpack.decode(raw, type=struct_for(ROOT))
    except (InvalidConfigError, msgspec.DecodeError) as exc:
        raise AssertionError(f"the fast check accepted {raw!r:.200}: {exc}") from None
    assert _from_struct(struct, ROOT) == config, f"read differently: {raw!r:.200}"
    return True


def pack(value: object) -> bytes | None:
    """msgpack of ``value``; None for what msgpack cannot hold (ints beyond 64 bits)."""
    try:
        raw: bytes = msgpack.packb(value, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return None
    return raw


# -- the corpus --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A parsed JSON value with Go's duplicate keys resolved (the later wins), as plain
    dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def recorded_docs() -> list[Any]:
    """Every pod config document recorded: fixtures, Go's inputs and outputs."""
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(FIXTURES.glob("*.json"))]
    for case in RECORDED["cases"]:
        for text in (case["input"], case["output"]):
            if text is None:
                continue
            try:
                docs.append(_plain(loads(text)))
            except InvalidConfigError:
                continue  # not JSON at all: nothing msgpack could carry
    return docs


def canonical_maps() -> list[dict[str, Any]]:
    """The canonical stored form of every recorded config that decodes."""
    out = []
    for doc in recorded_docs():
        try:
            out.append(PodSandboxConfig.from_go_json(doc).to_go_json())
        except InvalidConfigError:
            continue
    return out


DEEP: Any = "x"
for _ in range(200):
    DEEP = [DEEP]

HOSTILE: tuple[Any, ...] = (
    None, True, False, 0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**32 - 1, 2**32,
    2**63 - 1, 2**63, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 1.0, 1.5, float("nan"),
    "", "x", "\u00fc", b"x", [], ["x"], [None], [1], [{}], {}, {"k": "v"}, {"k": 1},
    {1: "v"}, {"k": None}, {"name": "x"}, DEEP, msgpack.ExtType(1, b"x"),
    *range(4, 6), -5,
)  # fmt: skip


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*at, i))


def _replaced(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {k: (_replaced(v, rest, new) if k == head else v) for k, v in doc.items()}
    return [(_replaced(v, rest, new) if i == head else v) for i, v in enumerate(doc)]


def _rekeyed(doc: Any, path: tuple[Any, ...], rename: Callable[[Any], Any]) -> Any:
    """``doc`` with the key at ``path`` (a dict key) renamed."""
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if not path or not isinstance(parent, dict):
        return None
    renamed = {(rename(k) if k == path[-1] else k): v for k, v in parent.items()}
    return _replaced(doc, path[:-1], renamed)


def _with_key(doc: Any, path: tuple[Any, ...], key: Any) -> Any:
    target = doc
    for step in path:
        target = target[step]
    return _replaced(doc, path, {**target, key: 1}) if isinstance(target, dict) else None


def mutations(doc: dict[str, Any]) -> Iterator[Any]:
    """Variants of ``doc``: every value replaced by each hostile value, keys re-cased,
    unknown and non-string keys added."""
    for path in list(_paths(doc)):
        for new in HOSTILE:
            yield _replaced(doc, path, new)
        if path:
            yield _rekeyed(doc, path, lambda k: k.upper() if isinstance(k, str) else k)
            yield _rekeyed(doc, path, lambda k: f"{k}_" if isinstance(k, str) else k)
        yield _with_key(doc, path, "zz_unknown")
        yield _with_key(doc, path, 7)
        yield _with_key(doc, path, "host_network")


def byte_mutations(raw: bytes) -> Iterator[bytes]:
    """``raw`` cut short, with bytes after it, and with a string's bytes made bad UTF-8."""
    for cut in range(len(raw)):
        yield raw[:cut]
    yield raw + b"\xc0"
    yield raw + raw
    for bad in (b"\xff", b"\xed\xa0\x80", b"\xc3", b"\xf4\x90\x80\x80"):
        for i in range(len(raw)):
            if 0xA0 + len(bad) == raw[i] and i + 1 + len(bad) <= len(raw):  # a fixstr
                yield raw[: i + 1] + bad + raw[i + 1 + len(bad) :]


# -- hypothesis: configs of the whole schema ----------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)


def _one(fld: schema.Field) -> st.SearchStrategy[Any]:
    enum_cls = schema.ENUMS.get(fld.type)
    if enum_cls is not None:
        return st.sampled_from([int(m) for m in enum_cls])
    if fld.type == "string":
        return _TEXT
    if fld.type == "bool":
        return st.booleans()
    if fld.type in INT_RANGES:
        low, high = INT_RANGES[fld.type]
        return st.integers(low, high)
    return st.deferred(lambda: message_maps(fld.type))


def _field(fld: schema.Field) -> st.SearchStrategy[Any]:
    if fld.label == "map":
        return st.dictionaries(_TEXT, _TEXT, max_size=3)
    if fld.label == "repeated":
        return st.lists(_one(fld), max_size=2)
    return _one(fld)


def message_maps(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Maps of message ``name`` in the stored form's shape: any subset of its fields."""
    fields = schema.MESSAGES[name].fields
    return st.fixed_dictionaries({}, optional={f.name: _field(f) for f in fields})


# -- tests -----------------------------------------------------------------------------------


def test_the_structs_are_the_schema() -> None:
    assert sorted(STRUCTS) == sorted(schema.reachable())
    assert len(STRUCTS) == 17
    assert sum(len(s.__struct_fields__) for s in STRUCTS.values()) == 72
    for name, struct in STRUCTS.items():
        assert struct.__struct_fields__ == tuple(f.name for f in schema.MESSAGES[name].fields)
        assert struct.__struct_config__.forbid_unknown_fields


def _unknown_enum(value: Any, name: str) -> bool:
    """Whether a decoded config holds an enum number the table does not name (from a
    newer CRI version: Go keeps it, and so does ``from_go_json``)."""
    for fld in schema.MESSAGES[name].fields:
        item = getattr(value, fld.name)
        items = item if fld.label == "repeated" else (item,)
        if fld.type in schema.ENUMS and any(type(one) is int for one in items):
            return True
        if fld.type in schema.MESSAGES and any(
            one is not None and _unknown_enum(one, fld.type) for one in items
        ):
            return True
    return False


def test_every_recorded_config_in_stored_form_is_accepted() -> None:
    maps = canonical_maps()
    assert len(maps) > 60
    newer = 0
    for config in maps:
        raw = pack(config)
        assert raw is not None
        if _unknown_enum(PodSandboxConfig.from_go_json(config), ROOT):
            newer += 1  # left to the full decode, which keeps the number
            assert not check_subset(raw), config
        else:
            assert check_subset(raw), config
    assert 0 < newer < 5


@pytest.mark.parametrize("doc", recorded_docs(), ids=lambda d: json.dumps(d)[:40])
def test_a_recorded_config_and_its_variants_keep_the_subset_property(doc: Any) -> None:
    accepted = refused = 0
    for variant in [doc, *mutations(doc)]:
        raw = pack(variant) if variant is not None else None
        if raw is None:
            continue
        if check_subset(raw):
            accepted += 1
        else:
            refused += 1
    assert refused > 0


def test_byte_level_damage_keeps_the_subset_property() -> None:
    seen = 0
    for config in canonical_maps():
        raw = pack(config)
        assert raw is not None
        for variant in byte_mutations(raw):
            check_subset(variant)
            seen += 1
    assert seen > 1000


def test_bad_utf8_and_encoded_surrogates_are_not_accepted() -> None:
    good = pack({"hostname": "abc"})
    assert good is not None and is_canonical(good)
    for bad in (b"\xff\xfe\xfd", b"\xed\xa0\x80", b"a\xc3b"):
        raw = good.replace(b"\xa3abc", b"\xa3" + bad)
        assert not is_canonical(raw) and not check_subset(raw)
        with pytest.raises(InvalidConfigError):
            unpack_config(raw)  # and the full path refuses it too


@pytest.mark.parametrize(
    "config",
    [
        {"hostname": None},
        {"Hostname": "h"},
        {"metadata": {"attempt": True}},
        {"metadata": {"attempt": -1}},
        {"metadata": {"attempt": 2**32}},
        {"metadata": {"attempt": 1.0}},
        {"port_mappings": [{"protocol": 3}]},
        {"port_mappings": [{"container_port": 2**31}]},
        {"linux": {"security_context": {"namespace_options": {"host_network": True}}}},
        {"linux": {"security_context": {"run_as_user": {"value": 2**63}}}},
        {"linux": {"resources": {"hugepage_limits": [{"limit": -1}]}}},
        {"labels": {"a": 1}},
        {"labels": {1: "a"}},
        {"labels": {"a": None}},
        {"dns_config": {"servers": [None]}},
        {"unknown": 1},
        [],
        None,
    ],
    ids=repr,
)
def test_what_the_fast_check_leaves_to_the_full_decode(config: Any) -> None:
    raw = pack(config)
    assert raw is not None and not is_canonical(raw)


@given(message_maps(ROOT))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_config_of_the_schema_is_accepted_and_read_alike(config: dict[str, Any]) -> None:
    raw = pack(config)
    assert raw is not None and check_subset(raw)
    stored = pack(PodSandboxConfig.from_go_json(config).to_go_json())
    assert stored is not None and check_subset(stored)


_INTS = st.integers(-(2**63), 2**64 - 1)  # what msgpack can hold
_ANY_MSGPACK = st.recursive(
    st.none() | st.booleans() | _INTS | st.floats() | _TEXT | st.binary(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT | _INTS, inner, max_size=3),
    max_leaves=8,
)


@given(message_maps(ROOT), st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_config_with_any_value_anywhere_keeps_the_subset_property(
    config: dict[str, Any], data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(list(_paths(config))))
    raw = pack(_replaced(config, path, data.draw(_ANY_MSGPACK)))
    assert raw is not None
    check_subset(raw)


def test_the_property_check_catches_an_unsound_fast_check() -> None:
    """The checker has teeth: a fast check that accepts everything fails it."""
    caught = 0
    for variant in mutations({"metadata": {"name": "a", "attempt": 1}, "hostname": "h"}):
        raw = pack(variant) if variant is not None else None
        if raw is None:
            continue
        try:
            check_subset(raw, fast=lambda _raw: True)
        except AssertionError:
            caught += 1
    assert caught > 10
