"""The CRI runtime.v1 ``PodSandboxConfig``, whole: Python classes made from the schema.

Every message of ``sandbox.schema`` is a frozen, slotted attrs class whose
attributes are the proto field names, in declaration order, with the zero
value as default (``""``, 0, False, ``None`` for a sub-message, ``()`` for a
list or a map). Nothing about a field is written here: the classes below are
names and docstrings, their fields come from the table, so no field can be
missing and a new CRI version needs no edit here. A message the table gains
without a class here still decodes (its class is made on first use).

Values are normalised on construction so that equal configs compare and hash
equal: lists are tuples; string maps (labels, annotations, sysctls, unified)
are tuples of ``(key, value)`` pairs sorted by key (a mapping or any iterable
of pairs is accepted); an enum field holds its ``IntEnum`` member (any other
int32 is kept as an int, as Go keeps it). A wrong type or an out-of-range
number is ``InvalidConfigError`` naming the field. Positional arguments follow
the proto declaration order. The seed's v1alpha1 keywords are accepted and
upcast (``NamespaceOption(host_network=True)`` is ``network=NODE``; see
docs/PODCONFIG.md).

``to_go_json()`` / ``from_go_json(doc)`` are Go's encoding/json of the
generated types (``sandbox.gojson``); ``from_go_json(..., ignored=list)``
also collects the paths of the keys Go would ignore.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs

from sandbox import schema
from sandbox.errors import InvalidConfigError
from sandbox.gojson import Codec, check_enum, check_scalar
from sandbox.schema import NamespaceMode, ProfileType, Protocol, SupplementalGroupsPolicy

__all__ = [
    "CODEC",
    "DNSConfig",
    "HugepageLimit",
    "IDMapping",
    "Int64Value",
    "InvalidConfigError",
    "LinuxContainerResources",
    "LinuxPodSandboxConfig",
    "LinuxSandboxSecurityContext",
    "Message",
    "NamespaceMode",
    "NamespaceOption",
    "PodSandboxConfig",
    "PodSandboxMetadata",
    "PortMapping",
    "ProfileType",
    "Protocol",
    "SELinuxOption",
    "SecurityProfile",
    "SupplementalGroupsPolicy",
    "UserNamespace",
    "WindowsNamespaceOption",
    "WindowsPodSandboxConfig",
    "WindowsSandboxSecurityContext",
    "builder_for",
    "message_class",
]

_M = TypeVar("_M", bound="Message")
Converter = Callable[[object, str], Any]

#: Message name -> its class (declared below, or made on first use).
_CLASSES: dict[str, type[Message]] = {}


def message_class(name: str) -> type[Message]:
    """The class of CRI message ``name``; one the table has but this module does
    not declare is made on the spot, so decoding never depends on a declaration."""
    cls = _CLASSES.get(name)
    if cls is None:
        cls = cri_message(type(name, (Message,), {"__slots__": (), "__doc__": f"CRI {name}."}))
    return cls


def builder_for(name: str) -> Callable[[dict[str, Any]], Any]:
    """What the codec calls to build message ``name`` from checked values."""
    return message_class(name)._from_checked


#: The Go-JSON codec of the CRI table, building the classes of this module.
CODEC = Codec(schema.MESSAGES.values(), builder_for)


class Message:
    """Base of the CRI message classes: construction, Go JSON in and out."""

    __slots__ = ()
    _schema: ClassVar[schema.Message]
    _converters: ClassVar[Mapping[str, Converter]]
    _positional: ClassVar[tuple[str, ...]]
    _legacy: ClassVar[Mapping[str, tuple[str, Mapping[object, int], str]]]

    if TYPE_CHECKING:
        # The fields come from the schema at run time; to a type checker every
        # attribute of a message is Any.
        def __getattr__(self, name: str) -> Any: ...

        def __attrs_init__(self, **kwargs: Any) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if len(args) > len(cls._positional):
            raise TypeError(
                f"{cls.__name__}() takes at most {len(cls._positional)} positional "
                f"arguments ({len(args)} given)"
            )
        given: dict[str, Any] = dict(zip(cls._positional, args, strict=False))
        for key, value in kwargs.items():
            legacy = cls._legacy.get(key)
            if legacy is not None:
                key, value = legacy[0], _upcast(cls, key, legacy, value)
            elif key not in cls._converters:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")
            if key in given:
                raise TypeError(f"{cls.__name__}() got more than one value for {key!r}")
            given[key] = value
        where = cls.__name__
        checked = {k: cls._converters[k](v, f"{where}.{k}") for k, v in given.items()}
        self.__attrs_init__(**checked)

    @classmethod
    def _from_checked(cls: type[_M], values: dict[str, Any]) -> _M:
        """Build from values the codec already checked and normalised."""
        self = cls.__new__(cls)
        self.__attrs_init__(**values)
        return self

    def to_go_json(self) -> dict[str, Any]:
        """This message as Go's encoding/json writes it (omitempty on every key)."""
        return CODEC.encode(self._schema.name, self)

    @classmethod
    def from_go_json(
        cls: type[_M], data: object, *, path: str = "", ignored: list[str] | None = None
    ) -> _M:
        """Decode a JSON object as Go would (see ``sandbox.gojson``); the paths of
        keys Go ignores are appended to ``ignored`` when it is given."""
        value: _M = CODEC.decode(cls._schema.name, data, path=path, ignored=ignored)
        return value


