"""Sandbox metadata and containerd's versioned JSON blob.

containerd/cri persists ``Metadata`` as::

    {"Version":"v1","Metadata":{"ID":..,"Name":..,"Config":{...},"NetNSPath":..}}

The wrapper has no json tags, so Go writes its field names as they are and
without ``omitempty``: ID, Name, Config and NetNSPath are always present.
``to_json`` writes exactly what Go's ``json.Marshal`` writes (compact, keys in
struct order, ``<``/``>``/``&`` escaped), so a blob written by containerd with
the CRI v1 types and read here re-encodes to the same bytes (unless it carried
wrapper fields this class does not model - see ``from_json``).

Decoding reads the blob as Go's decoder would, wrapper and Config alike
(``sandbox.gojson``: exact key, else case-insensitive, at every level; the
later of two keys for one field wins; ``null`` is the zero value). It is
strict about what it needs and lenient about the rest: a missing or different
``Version`` is ``UnsupportedVersionError``; bytes that are not JSON, or JSON
of the wrong shape, are ``InvalidMetadataError`` (never a raw
``JSONDecodeError``/``KeyError``/``TypeError``); fields that later containerd
releases added under the same "v1" (IP, RuntimeHandler, CNIResult,
ProcessLabel, ...) are ignored. Blobs written by earlier versions of this
project (and by containerd with the seed's CRI v1alpha1) still load: their
``namespace_options`` booleans are upcast to v1's modes (docs/PODCONFIG.md),
after which ``to_json`` writes the v1 shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from sandbox import gojson, schema
from sandbox.config import InvalidConfigError, PodSandboxConfig, builder_for
from sandbox.errors import InvalidMetadataError, UnsupportedVersionError
from sandbox.ids import validate_id, validate_name

__all__ = ["METADATA_VERSION", "InvalidMetadataError", "Metadata"]

#: The only metadata blob version there is (containerd/cri's ``metadataVersion``).
METADATA_VERSION = "v1"


def _v_id(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    validate_id(value)


def _v_name(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    validate_name(value)


def _v_config(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, PodSandboxConfig):
        raise InvalidConfigError(f"config: expected a PodSandboxConfig, got {type(value).__name__}")


def _v_path(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidMetadataError(f"netns_path: expected a str, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidMetadataError("netns_path: NUL byte in path")


def _fspath(value: object) -> object:
    # Paths may be given as os.PathLike everywhere; keep the str form.
    fspath = getattr(value, "__fspath__", None)
    return fspath() if fspath is not None else value


@attrs.frozen
class Metadata:
    """What a sandbox is, fixed when it is added (containerd: immutable after create).

    ``netns_path`` is either the namespace path the caller manages itself, or
    (with ``Store.add(..., create_netns=True)``) the path the store chose and
    owns. ``id`` and ``name`` are validated on construction (``InvalidIDError``).
    """

    id: str = attrs.field(validator=_v_id)
    name: str = attrs.field(validator=_v_name)
    config: PodSandboxConfig = attrs.field(validator=_v_config)
    netns_path: str = attrs.field(default="", converter=_fspath, validator=_v_path)

    # -- containerd's blob ------------------------------------------------

    def to_json(self) -> bytes:
        """containerd's versioned blob, byte for byte as Go's json.Marshal writes it."""
        return gojson.go_json_dumps(
            {
                "Version": METADATA_VERSION,
                "Metadata": {
                    "ID": self.id,
                    "Name": self.name,
                    "Config": self.config.to_go_json(),
                    "NetNSPath": self.netns_path,
                },
            }
        )

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> Metadata:
        """Decode containerd's blob; see the module docstring for what is refused."""
        if not isinstance(data, bytes | bytearray | memoryview | str):
            raise InvalidMetadataError(
                f"metadata blob: expected bytes or str, got {type(data).__name__}"
            )
        try:
            doc = gojson.loads(data, "metadata blob")
        except InvalidConfigError as exc:
            raise InvalidMetadataError(str(exc)) from None
        if not isinstance(doc, Mapping):
            raise InvalidMetadataError(
                f"metadata blob: expected a JSON object, got {gojson.jtype(doc)}"
            )
        version = _version(doc)
        if version is None:
            raise UnsupportedVersionError(
                f"metadata blob has no Version; expected {METADATA_VERSION!r}"
            )
        if version != METADATA_VERSION:
            raise UnsupportedVersionError(
                f"metadata blob has Version {version!r}; expected {METADATA_VERSION!r}"
            )
        try:
            body = _WRAPPER.decode(_VERSIONED.name, doc).get("Metadata")
        except InvalidConfigError as exc:
            raise InvalidMetadataError(f"metadata blob{_id_hint(doc)}: {exc}") from None
        if body is None:
            raise InvalidMetadataError(
                "metadata blob: Metadata must be a JSON object; it is missing or null"
            )
        config = body.get("Config") or PodSandboxConfig()
        return cls(body.get("ID", ""), body.get("Name", ""), config, body.get("NetNSPath", ""))

    # -- the event payload form (see docs/ARCHITECTURE.md) ----------------

    def to_event_dict(self) -> dict[str, Any]:
        """``{"id","name","config": Go-JSON dict,"netns_path"}`` as SandboxAdded carries it."""
        return {
            "id": self.id,
            "name": self.name,
            "config": self.config.to_go_json(),
            "netns_path": self.netns_path,
        }

    @classmethod
    def from_event_dict(cls, data: object) -> Metadata:
        """Inverse of ``to_event_dict``; a wrong shape is ``InvalidMetadataError``."""
        if not isinstance(data, dict):
            raise InvalidMetadataError(f"metadata: expected a map, got {type(data).__name__}")
        try:
            config = PodSandboxConfig.from_go_json(data.get("config") or {})
            return cls(data["id"], data["name"], config, data.get("netns_path") or "")
        except KeyError as exc:
            raise InvalidMetadataError(f"metadata: missing field {exc.args[0]!r}") from None


