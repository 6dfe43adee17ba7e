"""containerd/cri's sandbox store, event-sourced.

Every change is an event in a crash-safe log (``eventlog``); the ``Store`` is
a projection rebuilt by replay; network namespaces are made to match the log
by an idempotent reconciler. See DESIGN.md "sandbox: the public API".
"""

from sandbox.config import (
    DNSConfig,
    HugepageLimit,
    IDMapping,
    Int64Value,
    LinuxContainerResources,
    LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext,
    NamespaceMode,
    NamespaceOption,
    PodSandboxConfig,
    PodSandboxMetadata,
    PortMapping,
    ProfileType,
    Protocol,
    SecurityProfile,
    SELinuxOption,
    SupplementalGroupsPolicy,
    UserNamespace,
    WindowsNamespaceOption,
    WindowsPodSandboxConfig,
    WindowsSandboxSecurityContext,
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
    NetNSDirMismatchError,
    NetNSSetupError,
    NotFoundError,
    SnapshotError,
    StoreClosedError,
    StoreError,
    UnknownEventError,
    UnsafePathError,
    UnsupportedVersionError,
)
from sandbox.logport import LogPort, MemoryLog
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
    "HugepageLimit",
    "IDMapping",
    "Int64Value",
    "InvalidConfigError",
    "InvalidEventError",
    "InvalidIDError",
    "InvalidMetadataError",
    "InvalidTransitionError",
    "LinuxContainerResources",
    "LinuxPodSandboxConfig",
    "LinuxSandboxSecurityContext",
    "LogPort",
    "MemoryLog",
    "Metadata",
    "NamespaceMode",
    "NamespaceOption",
    "NetNS",
    "NetNSDirMismatchError",
    "NetNSSetupError",
    "NetNSState",
    "NotFoundError",
    "OwnedNetNS",
    "PodSandboxConfig",
    "PodSandboxMetadata",
    "PortMapping",
    "ProfileType",
    "Projection",
    "Protocol",
    "ReconcileReport",
    "SELinuxOption",
    "Sandbox",
    "SecurityProfile",
    "SnapshotError",
    "State",
    "Status",
    "Store",
    "StoreClosedError",
    "StoreError",
    "SupplementalGroupsPolicy",
    "UnknownEventError",
    "UnsafePathError",
    "UnsupportedVersionError",
    "UserNamespace",
    "WindowsNamespaceOption",
    "WindowsPodSandboxConfig",
    "WindowsSandboxSecurityContext",
]
