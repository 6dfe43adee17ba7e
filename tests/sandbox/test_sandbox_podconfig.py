"""The whole CRI runtime.v1 PodSandboxConfig, read and written as Go does.

Fixtures (tests/sandbox/podconfigs/): ``full-v1.json`` sets every field of
every message reachable from PodSandboxConfig; ``crictl-*.json`` are the pod
configs of crictl's documentation (docs/crictl.md and docs/examples, the YAML
one as JSON); ``crictl-style-network.json`` adds DNS, ports and a hostname in
the same style; ``v1alpha1-host-network.json`` is the seed's shape and
``v1-host-network.json`` what it upcasts to. ``go/recorded.json`` holds what
Go's encoding/json (on Go structs made from sandbox/schema.py, as protoc-gen-go
makes them) answered for every line of ``go-cases.txt`` and every fixture;
re-record it with ``python tests/sandbox/podconfigs/go/record.py`` (needs Go).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ok, sandboxctl

import eventlog
import sandbox
from sandbox import (
    InvalidConfigError,
    InvalidMetadataError,
    Metadata,
    NamespaceMode,
    NamespaceOption,
    PodSandboxConfig,
    PodSandboxMetadata,
    PortMapping,
    Protocol,
    Store,
    schema,
)
from sandbox.config import message_class
from sandbox.gojson import INT_RANGES, Codec, go_json_dumps, loads

FIXTURES = Path(__file__).parent / "podconfigs"
RECORDED = json.loads((FIXTURES / "go" / "recorded.json").read_text(encoding="utf-8"))
SID = "7e" * 32


def text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def doc(name: str) -> Any:
    return json.loads(text(name))


def decode(data: str | dict[str, Any]) -> tuple[PodSandboxConfig, list[str]]:
    ignored: list[str] = []
    parsed = loads(data) if isinstance(data, str) else data
    return PodSandboxConfig.from_go_json(parsed, ignored=ignored), ignored


def go_bytes(config: PodSandboxConfig) -> str:
    return go_json_dumps(config.to_go_json()).decode()


def unset_fields(value: Any, name: str, path: str, seen: set[str]) -> list[str]:
    """Paths of the fields left at their zero value, walking the schema."""
    seen.add(name)
    missing = []
    for fld in schema.MESSAGES[name].fields:
        item = getattr(value, fld.name)
        where = f"{path}.{fld.name}" if path else fld.name
        if not item:
            missing.append(where)
        elif fld.type in schema.MESSAGES:
            for i, sub in enumerate(item if fld.label == "repeated" else [item]):
                missing += unset_fields(sub, fld.type, f"{where}[{i}]", seen)
    return missing


# -- the schema -------------------------------------------------------------------------


def test_schema_is_consistent_and_every_message_is_reachable() -> None:
    schema.check()
    assert sorted(schema.reachable()) == sorted(schema.MESSAGES)
    assert schema.SOURCE["tag"] == "v0.36.3" and len(schema.SOURCE["commit"]) == 40


def test_every_message_is_an_exported_class_with_the_schema_fields_in_order() -> None:
    for name, msg in schema.MESSAGES.items():
        cls = getattr(sandbox, name)
        assert cls is message_class(name) and cls.__name__ == name
        assert [a.name for a in attrs.fields(cls)] == [f.name for f in msg.fields]
    for enum_cls in schema.ENUMS.values():
        assert getattr(sandbox, enum_cls.__name__) is enum_cls


def test_schema_facts_read_from_api_proto() -> None:
    ctx = schema.MESSAGES["LinuxSandboxSecurityContext"]
    # Declaration order, not number order: that is the order Go writes.
    assert [(f.name, f.number) for f in ctx.fields] == [
        ("namespace_options", 1),
        ("selinux_options", 2),
        ("run_as_user", 3),
        ("run_as_group", 8),
        ("readonly_rootfs", 4),
        ("supplemental_groups", 5),
        ("supplemental_groups_policy", 11),
        ("privileged", 6),
        ("seccomp", 9),
        ("apparmor", 10),
        ("seccomp_profile_path", 7),
    ]
    assert ctx.fields[-1].deprecated
    assert {m.name: m.value for m in NamespaceMode} == {
        "POD": 0,
        "CONTAINER": 1,
        "NODE": 2,
        "TARGET": 3,
    }
    assert [f.json_name for f in schema.MESSAGES["PodSandboxConfig"].fields][2:5] == [
        "logDirectory",
        "dnsConfig",
        "portMappings",
    ]
    legacy = schema.MESSAGES["NamespaceOption"].legacy
    assert [(f.name, f.number, f.replaced_by) for f in legacy] == [
        ("host_network", 1, "network"),
        ("host_pid", 2, "pid"),
        ("host_ipc", 3, "ipc"),
    ]


def test_a_message_without_a_declared_class_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema update alone is enough: an undeclared message gets a class on use."""
    monkeypatch.delitem(sandbox.config._CLASSES, "HugepageLimit")
    made = message_class("HugepageLimit")
    assert made is not sandbox.HugepageLimit and made.__name__ == "HugepageLimit"
    assert made(page_size="2MB", limit=2**64 - 1).to_go_json() == {
        "page_size": "2MB",
        "limit": 2**64 - 1,
    }
    with pytest.raises(InvalidConfigError, match=r"HugepageLimit\.limit"):
        made(limit=-1)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ((schema.Field(1, "a", "Nope"),), "unknown type"),
        ((schema.Field(1, "a", "string"), schema.Field(1, "b", "string")), "number 1"),
        ((schema.Field(1, "class", "string"),), "attribute name"),
        ((schema.Field(1, "self", "T"),), "recursive"),
    ],
)
def test_a_bad_table_is_refused(fields: tuple[schema.Field, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Codec([schema.Message("T", fields)], lambda name: dict)


# -- every field of every message, kept ------------------------------------------------


def test_the_full_v1_fixture_sets_every_field_of_every_message() -> None:
    config, ignored = decode(text("full-v1.json"))
    assert ignored == []
    seen: set[str] = set()
    assert unset_fields(config, "PodSandboxConfig", "", seen) == []
    assert seen == set(schema.MESSAGES)


def test_full_v1_config_round_trips_through_the_metadata_blob() -> None:
    config, _ = decode(text("full-v1.json"))
    md = Metadata(SID, "web_prod_u_3", config, "/var/run/netns/cni-x")
    blob = md.to_json()
    assert Metadata.from_json(blob) == md
    assert json.loads(blob)["Metadata"]["Config"] == doc("full-v1.json")
    # Byte for byte what Go's json.Marshal wrote for the same document.
    recorded = next(c for c in RECORDED["cases"] if c["input"] == text("full-v1.json"))
    assert b'"Config":' + recorded["output"].encode() + b',"NetNSPath"' in blob
    assert Metadata.from_event_dict(md.to_event_dict()) == md


def test_full_v1_config_survives_the_log_and_a_replay(
    state_dir: Path, open_store: Callable[..., Store]
) -> None:
    config, _ = decode(text("full-v1.json"))
    store = open_store(state_dir, durability="none")
    store.add(sandbox.Sandbox(Metadata(SID, "web", config), sandbox.Status(sandbox.State.READY)))
    store.close()
    assert open_store(state_dir, durability="none")[SID].metadata.config == config


def test_full_v1_config_through_sandboxctl_run_and_inspect(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    cp = sandboxctl(*g, "run", str(FIXTURES / "full-v1.json"))
    sid = ok(cp).strip()
    assert cp.stderr == "", "no key of a v1 config is ignored"
    inspected = json.loads(ok(sandboxctl(*g, "inspect", sid, "-o", "json")))
    assert inspected["name"] == "web_prod_0b6d1c5e-7f0e-4b8e-9c7a-2f3e4d5c6b7a_3"
    assert inspected["metadata"]["Metadata"]["Config"] == doc("full-v1.json")


# -- what Go answered ----------------------------------------------------------------------

LEGACY_KEYS = ("host_network", "host_pid", "host_ipc")
GO_CASES = [c for c in RECORDED["cases"] if not any(k in c["input"] for k in LEGACY_KEYS)]


@pytest.mark.parametrize("case", GO_CASES, ids=[str(i) for i in range(len(GO_CASES))])
def test_every_case_recorded_from_go_decodes_the_same(case: dict[str, Any]) -> None:
    if case["output"] is None:
        with pytest.raises(InvalidConfigError):
            decode(case["input"])
    else:
        assert go_bytes(decode(case["input"])[0]) == case["output"], case["input"]


def test_the_recording_covers_the_cases_file_and_every_fixture() -> None:
    inputs = {c["input"] for c in RECORDED["cases"]}
    lines = text("go-cases.txt").splitlines()
    assert {ln for ln in lines if ln.strip() and not ln.startswith("#")} <= inputs
    assert {text(p.name) for p in FIXTURES.glob("*.json")} <= inputs
    assert RECORDED["go"].startswith("go version go1.")


def test_go_drops_the_v1alpha1_flags_silently_and_we_upcast_them() -> None:
    """The bug this fixes: v1 types ignore host_network, so a host-network pod
    was stored as a pod-network one."""
    old = text("v1alpha1-host-network.json")
    go_out = json.loads(next(c for c in RECORDED["cases"] if c["input"] == old)["output"])
    assert go_out["linux"]["security_context"]["namespace_options"] == {}
    config, ignored = decode(old)
    assert ignored == []
    assert config == decode(text("v1-host-network.json"))[0]
    assert config.linux.security_context.namespace_options == NamespaceOption(
        network=NamespaceMode.NODE, pid=NamespaceMode.POD, ipc=NamespaceMode.NODE
    )


# -- keys: exact, else case-insensitive, at every level; the later wins -------------------


def test_keys_match_case_insensitively_at_every_level() -> None:
    config, ignored = decode(
        '{"Metadata":{"Name":"a","NAMESPACE":"b","Uid":"c","attempt":1},'
        '"Labels":{"App":"x"},"Linux":{"Security_Context":{"Namespace_Options":{"Network":2},'
        '"Run_As_User":{"VALUE":7}}},"PORT_MAPPINGS":[{"Host_Port":80}]}'
    )
    assert ignored == []
    assert config.metadata == PodSandboxMetadata("a", "c", "b", 1)
    assert dict(config.labels) == {"App": "x"}, "map keys are data, not field names"
    ctx = config.linux.security_context
    assert ctx.namespace_options.network is NamespaceMode.NODE and ctx.run_as_user.value == 7
    assert config.port_mappings == (PortMapping(host_port=80),)
    blob = (
        b'{"version":"v1","METADATA":{"id":"' + SID.encode() + b'","name":"n",'
        b'"config":{"Metadata":{"Name":"deep"},"LABELS":{"k":"v"}}}}'
    )
    md = Metadata.from_json(blob)
    assert md.config.metadata.name == "deep" and dict(md.config.labels) == {"k": "v"}


def test_an_exact_match_beats_a_case_insensitive_one() -> None:
    table = schema.Message("T", (schema.Field(1, "ab", "string"), schema.Field(2, "AB", "string")))
    codec = Codec([table], lambda name: dict)
    assert codec.decode("T", {"AB": "x"}) == {"AB": "x"}
    assert codec.decode("T", {"ab": "y"}) == {"ab": "y"}
    assert codec.decode("T", {"Ab": "z"}) == {"ab": "z"}, "Go: the first field of a fold"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ('{"hostname":"a","HOSTNAME":"b"}', {"hostname": "b"}),
        ('{"HOSTNAME":"b","hostname":"a"}', {"hostname": "a"}),
        ('{"hostname":"a","Hostname":null}', {"hostname": "a"}),
        (
            '{"metadata":{"name":"a","uid":"u"},"Metadata":{"name":"b"}}',
            {"metadata": {"name": "b", "uid": "u"}},
        ),
        ('{"metadata":{"name":"a"},"metadata":null}', {}),
        ('{"labels":{"a":"1"},"LABELS":{"b":"2"}}', {"labels": {"a": "1", "b": "2"}}),
        (
            '{"dns_config":{"servers":["a","b"],"Servers":["c"]}}',
            {"dns_config": {"servers": ["c"]}},
        ),
        (
            '{"linux":{"security_context":{"namespace_options":{"network":2,"NETWORK":0}}}}',
            {"linux": {"security_context": {"namespace_options": {}}}},
        ),
    ],
)
def test_the_later_of_two_keys_for_one_field_wins(document: str, expected: Any) -> None:
    assert decode(document)[0].to_go_json() == expected


def test_duplicate_keys_in_a_stored_blob_follow_go_too() -> None:
    blob = (
        '{"Version":"v1","Metadata":{"ID":"a","Name":"n"},"metadata":{"id":"' + SID + '",'
        '"Config":{"hostname":"x"},"config":{"log_directory":"/l"}}}'
    )
    md = Metadata.from_json(blob)
    assert (md.id, md.name) == (SID, "n")
    assert md.config == PodSandboxConfig(hostname="x", log_directory="/l")


# -- unknown keys ----------------------------------------------------------------------------


def test_unknown_keys_are_ignored_and_reported_by_path_in_document_order() -> None:
    config, ignored = decode(
        '{"zeta":1,"metadata":{"name":"a","color":"blue"},"logDirectory":"/camel",'
        '"linux":{"namespaces":{"options":{}},"security_context":{"foo":[{"deep":1}]}},'
        '"port_mappings":[{},{"bar":true}],"labels":{"not-a-field":"kept"}}'
    )
    assert ignored == [
        "zeta",
        "metadata.color",
        "logDirectory",
        "linux.namespaces",
        "linux.security_context.foo",
        "port_mappings[1].bar",
    ]
    assert config.metadata.name == "a" and config.log_directory == ""
    assert dict(config.labels) == {"not-a-field": "kept"}


def test_sandboxctl_run_warns_once_per_ignored_key(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    pod = doc("crictl-pod-config.json")
    pod["linux"]["security_context"] = {"foo": 1, "namespace_options": {"network": 2}}
    pod["hostNetwork"] = True
    pod["evil\nsandboxctl: error: forged\x1b[2J"] = 1
    pod.update({f"extra{i:03}": i for i in range(120)})
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(pod))
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    cp = sandboxctl(*g, "run", str(path))
    sid = ok(cp).strip()
    lines = cp.stderr.splitlines()
    prefix = f"sandboxctl: warning: pod config {path}: ignored unknown key "
    assert lines[:3] == [
        prefix + "linux.security_context.foo",
        prefix + "hostNetwork",
        prefix + "evil\\nsandboxctl: error: forged\\x1b[2J",
    ]
    assert lines[3:100] == [prefix + f"extra{i:03}" for i in range(97)]
    assert lines[100:] == ["sandboxctl: warning: ... and 23 more ignored keys"]
    inspected = json.loads(ok(sandboxctl(*g, "inspect", sid, "-o", "json")))
    config = inspected["metadata"]["Metadata"]["Config"]
    assert config["linux"]["security_context"] == {"namespace_options": {"network": 2}}


# -- wrong types and ranges ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ('{"hostname":5}', "hostname: expected a string, got number"),
        ('{"metadata":{"attempt":-1}}', "metadata.attempt: -1 is out of range for uint32"),
        ('{"metadata":{"attempt":"1"}}', "metadata.attempt: expected a number"),
        ('{"port_mappings":[{},{"host_port":2147483648}]}', "port_mappings[1].host_port"),
        ('{"port_mappings":[{"protocol":"UDP"}]}', "port_mappings[0].protocol"),
        ('{"linux":{"security_context":{"run_as_user":{"value":1e3}}}}', "run_as_user.value"),
        ('{"linux":{"security_context":{"supplemental_groups":[1,"2"]}}}', "groups[1]"),
        ('{"linux":{"resources":{"hugepage_limits":[{"limit":-1}]}}}', "hugepage_limits[0].limit"),
        ('{"linux":{"sysctls":{"a":1}}}', "linux.sysctls['a']"),
        ('{"windows":{"security_context":{"host_process":"true"}}}', "host_process"),
        ('{"linux":{"security_context":{"namespace_options":{"host_network":1}}}}', "host_network"),
        ("[]", "expected a JSON object, got array"),
    ],
)
def test_type_errors_name_the_path(document: str, where: str) -> None:
    with pytest.raises(InvalidConfigError) as info:
        decode(document)
    assert where in str(info.value)


