"""The Store's read API over a Projection, written once.

``get`` / ``[]`` / ``in`` / ``len`` / ``iter`` / ``list`` with prefix lookup
answer the same way for the live ``sandbox.store.Store`` and for a
read-only view of a past state (``replay.view.StoreView``); they differ
only in how they reach the projection. A class mixes ``Reads`` in and says:

``_read_projection()``
    the projection to answer from;
``_read_guard()``
    what to hold while reading it: the Store's short read lock (never its
    command lock, so a read never waits behind an fsync), or nothing for a
    view no writer shares;
``_not_found_where()``
    text added to ``[]``'s NotFoundError (a view says which seq it is at).

``len`` reads the projection without the guard (one dict length).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

from sandbox.errors import AmbiguousPrefixError, InvalidIDError, NotFoundError
from sandbox.projection import Projection
from sandbox.sandbox import Sandbox
from sandbox.status import State

__all__ = ["NO_GUARD", "Reads", "check_id_type"]

#: The guard of a reader no writer shares.
NO_GUARD: AbstractContextManager[None] = nullcontext()


def check_id_type(id_or_prefix: object) -> str:
    """``id_or_prefix`` itself; InvalidIDError unless it is a str."""
    if not isinstance(id_or_prefix, str):
        raise InvalidIDError(f"sandbox id must be a str, got {type(id_or_prefix).__name__}")
    return id_or_prefix


class Reads:
    """The read API; see the module docstring for what a subclass provides."""

    __slots__ = ()

    def _read_projection(self) -> Projection:
        raise NotImplementedError

    def _read_guard(self) -> AbstractContextManager[object]:
        raise NotImplementedError

    def _not_found_where(self) -> str:
        return ""

    def _resolve(self, id_or_prefix: object) -> str:
        """Full id (NotFoundError / AmbiguousPrefixError / InvalidIDError)."""
        checked = check_id_type(id_or_prefix)
        with self._read_guard():
            return self._read_projection().resolve(checked)

    def get(self, id_or_prefix: str) -> Sandbox | None:
        """The sandbox for an id or unique prefix; None if there is none (the seed's
        Get). Ambiguous prefix: AmbiguousPrefixError; empty/non-str: InvalidIDError."""
        check_id_type(id_or_prefix)
        with self._read_guard():
            proj = self._read_projection()
            try:
                sandbox_id = proj.resolve(id_or_prefix)
            except NotFoundError:
                return None
            return proj.sandbox(sandbox_id)

    def __getitem__(self, id_or_prefix: str) -> Sandbox:
        sb = self.get(id_or_prefix)
        if sb is None:
            raise NotFoundError(
                f"no sandbox with id or id prefix {id_or_prefix!r}{self._not_found_where()}"
            )
        return sb

    def __contains__(self, id_or_prefix: object) -> bool:
        if not isinstance(id_or_prefix, str):
            return False
        try:
            return self.get(id_or_prefix) is not None
        except (InvalidIDError, AmbiguousPrefixError):
            return False

    def __len__(self) -> int:
        return len(self._read_projection())

    def __iter__(self) -> Iterator[str]:
        """The ids, in add order (a copy taken now)."""
        with self._read_guard():
            return iter(self._read_projection().ids())

    def count_by_state(self) -> dict[State, int]:
        """Sandboxes per state now: one pass under the guard, no Sandbox built
        (metrics read it when scraped, so commands pay nothing for it)."""
        counts = dict.fromkeys(State, 0)
        with self._read_guard():
            proj = self._read_projection()
            for sandbox_id in proj.ids():
                counts[proj.state_of(sandbox_id)] += 1
        return counts

    def list(self) -> list[Sandbox]:
        """Every sandbox, in add order (the seed's List)."""
        with self._read_guard():
            return self._read_projection().sandboxes()
