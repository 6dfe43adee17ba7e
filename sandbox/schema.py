"""CRI ``runtime.v1.PodSandboxConfig`` and every message it reaches, as a table.

Why a table and not a class per message: containerd keeps the kubelet's
PodSandboxConfig in its metadata blob as Go's ``encoding/json`` writes the
generated types, and kubelet, crictl 1.3x and containerd 2.x speak runtime.v1.
Hand-written classes kept only the fields someone remembered to write (a v1
host-network pod was stored as ``{}``). Here each message, field number, type
and enum value reachable from PodSandboxConfig is written down once;
``sandbox.gojson`` encodes and decodes by this table and ``sandbox.config``
makes the Python classes from it. A new CRI version is an edit of this file.

Source of the facts (names, numbers, types, enum values, field order; no text
taken): k8s.io/cri-api ``pkg/apis/runtime/v1/api.proto`` at tag v0.36.3,
commit 1733b6a9fa123c5887eefa14523c532b12827f73 (Kubernetes 1.36.3). The
messages reachable from PodSandboxConfig are the same at the tip of that
repository's history when this was written (v0.37.0-beta.0 + 8).

Fields are listed in declaration order, which is the Go struct order and so
the order Go writes keys in (not number order: ``run_as_group`` = 8 comes
right after ``run_as_user`` = 3). Each field's Go json key is its proto name
(the generated tag is ``json:"<name>,omitempty"``); ``json_name`` is the
proto3 JSON (lowerCamelCase) spelling, which Go's encoding/json does NOT
accept - it is kept to tell a user who wrote ``logDirectory`` what was meant.

``legacy`` lists fields of older CRI versions that a v1 field replaced, with
the value mapping used to upcast them (docs/PODCONFIG.md).
"""

from __future__ import annotations

import enum
import keyword
from collections.abc import Iterator, Mapping
from typing import Final, Literal

import attrs

__all__ = [
    "ENUMS",
    "MESSAGES",
    "ROOT",
    "SCALARS",
    "SOURCE",
    "Field",
    "LegacyField",
    "Message",
    "NamespaceMode",
    "ProfileType",
    "Protocol",
    "SupplementalGroupsPolicy",
    "check",
    "json_name",
    "reachable",
]

#: Where the facts below come from (docs/PODCONFIG.md repeats it).
SOURCE: Final = {
    "repository": "k8s.io/cri-api (github.com/kubernetes/cri-api)",
    "file": "pkg/apis/runtime/v1/api.proto",
    "tag": "v0.36.3",
    "commit": "1733b6a9fa123c5887eefa14523c532b12827f73",
    "package": "runtime.v1",
}

#: The message everything here hangs off.
ROOT: Final = "PodSandboxConfig"

#: Scalar proto types used by the messages below; Go writes each as a JSON
#: string, boolean or number (int64/uint64 too: no ``,string`` tag).
SCALARS: Final = frozenset({"string", "bool", "int32", "int64", "uint32", "uint64"})


# -- enums: proto3 enums are Go int32 types, written and read as numbers ---------


class Protocol(enum.IntEnum):
    """runtime.v1.Protocol: a port mapping's transport."""

    TCP = 0
    UDP = 1
    SCTP = 2


class NamespaceMode(enum.IntEnum):
    """runtime.v1.NamespaceMode: whose namespace a pod or container joins."""

    POD = 0
    CONTAINER = 1
    NODE = 2
    TARGET = 3


class SupplementalGroupsPolicy(enum.IntEnum):
    """runtime.v1.SupplementalGroupsPolicy: how image groups combine with the pod's."""

    Merge = 0
    Strict = 1


class ProfileType(enum.IntEnum):
    """runtime.v1.SecurityProfile.ProfileType: which seccomp/AppArmor profile applies."""

    RuntimeDefault = 0
    Unconfined = 1
    Localhost = 2


#: Enum types by their proto name (a nested enum is ``Outer.Inner``).
ENUMS: Final[Mapping[str, type[enum.IntEnum]]] = {
    "Protocol": Protocol,
    "NamespaceMode": NamespaceMode,
    "SupplementalGroupsPolicy": SupplementalGroupsPolicy,
    "SecurityProfile.ProfileType": ProfileType,
}


# -- the table's record types -------------------------------------------------------

Label = Literal["optional", "repeated", "map"]


def json_name(name: str) -> str:
    """protoc's default JSON name: drop each ``_`` and upper-case the letter after it."""
    out: list[str] = []
    upper = False
    for ch in name:
        if ch == "_":
            upper = True
        else:
            out.append(ch.upper() if upper else ch)
            upper = False
    return "".join(out)