def test_nesting_too_deep_is_invalid_input(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path
) -> None:
    deep = '{"metadata":' * 100_000 + "{}" + "}" * 100_000
    with pytest.raises(InvalidConfigError, match="nested too deeply"):
        loads(deep)
    with pytest.raises(InvalidMetadataError, match="nested too deeply"):
        Metadata.from_json('{"Version":"v1","Metadata":' + deep + "}")
    path = tmp_path / "deep.json"
    path.write_text(deep)
    cp = sandboxctl(
        "--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir), "run", str(path)
    )
    assert cp.returncode == 7 and "nested too deeply" in cp.stderr
    assert not state_dir.exists()


def test_python_construction_checks_like_decoding() -> None:
    assert PortMapping(Protocol.UDP, 53, 5353, "::1") == PortMapping(
        protocol=1, container_port=53, host_port=5353, host_ip="::1"
    )
    assert PortMapping(protocol=1).protocol is Protocol.UDP
    for bad in ({"container_port": 2**31}, {"protocol": "UDP"}, {"host_ip": b"x"}):
        with pytest.raises(InvalidConfigError, match="PortMapping"):
            PortMapping(**bad)
    with pytest.raises(InvalidConfigError, match=r"PodSandboxConfig\.metadata"):
        PodSandboxConfig(metadata={"name": "a"})
    with pytest.raises(TypeError, match="unexpected keyword"):
        PodSandboxConfig(host_name="x")
    with pytest.raises(TypeError, match="more than one value"):
        NamespaceOption(network=0, host_network=True)
    with pytest.raises(TypeError, match="at most 4"):
        PortMapping(0, 1, 2, "", 4)
    cfg = PodSandboxConfig(hostname="a")
    assert attrs.evolve(cfg, hostname="b").hostname == "b"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.hostname = "c"  # type: ignore[misc]


