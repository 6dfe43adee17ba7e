"""Go's ``encoding/json`` for the protobuf-generated CRI types, driven by a table.

containerd stores the CRI PodSandboxConfig as Go writes it, and crictl reads
a pod file with Go's decoder, so both directions follow Go, not protobuf's
JSON mapping. The rules (docs/PODCONFIG.md has them with examples):

Writing (``Codec.encode``, ``go_json_dumps``): keys in declaration order;
``omitempty`` everywhere (``""``, 0, false, empty lists and maps and absent
sub-messages are left out; a present empty sub-message is ``{}``); enums
and int64/uint64 as plain numbers; map keys sorted; compact, with ``<``,
``>``, ``&``, U+2028/9 escaped as ``\\u003c`` etc.

Reading (``loads`` + ``Codec.decode``): each key finds its field by exact
match, else case-insensitively (Go's folding), at every level; keys are
applied in document order, so when two keys land on one field the later
wins - a scalar is replaced, an object is decoded INTO what the earlier one
built (Go reuses the struct, the map and the elements of a list); ``null``
leaves a scalar as it was and clears a sub-message, list or map; unknown
keys are skipped and, when asked, reported by path. A wrong JSON type, an
integer out of its type's range, a non-integer number for an integer, or a
document nested too deeply is ``InvalidConfigError``, naming the path.
Strings with lone surrogates (``"\\ud800"``) read as U+FFFD, as Go does.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from sandbox import schema
from sandbox.errors import InvalidConfigError
from sandbox.gojson_encode import go_json_dumps

__all__ = [
    "INT_RANGES",
    "MAX_DEPTH",
    "Builder",
    "Codec",
    "FieldPlan",
    "GoObject",
    "MessagePlan",
    "check_enum",
    "check_scalar",
    "fold",
    "go_json_dumps",
    "jtype",
    "loads",
    "pairs",
]

#: Inclusive bounds of each integer type; a number outside is an error, as in Go.
INT_RANGES: Final = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
#: Depth of message nesting the decoder follows (the CRI table needs 6).
MAX_DEPTH: Final = 32

Builder = Callable[[dict[str, Any]], Any]


# -- values ------------------------------------------------------------------------------


def jtype(value: object) -> str:
    """The JSON type name of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_string(value: object, where: str, repair: bool) -> str:
    if not isinstance(value, str):
        raise InvalidConfigError(f"{where}: expected a string, got {jtype(value)}")
    if value.isascii():
        return value
    if _SURROGATE.search(value) is None:
        return value
    if repair:  # Go's decoder reads an unpaired \udXXX escape as U+FFFD
        return _SURROGATE.sub("\ufffd", value)
    raise InvalidConfigError(f"{where}: not valid unicode text (a lone surrogate)")


def _check_bool(value: object, where: str) -> bool:
    if value is True or value is False:
        return value
    raise InvalidConfigError(f"{where}: expected a boolean, got {jtype(value)}")


class _MinusZero(int):
    """The literal ``-0``: zero for a signed field, an error for an unsigned one (Go
    parses the literal with ParseUint)."""

    __slots__ = ()


_MINUS_ZERO: Final = _MinusZero(0)


def _parse_int(literal: str) -> int:
    return _MINUS_ZERO if literal == "-0" else int(literal)


def _check_int(kind: str, value: object, where: str) -> int:
    if value is _MINUS_ZERO and kind[0] == "u":
        raise InvalidConfigError(f"{where}: -0 is not a valid {kind}")
    if not isinstance(value, int) or isinstance(value, bool):
        if isinstance(value, float):
            raise InvalidConfigError(f"{where}: expected an integer ({kind}), got {value!r}")
        raise InvalidConfigError(f"{where}: expected a number ({kind}), got {jtype(value)}")
    lo, hi = INT_RANGES[kind]
    if not lo <= value <= hi:
        raise InvalidConfigError(f"{where}: {value} is out of range for {kind}")
    return int(value)


def check_scalar(kind: str, value: object, where: str, *, repair: bool = False) -> Any:
    """``value`` checked as proto scalar ``kind``; ``repair``: lone surrogates -> U+FFFD."""
    if kind == "string":
        return _check_string(value, where, repair)
    if kind == "bool":
        return _check_bool(value, where)
    return _check_int(kind, value, where)


