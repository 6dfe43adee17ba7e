"""Where the local history starts (``HISTORY``) and how far it was shipped (``SHIPPED``).

Why these files exist: compaction (``eventlog.compact``) removes the oldest
segments, so a compacted log no longer starts at seq 1. Without a record of
that, a missing head is indistinguishable from an attacker deleting
segments ("history head removed", an error). ``HISTORY`` is that record: the
first seq still kept here and the chain digest just before it. Readers and
``verify`` then start the chain at that digest, so the kept first segment's
``prev_digest`` must equal it (a forged ``HISTORY`` does not chain). On a
keyed log the record also carries a MAC under the log's key: whoever lacks
the key can neither delete the head nor write the record that would excuse
it.

``SHIPPED`` is written by a shipper (``replay.fleet``): the last seq a
remote store acknowledged and its digest. Compaction refuses to drop
records above it (unless forced): a shipping node only lets go of history
that exists elsewhere.

Both are small text files (FORMAT.md, "Compaction"), replaced atomically
by ``eventlog.compact`` (temp file, fsync, rename, directory fsync) and read through
``eventlog.files`` (no link, no FIFO), with a crc over their lines so a torn
or edited file is an error, not a misread.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib

import attrs

from .errors import CorruptLogError
from .files import read_file
from .format import DIGEST_SIZE

__all__ = [
    "HISTORY_NAME",
    "SHIPPED_NAME",
    "History",
    "Shipped",
    "encode_history",
    "encode_shipped",
    "history_mac",
    "load_history",
    "load_shipped",
]

HISTORY_NAME = "HISTORY"
SHIPPED_NAME = "SHIPPED"
_HISTORY_MAGIC = "sbx-eventlog-history 1"
_SHIPPED_MAGIC = "sbx-eventlog-shipped 1"
#: Both files are a few hundred bytes; anything much larger is not ours.
_MAX_BYTES = 1 << 16


@attrs.frozen
class History:
    """The start of the local history: records before ``first_seq`` were compacted.

    ``prev_digest`` is the chain digest after ``first_seq - 1``; ``archive``
    the directory the removed segments were moved to ("" if deleted);
    ``shipped_seq`` the shipped seq that gated the compaction (0: none);
    ``mac`` the record's MAC on a keyed log (b"" on an unkeyed one).
    """

    first_seq: int
    prev_digest: bytes
    archive: str = ""
    shipped_seq: int = 0
    mac: bytes = b""

    def where(self) -> str:
        """Where the history before ``first_seq`` went, for notes and errors."""
        places = []
        if self.archive:
            places.append(f"archived in {self.archive}")
        if self.shipped_seq:
            places.append(f"shipped to the fleet up to seq {self.shipped_seq}")
        return "; ".join(places) if places else "removed"

    def note(self) -> str:
        return f"history before seq {self.first_seq} is not local (compacted; {self.where()})"


@attrs.frozen
class Shipped:
    """The last seq a remote store acknowledged, and the chain digest after it."""

    seq: int
    digest: bytes


def _body(history: History) -> str:
    return (
        f"{_HISTORY_MAGIC}\n"
        f"first_seq {history.first_seq}\n"
        f"prev_digest {history.prev_digest.hex()}\n"
        f"archive {json.dumps(history.archive)}\n"
        f"shipped_seq {history.shipped_seq}\n"
    )


def history_mac(history: History, key: bytes) -> bytes:
    """blake2b-256 under the log's key over the record's lines before ``mac``."""
    return hashlib.blake2b(_body(history).encode(), digest_size=DIGEST_SIZE, key=key).digest()


def _with_crc(text: str) -> bytes:
    data = text.encode()
    return data + f"crc {zlib.crc32(data):08x}\n".encode()


def encode_history(history: History) -> bytes:
    mac = history.mac.hex() if history.mac else "-"
    return _with_crc(_body(history) + f"mac {mac}\n")


def encode_shipped(shipped: Shipped) -> bytes:
    return _with_crc(f"{_SHIPPED_MAGIC}\nseq {shipped.seq}\ndigest {shipped.digest.hex()}\n")


def _fields(path: str, magic: str, names: tuple[str, ...]) -> dict[str, str] | None:
    """The checked ``name value`` lines of a record file; None when there is none."""
    try:
        data = read_file(path)
    except FileNotFoundError:
        return None

    def bad(why: str) -> CorruptLogError:
        return CorruptLogError(path, 0, None, f"bad {os.path.basename(path)} record: {why}")

    if len(data) > _MAX_BYTES:
        raise bad("too large")
    body, sep, tail = data.rpartition(b"crc ")
    if not sep or tail.strip() != f"{zlib.crc32(body):08x}".encode() or not tail.endswith(b"\n"):
        raise bad("crc does not match (torn or edited)")
    try:
        lines = body.decode().split("\n")
    except UnicodeDecodeError:
        raise bad("not UTF-8") from None
    if lines[0] != magic or lines[-1] != "" or len(lines) != len(names) + 2:
        raise bad("unknown layout or version")
    out: dict[str, str] = {}
    for name, line in zip(names, lines[1:-1], strict=True):
        got, _, value = line.partition(" ")
        if got != name:
            raise bad(f"expected {name!r}, found {got!r}")
        out[name] = value
    return out


def _digest(path: str, text: str) -> bytes:
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != DIGEST_SIZE:
        raise CorruptLogError(path, 0, None, f"bad digest {text[:80]!r}")
    return digest


def _seq(path: str, text: str, least: int) -> int:
    if not text.isdigit() or int(text) < least or int(text) >= 2**64:
        raise CorruptLogError(path, 0, None, f"bad seq {text[:40]!r}")
    return int(text)


def load_history(directory: str) -> History | None:
    """The directory's ``HISTORY`` record (None: the log starts at seq 1).

    Raises CorruptLogError when the file is not a whole, well-formed record.
    """
    path = os.path.join(directory, HISTORY_NAME)
    names = ("first_seq", "prev_digest", "archive", "shipped_seq", "mac")
    f = _fields(path, _HISTORY_MAGIC, names)
    if f is None:
        return None
    try:
        archive = json.loads(f["archive"])
    except ValueError:
        archive = None
    if not isinstance(archive, str):
        raise CorruptLogError(path, 0, None, "bad archive field")
    mac = b"" if f["mac"] == "-" else _digest(path, f["mac"])
    return History(
        first_seq=_seq(path, f["first_seq"], 2),
        prev_digest=_digest(path, f["prev_digest"]),
        archive=archive,
        shipped_seq=_seq(path, f["shipped_seq"], 0),
        mac=mac,
    )


def load_shipped(directory: str) -> Shipped | None:
    """The directory's ``SHIPPED`` record (None: this node was never shipped)."""
    path = os.path.join(directory, SHIPPED_NAME)
    f = _fields(path, _SHIPPED_MAGIC, ("seq", "digest"))
    if f is None:
        return None
    return Shipped(_seq(path, f["seq"], 0), _digest(path, f["digest"]))
