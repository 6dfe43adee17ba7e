"""A fast, sound check of a stored PodSandboxConfig: ``msgspec`` types made from the schema.

Why: a snapshot's content must validate as events do (DESIGN.md), so loading
one must check every sandbox's config; decoding each with
``PodSandboxConfig.from_go_json`` (~26 us) cost more than replaying the log it
replaces. Configs are stored in the canonical form ``to_go_json`` writes (exact
keys, enums as numbers, omitempty), and this module checks msgpack bytes of
that form in C with ``msgspec`` Structs generated from ``sandbox.schema``,
the one home of the CRI schema: nothing about a field is written here.

The check is a *subset* of ``from_go_json``, never a second copy of its
rules: ``is_canonical(raw)`` True proves that ``from_go_json`` of the map the
bytes decode to accepts it (tests/sandbox/test_sandbox_config_check.py
proves that over recorded and mutated configs); False decides nothing -
the caller then takes the full ``from_go_json`` path, which decides. Every
Go-JSON leniency ``from_go_json`` has is left to that path: a key in another
case, a ``null``, a v1alpha1 field, an enum value newer than the table. The
Structs are stricter than Go on purpose:

- every key must be a field's exact name (``forbid_unknown_fields``);
- no ``nil`` anywhere; strings must be valid UTF-8 (msgspec refuses invalid
  UTF-8 and encoded surrogates, as ``msgpack.unpackb`` does);
- integers must lie in their proto type's range (``gojson.INT_RANGES``;
  uint64's upper bound is msgpack's own: no larger integer is encodable),
  and a bool is not an integer, nor a float one;
- an enum must be one of the table's values (``schema.ENUMS``);
- the bytes must be exactly one msgpack map, nothing after it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from sandbox import schema
from sandbox.gojson import INT_RANGES

__all__ = ["STRUCTS", "is_canonical", "struct_for"]

#: The largest integer msgpack can encode (uint 64): a bound msgspec needs not check.
_MSGPACK_MAX: Final = 2**64 - 1
# msgspec bounds must fit in an int64; larger ones are left to the wire format.
_INT64_MAX: Final = 2**63 - 1


def _int_type(kind: str) -> Any:
    low, high = INT_RANGES[kind]
    if high > _INT64_MAX:
        if high != _MSGPACK_MAX:  # pragma: no cover - a schema change this module must follow
            raise ValueError(f"{kind}: upper bound {high} is neither int64 nor msgpack's")
        return Annotated[int, msgspec.Meta(ge=low)]
    return Annotated[int, msgspec.Meta(ge=low, le=high)]


def _scalar_type(kind: str) -> Any:
    if kind == "string":
        return str
    if kind == "bool":
        return bool
    return _int_type(kind)


def _one_type(type_name: str, structs: dict[str, type[msgspec.Struct]]) -> Any:
    enum_cls = schema.ENUMS.get(type_name)
    if enum_cls is not None:
        return enum_cls  # msgspec accepts only the enum's declared values
    if type_name in schema.SCALARS:
        return _scalar_type(type_name)
    return _make(type_name, structs)


def _field_type(fld: schema.Field, structs: dict[str, type[msgspec.Struct]]) -> Any:
    if fld.label == "map":
        return dict[str, _scalar_type(fld.type)]  # type: ignore[misc]
    one = _one_type(fld.type, structs)
    return list[one] if fld.label == "repeated" else one  # type: ignore[valid-type]


def _make(name: str, structs: dict[str, type[msgspec.Struct]]) -> type[msgspec.Struct]:
    made = structs.get(name)
    if made is not None:
        return made
    msg = schema.MESSAGES[name]
    fields = [
        (f.name, _field_type(f, structs) | msgspec.UnsetType, msgspec.UNSET) for f in msg.fields
    ]
    # gc=False: the decoded values are dropped at once and hold no cycles.
    made = msgspec.defstruct(name, fields, forbid_unknown_fields=True, gc=False)
    structs[name] = made
    return made


def _structs() -> dict[str, type[msgspec.Struct]]:
    structs: dict[str, type[msgspec.Struct]] = {}
    for name in schema.reachable():
        _make(name, structs)
    return structs


#: One Struct per message reachable from the root, named as the message.
STRUCTS: Final = _structs()
_DECODER: Final = msgspec.msgpack.Decoder(STRUCTS[schema.ROOT])


def struct_for(name: str) -> type[msgspec.Struct]:
    """The Struct checking message ``name`` (tests build configs from its fields)."""
    return STRUCTS[name]


def is_canonical(raw: bytes | bytearray | memoryview) -> bool:
    """True: ``raw`` is msgpack of a PodSandboxConfig in canonical stored form, which
    ``from_go_json`` accepts. False: not proven here; the caller decides the full way."""
    try:
        _DECODER.decode(raw)
    except Exception:  # DecodeError and ValidationError; anything else decides nothing too
        return False
    return True
