"""``with obj:`` for anything that has a ``close()``.

The log, its followers, the Store and the read-side tools all release a
resource (a lock, a thread, a file) in ``close()``; this mixin gives each of
them the same context-manager behaviour instead of a copy of it.
"""

from __future__ import annotations

from typing import Self


class Closing:
    """Mixin: ``__enter__`` returns the object, ``__exit__`` calls ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