@attrs.frozen
class Field:
    """One field: its number, proto name, type and label.

    ``type`` is a scalar (``SCALARS``), an enum (``ENUMS``) or a message
    name. A ``map`` field is ``map<string, type>``.
    """

    number: int
    name: str
    type: str
    label: Label = "optional"
    deprecated: bool = False

    @property
    def json_name(self) -> str:
        return json_name(self.name)


@attrs.frozen
class LegacyField:
    """A field of an older CRI version, read into the field that replaced it.

    ``values`` maps each old value to the new one (e.g. v1alpha1's
    ``host_network: true`` is v1's ``network: NODE``).
    """

    number: int
    name: str
    type: str
    replaced_by: str
    values: tuple[tuple[bool | int | str, int], ...]
    version: str


@attrs.frozen
class Message:
    """One message: fields in declaration order, plus fields it used to have.

    ``omitempty`` is False only for plain Go structs without json tags (the
    metadata wrapper in ``sandbox.metadata``), whose keys are always written.
    """

    name: str
    fields: tuple[Field, ...]
    legacy: tuple[LegacyField, ...] = ()
    omitempty: bool = True


def _f(number: int, name: str, type_: str, *, deprecated: bool = False) -> Field:
    return Field(number, name, type_, "optional", deprecated)


def _rep(number: int, name: str, type_: str) -> Field:
    return Field(number, name, type_, "repeated")


def _map(number: int, name: str) -> Field:
    return Field(number, name, "string", "map")


def _msg(name: str, *fields: Field, legacy: tuple[LegacyField, ...] = ()) -> Message:
    return Message(name, fields, legacy)


def _host_flag(number: int, name: str, replaced_by: str) -> LegacyField:
    # containerd's reading of v1alpha1: sharing the host's namespace is NODE,
    # not sharing it is the pod's own namespace (POD).
    values = ((False, NamespaceMode.POD.value), (True, NamespaceMode.NODE.value))
    return LegacyField(number, name, "bool", replaced_by, values, "v1alpha1")


# -- the messages ---------------------------------------------------------------------

_TABLE: Final = (
    _msg(
        "PodSandboxConfig",
        _f(1, "metadata", "PodSandboxMetadata"),
        _f(2, "hostname", "string"),
        _f(3, "log_directory", "string"),
        _f(4, "dns_config", "DNSConfig"),
        _rep(5, "port_mappings", "PortMapping"),
        _map(6, "labels"),
        _map(7, "annotations"),
        _f(8, "linux", "LinuxPodSandboxConfig"),
        _f(9, "windows", "WindowsPodSandboxConfig"),
    ),
    _msg(
        "PodSandboxMetadata",
        _f(1, "name", "string"),
        _f(2, "uid", "string"),
        _f(3, "namespace", "string"),
        _f(4, "attempt", "uint32"),
    ),
    _msg(
        "DNSConfig",
        _rep(1, "servers", "string"),
        _rep(2, "searches", "string"),
        _rep(3, "options", "string"),
    ),
    _msg(
        "PortMapping",
        _f(1, "protocol", "Protocol"),
        _f(2, "container_port", "int32"),
        _f(3, "host_port", "int32"),
        _f(4, "host_ip", "string"),
    ),
    _msg(
        "LinuxPodSandboxConfig",
        _f(1, "cgroup_parent", "string"),
        _f(2, "security_context", "LinuxSandboxSecurityContext"),
        _map(3, "sysctls"),
        _f(4, "overhead", "LinuxContainerResources"),
        _f(5, "resources", "LinuxContainerResources"),
    ),
    _msg(
        "LinuxSandboxSecurityContext",
        _f(1, "namespace_options", "NamespaceOption"),
        _f(2, "selinux_options", "SELinuxOption"),
        _f(3, "run_as_user", "Int64Value"),
        _f(8, "run_as_group", "Int64Value"),
        _f(4, "readonly_rootfs", "bool"),
        _rep(5, "supplemental_groups", "int64"),
        _f(11, "supplemental_groups_policy", "SupplementalGroupsPolicy"),
        _f(6, "privileged", "bool"),
        _f(9, "seccomp", "SecurityProfile"),
        _f(10, "apparmor", "SecurityProfile"),
        _f(7, "seccomp_profile_path", "string", deprecated=True),
    ),
    _msg(
        "NamespaceOption",
        _f(1, "network", "NamespaceMode"),
        _f(2, "pid", "NamespaceMode"),
        _f(3, "ipc", "NamespaceMode"),
        _f(4, "target_id", "string"),
        _f(5, "userns_options", "UserNamespace"),
        legacy=(
            _host_flag(1, "host_network", "network"),
            _host_flag(2, "host_pid", "pid"),
            _host_flag(3, "host_ipc", "ipc"),
        ),
    ),
    _msg(
        "UserNamespace",
        _f(1, "mode", "NamespaceMode"),
        _rep(2, "uids", "IDMapping"),
        _rep(3, "gids", "IDMapping"),
    ),
    _msg(
        "IDMapping",
        _f(1, "host_id", "uint32"),
        _f(2, "container_id", "uint32"),
        _f(3, "length", "uint32"),
    ),
    _msg(
        "SELinuxOption",
        _f(1, "user", "string"),
        _f(2, "role", "string"),
        _f(3, "type", "string"),
        _f(4, "level", "string"),
    ),
    _msg("Int64Value", _f(1, "value", "int64")),
    _msg(
        "SecurityProfile",
        _f(1, "profile_type", "SecurityProfile.ProfileType"),
        _f(2, "localhost_ref", "string"),
    ),
    _msg(
        "LinuxContainerResources",
        _f(1, "cpu_period", "int64"),
        _f(2, "cpu_quota", "int64"),
        _f(3, "cpu_shares", "int64"),
        _f(4, "memory_limit_in_bytes", "int64"),
        _f(5, "oom_score_adj", "int64"),
        _f(6, "cpuset_cpus", "string"),
        _f(7, "cpuset_mems", "string"),
        _rep(8, "hugepage_limits", "HugepageLimit"),
        _map(9, "unified"),
        _f(10, "memory_swap_limit_in_bytes", "int64"),
    ),
    _msg("HugepageLimit", _f(1, "page_size", "string"), _f(2, "limit", "uint64")),
    _msg("WindowsPodSandboxConfig", _f(1, "security_context", "WindowsSandboxSecurityContext")),
    _msg(
        "WindowsSandboxSecurityContext",
        _f(1, "run_as_username", "string"),
        _f(2, "credential_spec", "string"),
        _f(3, "host_process", "bool"),
        _f(4, "namespace_options", "WindowsNamespaceOption"),
    ),
    _msg("WindowsNamespaceOption", _f(1, "network", "NamespaceMode")),
)

