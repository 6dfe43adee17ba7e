"""CRI config and containerd's metadata blob: Go JSON, byte for byte.

GOLDEN is a blob of the seed's time (CRI v1alpha1, namespace_options as
booleans), as containerd/cri and earlier versions of this project stored it;
it must still load. Written back, it takes the CRI v1 shape (GOLDEN_V1).
The whole v1 message, key matching and upcasting: test_sandbox_podconfig.py.
"""

from __future__ import annotations

import json

import pytest

from sandbox import (
    DNSConfig,
    Int64Value,
    InvalidConfigError,
    InvalidIDError,
    InvalidMetadataError,
    LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext,
    Metadata,
    NamespaceOption,
    PodSandboxConfig,
    PodSandboxMetadata,
    PortMapping,
    Protocol,
    SELinuxOption,
    StoreError,
    UnsupportedVersionError,
    WindowsPodSandboxConfig,
    WindowsSandboxSecurityContext,
)
from sandbox.gojson import go_json_dumps

SANDBOX_ID = "4f2c1c3a0f1e8e0b9d7c6b5a49382716051a2b3c4d5e6f708192a3b4c5d6e7f8"

# What containerd/cri v1.0.0-alpha wrote for a pod with most fields set:
# Go's encoding/json, compact, struct order, sorted map keys, omitempty on every
# CRI key (no "attempt":0, no "protocol":0 for TCP, no "host_network":false),
# the wrapper's fields always present, '<' '>' '&' escaped as \u003c etc.
GOLDEN = (
    b'{"Version":"v1","Metadata":{"ID":"' + SANDBOX_ID.encode() + b'",'
    b'"Name":"nginx-sandbox_default_hdishd83djaidwnduwk28bcsb_1",'
    b'"Config":{"metadata":{"name":"nginx-sandbox","uid":"hdishd83djaidwnduwk28bcsb",'
    b'"namespace":"default","attempt":1},"hostname":"nginx",'
    b'"log_directory":"/var/log/pods/hdishd83djaidwnduwk28bcsb",'
    b'"dns_config":{"servers":["10.96.0.10"],'
    b'"searches":["default.svc.cluster.local","svc.cluster.local","cluster.local"],'
    b'"options":["ndots:5"]},'
    b'"port_mappings":[{"container_port":80,"host_port":8080},'
    b'{"protocol":1,"container_port":53,"host_port":5353,"host_ip":"127.0.0.1"},'
    b'{"protocol":2,"container_port":9000}],'
    b'"labels":{"app":"nginx","io.kubernetes.pod.name":"nginx",'
    b'"io.kubernetes.pod.namespace":"default"},'
    b'"annotations":{"kubernetes.io/config.seen":"2017-10-31T12:00:00.000000000Z",'
    b'"note":"a \\u003cb\\u003e \\u0026 \\"c\\"\\n\\u0001 caf\xc3\xa9"},'
    b'"linux":{"cgroup_parent":"/kubepods/besteffort/podhdishd83",'
    b'"security_context":{"namespace_options":{"host_pid":true,"host_ipc":true},'
    b'"selinux_options":{"user":"system_u","role":"system_r","type":"container_t",'
    b'"level":"s0:c1,c2"},"run_as_user":{"value":1000},"readonly_rootfs":true,'
    b'"supplemental_groups":[1,2,65534],"seccomp_profile_path":"runtime/default"},'
    b'"sysctls":{"kernel.shm_rmid_forced":"1","net.core.somaxconn":"1024"}}},'
    b'"NetNSPath":"/var/run/netns/cni-5e3a4b5c-1d2e-4f60-8a9b-0c1d2e3f4a5b"}}'
)


def golden_config() -> PodSandboxConfig:
    return PodSandboxConfig(
        metadata=PodSandboxMetadata(
            name="nginx-sandbox", uid="hdishd83djaidwnduwk28bcsb", namespace="default", attempt=1
        ),
        hostname="nginx",
        log_directory="/var/log/pods/hdishd83djaidwnduwk28bcsb",
        dns_config=DNSConfig(
            servers=["10.96.0.10"],
            searches=["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            options=["ndots:5"],
        ),
        port_mappings=[
            PortMapping(container_port=80, host_port=8080),
            PortMapping(Protocol.UDP, 53, 5353, "127.0.0.1"),
            PortMapping(protocol=2, container_port=9000),
        ],
        labels={
            "io.kubernetes.pod.namespace": "default",
            "io.kubernetes.pod.name": "nginx",
            "app": "nginx",
        },
        annotations={
            "note": 'a <b> & "c"\n\x01 café',
            "kubernetes.io/config.seen": "2017-10-31T12:00:00.000000000Z",
        },
        linux=LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/besteffort/podhdishd83",
            security_context=LinuxSandboxSecurityContext(
                namespace_options=NamespaceOption(host_pid=True, host_ipc=True),
                selinux_options=SELinuxOption("system_u", "system_r", "container_t", "s0:c1,c2"),
                run_as_user=Int64Value(1000),
                readonly_rootfs=True,
                supplemental_groups=[1, 2, 65534],
                seccomp_profile_path="runtime/default",
            ),
            sysctls={"net.core.somaxconn": "1024", "kernel.shm_rmid_forced": "1"},
        ),
    )


