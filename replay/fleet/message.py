"""One log record as one JetStream message, and back.

Why the message carries what it carries: the far side must be able to
re-verify the node's hash chain without the node's files. The chain digest of
a record is computed over the previous digest, the record's signed header
bytes and the payload's exact bytes (see FORMAT.md). The signed header
depends on the record's format version: version 2 signs payload length, seq,
time_ns, batch_left and durable_seq (32 bytes), version 1 the same without
durable_seq (24 bytes). So all of those travel: ``seq``, ``time_ns``,
``batch_left``, ``durable_seq``, the record's format version ``format``, the
raw msgpack ``payload`` bytes as the writer wrote them (never re-packed: a
re-encoding could differ by a byte and break the digest), the ``prev``
digest and the record's own ``digest``. ``node`` travels in the body as well
as in the subject so a message copied onto another node's subject is caught.

The body is a msgpack map with short fixed keys and a message version ``v``
(2 today). Version 1 messages - written before the log had format version 2
- lack ``durable_seq`` and ``format``; they are read as what they are:
version 1 records, durable_seq 0. An unknown newer message version, or a
record format this code cannot recompute, is a clear error, never a guess.
The JetStream message id is ``<node>:<seq>`` so the server's duplicate
window turns a re-send into a no-op.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import msgpack

from eventlog.format import FORMAT_VERSION, READ_VERSIONS

#: Version of the message body layout below (1: before ``durable_seq`` and ``format``).
MESSAGE_VERSION = 2
#: Message versions ``decode`` reads.
MESSAGE_VERSIONS = (1, 2)

#: Default JetStream stream name; subjects are ``<stream>.<node>``.
DEFAULT_STREAM = "SANDBOXLOG"

#: ``--node`` value that means every node on the stream (never a valid node id).
ALL_NODES = "*"

#: URL schemes nats-py connects with: a ``replay.load`` source with one of
#: these is NATS servers, anything else a state dir.
NATS_SCHEMES = ("nats", "tls", "ws", "wss")

#: The header JetStream de-duplicates on.
MSG_ID_HEADER = "Nats-Msg-Id"

#: Digest size of the chain (blake2b-256).
DIGEST_SIZE = 32

#: Node ids and stream names become subject tokens: no dots, wildcards or
#: whitespace, bounded length.
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

#: Bounds for decoding hostile bodies (a message is at most NATS's max
#: payload, 1 MiB by default, 64 MiB at most).
_MAX_BODY = 64 * 1024 * 1024


class MessageFormatError(ValueError):
    """A message on the stream is not a well-formed shipped record."""


def check_node(node: str) -> str:
    """Return ``node`` if it can be a subject token, else raise ValueError.

    Why: the node id is the last token of the subject; a dot would split it,
    ``*``/``>`` would make it a wildcard, and whitespace is not allowed in
    subjects at all.
    """
    if not isinstance(node, str) or not _SUBJECT_TOKEN.match(node):
        raise ValueError(
            f"node id {node!r} cannot be a subject token: use 1-128 of [A-Za-z0-9_-] "
            "(a hostname's dots can be replaced with '-' or '_')"
        )
    return node


def check_stream(stream: str) -> str:
    """Return ``stream`` if JetStream accepts it as a stream name and subject token."""
    if not isinstance(stream, str) or not _SUBJECT_TOKEN.match(stream):
        raise ValueError(f"stream name {stream!r} must be 1-128 of [A-Za-z0-9_-]")
    return stream


def default_node_id(hostname: str) -> str:
    """The node id a host gets by default: its hostname, made a subject token.

    Why: ``socket.gethostname()`` may be an FQDN (dots) which would be read as
    several subject tokens; dots become ``-`` and anything else odd ``_``.
    """
    cleaned = "".join(
        c if c.isalnum() or c in "_-" else ("-" if c == "." else "_") for c in hostname
    )
    return cleaned[:128] or "node"


def subject_for(stream: str, node: str) -> str:
    """The subject a node's records are published on."""
    return f"{check_stream(stream)}.{check_node(node)}"


def msg_id(node: str, seq: int) -> str:
    """The de-duplication id of a node's record."""
    return f"{node}:{seq}"


@attrs.frozen(slots=True)
class ShippedRecord:
    """A log record as it travels and as it is read back from the stream.

    It has the attributes of ``eventlog.Record`` that the read tools use
    (``seq``, ``time_ns``, ``payload``, ``digest``, ``segment``, ``offset``)
    so view, audit and history code written for local records works on it;
    ``segment`` names the stream subject and ``offset`` is the JetStream
    stream sequence (0 before it is stored). ``durable_seq`` and ``version``
    (the record's format version, as ``eventlog.RawRecord`` has them) are
    part of what its digest covers.
    """

    node: str
    seq: int
    time_ns: int
    batch_left: int
    payload_bytes: bytes
    prev_digest: bytes
    digest: bytes
    durable_seq: int = 0
    version: int = FORMAT_VERSION
    keyed: bool = False
    stream_seq: int = 0
    subject: str = ""
    _decoded: dict[str, Any] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @property
    def payload(self) -> dict[str, Any]:
        """The decoded payload (decoded once, on first use: the shipper never needs it)."""
        decoded = self._decoded
        if decoded is None:
            decoded = _unpack_payload(self.payload_bytes)
            object.__setattr__(self, "_decoded", decoded)
        return decoded

    @property
    def segment(self) -> str:
        """Where the record was read from (the stream subject)."""
        return f"nats:{self.subject}" if self.subject else "nats"

    @property
    def offset(self) -> int:
        """The JetStream stream sequence the record was stored at."""
        return self.stream_seq

    @property
    def msg_id(self) -> str:
        """The de-duplication id this record is published with."""
        return msg_id(self.node, self.seq)


