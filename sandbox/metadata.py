"""Sandbox metadata and containerd's versioned JSON blob.

containerd/cri persists ``Metadata`` as::

    {"Version":"v1","Metadata":{"ID":..,"Name":..,"Config":{...},"NetNSPath":..}}

The wrapper has no json tags, so Go writes its field names as they are and
without ``omitempty``: ID, Name, Config and NetNSPath are always present.
``to_json`` writes exactly what Go's ``json.Marshal`` writes (compact, keys in
struct order, ``<``/``>``/``&`` escaped), so a blob written by containerd and
read here re-encodes to the same bytes (unless it carried fields this class
does not model - see ``from_json``).

Decoding is strict about what it needs and lenient about the rest: a
missing or different ``Version`` is ``UnsupportedVersionError``; bytes that
are not JSON, or JSON of the wrong shape, are ``InvalidMetadataError`` (never
a raw ``JSONDecodeError``/``KeyError``/``TypeError``); fields that later
containerd releases added under the same "v1" (IP, RuntimeHandler, CNIResult,
ProcessLabel, ...) are ignored. Like Go's decoder, key matching falls back to
a case-insensitive match and ``null`` reads as the zero value.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from sandbox.config import InvalidConfigError, PodSandboxConfig, go_json_dumps
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
        return go_json_dumps(
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
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        if not isinstance(data, bytes | str):
            raise InvalidMetadataError(
                f"metadata blob: expected bytes or str, got {type(data).__name__}"
            )
        try:
            doc = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise InvalidMetadataError(f"metadata blob is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidMetadataError(
                f"metadata blob: expected a JSON object, got {type(doc).__name__}"
            )
        version = _field(doc, "Version")
        if version is None:
            raise UnsupportedVersionError(
                f"metadata blob has no Version; expected {METADATA_VERSION!r}"
            )
        if version != METADATA_VERSION:
            raise UnsupportedVersionError(
                f"metadata blob has Version {version!r}; expected {METADATA_VERSION!r}"
            )
        body = _field(doc, "Metadata")
        if not isinstance(body, dict):
            raise InvalidMetadataError(
                f"metadata blob: Metadata must be a JSON object, got {_jtype(body)}"
            )
        sandbox_id = _text(body, "ID")
        name = _text(body, "Name")
        config_doc = _field(body, "Config")
        try:
            config = (
                PodSandboxConfig()
                if config_doc is None
                else PodSandboxConfig.from_go_json(config_doc, path="Config")
            )
        except InvalidConfigError as exc:
            raise InvalidMetadataError(f"metadata blob of {sandbox_id!r}: {exc}") from None
        return cls(sandbox_id, name, config, _text(body, "NetNSPath"))

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


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _field(doc: dict[str, Any], key: str) -> Any:
    """Go's decoder: exact key first, then a case-insensitive match."""
    if key in doc:
        return doc[key]
    folded = key.casefold()
    for k, v in doc.items():
        if isinstance(k, str) and k.casefold() == folded:
            return v
    return None


def _text(doc: dict[str, Any], key: str) -> str:
    value = _field(doc, key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidMetadataError(f"metadata blob: {key} must be a string, got {_jtype(value)}")
    return value


def _jtype(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number"
    )
