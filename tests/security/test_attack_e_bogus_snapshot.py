"""Attack E: a snapshot whose checksum is valid but whose content is not.

A checksum proves the bytes are the ones written, not that they make sense.
Before the fix, parts of a snapshot's content were believed unchecked (an
ownership entry with an invalid sandbox id, a state the fold never keeps, an
owned path that is not a path, an entry for a sandbox that does not exist),
were carried into the next snapshot, and the read-only loader skipped a
snapshot it could not use without a word. Now every snapshot's content is
validated as strictly as events are, and an invalid one is skipped - by the
store and by the read-only loader - with a warning, for a full replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import snapshot_forgery as sec
import support

from replay.view import load
from sandbox import Store
from sandbox import snapshot as snap
from sandbox.projection import SANDBOX_COLUMNS
from sandbox.snapshot_check import as_format_3


def _rows(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (format 4, by column) turned in place into format 3 (rows), still read."""
    rows = as_format_3(body)
    body.clear()
    body.update(rows)
    return body


def _bogus_state(body: dict[str, Any]) -> None:
    _rows(body)["sandboxes"][0][4][0] = "BOGUS"


def _bogus_state_4(body: dict[str, Any]) -> None:
    body["states"][0] = "BOGUS"


def _owner_id_invalid(body: dict[str, Any]) -> None:
    body["owned"][0][1] = "../../not an id"


def _owner_missing(body: dict[str, Any]) -> None:
    body["owned"][0][1] = "f" * 64  # a valid id no sandbox has, in state "created"


def _state_never_kept(body: dict[str, Any]) -> None:
    body["owned"][0][2] = "removed"


def _owned_path_not_a_path(body: dict[str, Any]) -> None:
    _rows(body)["sandboxes"][0][5] = [5]


def _owned_path_not_a_path_4(body: dict[str, Any]) -> None:
    body["owned_paths"][0] = [5]


def _owned_path_relative(body: dict[str, Any]) -> None:
    body["owned"][0][0] = "../../etc/passwd"


def _columns_unequal(body: dict[str, Any]) -> None:
    body[SANDBOX_COLUMNS[-1]].pop()


_FORMAT_4: dict[str, Callable[[dict[str, Any]], None]] = {
    "bogus-state": _bogus_state_4,
    "owner-id-invalid": _owner_id_invalid,
    "owner-missing": _owner_missing,
    "state-never-kept": _state_never_kept,
    "owned-path-not-a-path": _owned_path_not_a_path_4,
    "owned-path-relative": _owned_path_relative,
    "columns-unequal": _columns_unequal,
}


def _in_format_3(mutate: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda body: mutate(_rows(body)) if "sandboxes" not in body else mutate(body)


# Each lie in the body format written now (4, by column) and in format 3 (rows).
MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    **{f"{name}-format-4": mutate for name, mutate in _FORMAT_4.items()},
    "bogus-state-format-3": _bogus_state,
    "owner-id-invalid-format-3": _in_format_3(_owner_id_invalid),
    "owner-missing-format-3": _in_format_3(_owner_missing),
    "state-never-kept-format-3": _in_format_3(_state_never_kept),
    "owned-path-not-a-path-format-3": _owned_path_not_a_path,
    "owned-path-relative-format-3": _in_format_3(_owned_path_relative),
}


@pytest.mark.parametrize("lie", sorted(MUTATIONS))
def test_attack_e_bogus_snapshot(
    lie: str, tmp_path: Path, netns_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    with Store.open(state, netns_dir=netns_dir) as store:
        pod = store.add(support.sandbox("pod"), create_netns=True)
        store.add(support.sandbox("other"))
        path = store.snapshot()
        truth = store.projection()
    sec.rewrite_body(path, MUTATIONS[lie])
    caplog.set_level(logging.WARNING)

    view = load(state, netns_dir=str(netns_dir))  # the read-only loader (`pods`)
    assert view.snapshot is None
    assert view.projection == truth
    assert path in caplog.text, "the read-only loader skipped the snapshot silently"

    with Store.open(state, netns_dir=netns_dir) as store:
        assert store.load_result is not None
        assert store.load_result.snapshot is None, "an invalid snapshot was used"
        assert [p for p, _why in store.load_result.skipped] == [path]
        assert store.projection() == truth
        store.update_status(pod.id, lambda old: type(old)(type(old.state).NOTREADY))  # stop
        again = store.snapshot()  # the next snapshot holds the log's state, not the lie
        assert snap.read_snapshot_info(again, str(netns_dir)).projection == store.projection()
        store.delete(pod.id)