def golden_metadata() -> Metadata:
    return Metadata(
        SANDBOX_ID,
        "nginx-sandbox_default_hdishd83djaidwnduwk28bcsb_1",
        golden_config(),
        "/var/run/netns/cni-5e3a4b5c-1d2e-4f60-8a9b-0c1d2e3f4a5b",
    )


def test_golden_blob_decodes_to_the_expected_metadata() -> None:
    assert Metadata.from_json(GOLDEN) == golden_metadata()


# The same pod as CRI v1 types write it: host_pid/host_ipc true are pid/ipc NODE (2).
GOLDEN_V1 = GOLDEN.replace(
    b'"namespace_options":{"host_pid":true,"host_ipc":true}',
    b'"namespace_options":{"pid":2,"ipc":2}',
)


def test_golden_v1alpha1_blob_is_upcast_and_written_as_v1() -> None:
    assert GOLDEN_V1 != GOLDEN
    assert Metadata.from_json(GOLDEN).to_json() == GOLDEN_V1
    assert golden_metadata().to_json() == GOLDEN_V1
    assert Metadata.from_json(GOLDEN_V1) == Metadata.from_json(GOLDEN)


def test_golden_v1_blob_reencodes_byte_for_byte() -> None:
    assert Metadata.from_json(GOLDEN_V1).to_json() == GOLDEN_V1


def test_golden_blob_is_plain_json_too() -> None:
    doc = json.loads(GOLDEN)
    assert doc["Metadata"]["Config"]["annotations"]["note"] == 'a <b> & "c"\n\x01 café'


def test_round_trip_minimal_and_empty_config() -> None:
    md = Metadata("abc", "name", PodSandboxConfig())
    blob = md.to_json()
    assert (
        blob == b'{"Version":"v1","Metadata":{"ID":"abc","Name":"name","Config":{},"NetNSPath":""}}'
    )
    assert Metadata.from_json(blob) == md
    assert Metadata.from_json(blob.decode()) == md


def test_present_but_empty_submessages_are_kept_as_objects() -> None:
    # Go: a non-nil pointer to an empty struct is {} (omitempty drops only nil).
    cfg = PodSandboxConfig(
        metadata=PodSandboxMetadata(),
        linux=LinuxPodSandboxConfig(
            security_context=LinuxSandboxSecurityContext(run_as_user=Int64Value(0))
        ),
    )
    assert cfg.to_go_json() == {
        "metadata": {},
        "linux": {"security_context": {"run_as_user": {}}},
    }
    assert PodSandboxConfig.from_go_json(cfg.to_go_json()) == cfg
    assert cfg != PodSandboxConfig()


def test_maps_compare_by_value_and_configs_are_hashable() -> None:
    a = PodSandboxConfig(labels={"a": "1", "b": "2"})
    b = PodSandboxConfig(labels=[("b", "2"), ("a", "1")])
    assert a == b
    assert hash(a) == hash(b)
    assert dict(a.labels) == {"a": "1", "b": "2"}
    assert len({golden_config(), golden_config()}) == 1


def test_later_containerd_fields_and_unknown_config_keys_are_tolerated() -> None:
    doc = json.loads(GOLDEN)
    doc["Metadata"]["IP"] = "10.88.0.7"
    doc["Metadata"]["RuntimeHandler"] = "runc"
    doc["Metadata"]["CNIResult"] = {"Interfaces": {}}
    doc["Metadata"]["ProcessLabel"] = "system_u:system_r:container_t:s0"
    doc["Metadata"]["Config"]["a_future_cri_field"] = {"x": [1, 2]}
    doc["Metadata"]["Config"]["linux"]["security_context"]["a_future_flag"] = True
    md = Metadata.from_json(json.dumps(doc).encode())
    assert md == golden_metadata()


def test_v1_fields_the_seed_did_not_know_are_kept() -> None:
    doc = json.loads(GOLDEN)
    doc["Metadata"]["Config"]["windows"] = {"security_context": {}}
    doc["Metadata"]["Config"]["linux"]["security_context"]["run_as_group"] = {"value": 5}
    md = Metadata.from_json(json.dumps(doc).encode())
    assert md != golden_metadata()
    assert md.config.linux.security_context.run_as_group == Int64Value(5)
    assert md.config.windows == WindowsPodSandboxConfig(WindowsSandboxSecurityContext())
    written = json.loads(md.to_json())["Metadata"]["Config"]
    assert written["windows"] == {"security_context": {}}
    assert written["linux"]["security_context"]["run_as_group"] == {"value": 5}


