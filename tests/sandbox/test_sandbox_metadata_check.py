"""``AddedMetadata.check()`` (what ``verify`` asks of every add) raises exactly what
``AddedMetadata.to_metadata()`` raises - the same error type and words - and nothing
when it builds; it only skips decoding a config that ``config_check`` proves valid."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, config_check
from sandbox import events as ev

A = "a" * 64


def _good_config() -> dict[str, Any]:
    config = PodSandboxConfig(
        metadata=PodSandboxMetadata(name="web", uid="u-1", namespace="default", attempt=1),
        hostname="web",
        labels={"app": "web"},
    )
    return Metadata(A, "web_default_u-1_1", config).to_event_dict()["config"]


GOOD = _good_config()

CASES: dict[str, tuple[str, str, Any, str]] = {
    "valid": (A, "web", GOOD, ""),
    "valid, empty config": (A, "web", {}, "/run/netns/x"),
    "id with a space": ("a b", "web", GOOD, ""),
    "id with a slash": ("a/b", "web", GOOD, ""),
    "id empty": ("", "web", GOOD, ""),
    "id too long": ("a" * 1000, "web", GOOD, ""),
    "name with NUL": (A, "we\x00b", GOOD, ""),
    "name empty": (A, "", GOOD, ""),
    "netns path with NUL": (A, "web", GOOD, "/run/\x00x"),
    "bad id and bad config": ("a b", "web", {**GOOD, "hostname": 5}, ""),
    "config field of the wrong type": (A, "web", {**GOOD, "hostname": 5}, ""),
    "config key in another case (Go accepts)": (A, "web", {"HostName": "h"}, ""),
    "config unknown key (Go ignores)": (A, "web", {**GOOD, "zz": 1}, ""),
    "config null (Go's zero value)": (A, "web", {**GOOD, "labels": None}, ""),
    "config bool for an int": (A, "web", {"metadata": {"attempt": True}}, ""),
    "config int out of range": (A, "web", {"metadata": {"attempt": 2**40}}, ""),
    "config enum value unknown": (A, "web", {"port_mappings": [{"protocol": 9}]}, ""),
    "config bin value": (A, "web", {"hostname": b"h"}, ""),
    "config in canonical form, bad netns path": (A, "web", GOOD, "\x00"),
}


def _outcome(fn: Any) -> tuple[type[BaseException], str] | None:
    try:
        fn()
    except Exception as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_raises_what_to_metadata_raises(name: str) -> None:
    sandbox_id, sb_name, config, path = CASES[name]
    meta = ev.AddedMetadata(sandbox_id, sb_name, config, path)
    assert _outcome(meta.check) == _outcome(meta.to_metadata)


def test_a_config_too_deep_to_encode_takes_the_full_way() -> None:
    deep: Any = "x"
    for _ in range(600):
        deep = [deep]
    meta = ev.AddedMetadata(A, "web", {"annotations": deep}, "")
    assert _outcome(meta.check) == _outcome(meta.to_metadata)
    assert _outcome(meta.check) is not None


def test_the_store_written_config_takes_the_short_way() -> None:
    # Else the cases above would only compare the full way with itself.
    assert config_check.is_canonical(msgpack.packb(GOOD, use_bin_type=True))
    assert not config_check.is_canonical(msgpack.packb(CASES["config unknown key (Go ignores)"][2]))
