"""Argument helpers every ``sandboxctl`` command group shares.

``int_at_least`` builds an argparse ``type=`` for a whole number with a
lower bound (a seq, a count of runs); ``key_from_args`` reads the chain key
of ``--key-file`` the same way for every command that takes one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from replay.errors import InvalidInputError

__all__ = ["int_at_least", "key_from_args"]


def int_at_least(minimum: int, *, not_int: str, too_small: str) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum``.

    A word that is no int says ``"{not_int}: 'text'"``; a smaller number
    ``"{too_small}, got N"``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{not_int}: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{too_small}, got {value}")
        return value

    return parse


def key_from_args(args: argparse.Namespace) -> bytes | None:
    """The chain key from ``--key-file`` (1 to 64 bytes, as for every command)."""
    path = getattr(args, "key_file", None)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            key = f.read()
    except OSError as exc:
        raise InvalidInputError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if not 1 <= len(key) <= 64:
        raise InvalidInputError(f"key file {path} holds {len(key)} bytes; a key is 1 to 64 bytes")
    return key