# -- the seed's v1alpha1 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('{"host_network":true}', {"network": 2}),
        ('{"host_network":false}', {}),
        ('{"host_pid":true,"host_ipc":true}', {"pid": 2, "ipc": 2}),
        ('{"Host_Network":true,"HOST_PID":true}', {"network": 2, "pid": 2}),
        ('{"network":1,"host_network":true}', {"network": 2}),
        ('{"host_network":true,"network":1}', {"network": 1}),
        ('{"host_network":true,"host_network":null}', {"network": 2}),
        ('{"network":2,"host_network":false}', {}),
    ],
)
def test_v1alpha1_namespace_flags_are_upcast(options: str, expected: Any) -> None:
    config, ignored = decode('{"linux":{"security_context":{"namespace_options":' + options + "}}}")
    assert ignored == []
    assert config.to_go_json() == {"linux": {"security_context": {"namespace_options": expected}}}


def test_v1alpha1_keywords_construct_the_v1_message() -> None:
    assert NamespaceOption(host_network=True) == NamespaceOption(network=NamespaceMode.NODE)
    assert NamespaceOption(host_pid=False, host_ipc=True) == NamespaceOption(ipc=2)
    with pytest.raises(InvalidConfigError, match="host_network"):
        NamespaceOption(host_network="yes")


