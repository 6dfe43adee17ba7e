"""Why ``add(create_netns=True)`` failed, said in one line a person can act on.

Why a module of its own: the reconciler's errors are written for a log (every
path and step), and a refused ``sandboxctl run --netns`` used to print all of
them - hundreds of characters that never said what was missing. The common
cause is a process without CAP_SYS_ADMIN (a plain user), whose fix is known:
run as root, or rootless in a user + mount namespace (``unshare -Urm``) with a
netns dir it owns. Any other cause is reported as the first error, shortened.
"""

from __future__ import annotations

__all__ = ["CAP_SYS_ADMIN", "has_cap_sys_admin", "reason"]

#: The capability bit unshare(CLONE_NEWNET) and mount(2) need (linux/capability.h).
CAP_SYS_ADMIN = 21

_MAX_DETAIL = 200


def has_cap_sys_admin(status_path: str = "/proc/self/status") -> bool:
    """Whether this process holds CAP_SYS_ADMIN in its effective set (in its own user
    namespace: under ``unshare -Urm`` it does). Unknown (no /proc) reads as True, so
    the caller falls back to the raw error rather than a wrong hint."""
    try:
        with open(status_path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def reason(errors: tuple[tuple[str, str], ...], *, privileged: bool | None = None) -> str:
    """One line: what was missing (and how to run it) or the first error, shortened."""
    if privileged is None:
        privileged = has_cap_sys_admin()
    if not privileged:
        return (
            "a network namespace needs CAP_SYS_ADMIN, which this process lacks; "
            "run as root, or under 'unshare -Urm' with a netns dir it owns"
        )
    if not errors:
        return "the namespace was not live after reconcile"
    detail = " ".join(errors[0][1].split())
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 3] + "..."
    return detail
