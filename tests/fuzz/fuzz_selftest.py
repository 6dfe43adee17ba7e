"""Deliberately broken targets, to check that the runner reports findings (not tests)."""

from __future__ import annotations

import time

SEED = b"seed"


def crashes(data: bytes) -> None:
    """An undocumented exception on the seed itself: found on the first input."""
    if data == SEED:
        raise IndexError("planted: index out of range")


def hangs(data: bytes) -> None:
    """Never returns in time on the seed: libFuzzer's per-input timeout must fire."""
    if data == SEED:
        time.sleep(3600)