def test_an_old_log_with_v1alpha1_configs_replays_upcast(
    state_dir: Path, open_store: Callable[..., Store]
) -> None:
    old_config = doc("v1alpha1-host-network.json")
    with eventlog.EventLog.open(state_dir, durability="none") as log:
        log.append(
            {
                "type": "SandboxAdded",
                "v": 1,
                "id": SID,
                "env": {"time": 1, "host": "old-node", "pid": 1, "uid": 0, "actor": None},
                "metadata": {"id": SID, "name": "old", "config": old_config, "netns_path": ""},
                "status": {
                    "state": "READY",
                    "pid": 0,
                    "created_at": 5,
                    "exited_at": None,
                    "exit_status": None,
                },
            }
        )
    config = open_store(state_dir, durability="none")[SID].metadata.config
    assert config.linux.security_context.namespace_options.network is NamespaceMode.NODE
    assert config == decode(text("v1-host-network.json"))[0]


# -- crictl's documented pod configs, and the seed's Go test ------------------------------


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("crictl-pod-config.json", []),
        ("crictl-pod-config-cgroup-parent.json", []),
        ("crictl-podsandbox-config-yaml.json", ["linux.namespaces"]),
        ("crictl-style-network.json", []),
    ],
)
def test_crictl_documented_pod_configs(name: str, ignored: list[str]) -> None:
    config, got = decode(text(name))
    assert got == ignored
    assert config.metadata.attempt == 1 and config.metadata.uid == "hdishd83djaidwnduwk28bcsb"
    assert config.linux is not None and config.log_directory == "/tmp"
    md = Metadata(SID, "n", config)
    assert Metadata.from_json(md.to_json()) == md
    written = json.loads(md.to_json())["Metadata"]["Config"]
    assert "namespaces" not in written.get("linux", {})