def _unpackb(data: bytes, what: str, *, containers: int, ext: int) -> Any:
    """msgpack-decode untrusted ``data`` with every length bounded; MessageFormatError if bad."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=len(data),
            max_str_len=len(data),
            max_array_len=containers,
            max_map_len=containers,
            max_ext_len=ext,
        )
    except Exception as exc:  # msgpack raises many types on hostile bytes
        raise MessageFormatError(f"{what} is not msgpack: {exc}") from None


def _unpack_payload(data: bytes) -> dict[str, Any]:
    obj = _unpackb(data, "payload", containers=len(data), ext=len(data))
    if not isinstance(obj, dict):
        raise MessageFormatError(f"payload is a {type(obj).__name__}, not a map")
    return obj


def encode(rec: ShippedRecord) -> tuple[bytes, dict[str, str]]:
    """The message body and headers for ``rec``."""
    body = msgpack.packb(
        {
            "v": MESSAGE_VERSION,
            "node": rec.node,
            "seq": rec.seq,
            "time_ns": rec.time_ns,
            "batch_left": rec.batch_left,
            "durable_seq": rec.durable_seq,
            "format": rec.version,
            "prev": rec.prev_digest,
            "digest": rec.digest,
            "payload": rec.payload_bytes,
            "keyed": rec.keyed,
        },
        use_bin_type=True,
    )
    assert isinstance(body, bytes)
    return body, {MSG_ID_HEADER: rec.msg_id}


def _field(body: dict[str, Any], key: str, typ: type) -> Any:
    value = body.get(key)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise MessageFormatError(f"field {key!r} missing or not {typ.__name__}")
    return value


def decode(data: bytes, *, subject: str = "", stream_seq: int = 0) -> ShippedRecord:
    """Parse a message body; raise MessageFormatError on anything malformed.

    Why so strict: the stream is input from the network; a hostile or
    damaged message must become a reported problem, not a crash or a
    silently wrong record.
    """
    if not isinstance(data, bytes | bytearray) or len(data) > _MAX_BODY:
        raise MessageFormatError("message body missing or too large")
    data = bytes(data)
    body = _unpackb(data, "message body", containers=16, ext=0)
    if not isinstance(body, dict):
        raise MessageFormatError("message body is not a map")
    version = _field(body, "v", int)
    if version not in MESSAGE_VERSIONS:
        raise MessageFormatError(
            f"message format version {version} is not supported (this tool reads "
            f"{MESSAGE_VERSIONS[0]}-{MESSAGE_VERSIONS[-1]})"
        )
    node = _field(body, "node", str)
    seq = _field(body, "seq", int)
    time_ns = _field(body, "time_ns", int)
    batch_left = _field(body, "batch_left", int)
    prev = _field(body, "prev", bytes)
    digest = _field(body, "digest", bytes)
    payload = _field(body, "payload", bytes)
    keyed = _field(body, "keyed", bool)
    if version == 1:
        durable_seq, record_version = 0, 1  # shipped before the log had format 2
    else:
        durable_seq = _field(body, "durable_seq", int)
        record_version = _field(body, "format", int)
    if record_version not in READ_VERSIONS:
        raise MessageFormatError(
            f"record format version {record_version} is unknown (this tool reads "
            f"{READ_VERSIONS[0]}-{READ_VERSIONS[-1]}): its digest cannot be recomputed"
        )
    if seq < 1 or seq >= 1 << 64:
        raise MessageFormatError(f"seq {seq} out of range")
    if not 0 <= time_ns < 1 << 64:
        raise MessageFormatError(f"time_ns {time_ns} out of range")
    if not 0 <= batch_left < 1 << 32:
        raise MessageFormatError(f"batch_left {batch_left} out of range")
    if not 0 <= durable_seq < seq or (record_version == 1 and durable_seq):
        # FORMAT.md: a record proves only records before it; version 1 proves nothing.
        raise MessageFormatError(
            f"durable_seq {durable_seq} impossible for seq {seq} (format {record_version})"
        )
    if len(prev) != DIGEST_SIZE or len(digest) != DIGEST_SIZE:
        raise MessageFormatError("digests must be 32 bytes")
    rec = ShippedRecord(
        node=node,
        seq=seq,
        time_ns=time_ns,
        batch_left=batch_left,
        payload_bytes=payload,
        prev_digest=prev,
        digest=digest,
        durable_seq=durable_seq,
        version=record_version,
        keyed=keyed,
        stream_seq=stream_seq,
        subject=subject,
    )
    rec.payload  # noqa: B018 - decode now: a malformed payload is an error here, not later
    return rec


def node_of_subject(stream: str, subject: str) -> str:
    """The node token of ``<stream>.<node>``; raise MessageFormatError otherwise."""
    prefix = stream + "."
    if not subject.startswith(prefix) or not _SUBJECT_TOKEN.match(subject[len(prefix) :]):
        raise MessageFormatError(f"subject {subject!r} is not {stream}.<node>")
    return subject[len(prefix) :]