def check_enum(enum_cls: type[enum.IntEnum], value: object, where: str) -> int:
    """An enum value: any int32 (Go's enum types are int32), a known one as its member."""
    number = _check_int("int32", value, where)
    try:
        return enum_cls(number)
    except ValueError:
        return number  # a value from a newer CRI version: kept, as Go keeps it


# -- Go's case folding and JSON parsing ------------------------------------------------

# Go folds keys with Unicode simple folding; the only non-ASCII letters that
# fold onto ASCII ones are KELVIN SIGN (k) and LATIN SMALL LETTER LONG S (s).
_FOLD_TO_ASCII: Final = {"\u212a": "k", "\u017f": "s"}


def fold(key: str) -> str:
    """A key folded so that it equals an ASCII field name's fold iff Go matches them."""
    if key.isascii():
        return key.lower()
    return "".join(_FOLD_TO_ASCII.get(c, c.lower() if c.isascii() else c) for c in key)


class GoObject(dict[str, Any]):
    """A JSON object from ``loads``: a dict that also keeps every (key, value) pair,
    duplicates included, in document order - the sequence Go's decoder applies."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def loads(data: str | bytes | bytearray | memoryview, what: str = "JSON") -> Any:
    """Parse JSON as Go's decoder sees it: duplicate keys kept (``GoObject.pairs``),
    NaN/Infinity refused, invalid UTF-8 read as U+FFFD; errors are InvalidConfigError."""
    text = data if isinstance(data, str) else bytes(data).decode("utf-8", errors="replace")
    try:
        return json.loads(
            text, object_pairs_hook=GoObject, parse_constant=_no_constant, parse_int=_parse_int
        )
    except RecursionError:
        raise InvalidConfigError(f"{what}: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidConfigError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # a constant, or an integer of more than 4300 digits
        raise InvalidConfigError(f"{what} is not valid JSON: {exc}") from None


def pairs(obj: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """A JSON object's (key, value) pairs as Go's decoder applies them."""
    return obj.pairs if isinstance(obj, GoObject) else obj.items()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- the codec -------------------------------------------------------------------------


@attrs.frozen
class FieldPlan:
    """How one key is read and written. ``kind``: scalar, enum, message, map,
    list (repeated scalar or enum), msglist; ``legacy`` maps an old field's
    values onto this one (the plan is then found under the old name)."""

    attr: str
    key: str
    kind: str
    scalar: str = ""
    enum: type[enum.IntEnum] | None = None
    message: str = ""
    legacy: Mapping[object, int] | None = None
    legacy_type: str = ""


@attrs.frozen
class MessagePlan:
    name: str
    fields: tuple[FieldPlan, ...]
    exact: Mapping[str, FieldPlan]
    folded: Mapping[str, FieldPlan]
    omitempty: bool


def _field_plan(fld: schema.Field) -> FieldPlan:
    if fld.label == "map":
        return FieldPlan(fld.name, fld.name, "map", scalar=fld.type)
    enum_cls = schema.ENUMS.get(fld.type)
    if fld.type in schema.SCALARS or enum_cls is not None:
        if fld.label == "repeated":
            return FieldPlan(fld.name, fld.name, "list", scalar=fld.type, enum=enum_cls)
        kind = "enum" if enum_cls is not None else "scalar"
        return FieldPlan(fld.name, fld.name, kind, scalar=fld.type, enum=enum_cls)
    kind = "msglist" if fld.label == "repeated" else "message"
    return FieldPlan(fld.name, fld.name, kind, message=fld.type)


def _plan(msg: schema.Message) -> MessagePlan:
    fields = tuple(_field_plan(f) for f in msg.fields)
    exact: dict[str, FieldPlan] = {p.key: p for p in fields}
    by_name = {p.attr: p for p in fields}
    for old in msg.legacy:
        target = by_name[old.replaced_by]
        exact[old.name] = attrs.evolve(target, legacy=dict(old.values), legacy_type=old.type)
    folded: dict[str, FieldPlan] = {}
    for key, fp in exact.items():
        folded.setdefault(fold(key), fp)  # Go: the first field of a fold wins
    return MessagePlan(msg.name, fields, exact, folded, msg.omitempty)


class Codec:
    """Go-JSON encoder/decoder for a table of messages.

    ``builder_for(name)`` returns what turns a decoded message - a dict of
    attribute -> checked value (sub-messages built, lists as tuples, maps as
    key-sorted tuples of pairs) - into the caller's value (e.g. an attrs
    class). Encoding reads the same attributes with ``getattr``.
    """

    def __init__(
        self, messages: Iterable[schema.Message], builder_for: Callable[[str], Builder]
    ) -> None:
        table = {m.name: m for m in messages}
        schema.check(table)
        self._plans = {name: _plan(m) for name, m in table.items()}
        self._builder_for = builder_for
        self._builders: dict[str, Builder] = {}
        self._encoders: dict[str, tuple[tuple[str, str, Callable[[Any], Any] | None], ...]] = {}

    # -- writing ---------------------------------------------------------------------

    def encode(self, name: str, obj: object) -> dict[str, Any]:
        """``obj`` (message ``name``) as Go's json.Marshal lays it out, as a dict."""
        steps = self._encoders.get(name)
        if steps is None:
            steps = self._encoders[name] = self._encode_steps(self._plans[name])
        omitempty = self._plans[name].omitempty
        out: dict[str, Any] = {}
        for attr, key, encode in steps:
            value = getattr(obj, attr)
            if value or not omitempty:
                # omitempty: "", 0, False, (), None and an enum's 0 are left out;
                # a present sub-message is truthy, so an empty one is written {}.
                out[key] = value if encode is None or value is None else encode(value)
        return out

    def _encode_steps(
        self, plan: MessagePlan
    ) -> tuple[tuple[str, str, Callable[[Any], Any] | None], ...]:
        steps: list[tuple[str, str, Callable[[Any], Any] | None]] = []
        for fp in plan.fields:
            encode: Callable[[Any], Any] | None = None
            if fp.kind == "message":
                encode = functools.partial(self.encode, fp.message)
            elif fp.kind == "msglist":
                one = functools.partial(self.encode, fp.message)
                encode = lambda items, one=one: [one(item) for item in items]  # noqa: E731
            elif fp.kind == "map":
                encode = dict  # pairs are kept sorted by key, as Go writes them
            elif fp.kind == "list":
                encode = list if fp.enum is None else (lambda items: [int(i) for i in items])
            elif fp.kind == "enum":
                encode = int
            steps.append((fp.attr, fp.key, encode))
        return tuple(steps)

    # -- reading ---------------------------------------------------------------------

    def decode(
        self, name: str, doc: object, *, path: str = "", ignored: list[str] | None = None
    ) -> Any:
        """Decode a JSON object into message ``name``; unknown keys' paths are
        appended to ``ignored`` when it is given."""
        acc: dict[str, Any] = {}
        if doc is not None:  # Go: null into a struct changes nothing
            _Decoding(self._plans, ignored).into(self._plans[name], doc, acc, path)
        return self._build(self._plans[name], acc)

    def _build(self, plan: MessagePlan, acc: dict[str, Any]) -> Any:
        for fp in plan.fields:
            value = acc.get(fp.attr)
            if fp.kind == "message":
                if value is not None:
                    acc[fp.attr] = self._build(self._plans[fp.message], value)
            elif fp.kind == "msglist":
                if value is None:
                    acc[fp.attr] = ()
                else:
                    sub = self._plans[fp.message]
                    acc[fp.attr] = tuple(self._build(sub, item) for item in value)
            elif fp.kind == "map":
                acc[fp.attr] = () if value is None else tuple(sorted(value.items()))
            elif fp.kind == "list" and value is None and fp.attr in acc:
                acc[fp.attr] = ()
        builder = self._builders.get(plan.name)
        if builder is None:
            builder = self._builders[plan.name] = self._builder_for(plan.name)
        return builder(acc)


