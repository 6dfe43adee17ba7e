"""The parts of an event that are not events: who wrote it (``Env``, stamped by an
``Envelope``) and SandboxAdded's metadata map (``AddedMetadata``). ``sandbox.events``
re-exports them; their ``from_payload`` are on the replay hot path
(``sandbox.event_decode``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any, TypeAlias

import attrs
import msgpack

from sandbox import config_check
from sandbox.config import PodSandboxConfig
from sandbox.event_decode import check_str, new_bare, slot
from sandbox.metadata import Metadata

__all__ = ["NO_ENV", "AddedMetadata", "Env", "Envelope", "Payload"]

Payload: TypeAlias = dict[str, Any]


@attrs.frozen
class Env:
    """Who wrote an event, and when. Read leniently: the fold never looks at it, so an
    odd envelope must not make a log unreplayable (a field of the wrong type reads as None)."""

    time: int | None = None
    host: str | None = None
    pid: int | None = None
    uid: int | None = None
    actor: str | None = None

    @classmethod
    def from_payload(cls, data: object) -> Env:
        if type(data) is not dict:
            return NO_ENV
        get = data.get  # spelled out, no loop: this runs once per replayed event
        t, h, p, u, a = get("time"), get("host"), get("pid"), get("uid"), get("actor")
        env = new_bare(cls)
        _ENV_TIME(env, t if type(t) is int else None)
        _ENV_HOST(env, h if type(h) is str else None)
        _ENV_PID(env, p if type(p) is int else None)
        _ENV_UID(env, u if type(u) is int else None)
        _ENV_ACTOR(env, a if type(a) is str else None)
        return env

    def to_payload(self) -> Payload:
        return {
            "time": self.time,
            "host": self.host,
            "pid": self.pid,
            "uid": self.uid,
            "actor": self.actor,
        }


#: The envelope of an event that carries none (or not a map): one shared value.
NO_ENV = Env()
_ENV_TIME, _ENV_HOST, _ENV_PID, _ENV_UID, _ENV_ACTOR = (
    slot(Env, n) for n in ("time", "host", "pid", "uid", "actor")
)


class Envelope:
    """Stamps events: ``envelope()`` is the env map, ``envelope.stamp()`` the typed Env.

    The host name and uid are read once; the pid each time (a forked child
    writing to a log it opened itself must say so); the time each time.
    """

    __slots__ = ("actor", "host", "uid")

    def __init__(self, actor: str | None = None) -> None:
        if actor is not None and not isinstance(actor, str):
            raise TypeError(f"actor must be a str or None, got {type(actor).__name__}")
        self.actor = actor
        self.host = socket.gethostname()
        self.uid = os.getuid()

    def stamp(self) -> Env:
        return Env(time.time_ns(), self.host, os.getpid(), self.uid, self.actor)

    def __call__(self) -> Payload:
        return self.stamp().to_payload()


@attrs.frozen
class AddedMetadata:
    """SandboxAdded's metadata map. ``config`` stays the Go-JSON map it was written as:
    decoding a PodSandboxConfig is the costly part of a replay, so it is done on the
    first read of the sandbox (``to_metadata``), not per event."""

    id: str
    name: str
    config: Mapping[str, Any]
    netns_path: str

    @classmethod
    def from_metadata(cls, md: Metadata) -> AddedMetadata:
        data = md.to_event_dict()
        return cls(data["id"], data["name"], data["config"], data["netns_path"])

    @classmethod
    def from_payload(cls, data: object) -> AddedMetadata:
        if type(data) is not dict:
            raise TypeError("metadata must be a map")
        config = data.get("config") or {}
        if type(config) is not dict:
            raise TypeError("metadata.config must be a map")
        path = data.get("netns_path") or ""
        meta = new_bare(cls)
        _MD_ID(meta, check_str(data["id"], "metadata.id"))
        _MD_NAME(meta, check_str(data["name"], "metadata.name"))
        _MD_CONFIG(meta, config)
        _MD_PATH(meta, check_str(path, "metadata.netns_path"))
        return meta

    def to_payload(self) -> Payload:
        return {
            "id": self.id,
            "name": self.name,
            "config": self.config,
            "netns_path": self.netns_path,
        }

    def to_metadata(self) -> Metadata:
        return Metadata.from_event_dict(self.to_payload())

    def check(self) -> None:
        """Raise what ``to_metadata()`` raises (None: it would build), cheaply.

        Decoding the config (~25 us) is skipped when ``config_check`` proves
        that ``from_go_json`` accepts it (~3 us with the msgpack encoding it
        checks); Metadata's validators of the other fields are per field, so
        building it with any valid config raises what the full build would.
        Anything ``config_check`` cannot prove takes the full build, which decides.
        """
        try:
            proven = config_check.is_canonical(msgpack.packb(self.config, use_bin_type=True))
        except Exception:  # not encodable as it came (e.g. nested too deep): the full way
            proven = False
        if proven:
            Metadata(self.id, self.name, _ANY_CONFIG, self.netns_path)
        else:
            self.to_metadata()


#: A valid config, to run Metadata's validators of the other fields when the real
#: config is proven valid apart.
_ANY_CONFIG = PodSandboxConfig()
_MD_ID, _MD_NAME, _MD_CONFIG, _MD_PATH = (
    slot(AddedMetadata, n) for n in ("id", "name", "config", "netns_path")
)
