"""How big and how often ``sandboxctl bench`` measures: the full, quick and test sizes.

Why one place: a suite's sizes decide both what it measures and the names
of its rows (``read 1,000,000 records``), and the smoke test checks every
row by name under the tiny plan; keeping all three columns side by side
makes a size change one edit that every suite and test sees.
"""

from __future__ import annotations

from typing import Any

import attrs

from .openscale import FULL_SIZES, QUICK_SIZES

__all__ = ["PLAN_NAMES", "Plan"]

#: The columns of ``_PLAN_SIZES``.
PLAN_NAMES = ("full", "quick", "tiny")
#: Every field of a Plan but its name: (full, quick, tiny). quick: under a
#: minute on 2 cores (CI); tiny: seconds, for the smoke test (every row,
#: figures meaningless; no `ip netns add` in the shared /var/run/netns).
_PLAN_SIZES: dict[str, tuple[Any, Any, Any]] = {
    "reps": (5, 3, 2),
    "reps_big": (3, 3, 1),
    "big": (500_000, 500_000, 500_000),
    "append_one": (2_000, 300, 30),
    "append_threads": (32_000, 3_200, 320),
    "threads": (16, 16, 16),
    "read": (1_000_000, 50_000, 3_000),
    "store_add": (2_000, 300, 30),
    "store_replay": (1_000_000, 50_000, 3_000),
    "es_events": (10_000, 1_000, 200),
    "open_sizes": (FULL_SIZES, QUICK_SIZES, (200, 500, 1_000)),
    "open_live": ((1_000, 100_000), (1_000, 20_000), (100,)),
    "verify_audit": (True, True, True),
    "netns": (1_000, 200, 8),
    "ip_netns": (100, 20, 0),
    "fleet_quick": (False, True, True),
    "fleet_reps": (3, 1, 1),
}


@attrs.frozen
class Plan:
    """How big and how often: one place for the full, quick and test sizes.

    ``reps`` repetitions per row (medians; >= 3 except in the test plan),
    ``reps_big`` for the cases of ``big`` items or more (the 1M-event ones,
    where one repetition takes seconds to tens of seconds).
    """

    name: str
    reps: int
    reps_big: int
    big: int
    append_one: int
    append_threads: int
    threads: int
    read: int
    store_add: int
    store_replay: int
    es_events: int
    open_sizes: tuple[int, ...]
    #: live sandboxes (every event an add) for the open-from-snapshot rows
    open_live: tuple[int, ...]
    verify_audit: bool
    netns: int
    ip_netns: int
    fleet_quick: bool
    fleet_reps: int

    @classmethod
    def full(cls) -> Plan:
        return cls.named("full")

    @classmethod
    def quick(cls) -> Plan:
        """Under a minute on 2 cores (CI): smaller sizes, 3 repetitions (fleet: 1)."""
        return cls.named("quick")

    @classmethod
    def tiny(cls) -> Plan:
        """Seconds, for the smoke test: every row, figures meaningless."""
        return cls.named("tiny")

    @classmethod
    def named(cls, name: str) -> Plan:
        if name not in PLAN_NAMES:
            raise KeyError(name)
        column = PLAN_NAMES.index(name)
        return cls(name=name, **{field: sizes[column] for field, sizes in _PLAN_SIZES.items()})

    def reps_for(self, size: int) -> int:
        return self.reps_big if size >= self.big else self.reps
