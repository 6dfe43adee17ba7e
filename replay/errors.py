"""Errors the read-side tooling raises on purpose (the sandbox and eventlog
packages raise their own; the CLI maps all of them to exit codes)."""

from __future__ import annotations


class ReplayError(Exception):
    """Base class of the replay package's own errors."""


class StateDirMissingError(ReplayError, FileNotFoundError):
    """A read-only operation was pointed at a state dir that does not exist.

    Reads never create a state dir: a typo in ``--state-dir`` must not look
    like an empty, healthy store.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"state dir {path} does not exist")
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class NotSupportedError(ReplayError):
    """An option accepted for a later release (``--nats``) but not working yet."""


class InvalidInputError(ReplayError, ValueError):
    """User input that cannot be used: a bad pod config, a bad time, a bad key file."""


class PointOutOfRangeError(ReplayError, ValueError):
    """A seq beyond the end of the log (the state "after event 900" of a
    500-event log does not exist yet; answering with the state at 500 would
    hide a wrong number)."""