def _upcast(
    cls: type[Message], key: str, legacy: tuple[str, Mapping[object, int], str], value: object
) -> int:
    old = check_scalar(legacy[2], value, f"{cls.__name__}.{key}")
    return legacy[1][old]


# -- converters for constructor arguments, one per field kind ------------------------


def _scalar(kind: str) -> Converter:
    return lambda value, where: check_scalar(kind, value, where)


def _enum(enum_cls: type[Any]) -> Converter:
    return lambda value, where: check_enum(enum_cls, value, where)


def _message(name: str) -> Converter:
    def convert(value: object, where: str) -> object:
        cls = message_class(name)
        if value is not None and not isinstance(value, cls):
            raise InvalidConfigError(
                f"{where}: expected {cls.__name__} or None, got {type(value).__name__}"
            )
        return value

    return convert


def _items(value: object, where: str) -> Iterable[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _repeated(item: Converter) -> Converter:
    def convert(value: object, where: str) -> tuple[Any, ...]:
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(_items(value, where)))

    return convert


def _scalar_map(kind: str) -> Converter:
    def convert(value: object, where: str) -> tuple[tuple[str, Any], ...]:
        items = value.items() if isinstance(value, Mapping) else _items(value, where)
        out: dict[str, Any] = {}
        for pair in items:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise InvalidConfigError(f"{where}: entry {pair!r} is not a (key, value) pair")
            key = check_scalar("string", pair[0], f"{where} key")
            if key in out:
                raise InvalidConfigError(f"{where}: key {key!r} given twice")
            out[key] = check_scalar(kind, pair[1], f"{where}[{key!r}]")
        return tuple(sorted(out.items()))

    return convert


def _converter(fld: schema.Field) -> Converter:
    if fld.label == "map":
        return _scalar_map(fld.type)
    enum_cls = schema.ENUMS.get(fld.type)
    if enum_cls is not None:
        one = _enum(enum_cls)
    elif fld.type in schema.SCALARS:
        one = _scalar(fld.type)
    else:
        one = _message(fld.type)
    return _repeated(one) if fld.label == "repeated" else one


def _default(fld: schema.Field) -> object:
    if fld.label != "optional":
        return ()
    enum_cls = schema.ENUMS.get(fld.type)
    if enum_cls is not None:
        return enum_cls(0)
    return {"string": "", "bool": False}.get(fld.type, 0 if fld.type in schema.SCALARS else None)


def cri_message(cls: type[_M]) -> type[_M]:
    """Class decorator: the frozen attrs class of the CRI message named like ``cls``."""
    msg = schema.MESSAGES[cls.__name__]
    these = {f.name: attrs.field(default=_default(f)) for f in msg.fields}
    made: type[_M] = attrs.define(
        cls, these=these, init=False, frozen=True, slots=True, eq=True, hash=True
    )
    made._schema = msg
    made._converters = {f.name: _converter(f) for f in msg.fields}
    made._positional = tuple(f.name for f in msg.fields)
    made._legacy = {old.name: (old.replaced_by, dict(old.values), old.type) for old in msg.legacy}
    _CLASSES[msg.name] = made
    return made


# -- the messages (fields: sandbox/schema.py) -----------------------------------------


@cri_message
class PodSandboxConfig(Message):
    """Everything the kubelet asked for when it ran the pod (CRI PodSandboxConfig)."""


@cri_message
class PodSandboxMetadata(Message):
    """Who the sandbox is for: name, uid, namespace, attempt."""


@cri_message
class DNSConfig(Message):
    """resolv.conf contents for the sandbox: servers, searches, options."""


@cri_message
class PortMapping(Message):
    """One host port forwarded into the sandbox."""


@cri_message
class LinuxPodSandboxConfig(Message):
    """Linux settings: cgroup parent, security context, sysctls, overhead, resources."""


@cri_message
class LinuxSandboxSecurityContext(Message):
    """Namespaces, SELinux, user and group, seccomp and AppArmor of the sandbox."""


@cri_message
class NamespaceOption(Message):
    """Which namespaces (network, pid, ipc, user) the sandbox shares, as NamespaceMode."""


@cri_message
class UserNamespace(Message):
    """The user namespace mode and its uid/gid mappings."""


@cri_message
class IDMapping(Message):
    """One uid or gid range mapped between host and container."""


@cri_message
class SELinuxOption(Message):
    """The SELinux label parts: user, role, type, level."""


@cri_message
class Int64Value(Message):
    """A wrapper, so that an unset run_as_user differs from uid 0."""


@cri_message
class SecurityProfile(Message):
    """A seccomp or AppArmor profile: its type and, for Localhost, its reference."""


@cri_message
class LinuxContainerResources(Message):
    """CPU, memory, cpuset and hugepage limits (the pod's overhead or resources)."""


@cri_message
class HugepageLimit(Message):
    """A hugepage size and its limit in bytes."""


@cri_message
class WindowsPodSandboxConfig(Message):
    """Windows settings of the sandbox."""


@cri_message
class WindowsSandboxSecurityContext(Message):
    """Windows user, credential spec, host-process flag and namespace options."""


@cri_message
class WindowsNamespaceOption(Message):
    """Windows namespace options (network)."""
