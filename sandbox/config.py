"""The CRI ``PodSandboxConfig`` message as containerd stores it, mirrored in attrs.

containerd keeps the kubelet's ``runtime.PodSandboxConfig`` inside its sandbox
metadata blob, written by Go's ``encoding/json``. To read and write such blobs
byte for byte, every class here knows its Go JSON shape:

* keys are the protobuf json tags (snake_case), in struct declaration order;
* every key is ``omitempty``: "", 0, False, empty lists and maps and absent
  (``None``) sub-messages are left out. A sub-message that is present but
  empty is a non-nil Go pointer and is written as ``{}`` - so ``None`` and an
  all-default instance are different values here, as they are in Go;
* map keys are written sorted (Go sorts map keys); enums are integers;
  int64/uint32 are plain JSON numbers.

The classes are frozen and hashable: lists are tuples, and string maps
(labels, annotations, sysctls) are tuples of ``(key, value)`` pairs sorted by
key, so equality is by value whatever order the caller gave. A mapping or any
iterable of pairs is accepted wherever a map is expected.

``from_go_json`` is forward compatible (unknown keys are ignored, JSON ``null``
is read as "absent", as Go does) but strict about types: a wrong type or an
out-of-range number raises ``InvalidConfigError`` naming the field path, never a
raw ``TypeError``/``KeyError``.

This module also holds ``go_json_dumps``, the small encoder that reproduces
Go's ``json.Marshal`` output (compact, HTML-safe escapes), used by
``sandbox.metadata``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import attrs

from sandbox.errors import InvalidConfigError

__all__ = [
    "DNSConfig",
    "Int64Value",
    "InvalidConfigError",
    "LinuxPodSandboxConfig",
    "LinuxSandboxSecurityContext",
    "NamespaceOption",
    "PodSandboxConfig",
    "PodSandboxMetadata",
    "PortMapping",
    "Protocol",
    "SELinuxOption",
    "go_json_dumps",
]


class Protocol(enum.IntEnum):
    """CRI ``Protocol``: written as its integer, as protobuf enums are in Go JSON."""

    TCP = 0
    UDP = 1
    SCTP = 2


# --------------------------------------------------------------------------
# Value checks shared by the attrs validators and the JSON decoder.

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def _check_text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidConfigError(f"{what}: expected a string, got {type(value).__name__}")
    # A lone surrogate cannot be written as UTF-8 (msgpack or JSON): refuse it
    # here, at construction, instead of failing half-way through a write.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidConfigError(f"{what}: not valid unicode text ({exc.reason})") from None
    return value


def _check_int(what: str, kind: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidConfigError(f"{what}: expected an integer, got {type(value).__name__}")
    lo, hi = _INT_RANGES[kind]
    if not lo <= value <= hi:
        raise InvalidConfigError(f"{what}: {value} is out of range for {kind}")
    return int(value)


def _check_bool(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidConfigError(f"{what}: expected a boolean, got {type(value).__name__}")
    return value


def _pairs(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Normalise a string map to a key-sorted tuple of pairs (hashable, order-free)."""
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[str, str] = {}
    for pair in items:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise InvalidConfigError(f"map entry {pair!r}: expected a (key, value) pair")
        key, val = pair
        if key in out:
            raise InvalidConfigError(f"map key {key!r} given twice")
        out[_check_text("map key", key)] = _check_text(f"map value of {key!r}", val)
    return tuple(sorted(out.items()))


