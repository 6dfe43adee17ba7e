"""The ``log`` target's input: a few named files of a log directory, in one byte string.

Why a container and not just one segment's bytes: the interesting damage is
not only inside a segment but in the set of segments - a segment renamed to
another seq, a log split in two at a wrong place, a missing or extra
segment. The fuzzer mutates the names as freely as the contents.

Layout (this container's own, nothing of the log's format)::

    byte 0        control: selects the ``from_seq`` of the partial read
    then up to MAX_FILES entries, each:
      1 byte      name length n
      n bytes     file name (sanitised, see ``_clean_name``)
      4 bytes     content length L, little-endian
      L bytes     content (the last entry takes whatever is left when short)

A short or malformed tail is read as far as it goes; decoding never fails,
so every input the fuzzer makes is a log directory.
"""

from __future__ import annotations

import os
import re
import struct

import attrs

__all__ = ["MAX_FILES", "LogCase", "decode", "encode", "read_dir", "write_dir"]

#: More files than this add nothing a mutation of fewer would not find.
MAX_FILES = 4
_LEN = struct.Struct("<I")
_NAME_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@attrs.frozen
class LogCase:
    """A decoded input: the directory's files (name -> bytes) and the control byte."""

    control: int
    files: tuple[tuple[str, bytes], ...]


def _clean_name(raw: bytes) -> str | None:
    """A safe file name from fuzzed bytes, or None (the entry is dropped).

    Only plain names inside the directory: no separators, no ``.``/``..``,
    nothing the shell or the file system would read as something else.
    """
    name = raw.decode("latin-1")
    if not _NAME_OK.match(name) or name in (".", ".."):
        return None
    return name


def decode(data: bytes) -> LogCase:
    """The files an input describes; later entries with a name already used are dropped."""
    if not data:
        return LogCase(0, ())
    control = data[0]
    pos = 1
    files: dict[str, bytes] = {}
    entries = 0
    while pos < len(data) and entries < MAX_FILES:
        entries += 1
        n = data[pos]
        raw_name = data[pos + 1 : pos + 1 + n]
        pos += 1 + n
        head = data[pos : pos + _LEN.size]
        pos += _LEN.size
        length = _LEN.unpack(head.ljust(_LEN.size, b"\0"))[0]
        content = data[pos : pos + length]
        pos += length
        name = _clean_name(raw_name)
        if name is not None and name not in files:
            files[name] = content
    return LogCase(control, tuple(files.items()))


def encode(files: list[tuple[str, bytes]], control: int = 0) -> bytes:
    """The input that decodes to ``files`` (used to make seeds from real logs)."""
    if len(files) > MAX_FILES:
        raise ValueError(f"at most {MAX_FILES} files, got {len(files)}")
    out = bytearray([control & 0xFF])
    for name, content in files:
        raw = name.encode("ascii")
        if _clean_name(raw) != name:
            raise ValueError(f"not a plain file name: {name!r}")
        out += bytes([len(raw)]) + raw + _LEN.pack(len(content)) + content
    return bytes(out)


def write_dir(directory: str, files: tuple[tuple[str, bytes], ...]) -> None:
    """Create ``directory`` (must not exist) holding ``files``."""
    os.mkdir(directory)
    for name, content in files:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)


def read_dir(directory: str, *, suffix: str = "") -> list[tuple[str, bytes]]:
    """The regular files of ``directory`` (ending in ``suffix``), sorted by name."""
    out: list[tuple[str, bytes]] = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith(suffix) and os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                out.append((name, f.read()))
    return out
