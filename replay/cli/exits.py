"""Exit codes of ``sandboxctl`` and the one mapping from an error to its code and line.

Why one place: every command raises the library's own errors and lets them
fly; which of them a user can act on, the one line they see and the code a
script tests are decided here, so that ``inspect`` and ``history`` cannot
disagree about what an unknown id is. ``EXIT_CODES`` is also the epilog of
``sandboxctl --help`` and the table of docs/CLI.md (a test compares them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable

import eventlog
from replay.errors import (
    InvalidInputError,
    NotSupportedError,
    PointOutOfRangeError,
    StateDirMissingError,
)
from replay.fleet.config import EXIT_DIVERGED, EXIT_UNREACHABLE
from replay.fleet.errors import FleetError
from replay.timespec import TimeSpecError
from sandbox.config import InvalidConfigError
from sandbox.errors import (
    AlreadyExistsError,
    AmbiguousPrefixError,
    InvalidIDError,
    InvalidTransitionError,
    NotFoundError,
    StoreError,
    UnknownEventError,
    UnsupportedVersionError,
)
from sandbox.metadata import InvalidMetadataError
from sandbox.snapshot import SnapshotError

#: The exit codes by name: ``replay.cli`` re-exports exactly these.
EXIT_NAMES = [
    "EXIT_AMBIGUOUS",
    "EXIT_CODES",
    "EXIT_CORRUPT",
    "EXIT_DIVERGED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_LOCKED",
    "EXIT_NOT_FOUND",
    "EXIT_NO_STATE_DIR",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
]

__all__ = [
    "DEBUG_ENV",
    *EXIT_NAMES,
    "PROG",
    "CLIError",
    "classify",
    "run_command",
]

PROG = "sandboxctl"
DEBUG_ENV = "SANDBOXCTL_DEBUG"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_STATE_DIR = 3
EXIT_NOT_FOUND = 4
EXIT_AMBIGUOUS = 5
EXIT_CORRUPT = 6
EXIT_INVALID = 7
EXIT_LOCKED = 8
EXIT_UNSUPPORTED = 9
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILED: "verify found a problem, or a generic failure",
    EXIT_USAGE: "usage error (bad option or argument)",
    EXIT_NO_STATE_DIR: "state dir missing",
    EXIT_NOT_FOUND: "not found (unknown id)",
    EXIT_AMBIGUOUS: "ambiguous id prefix",
    EXIT_CORRUPT: "corrupt log",
    EXIT_INVALID: "invalid input (bad pod config JSON, bad id, illegal transition, bad time, "
    "out-of-range number, input too large)",
    EXIT_LOCKED: "log locked by another writer (after waiting --lock-timeout)",
    EXIT_UNSUPPORTED: "not supported (yet)",
    EXIT_UNREACHABLE: "NATS unreachable (--nats; ship: for --give-up-after seconds)",
    EXIT_DIVERGED: "ship: the stream holds a different history for this node",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C; follow ends with 0)",
}


class CLIError(Exception):
    """A user-facing failure: one line on stderr and this exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def exit_codes_text() -> str:
    """The ``exit codes:`` block of ``sandboxctl --help``."""
    lines = ["exit codes:"]
    lines += [f"  {code:<3}  {text}" for code, text in EXIT_CODES.items()]
    return "\n".join(lines)


def _fleet_code(exc: FleetError) -> int:
    # replay.fleet.commands imports the shipper (asyncio); only a fleet error,
    # which only a fleet command can raise, needs it.
    from replay.fleet.commands import fleet_exit_code

    return fleet_exit_code(exc)


def classify(exc: BaseException) -> tuple[int, str] | None:
    """Exit code and one-line message for an error the user can act on (None: a bug)."""
    if isinstance(exc, CLIError):
        return exc.code, str(exc)
    if isinstance(exc, FleetError):
        return _fleet_code(exc), str(exc)
    if isinstance(exc, StateDirMissingError):
        return EXIT_NO_STATE_DIR, str(exc)
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND, str(exc)
    if isinstance(exc, AmbiguousPrefixError):
        return EXIT_AMBIGUOUS, str(exc)
    if isinstance(exc, eventlog.CorruptLogError):
        return EXIT_CORRUPT, str(exc) + " (run 'sandboxctl verify' for a full report)"
    if isinstance(exc, eventlog.LogLockedError):
        return EXIT_LOCKED, str(exc)
    if isinstance(exc, NotSupportedError):
        return EXIT_UNSUPPORTED, str(exc)
    if isinstance(exc, eventlog.RecordTooLargeError):
        # The event holding the sandbox (its config, labels, annotations) is
        # bigger than one log record may be: the input is too large.
        return EXIT_INVALID, f"too large to store: {exc} (one event is at most that many bytes)"
    if isinstance(exc, eventlog.KeyRequiredError):
        return EXIT_INVALID, f"{exc}; give --key-file"
    if isinstance(
        exc,
        InvalidIDError
        | InvalidTransitionError
        | InvalidConfigError
        | InvalidMetadataError
        | AlreadyExistsError
        | InvalidInputError
        | PointOutOfRangeError
        | TimeSpecError,
    ):
        return EXIT_INVALID, str(exc)
    if isinstance(exc, UnsupportedVersionError | UnknownEventError):
        return EXIT_FAILED, f"{exc} (this sandboxctl is older than the log's writer)"
    if isinstance(exc, SnapshotError | StoreError | eventlog.EventLogError):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, PermissionError):
        return EXIT_FAILED, f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return EXIT_FAILED, f"{exc.strerror or exc}{where}"
    return None


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command, turning what it raises into an exit code and one line on stderr."""
    try:
        return func(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): not an error worth a message.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        known = classify(exc)
        if known is None:
            if os.environ.get(DEBUG_ENV):
                raise
            sys.stderr.write(
                f"{PROG}: error: internal error: {type(exc).__name__}: {exc} "
                f"(set {DEBUG_ENV}=1 for a traceback)\n"
            )
            return EXIT_FAILED
        code, message = known
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return code
