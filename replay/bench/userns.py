"""Whether this process runs as root of a user namespace rather than the real root.

``./dev bench`` (like ``./dev test``) re-runs a plain user under ``unshare
-Urm`` (scripts/as-root-in-userns): uid 0 there may create network
namespaces on paths it owns, but not write the machine's shared
/var/run/netns, so the rows that need that say so instead of erroring.
The same test as tests/support.py's ``in_user_namespace`` (the bench does
not import tests).
"""

from __future__ import annotations

__all__ = ["in_user_namespace"]

#: The initial user namespace maps the whole uid range onto itself.
_INITIAL_UID_MAP = ["0", "0", "4294967295"]


def in_user_namespace(uid_map: str = "/proc/self/uid_map") -> bool:
    """True when uid 0 here is not the machine's root (False if unreadable)."""
    try:
        with open(uid_map, encoding="ascii") as f:
            return f.read().split() != _INITIAL_UID_MAP
    except OSError:
        return False
