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

from collections import deque
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import attrgetter, is_not
from typing import Any, Final, NamedTuple

import attrs
import msgpack
import msgspec

from sandbox import config_check, schema
from sandbox.config import PodSandboxConfig
from sandbox.errors import InvalidConfigError
from sandbox.event_decode import StatusRow, status_columns, status_from_values, status_rows
from sandbox.ids import validate_ids, validate_names
from sandbox.metadata import Metadata
from sandbox.sandbox import Sandbox
from sandbox.status import Status

__all__ = [
    "SANDBOX_COLUMNS",
    "Entry",
    "Stored",
    "check_all",
    "check_stored",
    "column_entries",
    "metadata_of",
    "stored_entries",
    "unpack_config",
]

#: Format 4's sandbox columns, one list each, in add order: the fields of a format 3
#: row (id, name, config, netns path, the five of the status, owned paths).
SANDBOX_COLUMNS = (
    "ids",
    "names",
    "configs",
    "netns_paths",
    "states",
    "pids",
    "created_at",
    "exited_at",
    "exit_statuses",
    "owned_paths",
)


class Entry(msgspec.Struct, gc=False, eq=False):
    """One sandbox's state: what its add event said (name, netns path, config), the
    current Status (immutable, shared with the event that set it), lazily built values.

    An entry loaded from a snapshot holds its status as the row of values the
    snapshot gave, already validated (``event_decode.status_rows``), until
    ``current_status`` first needs the Status: building 100,000 attrs objects
    was an eighth of a snapshot's load. Read the status through that method.

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
    #: the Status, or its validated row (``current_status`` builds and keeps it)
    status: Status | StatusRow
    #: paths the log assigned to this sandbox, in order
    owned: tuple[str, ...] = ()
    #: built on first read, never changes
    metadata: Metadata | None = None
    #: built on first read after a change
    sandbox: Sandbox | None = None

    def current_status(self) -> Status:
        """The Status; built from the row a snapshot gave the first time, then kept."""
        st = self.status
        if type(st) is tuple:
            st = self.status = status_from_values(*st)
        return st  # type: ignore[return-value]  # not a tuple: a Status

    def status_values(self) -> list[Any]:
        """The status as a snapshot row writes it, building no Status."""
        st = self.status
        if type(st) is tuple:
            return list(st)
        assert isinstance(st, Status)
        return [st.state.value, st.pid, st.created_at, st.exited_at, st.exit_status]

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


# Metadata's own validator of its netns path: what building it checks of the path
# when the config is proven valid apart. Its netns_path converter leaves a str as it
# is (a non-str is refused by the validator). Its id and name validators are
# ``validate_id`` and ``validate_name`` (tests/sandbox/test_sandbox_bulk_validators.py).
_PATH: Final = attrs.fields(Metadata).netns_path
_V_PATH: Final = _validator(_PATH)


def check_all(entries: Mapping[str, Entry]) -> None:
    """Raise what building each sandbox's Metadata would raise, in bulk.

    An entry whose config is bytes proven valid (``config_check.is_canonical``)
    has only its id, name and netns path checked (Metadata's own rules) and
    stays lazy; any other is built now - the full decode decides - and its
    Metadata kept for the first read. The ids, names and paths of the lazy ones
    are checked together afterwards (``check_fields``): one pass each at C speed.

    After a snapshot load every entry is lazy with config bytes, nearly always
    canonical: all of them are then proven in one pass with no Python call per
    config (``_all_canonical``); any doubt sends every entry the one-by-one way.
    """
    values = list(entries.values())
    raws = list(map(_RAW, values))
    if (
        not any(map(is_not, map(_METADATA, values), repeat(None)))
        and set(map(type, raws)) <= {bytes}
        and _all_canonical(raws)
    ):
        check_fields(list(entries), list(map(_NAME, values)), list(map(_NETNS_PATH, values)))
        return
    canonical = config_check.is_canonical
    ids: list[str] = []
    names: list[str] = []
    paths: list[str] = []
    for sandbox_id, entry in entries.items():
        if entry.metadata is not None:
            continue
        raw = entry.raw
        if raw is not None and canonical(raw):
            ids.append(sandbox_id)
            names.append(entry.name)
            paths.append(entry.netns_path)
        else:
            entry.metadata = metadata_of(sandbox_id, entry)
    check_fields(ids, names, paths)


#: ``config_check.is_canonical``'s test is that this decode succeeds.
_CANONICAL: Final = msgspec.msgpack.Decoder(config_check.struct_for(schema.ROOT))
_RAW, _METADATA = attrgetter("raw"), attrgetter("metadata")
_NAME, _NETNS_PATH = attrgetter("name"), attrgetter("netns_path")


def _all_canonical(raws: Sequence[bytes]) -> bool:
    """True if ``is_canonical`` holds for every one of ``raws`` (False: not for all, or
    not known). The decodes run in one C loop (``map``); the Structs are dropped."""
    try:
        deque(map(_CANONICAL.decode, raws), maxlen=0)
    except Exception:  # as is_canonical: a failure decides nothing; one by one then
        return False
    return True


def check_fields(ids: Sequence[object], names: Sequence[object], paths: Sequence[object]) -> None:
    """Raise what Metadata's validators of id, name and netns path raise for the first
    invalid value of each sequence (ids first, then names, then paths).

    ``sandbox.ids`` checks ids and names in bulk by the rules ``Metadata``'s own
    validators apply. A netns path's rule lives in ``Metadata`` (a str without
    NUL): all the paths pass it if their concatenation is a str without NUL; else
    each is checked by that validator, which decides and words the error.
    """
    validate_ids(ids)
    validate_names(names)
    try:
        joined: str | None = "".join(paths)  # type: ignore[arg-type]  # a non-str: TypeError
    except TypeError:
        joined = None
    if joined is None or "\x00" in joined:
        v_path, f_path = _V_PATH, _PATH
        for path in paths:
            v_path(None, f_path, path)


class Stored(NamedTuple):
    """A snapshot's sandbox rows by column, and the entries built from them."""

    ids: Sequence[str]
    names: Sequence[str]
    configs: Sequence[Any]
    paths: Sequence[str]
    entries: list[Entry]


