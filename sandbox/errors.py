"""The store's errors. Every message names the id (or path) and what was expected."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the sandbox store raises on purpose."""


class AlreadyExistsError(StoreError):
    """An id or a name is already reserved by another sandbox."""


class NotFoundError(StoreError, KeyError):
    """No sandbox has this id (or unique id prefix)."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class AmbiguousPrefixError(StoreError, KeyError):
    """An id prefix matches more than one sandbox."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidIDError(StoreError, ValueError):
    """An id or a name is empty, too long, or holds a forbidden character."""


class InvalidTransitionError(StoreError):
    """A status change the state machine does not allow."""


class UnsupportedVersionError(StoreError):
    """A metadata blob or an event has a schema version this code does not know."""


class UnknownEventError(StoreError):
    """An event type this code does not know."""


class ClosedNetNSError(StoreError):
    """A network namespace path is not a live namespace."""


class UnsafePathError(StoreError, ValueError):
    """A path the store refuses to touch: outside its netns_dir, a symlink, a
    directory, or a file with content."""


class InvalidConfigError(StoreError, ValueError):
    """A CRI config (or a JSON document meant to be one) has a wrong type or value."""


class InvalidMetadataError(StoreError, ValueError):
    """A metadata blob (or event payload) is not valid JSON or not shaped like Metadata."""


class InvalidEventError(StoreError):
    """An event of a known type and version lacks a field or has a wrong type."""


class SnapshotError(StoreError):
    """A snapshot file is unreadable, corrupt, or not of this format."""


class StoreClosedError(StoreError):
    """A command was given to a store after ``close()``."""


class NetNSSetupError(StoreError):
    """``add(create_netns=True)`` could not make the sandbox's network namespace.

    All or nothing (containerd's RunPodSandbox): the sandbox is not in the store
    any more - the log keeps the attempt, the failure and the delete.
    """


class NetNSDirMismatchError(StoreError, ValueError):
    """An open named a netns dir other than the one the store's log recorded."""
