"""The replay hot path builds Status/Env/events without attrs' __init__: same values,
same refusals as the ordinary constructors (sandbox/events.py, "fast construction")."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import events as ev
from sandbox.projection import Projection
from sandbox.status import State, Status

GOOD: dict[str, Any] = {
    "state": "NOTREADY",
    "pid": 7,
    "created_at": -5,
    "exited_at": 9,
    "exit_status": None,
}


def test_status_from_map_equals_the_constructor() -> None:
    fast = ev.status_from_map(GOOD)
    assert fast == Status.from_event_dict(GOOD) and type(fast) is Status
    assert fast.state is State.NOTREADY and hash(fast) == hash(Status.from_event_dict(GOOD))
    assert ev.status_from_values("READY", 0, 1, None, 2) == Status(State.READY, 0, 1, None, 2)


@pytest.mark.parametrize(
    "change",
    [
        {"state": "RUNNING"},
        {"state": 1},
        {"pid": -1},
        {"pid": True},
        {"pid": 2**63},
        {"created_at": 1.5},
        {"created_at": None},
        {"exited_at": "x"},
        {"exit_status": 2**63},
    ],
)
def test_status_from_map_refuses_what_the_constructor_refuses(change: dict[str, Any]) -> None:
    data = {**GOOD, **change}
    with pytest.raises((TypeError, ValueError)) as slow:
        Status.from_event_dict(data)
    with pytest.raises(type(slow.value)) as fast:
        ev.status_from_map(data)
    assert str(fast.value) == str(slow.value)


def test_missing_status_field_is_a_key_error_as_before() -> None:
    with pytest.raises(KeyError):
        ev.status_from_map({"state": "READY", "created_at": 1})


def test_decoded_events_equal_constructed_ones() -> None:
    env = ev.Env(1, "h", 2, 0, "a")
    status = Status(State.READY, 3, 4)
    for event in (
        ev.StatusUpdated("x", env, status),
        ev.SandboxDeleted("x", env),
        ev.NetNSAssigned("x", env, "/run/netns/a"),
        ev.NetNSClosed("x", env, "/run/netns/a", "gone"),
    ):
        decoded = ev.decode(event.to_payload())
        assert decoded == event and hash(decoded) == hash(event) and repr(decoded) == repr(event)
    with pytest.raises(AttributeError):
        ev.decode(ev.SandboxDeleted("x", env).to_payload()).id = "y"  # type: ignore[misc]


def test_projection_keeps_status_objects_and_round_trips() -> None:
    env = ev.Env()
    proj = Projection()
    payload = {
        "type": "SandboxAdded",
        "v": 1,
        "id": "a" * 64,
        "env": env.to_payload(),
        "metadata": {"id": "a" * 64, "name": "n", "config": {}, "netns_path": ""},
        "status": dict(GOOD),
    }
    proj.apply(1, payload)
    assert proj.status_of("a" * 64) == Status.from_event_dict(GOOD)
    assert proj.state_of("a" * 64) is State.NOTREADY
    again = Projection.from_snapshot(proj.to_snapshot())
    again.check_sandboxes()
    assert again == proj and again.sandboxes() == proj.sandboxes()