def test_json_null_reads_as_absent_like_go() -> None:
    blob = (
        b'{"Version":"v1","Metadata":{"ID":"x1","Name":"n",'
        b'"Config":{"hostname":null,"labels":null},"NetNSPath":null}}'
    )
    md = Metadata.from_json(blob)
    assert md.config == PodSandboxConfig()
    assert md.netns_path == ""


def test_keys_match_case_insensitively_like_go() -> None:
    blob = b'{"version":"v1","metadata":{"id":"x1","name":"n","config":{}}}'
    assert Metadata.from_json(blob) == Metadata("x1", "n", PodSandboxConfig())


@pytest.mark.parametrize(
    "blob",
    [
        b'{"Metadata":{"ID":"x","Name":"n","Config":{}}}',
        b'{"Version":null,"Metadata":{}}',
    ],
)
def test_missing_version_is_unsupported(blob: bytes) -> None:
    with pytest.raises(UnsupportedVersionError, match="no Version"):
        Metadata.from_json(blob)


@pytest.mark.parametrize("version", ['"v2"', '"V1"', '"v0"', "1", '""'])
def test_other_version_is_unsupported(version: str) -> None:
    blob = ('{"Version":' + version + ',"Metadata":{"ID":"x","Name":"n","Config":{}}}').encode()
    with pytest.raises(UnsupportedVersionError, match="expected 'v1'"):
        Metadata.from_json(blob)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x00\x01\x02garbage",
        b"\xff\xfe\xfd",
        b"{not json",
        b'{"Version":"v1","Metadata":{"ID":"x"',  # truncated
        b"[1,2,3]",
        b'"just a string"',
        b'{"Version":"v1","Metadata":[]}',
        b'{"Version":"v1"}',
        b'{"Version":"v1","Metadata":null}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"metadata":{"Name":5}}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"linux":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}}}",
        b'{"Version":"v1","Metadata":{"ID":5,"Name":"n","Config":{}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":[]}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"hostname":5}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"port_mappings":{}}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"port_mappings":[1]}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"labels":{"a":1}}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"metadata":{"attempt":-1}}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"metadata":{"attempt":1.5}}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"port_mappings":[{"protocol":"UDP"}]}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"port_mappings":[{"protocol":2147483648}]}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{"linux":{"security_context":{"privileged":"yes"}}}}}',
        b'{"Version":"v1","Metadata":{"ID":"x","Name":"n","Config":{},"NetNSPath":NaN}}',
        b"[" * 100000,
    ],
)
def test_garbage_is_a_clear_store_error(blob: bytes) -> None:
    with pytest.raises(StoreError) as info:
        Metadata.from_json(blob)
    assert isinstance(info.value, InvalidMetadataError | UnsupportedVersionError)
    assert str(info.value)


def test_invalid_id_in_blob_is_invalid_id() -> None:
    with pytest.raises(InvalidIDError):
        Metadata.from_json(b'{"Version":"v1","Metadata":{"ID":"a b","Name":"n","Config":{}}}')


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(InvalidMetadataError):
        Metadata.from_json(12)  # type: ignore[arg-type]


def test_config_validates_on_construction() -> None:
    with pytest.raises(InvalidConfigError, match="hostname"):
        PodSandboxConfig(hostname=5)
    with pytest.raises(InvalidConfigError, match="container_port"):
        PortMapping(container_port=2**31)
    with pytest.raises(InvalidConfigError, match="protocol"):
        PortMapping(protocol="UDP")
    # Any int32 is a valid enum value for Go (a newer CRI may add protocols): kept.
    assert PortMapping(protocol=9).protocol == 9
    with pytest.raises(InvalidConfigError, match="unicode"):
        PodSandboxConfig(hostname="\ud800")
    with pytest.raises(InvalidConfigError):
        DNSConfig(servers="1.1.1.1")  # a str is not a list of servers


def test_go_json_escapes_like_go() -> None:
    assert go_json_dumps({"a": '<>&\u2028\u2029\b\f\t"\\é'}) == (
        '{"a":"\\u003c\\u003e\\u0026\\u2028\\u2029\\u0008\\u000c\\t\\"\\\\é"}'.encode()
    )
    assert go_json_dumps([True, False, None, -3, "x"]) == b'[true,false,null,-3,"x"]'


def test_event_dict_round_trip() -> None:
    md = golden_metadata()
    assert Metadata.from_event_dict(md.to_event_dict()) == md
    with pytest.raises(InvalidMetadataError):
        Metadata.from_event_dict({"name": "x"})
