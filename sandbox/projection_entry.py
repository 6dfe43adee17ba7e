"""One sandbox's state in the projection (``Entry``), and how its ``Metadata`` is made
from what the log or a snapshot said: decoded on the first read, checked in bulk when a
snapshot is loaded.

A sandbox's config is the costly part: replay keeps the add event's Go-JSON map
and decodes it on the first read; a snapshot (body format 3) keeps each config
as its msgpack bytes, so that loading one builds no config map at all, and
``check_all`` proves the bytes valid with ``sandbox.config_check`` (C speed) - or,
when that check cannot tell, decodes them the full way, which decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
import msgpack
import msgspec

from sandbox import config_check
from sandbox.config import PodSandboxConfig
from sandbox.errors import InvalidConfigError
from sandbox.metadata import Metadata
from sandbox.sandbox import Sandbox
from sandbox.status import Status

__all__ = ["Entry", "check_all", "metadata_of", "unpack_config"]


class Entry(msgspec.Struct, gc=False, eq=False):
    """One sandbox's state: what its add event said (name, netns path, config), the
    current Status (immutable, shared with the event that set it), lazily built values.

    The config is the event's Go-JSON map (``config``) or that map's msgpack
    bytes (``raw``): an entry loaded from a snapshot has only the bytes (the map
    is decoded on the first read and not kept - the ``Metadata`` is); an entry
    folded from an event has only the map until a snapshot is written, which
    encodes it once and keeps the bytes instead, for the next one.

    A ``msgspec.Struct`` rather than attrs or a slotted class: one is made per add
    on the replay hot path and per sandbox of a loaded snapshot, and a Struct is
    made in C. ``gc=False``: the collector never tracks entries (a snapshot of
    100,000 sandboxes made it walk them all again after every load), which is safe
    because nothing an entry holds refers back to it or to the projection - it
    holds strings, bytes, the event's config map and immutable values.
    """

    name: str
    netns_path: str
    config: Mapping[str, Any] | None
    raw: bytes | None
    status: Status
    #: paths the log assigned to this sandbox, in order
    owned: tuple[str, ...] = ()
    #: built on first read, never changes
    metadata: Metadata | None = None
    #: built on first read after a change
    sandbox: Sandbox | None = None

    def config_bytes(self) -> bytes:
        """The config's msgpack bytes; encoded from the map the first time, which is then
        dropped (the bytes are a fifth of its size; a first read decodes them)."""
        raw = self.raw
        if raw is None:
            raw = self.raw = msgpack.packb(self.config, use_bin_type=True)
            self.config = None  # after ``raw`` is set: a reader sees one or the other
        return raw


def unpack_config(raw: bytes) -> dict[str, Any]:
    """The Go-JSON map a config's msgpack bytes hold (``InvalidConfigError`` if they do
    not hold exactly one map)."""
    try:
        config = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on hostile bytes
        raise InvalidConfigError(f"config: unreadable msgpack: {exc}") from None
    if type(config) is not dict:
        raise InvalidConfigError(f"config: expected a map, got {type(config).__name__}")
    return config


def metadata_of(sandbox_id: str, entry: Entry) -> Metadata:
    """The Metadata of a sandbox: where its config is decoded (and checked)."""
    config = entry.config
    if config is None:
        assert entry.raw is not None  # an entry holds its config in one form or the other
        config = unpack_config(entry.raw)
    return Metadata(sandbox_id, entry.name, PodSandboxConfig.from_go_json(config), entry.netns_path)


def _validator(field: attrs.Attribute[Any]) -> Any:
    if field.validator is None:  # pragma: no cover - Metadata changed; so must this
        raise TypeError(f"Metadata.{field.name} has no validator")
    return field.validator


# Metadata's own validators of everything but its config (id, name, netns path): what
# building it checks when the config is proven valid apart. Its netns_path converter
# leaves a str as it is, and a snapshot's netns paths are str (checked before).
_FIELDS: Final = attrs.fields(Metadata)
_ID, _NAME, _PATH = _FIELDS.id, _FIELDS.name, _FIELDS.netns_path
_V_ID, _V_NAME, _V_PATH = _validator(_ID), _validator(_NAME), _validator(_PATH)


def check_all(entries: Iterable[tuple[str, Entry]]) -> None:
    """Raise what building each sandbox's Metadata would raise, in bulk.

    An entry whose config is bytes proven valid (``config_check.is_canonical``)
    has only its id, name and netns path checked (Metadata's own validators)
    and stays lazy; any other is built now - the full decode decides - and its
    Metadata kept for the first read.
    """
    canonical = config_check.is_canonical
    v_id, v_name, v_path = _V_ID, _V_NAME, _V_PATH
    f_id, f_name, f_path = _ID, _NAME, _PATH
    for sandbox_id, entry in entries:
        if entry.metadata is not None:
            continue
        raw = entry.raw
        if raw is not None and canonical(raw):
            v_id(None, f_id, sandbox_id)
            v_name(None, f_name, entry.name)
            v_path(None, f_path, entry.netns_path)
        else:
            entry.metadata = metadata_of(sandbox_id, entry)
