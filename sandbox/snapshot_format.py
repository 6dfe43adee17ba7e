"""The bytes of a snapshot file: header, log position, checksum and MAC (the layout
is drawn in ``sandbox.snapshot``'s docstring, which re-exports ``encode`` and ``mac_key``).

``encode`` and ``assemble`` write the layout; ``check_mac`` checks the MAC of bytes
``sandbox.snapshot.decode_info`` is reading; ``with_log_position`` adds the log
position to a version 1 file when ``write_snapshot`` can find it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import msgpack

import eventlog
from sandbox.errors import SnapshotError
from sandbox.projection import Projection
from sandbox.snapshot_files import MAGIC

__all__ = [
    "CHECKSUM_BYTES",
    "FLAG_MAC",
    "FORMAT_VERSION",
    "HEADER",
    "MAC_BYTES",
    "NAME_LEN",
    "OFFSET",
    "V1",
    "assemble",
    "check_mac",
    "encode",
    "mac_key",
    "position_bytes",
    "with_log_position",
]

#: Version written when the log position is known; ``V1`` (no position) otherwise.
FORMAT_VERSION = 2
V1 = 1
HEADER = struct.Struct(">8sHHQQH")
NAME_LEN = struct.Struct(">H")
OFFSET = struct.Struct(">Q")
CHECKSUM_BYTES = 32
#: flags bit 0: a MAC under the log's key follows the checksum.
FLAG_MAC = 1
MAC_BYTES = 32
# blake2b personalisation: a snapshot MAC can never pass for a record digest.
_MAC_PERSON = b"sbx-snapshot-mac"


def mac_key(key: bytes) -> bytes:
    """The blake2b key for snapshot MACs, derived from the log's key (any length)."""
    return hashlib.blake2b(key, digest_size=32, person=_MAC_PERSON).digest()


def _mac(data: bytes | memoryview, key: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=MAC_BYTES, key=mac_key(key)).digest()


def position_bytes(position: eventlog.Position) -> bytes:
    name = position.segment.encode("ascii")
    return NAME_LEN.pack(len(name)) + name + OFFSET.pack(position.offset)


def assemble(
    seq: int,
    digest: bytes,
    position: eventlog.Position | None,
    body: bytes,
    key: bytes | None = None,
) -> bytes:
    version = V1 if position is None else FORMAT_VERSION
    where = b"" if position is None else position_bytes(position)
    flags = 0 if key is None else FLAG_MAC
    data = HEADER.pack(MAGIC, version, flags, seq, len(body), len(digest)) + digest + where + body
    data += hashlib.blake2b(data, digest_size=CHECKSUM_BYTES).digest()
    return data if key is None else data + _mac(data, key)


def encode(
    projection: Projection,
    digest: bytes,
    position: eventlog.Position | None = None,
    *,
    key: bytes | None = None,
) -> bytes:
    """The bytes of a snapshot file for ``projection`` whose log head is ``digest``.

    ``position`` is where record ``projection.last_seq`` ends in the log
    (``eventlog.end_position``; its seq and digest must be the snapshot's).
    Without one, ``write_snapshot`` records the log's end position if the
    log still ends at that digest. ``key``: the log's key; the snapshot then
    carries a MAC under it (a keyed log's loader ignores a snapshot without one).
    """
    if position is not None and (position.seq != projection.last_seq or position.digest != digest):
        raise ValueError(
            f"position is at seq {position.seq}, the projection at seq {projection.last_seq} "
            "(or their digests differ)"
        )
    body: bytes = msgpack.packb(projection.to_snapshot(), use_bin_type=True)
    return assemble(projection.last_seq, digest, position, body, key)


def with_log_position(directory: str, data: bytes) -> bytes:
    """``data`` (version 1) with the log's end position added, when the log ends at it.

    A MAC'd snapshot is left as it is: adding the position would need the key.
    """
    try:
        magic, version, flags, seq, body_len, digest_len = HEADER.unpack_from(data)
    except struct.error:
        return data
    if magic != MAGIC or version != V1 or flags != 0:
        return data
    digest = data[HEADER.size : HEADER.size + digest_len]
    end = len(data) - CHECKSUM_BYTES
    body = data[HEADER.size + digest_len : end]
    if len(body) != body_len:
        return data
    position = eventlog.end_position(directory, seq, digest)
    if position is None:
        return data
    return assemble(seq, digest, position, body)


def check_mac(data: memoryview, flags: int, key: bytes | None) -> tuple[memoryview, bool]:
    """``(data without its MAC, authenticated)``; SnapshotError if ``key`` demands one."""
    if flags & ~FLAG_MAC:
        raise SnapshotError(f"unknown flags {flags:#06x}")
    if not flags & FLAG_MAC:
        if key is not None:
            raise SnapshotError("no MAC; on a keyed log a snapshot must carry one")
        return data, False
    if len(data) < HEADER.size + CHECKSUM_BYTES + MAC_BYTES:
        raise SnapshotError(f"too short ({len(data)} bytes) to carry a MAC")
    signed, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if key is None:
        return signed, False  # nothing to check it with: a cache, as unkeyed
    if not hmac.compare_digest(_mac(signed, key), mac):
        raise SnapshotError("MAC does not verify under the log's key")
    return signed, True