#: Every message by name, in the order above (the root first).
MESSAGES: Final[Mapping[str, Message]] = {m.name: m for m in _TABLE}


# -- consistency ----------------------------------------------------------------------


def reachable(root: str = ROOT, messages: Mapping[str, Message] = MESSAGES) -> list[str]:
    """Names of the messages reachable from ``root`` (root first, depth first)."""
    seen: dict[str, None] = {}

    def walk(name: str) -> None:
        if name in seen:
            return
        seen[name] = None
        for field in messages[name].fields:
            if field.type in messages:
                walk(field.type)

    walk(root)
    return list(seen)


def _problems(messages: Mapping[str, Message]) -> Iterator[str]:
    for msg in messages.values():
        names: set[str] = set()
        numbers: set[int] = set()
        every: list[Field | LegacyField] = [*msg.fields, *msg.legacy]
        for fld in every:
            where = f"{msg.name}.{fld.name}"
            if not fld.name.isidentifier() or keyword.iskeyword(fld.name):
                yield f"{where}: not usable as a Python attribute name"
            if fld.name in names:
                yield f"{where}: name used twice"
            names.add(fld.name)
            if fld.type not in SCALARS and fld.type not in ENUMS and fld.type not in messages:
                yield f"{where}: unknown type {fld.type!r}"
            if isinstance(fld, Field):
                if fld.number in numbers or fld.number < 1:
                    yield f"{where}: bad or repeated number {fld.number}"
                numbers.add(fld.number)
                if fld.label == "map" and fld.type not in SCALARS:
                    yield f"{where}: map values must be scalars here"
        for old in msg.legacy:
            if old.replaced_by not in {f.name for f in msg.fields}:
                yield f"{msg.name}.{old.name}: replaced by unknown field {old.replaced_by!r}"
    for msg in messages.values():
        children = [f.type for f in msg.fields if f.type in messages]
        if any(msg.name in reachable(child, messages) for child in children):
            yield f"{msg.name}: recursive messages are not supported by the codec"


def check(messages: Mapping[str, Message] = MESSAGES) -> None:
    """Raise ValueError listing every inconsistency of a table (tests and codec use it)."""
    problems = list(_problems(messages))
    if problems:
        raise ValueError("bad CRI schema: " + "; ".join(problems))
