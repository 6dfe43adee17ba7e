"""Sandbox ids and names: validation, prefix lookup, and the name registrar.

* ``validate_id``: a str of 1..``MAX_ID_LENGTH`` (128) characters with no
  whitespace, no control character, no ``/`` and no NUL. containerd's ids are
  64 hex digits; 128 leaves room for other schemes while keeping an id usable
  as a file name component (and ``/`` or NUL would make it a path, whitespace
  breaks every line-oriented tool an operator points at the log).
* ``validate_ids`` / ``validate_names``: the same checks over many values at
  once (a snapshot's 100,000 sandboxes), with the same first error.
* ``validate_name``: a str of 1..``MAX_NAME_LENGTH`` (1024) characters without
  NUL. containerd's names are ``<name>_<namespace>_<uid>_<attempt>``, at most a
  few hundred characters with Kubernetes' own limits.
* ``TruncIndex`` (containerd's truncindex): an exact id wins, a unique prefix
  resolves, an ambiguous one raises ``AmbiguousPrefixError``, an empty one
  ``InvalidIDError``. A set answers exact lookups; a sorted list (built
  lazily, then kept sorted with bisect) answers prefix lookups in O(log n),
  so a replay that adds a million ids never pays for keeping it sorted.
* ``Registrar`` (containerd's name registrar): names are reserved one to one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from sandbox.errors import AlreadyExistsError, AmbiguousPrefixError, InvalidIDError, NotFoundError

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_NAME_LENGTH",
    "Registrar",
    "TruncIndex",
    "validate_id",
    "validate_ids",
    "validate_name",
    "validate_names",
]

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 1024


def _show(value: str, limit: int = 80) -> str:
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} chars)"


def _text(value: object, what: str, max_length: int) -> str:
    """``value`` if it is a str of 1..``max_length`` characters, else ``InvalidIDError``."""
    if not isinstance(value, str):
        raise InvalidIDError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidIDError(f"{what} must not be empty")
    if len(value) > max_length:
        raise InvalidIDError(
            f"{what} {_show(value)} is {len(value)} characters; at most {max_length} allowed"
        )
    return value


def _plain_id(text: str) -> bool:
    """True if every character of ``text`` is printable ASCII other than space and '/'
    (the usual id: hex, ASCII word characters). A test of each character alone, so it
    holds for a concatenation of ids exactly when it holds for each: the bulk check."""
    return text.isascii() and text.isprintable() and " " not in text and "/" not in text


def _plain_name(text: str) -> bool:
    """True if ``text`` is ASCII without NUL (the usual name); per character, as above."""
    return text.isascii() and "\x00" not in text


def _joined(values: Sequence[object], max_length: int) -> str | None:
    """``values`` concatenated, if each is a str of 1..``max_length`` characters; else
    None (the single validator then finds and words the first error)."""
    if not values:
        return ""
    try:
        joined = "".join(values)  # type: ignore[arg-type]  # a non-str is a TypeError
    except TypeError:
        return None
    if min(map(len, values)) < 1 or max(map(len, values)) > max_length:  # type: ignore[arg-type]
        return None
    return joined


def validate_id(value: object) -> str:
    """Return ``value`` if it is a valid sandbox id, else raise ``InvalidIDError``."""
    value = _text(value, "sandbox id", MAX_ID_LENGTH)
    if _plain_id(value):
        return value
    for ch in value:
        if ch == "/" or ch.isspace() or not ch.isprintable():
            raise InvalidIDError(
                f"sandbox id {_show(value)} contains {ch!r}; "
                "expected no whitespace, '/', NUL or control characters"
            )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIDError(f"sandbox id {_show(value)} is not valid unicode text") from None
    return value


def validate_name(value: object) -> str:
    """Return ``value`` if it is a valid sandbox name, else raise ``InvalidIDError``."""
    value = _text(value, "sandbox name", MAX_NAME_LENGTH)
    if _plain_name(value):
        return value
    if "\x00" in value:
        raise InvalidIDError(f"sandbox name {_show(value)} contains NUL")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidIDError(f"sandbox name {_show(value)} is not valid unicode text") from None
    return value


def validate_ids(values: Sequence[object]) -> None:
    """``validate_id`` of each value, in order: raises what the first invalid one raises.

    The usual ids are checked together, at C speed, by the same character test
    ``validate_id`` starts with; anything that test does not pass is checked one
    by one, which decides and words the error.
    """
    joined = _joined(values, MAX_ID_LENGTH)
    if joined is None or not _plain_id(joined):
        for value in values:
            validate_id(value)


def validate_names(values: Sequence[object]) -> None:
    """``validate_name`` of each value, in order (as ``validate_ids``)."""
    joined = _joined(values, MAX_NAME_LENGTH)
    if joined is None or not _plain_name(joined):
        for value in values:
            validate_name(value)


class TruncIndex:
    """Resolve ids from unique prefixes (containerd's truncindex). Not thread-safe:
    the owner (the projection) serialises access."""

    __slots__ = ("_ids", "_sorted")

    def __init__(self) -> None:
        self._ids: set[str] = set()
        # None until the first prefix lookup: a replay adding many ids pays
        # for one sort at the end instead of an insort per id.
        self._sorted: list[str] | None = None

    def add(self, sandbox_id: str) -> None:
        if sandbox_id in self._ids:
            return
        self._ids.add(sandbox_id)
        if self._sorted is not None:
            bisect.insort(self._sorted, sandbox_id)

    def add_many(self, sandbox_ids: Sequence[str]) -> None:
        """``add`` each id (a snapshot's load: one set update, no call per id)."""
        if self._sorted is None:
            self._ids.update(sandbox_ids)
        else:
            for sandbox_id in sandbox_ids:
                self.add(sandbox_id)

    def delete(self, sandbox_id: str) -> None:
        if sandbox_id not in self._ids:
            return
        self._ids.discard(sandbox_id)
        if self._sorted is not None:
            i = bisect.bisect_left(self._sorted, sandbox_id)
            del self._sorted[i]

    def __contains__(self, sandbox_id: object) -> bool:
        return sandbox_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ids))

    def get(self, id_or_prefix: str) -> str:
        """The full id for ``id_or_prefix``; NotFoundError / AmbiguousPrefixError /
        InvalidIDError (empty or not a str)."""
        if not isinstance(id_or_prefix, str):
            raise InvalidIDError(f"sandbox id must be a str, got {type(id_or_prefix).__name__}")
        if not id_or_prefix:
            raise InvalidIDError("sandbox id (or prefix) must not be empty")
        if id_or_prefix in self._ids:
            return id_or_prefix
        ids = self._sorted
        if ids is None:
            ids = self._sorted = sorted(self._ids)
        i = bisect.bisect_left(ids, id_or_prefix)
        if i >= len(ids) or not ids[i].startswith(id_or_prefix):
            raise NotFoundError(f"no sandbox with id or id prefix {_show(id_or_prefix)}")
        if i + 1 < len(ids) and ids[i + 1].startswith(id_or_prefix):
            raise AmbiguousPrefixError(
                f"id prefix {_show(id_or_prefix)} matches more than one sandbox "
                f"({ids[i]}, {ids[i + 1]}, ...); give more characters"
            )
        return ids[i]