def stored_entries(rows: Sequence[Sequence[Any]], config_type: type[Any]) -> Stored:
    """A snapshot's sandbox rows ``[id, name, config, netns path, status, owned]`` as
    columns and entries, in row order; the statuses checked, and kept as rows when they
    pass (``status_rows``). ``ValueError``/``TypeError`` on a wrong shape.

    Column by column: each step is one call over all the rows, not one per row.
    """
    if not rows:
        return Stored((), (), (), (), [])
    columns = list(zip(*rows, strict=True))  # rows of unequal lengths: ValueError
    if len(columns) != 6:
        raise ValueError(f"a sandbox row has {len(columns)} fields; expected 6")
    ids, names, configs, paths, statuses, owned = columns
    if set(map(type, configs)) != {config_type}:
        bad = next(row[0] for row in rows if type(row[2]) is not config_type)
        raise ValueError(f"bad config of sandbox {bad!r:.80}")
    built = status_rows(statuses)
    if config_type is bytes:
        entries = list(map(Entry, names, paths, repeat(None), configs, built, map(tuple, owned)))
    else:
        entries = list(map(Entry, names, paths, configs, repeat(None), built, map(tuple, owned)))
    return Stored(ids, names, configs, paths, entries)


def column_entries(columns: Sequence[Sequence[Any]]) -> Stored:
    """A snapshot's sandbox columns (format 4: ids, names, configs, netns paths, the
    five status fields, owned paths) as entries, in order; checked as ``stored_entries``
    checks rows. ``ValueError`` unless they are ten columns of one length.

    No row is built but the status tuple each entry keeps (``status_columns``).
    """
    if len(columns) != 10:
        raise ValueError(f"{len(columns)} sandbox columns; expected 10")
    ids, names, configs, paths, states, pids, created, exited, codes, owned = columns
    if len(set(map(len, columns))) > 1:
        raise ValueError(f"sandbox columns of unequal lengths {list(map(len, columns))}")
    if not ids:
        return Stored((), (), (), (), [])
    if set(map(type, configs)) != {bytes}:
        bad = next(i for i, c in zip(ids, configs, strict=True) if type(c) is not bytes)
        raise ValueError(f"bad config of sandbox {bad!r:.80}")
    built = status_columns(states, pids, created, exited, codes)
    entries = list(map(Entry, names, paths, repeat(None), configs, built, map(tuple, owned)))
    return Stored(ids, names, configs, paths, entries)


def check_stored(stored: Stored, entries: Mapping[str, Entry]) -> None:
    """``check_all(entries)``, where ``entries`` were just built as ``stored``: from its
    columns, without a pass over the entries when every config is canonical bytes."""
    configs = stored.configs
    if stored.entries and type(configs[0]) is bytes and _all_canonical(configs):
        check_fields(stored.ids, stored.names, stored.paths)
    else:
        check_all(entries)