class _Decoding:
    """One ``Codec.decode``'s walk through a document: the message plans, the list
    unknown keys' paths go to (None: not asked for), and how many messages deep
    the walk is (each level is a Python frame: the depth is bounded)."""

    def __init__(self, plans: Mapping[str, MessagePlan], ignored: list[str] | None) -> None:
        self._plans = plans
        self._ignored = ignored
        self._depth = 0

    def into(self, plan: MessagePlan, doc: object, acc: dict[str, Any], path: str) -> None:
        """Decode ``doc`` into ``acc``, which holds what earlier keys for it built."""
        if not isinstance(doc, Mapping):
            raise InvalidConfigError(
                f"{path or plan.name}: expected a JSON object, got {jtype(doc)}"
            )
        if self._depth > MAX_DEPTH:
            raise InvalidConfigError(f"{path or plan.name}: nested too deeply")
        self._depth += 1
        try:
            for key, value in pairs(doc):
                if not isinstance(key, str):
                    raise InvalidConfigError(f"{path or plan.name}: a key is not a string: {key!r}")
                fp = plan.exact.get(key)
                if fp is None:
                    fp = plan.folded.get(fold(key))
                    if fp is None:
                        if self._ignored is not None:
                            self._ignored.append(_join(path, key))
                        continue
                self._field(fp, value, acc, _join(path, key))
        finally:
            self._depth -= 1

    def _field(self, fp: FieldPlan, value: object, acc: dict[str, Any], where: str) -> None:
        kind = fp.kind
        if value is None:
            # Go: null leaves a scalar alone and clears a pointer, slice or map.
            if kind not in ("scalar", "enum"):
                acc[fp.attr] = None
        elif fp.legacy is not None:
            old = check_scalar(fp.legacy_type, value, where)
            new = fp.legacy.get(old)
            if new is None:
                raise InvalidConfigError(f"{where}: no mapping for the old value {old!r}")
            acc[fp.attr] = check_enum(fp.enum, new, where) if fp.enum else new
        elif kind == "scalar":
            acc[fp.attr] = check_scalar(fp.scalar, value, where, repair=True)
        elif kind == "enum":
            assert fp.enum is not None
            acc[fp.attr] = check_enum(fp.enum, value, where)
        elif kind == "message":
            sub = acc.get(fp.attr)
            if sub is None:
                sub = acc[fp.attr] = {}
            self.into(self._plans[fp.message], value, sub, where)
        elif kind == "msglist":
            acc[fp.attr] = self._msglist(fp, value, acc.get(fp.attr), where)
        elif kind == "list":
            acc[fp.attr] = self._list(fp, value, acc.get(fp.attr), where)
        else:  # map
            acc[fp.attr] = self._map(fp, value, acc.get(fp.attr), where)

    def _list(
        self, fp: FieldPlan, value: object, old: tuple[Any, ...] | None, where: str
    ) -> tuple[Any, ...]:
        # Go decodes element i in place: a null element keeps what an earlier
        # list for this field (a duplicate key) had there, else the zero value.
        out: list[Any] = []
        for i, item in enumerate(_array(value, where)):
            if item is None:
                if old is not None and i < len(old):
                    out.append(old[i])
                else:
                    out.append(_zero(fp))
            elif fp.enum is not None:
                out.append(check_enum(fp.enum, item, f"{where}[{i}]"))
            else:
                out.append(check_scalar(fp.scalar, item, f"{where}[{i}]", repair=True))
        return tuple(out)

    def _msglist(
        self, fp: FieldPlan, value: object, old: list[dict[str, Any]] | None, where: str
    ) -> list[dict[str, Any]]:
        # Go decodes element i into element i of a slice it already filled
        # (a duplicate key), then cuts the slice to the new length.
        out: list[dict[str, Any]] = []
        plan = self._plans[fp.message]
        for i, item in enumerate(_array(value, where)):
            sub = old[i] if old is not None and i < len(old) else {}
            if item is None:
                sub = {}  # Go stores a nil element; it is kept as an empty message here
            else:
                self.into(plan, item, sub, f"{where}[{i}]")
            out.append(sub)
        return out

    def _map(
        self, fp: FieldPlan, value: object, old: dict[str, Any] | None, where: str
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise InvalidConfigError(f"{where}: expected a JSON object, got {jtype(value)}")
        out = old if old is not None else {}  # Go adds to the map it already made
        for key, item in pairs(value):
            if not isinstance(key, str):
                raise InvalidConfigError(f"{where}: a key is not a string: {key!r}")
            key = check_scalar("string", key, f"{where} key", repair=True)
            if item is None:
                out[key] = _zero(fp)  # Go: null into a map's value is its zero value
            else:
                out[key] = check_scalar(fp.scalar, item, f"{where}[{key!r}]", repair=True)
        return out


def _zero(fp: FieldPlan) -> Any:
    if fp.enum is not None:
        return fp.enum(0)
    return {"string": "", "bool": False}.get(fp.scalar, 0)


def _array(value: object, where: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidConfigError(f"{where}: expected a JSON array, got {jtype(value)}")
    return value
