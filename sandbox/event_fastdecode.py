"""The typed-decode hook of the read path: a payload's msgpack bytes straight to its event.

Why: decoding a payload into dicts (``msgpack.unpackb``) and then the dicts
into a typed event (``sandbox.events.decode``) cost ~3 us per StatusUpdated;
``msgspec`` decodes the same bytes into ``Struct``s mirroring the event in
~0.5 us, and filling the event's slots from them ~0.7 us (docs/BENCHMARKS.md,
"Checked replay with a typed decoder"). The bytes on disk stay msgpack and
``msgpack`` stays the format's reference.

The hook is sound, not a second set of rules: :func:`decode_payload` returns
an event only when the reference path - ``msgpack.unpackb`` (FORMAT.md,
"Payload") and then ``events.decode`` - would accept the same bytes and
build an equal event (same classes, values and types); otherwise it returns
None and the caller takes the reference path, which decides and raises
exactly the error it always did. So the Structs are stricter than the
reference wherever that is simpler, never laxer:

- every map key must be a field's exact name (``forbid_unknown_fields``):
  an unknown field's value would be skipped unchecked (its nested keys,
  its UTF-8), and the reference reads the envelope leniently;
- every value must have its field's exact msgpack type: a bool is not an
  int, nor a float one; bin is not str; an int fits its range (Status's
  int64 bounds, pid >= 0); a state is one of ``State``'s values;
  ``v`` is the class's current version (an old one is upcast the
  reference way); ``metadata.id`` equals the event's id;
- strings must be valid UTF-8 (msgspec refuses invalid UTF-8 and encoded
  surrogates, as ``unpackb(raw=False)`` does); the bytes must be exactly one
  msgpack map;
- a SandboxAdded's config (a free-form Go-JSON map) is decoded with a
  depth-bounded type (:data:`CONFIG_DEPTH` nested containers; str keys;
  str, int, float, bool, nil, list and map values): a bin or ext value, a
  non-str key or a deeper nesting is left to the reference, whose
  nesting limit (1,000 levels) is then never in question.

tests/sandbox/test_sandbox_event_fastdecode.py checks fast == reference over
every event type and over hostile payloads, ``..._mutations.py`` over a seeded
loop of thousands of mutated ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Union, get_type_hints

import attrs
import msgspec

from sandbox import events as ev
from sandbox.event_decode import new_bare, slot
from sandbox.event_parts import NO_ENV, AddedMetadata, Env
from sandbox.status import State, Status

__all__ = ["CONFIG_DEPTH", "decode_payload"]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_Int64 = Annotated[int, msgspec.Meta(ge=_I64_MIN, le=_I64_MAX)]
_Pid = Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)]

#: Containers a config may nest below its own map on the fast path (the fullest
#: recorded PodSandboxConfig nests 6); each level doubles the type's build time at
#: import (8: ~3 ms).
CONFIG_DEPTH: Final = 8


def _config_value(depth: int) -> Any:
    """A Go-JSON value with at most ``depth`` nested containers (no bin, no ext)."""
    value: Any = Union[str, int, float, bool, None]  # noqa: UP007 - built at runtime
    for _ in range(depth):
        value = Union[str, int, float, bool, None, list[value], dict[str, value]]  # noqa: UP007
    return value


if TYPE_CHECKING:
    _Config = dict[str, Any]
else:  # the runtime type msgspec checks against
    _Config = dict[str, _config_value(CONFIG_DEPTH)]

# Fillers of the attrs classes' slots (the classes stay attrs: equality, repr, evolve).
_EV_ID, _EV_ENV = slot(ev.Event, "id"), slot(ev.Event, "env")
_ENV_TIME, _ENV_HOST, _ENV_PID, _ENV_UID, _ENV_ACTOR = (
    slot(Env, n) for n in ("time", "host", "pid", "uid", "actor")
)
_ST_STATE, _ST_PID, _ST_CREATED, _ST_EXITED, _ST_EXIT = (
    slot(Status, n) for n in ("state", "pid", "created_at", "exited_at", "exit_status")
)
_MD_ID, _MD_NAME, _MD_CONFIG, _MD_PATH = (
    slot(AddedMetadata, n) for n in ("id", "name", "config", "netns_path")
)
_UPD_STATUS = slot(ev.StatusUpdated, "status")
_ADD_META, _ADD_STATUS = slot(ev.SandboxAdded, "metadata"), slot(ev.SandboxAdded, "status")
_NS_PATH = slot(ev.NetNSEvent, "path")
_STATUS_UPDATED = ev.StatusUpdated


class _Env(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``Env.from_payload``'s fields; a missing one reads as None there too."""

    time: int | None = None
    host: str | None = None
    pid: int | None = None
    uid: int | None = None
    actor: str | None = None

    def built(self) -> Env:
        env = new_bare(Env)
        _ENV_TIME(env, self.time)
        _ENV_HOST(env, self.host)
        _ENV_PID(env, self.pid)
        _ENV_UID(env, self.uid)
        _ENV_ACTOR(env, self.actor)
        return env


def _env(env: _Env | None) -> Env:
    # A nil or missing envelope is ``Env()`` in the reference (the same shared value).
    return NO_ENV if env is None else env.built()