def test_crictl_pod_config_runs_under_containerds_name(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    cp = sandboxctl(*g, "run", str(FIXTURES / "crictl-podsandbox-config-yaml.json"), "-o", "json")
    assert json.loads(ok(cp))["name"] == "busybox-sandbox_default_hdishd83djaidwnduwk28bcsb_1"
    assert cp.stderr.endswith("ignored unknown key linux.namespaces\n")


def test_seed_metadata_marshal_unmarshal() -> None:
    """containerd/cri v1.0.0-alpha.1 pkg/store/sandbox TestMetadataMarshalUnmarshal."""
    meta = Metadata(
        "test-id",
        "test-name",
        PodSandboxConfig(
            metadata=PodSandboxMetadata(
                name="test-name", uid="test-uid", namespace="test-namespace", attempt=1
            )
        ),
    )
    # MarshalJSON is json.Marshal of the versioned wrapper.
    versioned = {
        "Version": "v1",
        "Metadata": {
            "ID": "test-id",
            "Name": "test-name",
            "Config": meta.config.to_go_json(),
            "NetNSPath": "",
        },
    }
    data = meta.to_json()
    assert data == go_json_dumps(versioned)
    assert Metadata.from_json(data) == meta  # MarshalJSON -> UnmarshalJSON
    assert json.loads(data) == versioned  # MarshalJSON -> plain json.Unmarshal
    unsupported = go_json_dumps({**versioned, "Version": "random-test-version"})
    with pytest.raises(sandbox.UnsupportedVersionError):
        Metadata.from_json(unsupported)


# -- any config from the schema round-trips ------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)


def _one(fld: schema.Field) -> st.SearchStrategy[Any]:
    if fld.type in schema.ENUMS:
        int32 = st.integers(-(2**31), 2**31 - 1)
        return st.sampled_from(list(schema.ENUMS[fld.type])) | int32
    if fld.type == "string":
        return _TEXT
    if fld.type == "bool":
        return st.booleans()
    if fld.type in INT_RANGES:
        return st.integers(*INT_RANGES[fld.type])
    return messages(fld.type)


def messages(name: str) -> st.SearchStrategy[Any]:
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for fld in schema.MESSAGES[name].fields:
        if fld.label == "map":
            strategies[fld.name] = st.dictionaries(_TEXT, _TEXT, max_size=3)
        elif fld.label == "repeated":
            strategies[fld.name] = st.lists(_one(fld), max_size=3)
        else:
            strategies[fld.name] = _one(fld)
    cls = message_class(name)
    return st.fixed_dictionaries({}, optional=strategies).map(lambda kw: cls(**kw))


MAPS = {f.name for m in schema.MESSAGES.values() for f in m.fields if f.label == "map"}


def _shout(value: Any, keys_are_fields: bool = True) -> Any:
    """The same document with every field key upper-cased (map keys are data)."""
    if isinstance(value, list):
        return [_shout(v, keys_are_fields) for v in value]
    if not isinstance(value, dict):
        return value
    if not keys_are_fields:
        return value
    return {k.upper(): _shout(v, k not in MAPS) for k, v in value.items()}


@settings(max_examples=150, deadline=None)
@given(messages("PodSandboxConfig"))
def test_any_config_round_trips(config: PodSandboxConfig) -> None:
    encoded = config.to_go_json()
    assert PodSandboxConfig.from_go_json(encoded) == config
    assert decode(go_bytes(config))[0] == config
    assert decode(_shout(encoded)) == (config, [])
    md = Metadata(SID, "n", config)
    assert Metadata.from_json(md.to_json()) == md
    order = [f.name for f in schema.MESSAGES["PodSandboxConfig"].fields]
    assert list(encoded) == [k for k in order if k in encoded]