def _strs(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise InvalidConfigError(f"expected a list of strings, got {type(value).__name__}")
    return tuple(value)


def _ints(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


# attrs validators: they make a hand-built config as trustworthy as a decoded one.


def _v_str(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    _check_text(attr.name, value)


def _v_bool(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    _check_bool(attr.name, value)


def _v_int(kind: str) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        _check_int(attr.name, kind, value)

    return check


def _v_strs(_inst: object, attr: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    for i, item in enumerate(value):
        _check_text(f"{attr.name}[{i}]", item)


def _v_int64s(_inst: object, attr: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    for i, item in enumerate(value):
        _check_int(f"{attr.name}[{i}]", "int64", item)


def _v_opt(cls: type) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, cls):
            raise InvalidConfigError(
                f"{attr.name}: expected {cls.__name__} or None, got {type(value).__name__}"
            )

    return check


def _v_list_of(cls: type) -> Callable[[object, attrs.Attribute[Any], tuple[object, ...]], None]:
    def check(_inst: object, attr: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
        for i, item in enumerate(value):
            if not isinstance(item, cls):
                raise InvalidConfigError(
                    f"{attr.name}[{i}]: expected {cls.__name__}, got {type(item).__name__}"
                )

    return check


def _v_protocol(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Protocol):
        raise InvalidConfigError(f"{attr.name}: expected a Protocol, got {value!r}")


def _to_protocol(value: Protocol | int) -> Protocol:
    if isinstance(value, Protocol):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return Protocol(value)
        except ValueError:
            raise InvalidConfigError(f"protocol: unknown value {value}") from None
    raise InvalidConfigError(f"protocol: expected a Protocol, got {type(value).__name__}")


# Field metadata: the Go json key and how the value is encoded.
def _m(key: str, kind: str, cls: type | None = None) -> dict[str, Any]:
    return {"json": key, "kind": kind, "cls": cls}


# --------------------------------------------------------------------------
# Generic Go-JSON encoding and decoding driven by the field metadata.

_T = TypeVar("_T", bound="_Message")


class _Message:
    """Mixin: Go-JSON encode/decode for the attrs classes below."""

    __slots__ = ()
    _go_name: ClassVar[str] = ""

    def to_go_json(self) -> dict[str, Any]:
        """This message as Go's encoding/json writes it (omitempty on every key)."""
        out: dict[str, Any] = {}
        plan = _PLANS.get(type(self))
        if plan is None:
            plan = _plan(type(self))
        for name, key, encode in plan:
            value = getattr(self, name)
            if value:
                # omitempty: "", 0, False, (), None and enum 0 (TCP) are left out. A
                # present sub-message is truthy (attrs instances are), so it is
                # written even when all its fields are empty ({}), as Go does.
                out[key] = value if encode is None else encode(value)
        return out

    @classmethod
    def from_go_json(cls: type[_T], data: object, *, path: str = "") -> _T:
        """Decode Go JSON (a dict): unknown keys ignored, null = absent, types checked."""
        where = path or cls._go_name
        if not isinstance(data, dict):
            raise InvalidConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for name, key, kind, sub in _spec(cls):
            value = data.get(key)
            if value is None:
                continue
            what = f"{where}.{key}"
            if kind == "str":
                kwargs[name] = _check_text(what, value)
            elif kind == "bool":
                kwargs[name] = _check_bool(what, value)
            elif kind in _INT_RANGES:
                kwargs[name] = _check_int(what, kind, value)
            elif kind == "enum":
                kwargs[name] = _to_protocol(_check_int(what, "int32", value))
            elif kind == "strlist":
                kwargs[name] = tuple(
                    _check_text(f"{what}[{i}]", item) for i, item in enumerate(_list(what, value))
                )
            elif kind == "int64list":
                kwargs[name] = tuple(
                    _check_int(f"{what}[{i}]", "int64", item)
                    for i, item in enumerate(_list(what, value))
                )
            elif kind == "map":
                if not isinstance(value, dict):
                    raise InvalidConfigError(f"{what}: expected a JSON object")
                kwargs[name] = tuple(
                    sorted(
                        (_check_text(f"{what} key", k), _check_text(f"{what}[{k!r}]", v))
                        for k, v in value.items()
                    )
                )
            elif kind == "msg":
                kwargs[name] = sub.from_go_json(value, path=what)
            elif kind == "msglist":
                kwargs[name] = tuple(
                    sub.from_go_json(item, path=f"{what}[{i}]")
                    for i, item in enumerate(_list(what, value))
                )
            else:  # pragma: no cover - a field declared with an unknown kind is a bug
                raise AssertionError(kind)
        return cls(**kwargs)


_SPECS: dict[type, tuple[tuple[str, str, str, Any], ...]] = {}


def _encode_msg(value: Any) -> Any:
    return value.to_go_json()


def _encode_msglist(value: Any) -> Any:
    return [item.to_go_json() for item in value]


#: How a present (truthy) field value of each kind is written; None: as it is.
_ENCODE_KIND: dict[str, Callable[[Any], Any] | None] = {
    "msg": _encode_msg,
    "msglist": _encode_msglist,
    "map": dict,  # already sorted by key
    "strlist": list,
    "int64list": list,
    "enum": int,
}
#: Per class, ``(attribute, json key, encoder or None)`` per field: the spec with the
#: kind resolved once (``to_go_json`` runs on every ``Store.add``).
_PLANS: dict[type, tuple[tuple[str, str, Callable[[Any], Any] | None], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, str, Callable[[Any], Any] | None], ...]:
    plan = _PLANS[cls] = tuple(
        (name, key, _ENCODE_KIND.get(kind)) for name, key, kind, _cls in _spec(cls)
    )
    return plan


def _spec(cls: type) -> tuple[tuple[str, str, str, Any], ...]:
    """(attribute, json key, kind, sub-message class) per field, computed once per class."""
    spec = _SPECS.get(cls)
    if spec is None:
        spec = _SPECS[cls] = tuple(
            (f.name, f.metadata["json"], f.metadata["kind"], f.metadata["cls"])
            for f in attrs.fields(cls)
        )
    return spec


def _list(what: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidConfigError(f"{what}: expected a JSON array, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------
# The CRI messages.


@attrs.frozen
class PodSandboxMetadata(_Message):
    """CRI ``PodSandboxMetadata``: who the sandbox is for (name/uid/namespace/attempt)."""

    _go_name: ClassVar[str] = "metadata"

    name: str = attrs.field(default="", validator=_v_str, metadata=_m("name", "str"))
    uid: str = attrs.field(default="", validator=_v_str, metadata=_m("uid", "str"))
    namespace: str = attrs.field(default="", validator=_v_str, metadata=_m("namespace", "str"))
    attempt: int = attrs.field(
        default=0, validator=_v_int("uint32"), metadata=_m("attempt", "uint32")
    )


@attrs.frozen
class DNSConfig(_Message):
    """CRI ``DNSConfig``: resolv.conf contents for the sandbox."""

    _go_name: ClassVar[str] = "dns_config"

    servers: tuple[str, ...] = attrs.field(
        default=(), converter=_strs, validator=_v_strs, metadata=_m("servers", "strlist")
    )
    searches: tuple[str, ...] = attrs.field(
        default=(), converter=_strs, validator=_v_strs, metadata=_m("searches", "strlist")
    )
    options: tuple[str, ...] = attrs.field(
        default=(), converter=_strs, validator=_v_strs, metadata=_m("options", "strlist")
    )


@attrs.frozen
class PortMapping(_Message):
    """CRI ``PortMapping``: one host port forwarded into the sandbox."""

    _go_name: ClassVar[str] = "port_mappings"

    protocol: Protocol = attrs.field(
        default=Protocol.TCP,
        converter=_to_protocol,
        validator=_v_protocol,
        metadata=_m("protocol", "enum"),
    )
    container_port: int = attrs.field(
        default=0, validator=_v_int("int32"), metadata=_m("container_port", "int32")
    )
    host_port: int = attrs.field(
        default=0, validator=_v_int("int32"), metadata=_m("host_port", "int32")
    )
    host_ip: str = attrs.field(default="", validator=_v_str, metadata=_m("host_ip", "str"))


def _port_mappings(value: Iterable[PortMapping]) -> tuple[PortMapping, ...]:
    # A typed converter (a bare ``tuple`` is untyped for mypy's attrs plugin).
    return tuple(value)


@attrs.frozen
class NamespaceOption(_Message):
    """CRI ``NamespaceOption``: which host namespaces the sandbox shares."""

    _go_name: ClassVar[str] = "namespace_options"

    host_network: bool = attrs.field(
        default=False, validator=_v_bool, metadata=_m("host_network", "bool")
    )
    host_pid: bool = attrs.field(default=False, validator=_v_bool, metadata=_m("host_pid", "bool"))
    host_ipc: bool = attrs.field(default=False, validator=_v_bool, metadata=_m("host_ipc", "bool"))


@attrs.frozen
class SELinuxOption(_Message):
    """CRI ``SELinuxOption``: the SELinux label parts."""

    _go_name: ClassVar[str] = "selinux_options"

    user: str = attrs.field(default="", validator=_v_str, metadata=_m("user", "str"))
    role: str = attrs.field(default="", validator=_v_str, metadata=_m("role", "str"))
    type: str = attrs.field(default="", validator=_v_str, metadata=_m("type", "str"))
    level: str = attrs.field(default="", validator=_v_str, metadata=_m("level", "str"))


@attrs.frozen
class Int64Value(_Message):
    """CRI ``Int64Value``: a wrapper so that "unset" and 0 differ (run_as_user)."""

    _go_name: ClassVar[str] = "run_as_user"

    value: int = attrs.field(default=0, validator=_v_int("int64"), metadata=_m("value", "int64"))


@attrs.frozen
class LinuxSandboxSecurityContext(_Message):
    """CRI ``LinuxSandboxSecurityContext``."""

    _go_name: ClassVar[str] = "security_context"

    namespace_options: NamespaceOption | None = attrs.field(
        default=None,
        validator=_v_opt(NamespaceOption),
        metadata=_m("namespace_options", "msg", NamespaceOption),
    )
    selinux_options: SELinuxOption | None = attrs.field(
        default=None,
        validator=_v_opt(SELinuxOption),
        metadata=_m("selinux_options", "msg", SELinuxOption),
    )
    run_as_user: Int64Value | None = attrs.field(
        default=None, validator=_v_opt(Int64Value), metadata=_m("run_as_user", "msg", Int64Value)
    )
    readonly_rootfs: bool = attrs.field(
        default=False, validator=_v_bool, metadata=_m("readonly_rootfs", "bool")
    )
    supplemental_groups: tuple[int, ...] = attrs.field(
        default=(),
        converter=_ints,
        validator=_v_int64s,
        metadata=_m("supplemental_groups", "int64list"),
    )
    privileged: bool = attrs.field(
        default=False, validator=_v_bool, metadata=_m("privileged", "bool")
    )
    seccomp_profile_path: str = attrs.field(
        default="", validator=_v_str, metadata=_m("seccomp_profile_path", "str")
    )


@attrs.frozen
class LinuxPodSandboxConfig(_Message):
    """CRI ``LinuxPodSandboxConfig``: cgroup parent, security context, sysctls."""

    _go_name: ClassVar[str] = "linux"

    cgroup_parent: str = attrs.field(
        default="", validator=_v_str, metadata=_m("cgroup_parent", "str")
    )
    security_context: LinuxSandboxSecurityContext | None = attrs.field(
        default=None,
        validator=_v_opt(LinuxSandboxSecurityContext),
        metadata=_m("security_context", "msg", LinuxSandboxSecurityContext),
    )
    sysctls: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_pairs, metadata=_m("sysctls", "map")
    )


@attrs.frozen
class PodSandboxConfig(_Message):
    """CRI ``PodSandboxConfig``: everything the kubelet asked for when it ran the pod."""

    _go_name: ClassVar[str] = "config"

    metadata: PodSandboxMetadata | None = attrs.field(
        default=None,
        validator=_v_opt(PodSandboxMetadata),
        metadata=_m("metadata", "msg", PodSandboxMetadata),
    )
    hostname: str = attrs.field(default="", validator=_v_str, metadata=_m("hostname", "str"))
    log_directory: str = attrs.field(
        default="", validator=_v_str, metadata=_m("log_directory", "str")
    )
    dns_config: DNSConfig | None = attrs.field(
        default=None, validator=_v_opt(DNSConfig), metadata=_m("dns_config", "msg", DNSConfig)
    )
    port_mappings: tuple[PortMapping, ...] = attrs.field(
        default=(),
        converter=_port_mappings,
        validator=_v_list_of(PortMapping),
        metadata=_m("port_mappings", "msglist", PortMapping),
    )
    labels: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_pairs, metadata=_m("labels", "map")
    )
    annotations: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_pairs, metadata=_m("annotations", "map")
    )
    linux: LinuxPodSandboxConfig | None = attrs.field(
        default=None,
        validator=_v_opt(LinuxPodSandboxConfig),
        metadata=_m("linux", "msg", LinuxPodSandboxConfig),
    )


# --------------------------------------------------------------------------
# Go's json.Marshal, reproduced for the value shapes used here.

# Go escapes '"', '\\', control characters (\n \r \t short, the rest as
# \u00XX - including \b and \f, which Go before 1.22 wrote as \u0008/\u000c,
# as the containerd builds that wrote these blobs did), the HTML-sensitive
# '<', '>', '&', and U+2028/U+2029. Everything else is written as UTF-8.
_GO_ESCAPE_RE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]')
_GO_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    short = _GO_SHORT.get(ch)
    if short is not None:
        return short
    if "\ud800" <= ch <= "\udfff":
        return "\ufffd"  # Go replaces invalid UTF-8 with U+FFFD
    return f"\\u{ord(ch):04x}"


def _go_str(value: str) -> str:
    return '"' + _GO_ESCAPE_RE.sub(_go_escape_char, value) + '"'


def _go_encode(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_go_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_go_str(str(key)))
            out.append(":")
            _go_encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _go_encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as Go JSON")


def go_json_dumps(value: object) -> bytes:
    """Encode as Go's ``json.Marshal`` does: compact, keys in the given order,
    HTML characters escaped as ``\\u003c`` etc., non-ASCII kept as UTF-8."""
    out: list[str] = []
    _go_encode(value, out)
    return "".join(out).encode("utf-8")