class _Status(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``status_from_map``'s checks: a known state, pid int64 >= 0, the times int64."""

    state: State
    pid: _Pid
    created_at: _Int64
    exited_at: _Int64 | None = None
    exit_status: _Int64 | None = None

    def built(self) -> Status:
        st = new_bare(Status)
        _ST_STATE(st, self.state)
        _ST_PID(st, self.pid)
        _ST_CREATED(st, self.created_at)
        _ST_EXITED(st, self.exited_at)
        _ST_EXIT(st, self.exit_status)
        return st


class _Metadata(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``AddedMetadata.from_payload``: a missing config is ``{}``, a missing path ``""``."""

    id: str
    name: str
    config: _Config = {}
    netns_path: str = ""


def _struct(cls: type[ev.Event]) -> dict[str, Any]:
    # The event's tag (its ``type``) and the config every Struct below shares.
    return {"tag_field": "type", "tag": cls.TYPE, "forbid_unknown_fields": True, "gc": False}


class _Added(msgspec.Struct, **_struct(ev.SandboxAdded)):
    v: Literal[1]
    id: str
    metadata: _Metadata
    status: _Status
    env: _Env | None = None

    def built(self) -> ev.Event | None:
        md = self.metadata
        if md.id != self.id:
            return None  # the reference refuses it, with its own words
        meta = new_bare(AddedMetadata)
        _MD_ID(meta, md.id)
        _MD_NAME(meta, md.name)
        _MD_CONFIG(meta, md.config)
        _MD_PATH(meta, md.netns_path)
        event = new_bare(ev.SandboxAdded)
        _EV_ID(event, self.id)
        _EV_ENV(event, _env(self.env))
        _ADD_META(event, meta)
        _ADD_STATUS(event, self.status.built())
        return event


class _Deleted(msgspec.Struct, **_struct(ev.SandboxDeleted)):
    v: Literal[1]
    id: str
    env: _Env | None = None

    def built(self) -> ev.Event | None:
        event = new_bare(ev.SandboxDeleted)
        _EV_ID(event, self.id)
        _EV_ENV(event, _env(self.env))
        return event


class _StatusUpdated(msgspec.Struct, **_struct(ev.StatusUpdated)):
    v: Literal[2]
    id: str
    status: _Status
    env: _Env | None = None

    def built(self) -> ev.Event | None:
        # 90% of a store's events: the envelope and status fills are spelled out here.
        event = new_bare(_STATUS_UPDATED)
        _EV_ID(event, self.id)
        e = self.env
        if e is None:
            _EV_ENV(event, NO_ENV)
        else:
            env = new_bare(Env)
            _ENV_TIME(env, e.time)
            _ENV_HOST(env, e.host)
            _ENV_PID(env, e.pid)
            _ENV_UID(env, e.uid)
            _ENV_ACTOR(env, e.actor)
            _EV_ENV(event, env)
        s = self.status
        st = new_bare(Status)
        _ST_STATE(st, s.state)
        _ST_PID(st, s.pid)
        _ST_CREATED(st, s.created_at)
        _ST_EXITED(st, s.exited_at)
        _ST_EXIT(st, s.exit_status)
        _UPD_STATUS(event, st)
        return event


def _netns_struct(cls: type[ev.NetNSEvent]) -> type[msgspec.Struct]:
    """The Struct of a NetNS event that carries only ``path``."""

    def built(self: Any) -> ev.Event | None:
        event = new_bare(cls)
        _EV_ID(event, self.id)
        _EV_ENV(event, _env(self.env))
        _NS_PATH(event, self.path)
        return event

    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("v", Literal[1]),
        ("id", str),
        ("path", str),
        ("env", _Env | None, None),
    ]
    return msgspec.defstruct(f"_{cls.__name__}", fields, namespace={"built": built}, **_struct(cls))


def _mirrored(cls: type[ev.Event]) -> type[msgspec.Struct]:
    """The Struct of a rarely logged event (no hot-path slot filling): its attrs class's
    own fields with their declared types (str, int, int | None, tuple[str, ...]), each
    required, built through the class's constructor."""
    hints = get_type_hints(cls)
    names = [a.name for a in attrs.fields(cls) if a.name not in ("id", "env")]

    def built(self: Any) -> ev.Event | None:
        return cls(self.id, _env(self.env), *(getattr(self, n) for n in names))

    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("v", Literal[cls.VERSION]),
        ("id", str),
        *((n, hints[n]) for n in names),
        ("env", _Env | None, None),
    ]
    return msgspec.defstruct(f"_{cls.__name__}", fields, namespace={"built": built}, **_struct(cls))


#: The NetNS events with fields beyond ``path``: mirrored like the other rare ones.
_OWN_STRUCT: Final = (ev.NetNSClosed, ev.NetNSCreateFailed, ev.NetNSOwnershipCarried)
_STRUCTS: Final[tuple[type[msgspec.Struct], ...]] = (
    _Added,
    _Deleted,
    _StatusUpdated,
    *(_netns_struct(c) for c in ev.NETNS_EVENTS if c not in _OWN_STRUCT),
    *(_mirrored(c) for c in (*_OWN_STRUCT, ev.NetNSDirRecorded, ev.LogRepaired)),
)
_decode: Final = msgspec.msgpack.Decoder(Union[_STRUCTS]).decode  # noqa: UP007


def decode_payload(payload: bytes) -> ev.Event | None:
    """The event of a payload's bytes, or None: take the reference path (see above).

    For ``eventlog.read(..., decode=decode_payload)``: an event returned here is
    what ``events.decode(msgpack.unpackb(payload))`` returns (equal), and those
    bytes are a payload FORMAT.md accepts.
    """
    try:
        built: ev.Event | None = _decode(payload).built()
    except Exception:  # any failure of the fast path: the reference path decides
        return None
    return built