# The wrapper types of containerd/cri's metadata.go, as the codec sees them:
# plain Go structs without json tags (keys are the Go field names, never
# omitted); Config is the CRI message.
_INTERNAL = schema.Message(
    "metadataInternal",
    (
        schema.Field(1, "ID", "string"),
        schema.Field(2, "Name", "string"),
        schema.Field(3, "Config", schema.ROOT),
        schema.Field(4, "NetNSPath", "string"),
    ),
    omitempty=False,
)
_VERSIONED = schema.Message(
    "versionedMetadata",
    (schema.Field(1, "Version", "string"), schema.Field(2, "Metadata", _INTERNAL.name)),
    omitempty=False,
)
_WRAPPER_NAMES = frozenset({_INTERNAL.name, _VERSIONED.name})


def _wrapper_builder(name: str) -> gojson.Builder:
    return dict if name in _WRAPPER_NAMES else builder_for(name)


_WRAPPER = gojson.Codec([*schema.MESSAGES.values(), _INTERNAL, _VERSIONED], _wrapper_builder)


def _version(doc: Mapping[str, Any]) -> object:
    """The blob's Version as Go reads it (any key folding to it; the last non-null
    wins), of whatever JSON type, so that ``"Version": 2`` is an unsupported
    version rather than a type error."""
    found: object = None
    for key, value in gojson.pairs(doc):
        if value is not None and isinstance(key, str) and gojson.fold(key) == "version":
            found = value
    return found


def _id_hint(doc: Mapping[str, Any]) -> str:
    """`` of 'id'`` when the blob's ID can be seen, for error messages."""
    body = doc.get("Metadata")
    sandbox_id = body.get("ID") if isinstance(body, Mapping) else None
    return f" of {sandbox_id!r}" if isinstance(sandbox_id, str) else ""
