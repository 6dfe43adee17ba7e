"""Argument helpers every ``sandboxctl`` command group shares.

``int_at_least`` builds an argparse ``type=`` for a whole number with a
lower bound (a seq, a count of runs); ``read_input`` reads a file the user
names (a pod config, a key) with a size bound; ``key_from_args`` reads the
chain key of ``--key-file`` the same way for every command that takes one.

Why bounded everywhere: DESIGN.md's "any malformed input is exit 7". A number
of 5,000 digits would reach Python's int-string limit, ``/dev/zero`` would be
read until memory runs out, and a FIFO with no writer would block ``open``
for ever; each is refused here, before it can cost anything.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable

from replay.errors import InvalidInputError

__all__ = [
    "KEY_FILE_LIMIT",
    "MAX_KEY_BYTES",
    "ArgumentRangeError",
    "int_at_least",
    "key_from_args",
    "read_input",
]

#: A chain key is 1 to 64 bytes (the HMAC key the writer takes).
MAX_KEY_BYTES = 64
#: How much of a key file is read: a key with a trailing newline or two fits;
#: anything bigger is not a key file.
KEY_FILE_LIMIT = 4096

#: An argparse number without an explicit maximum is still bounded: no count
#: or seq the CLI takes needs more than a signed 64-bit integer.
_DEFAULT_MAX = 2**63 - 1


class ArgumentRangeError(Exception):
    """A number on the command line beyond its bounds: invalid input (exit 7).

    Deliberately not a ValueError: argparse turns those into a usage error
    (exit 2), and ``replay.cli.main`` maps this one to exit 7, as DESIGN.md
    has it for "huge numbers".
    """


def _show(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def int_at_least(
    minimum: int,
    *,
    maximum: int = _DEFAULT_MAX,
    not_int: str,
    too_small: str,
    name: str = "number",
) -> Callable[[str], int]:
    """An argparse type: an int in ``minimum..maximum``.

    A word that is no int says ``"{not_int}: 'text'"`` (a usage error); a
    smaller number ``"{too_small}, got N"``; a larger one (``"{name} 'text' is out
    of range"``) - however many
    digits, never handed to ``int()`` past the bound's length - raises
    ``ArgumentRangeError`` (exit 7).
    """

    def parse(text: str) -> int:
        raw = text.strip()
        digits = raw.lstrip("+-").lstrip("0") or "0"
        if raw.isascii() and digits.isdigit() and len(digits) > len(str(maximum)):
            raise ArgumentRangeError(
                f"{name} {_show(text)} is out of range ({minimum} to {maximum})"
            )
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{not_int}: {_show(text)}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{too_small}, got {value}")
        if value > maximum:
            raise ArgumentRangeError(
                f"{name} {_show(text)} is out of range ({minimum} to {maximum})"
            )
        return value

    return parse


def read_input(path: str, *, limit: int, what: str, stdin: bool = False) -> bytes:
    """The bytes of the file ``path`` names, at most ``limit`` of them.

    ``-`` is standard input where the command documents it (``stdin``).
    Anything else must be a regular file: it is opened with O_NONBLOCK, so a
    FIFO without a writer cannot block the open, and refused after ``fstat``
    unless regular (a device such as /dev/zero, a FIFO, a directory). A file
    longer than ``limit`` is refused having read ``limit + 1`` bytes.
    Every refusal is an ``InvalidInputError`` (exit 7) naming ``what``.
    """
    if stdin and path == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise InvalidInputError(f"{what} {path} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
    if len(data) > limit:
        raise InvalidInputError(f"{what} {path} is larger than {limit} bytes")
    return data


def key_from_args(args: argparse.Namespace) -> bytes | None:
    """The chain key from ``--key-file``: the file's bytes, exactly, 1 to 64 of them.

    At most ``KEY_FILE_LIMIT`` bytes are read and only from a regular file
    (``--key-file /dev/zero`` or a FIFO ends at once with exit 7).
    """
    path = getattr(args, "key_file", None)
    if not path:
        return None
    key = read_input(path, limit=KEY_FILE_LIMIT, what="key file")
    if not 1 <= len(key) <= MAX_KEY_BYTES:
        raise InvalidInputError(
            f"key file {path} holds {len(key)} bytes; a key is 1 to {MAX_KEY_BYTES} bytes"
        )
    return key
