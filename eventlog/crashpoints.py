"""Named crash points for crash-recovery testing.

A crash point is a named place in a write path where a test (or a user's
crash harness) can make the process die. They cost one global boolean test
when nothing is armed:

    from eventlog import crashpoints
    if crashpoints.ARMED:
        crashpoints.hit("append.after_write")

Arming is read once, at import, from the environment variable
``SANDBOX_CRASHPOINT``::

    SANDBOX_CRASHPOINT=<point>[:<action>[:<count>]]

``point`` is a crash point name (see ``POINTS``) or ``*`` for any point;
``action`` is ``kill`` (SIGKILL, the default), ``exit`` (``os._exit(86)``)
or ``raise`` (``CrashPointHit``, for in-process tests); ``count`` is the
1-based hit on which to act (default 1). Before acting, the process writes
``crashpoint <point> hit <n>`` to stderr so a harness can see where it died.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "SANDBOX_CRASHPOINT"

#: Every crash point in the code, with where it is. Code that calls ``hit``
#: with a name not listed here is a bug (``hit`` raises).
POINTS: dict[str, str] = {}


class CrashPointHit(RuntimeError):
    """Raised at an armed crash point whose action is ``raise``."""


def register(name: str, where: str) -> str:
    """Declare a crash point; returns the name so it can be kept in a constant."""
    POINTS[name] = where
    return name


def _parse(spec: str) -> tuple[str, str, int]:
    parts = spec.split(":")
    point = parts[0]
    action = parts[1] if len(parts) > 1 and parts[1] else "kill"
    count = int(parts[2]) if len(parts) > 2 and parts[2] else 1
    if action not in ("kill", "exit", "raise"):
        raise ValueError(f"{ENV}: unknown action {action!r} (expected kill, exit or raise)")
    if count < 1:
        raise ValueError(f"{ENV}: hit count must be >= 1, got {count}")
    return point, action, count


_spec = os.environ.get(ENV, "")
ARMED: bool = bool(_spec)
_point, _action, _count = _parse(_spec) if _spec else ("", "kill", 1)
_hits = 0


def arm(point: str, action: str = "raise", count: int = 1) -> None:
    """Arm a crash point in this process (tests); ``disarm`` undoes it."""
    global ARMED, _point, _action, _count, _hits
    _point, _action, _count = _parse(f"{point}:{action}:{count}")
    _hits = 0
    ARMED = True


def disarm() -> None:
    global ARMED, _hits
    ARMED = False
    _hits = 0


def hit(name: str) -> None:
    """Called at a crash point; acts only when this point is the armed one."""
    global _hits
    if name not in POINTS:
        raise KeyError(f"unregistered crash point {name!r}")
    if not ARMED or (_point != "*" and _point != name):
        return
    _hits += 1
    if _hits != _count:
        return
    sys.stderr.write(f"crashpoint {name} hit {_hits}\n")
    sys.stderr.flush()
    if _action == "raise":
        raise CrashPointHit(name)
    if _action == "exit":
        os._exit(86)
    os.kill(os.getpid(), signal.SIGKILL)
