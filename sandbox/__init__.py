"""containerd/cri's sandbox store, event-sourced.

Every change is an event in a crash-safe log (``eventlog``); the ``Store`` is
a projection rebuilt by replay; network namespaces are made to match the log
by an idempotent reconciler. See DESIGN.md "sandbox: the public API".
"""

from sandbox.config import (
    DNSConfig,
    Int64Value,
    LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext,
    NamespaceOption,
    PodSandboxConfig,
    PodSandboxMetadata,
    PortMapping,
    Protocol,
    SELinuxOption,
)
from sandbox.errors import (
    AlreadyExistsError,
    AmbiguousPrefixError,
    ClosedNetNSError,
    InvalidConfigError,
    InvalidEventError,
    InvalidIDError,
    InvalidMetadataError,
    InvalidTransitionError,
    NetNSSetupError,
    NotFoundError,
    SnapshotError,
    StoreClosedError,
    StoreError,
    UnknownEventError,
    UnsafePathError,
    UnsupportedVersionError,
)
from sandbox.metadata import Metadata
from sandbox.netns import DEFAULT_NETNS_DIR, NetNS
from sandbox.ownership import NetNSState, OwnedNetNS
from sandbox.projection import Projection
from sandbox.reconciler import ReconcileReport
from sandbox.sandbox import Sandbox
from sandbox.status import State, Status
from sandbox.store import Store

__all__ = [
    "DEFAULT_NETNS_DIR",
    "AlreadyExistsError",
    "AmbiguousPrefixError",
    "ClosedNetNSError",
    "DNSConfig",
    "Int64Value",
    "InvalidConfigError",
    "InvalidEventError",
    "InvalidIDError",
    "InvalidMetadataError",
    "InvalidTransitionError",
    "LinuxPodSandboxConfig",
    "LinuxSandboxSecurityContext",
    "Metadata",
    "NamespaceOption",
    "NetNS",
    "NetNSSetupError",
    "NetNSState",
    "NotFoundError",
    "OwnedNetNS",
    "PodSandboxConfig",
    "PodSandboxMetadata",
    "PortMapping",
    "Projection",
    "Protocol",
    "ReconcileReport",
    "SELinuxOption",
    "Sandbox",
    "SnapshotError",
    "State",
    "Status",
    "Store",
    "StoreClosedError",
    "StoreError",
    "UnknownEventError",
    "UnsafePathError",
    "UnsupportedVersionError",
]