class Registrar:
    """One-to-one name <-> id reservations (containerd's registrar).

    Reserving a name again for the same id is a no-op; for another id it is
    ``AlreadyExistsError``; an id holds at most one name.
    """

    __slots__ = ("_by_id", "_by_name")

    def __init__(self) -> None:
        self._by_name: dict[str, str] = {}
        self._by_id: dict[str, str] = {}

    def reserve(self, name: str, sandbox_id: str) -> None:
        holder = self._by_name.get(name)
        if holder is not None:
            if holder == sandbox_id:
                return
            raise AlreadyExistsError(
                f"name {_show(name)} is reserved for sandbox {holder}; cannot reserve it "
                f"for {sandbox_id}"
            )
        held = self._by_id.get(sandbox_id)
        if held is not None:
            raise AlreadyExistsError(
                f"sandbox {sandbox_id} already holds name {_show(held)}; cannot also reserve "
                f"{_show(name)}"
            )
        self._by_name[name] = sandbox_id
        self._by_id[sandbox_id] = name

    def reserve_many(self, names: Sequence[str], sandbox_ids: Sequence[str]) -> None:
        """``reserve(name, id)`` for each pair, in order: the same reservations, and the
        same first ``AlreadyExistsError`` (after the pairs before it are reserved).

        Into an empty registrar, pairs whose names are all distinct and whose ids are
        all distinct cannot conflict: two dicts are built at once. Anything else is
        reserved one by one.
        """
        if len(names) != len(sandbox_ids):
            raise ValueError(f"{len(names)} names for {len(sandbox_ids)} sandbox ids")
        if not self._by_name and not self._by_id:
            by_name = dict(zip(names, sandbox_ids, strict=True))
            by_id = dict(zip(sandbox_ids, names, strict=True))
            if len(by_name) == len(by_id) == len(names):
                self._by_name, self._by_id = by_name, by_id
                return
        for name, sandbox_id in zip(names, sandbox_ids, strict=True):
            self.reserve(name, sandbox_id)

    def release_by_name(self, name: str) -> None:
        sandbox_id = self._by_name.pop(name, None)
        if sandbox_id is not None:
            self._by_id.pop(sandbox_id, None)

    def release_by_id(self, sandbox_id: str) -> None:
        name = self._by_id.pop(sandbox_id, None)
        if name is not None:
            self._by_name.pop(name, None)

    def get_id(self, name: str) -> str | None:
        return self._by_name.get(name)

    def get_name(self, sandbox_id: str) -> str | None:
        return self._by_id.get(sandbox_id)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)
