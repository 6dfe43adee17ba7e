"""Seed inputs, built at run time from real logs, snapshots and metadata blobs.

Nothing here knows a byte of the log's or the snapshot's format: logs are
written with ``eventlog.EventLog``, snapshots taken with ``sandbox.Store``
and blobs made with ``Metadata.to_json``, so the seeds follow the formats as
they change. The only byte-level edits are format-blind: cutting a file
short and appending zeros (what a crash leaves), and splitting a log into
a different set of files (``logcase``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import msgpack

import eventlog
from replay.fuzz import logcase
from replay.fuzz.fixture import POD_CONFIGS, SnapshotFixture, make_sandbox
from replay.fuzz.targets import fixture

__all__ = [
    "log_seeds",
    "metadata_seeds",
    "seeds",
    "snapshot_seeds",
    "tokens",
    "write_corpus",
    "write_dictionary",
]

#: Payloads of every msgpack kind a store event can hold, plus a bit more.
_PAYLOADS: tuple[dict[str, Any], ...] = (
    {"a": 1},
    {"type": "SandboxDeleted", "v": 1, "id": "ab" * 32, "env": {"time": 1, "host": "h"}},
    {"s": "\u00e9\u65e5 text", "b": b"\x00\xff bytes", "n": None, "t": True, "f": 1.5},
    {"big": 2**63 - 1, "neg": -(2**63), "list": [1, [2, [3, {}]]], "map": {"k": {"k": "v"}}},
    {"pad": "x" * 300},
)


def _log_dir(root: str, name: str, **open_args: Any) -> str:
    """A real log: each payload appended, a batch of three, and one more append."""
    directory = os.path.join(root, name)
    with eventlog.EventLog.open(directory, durability="none", **open_args) as log:
        for payload in _PAYLOADS:
            log.append(payload)
        log.append_batch([{"batch": i} for i in range(3)])
        log.append({"after": "batch"})
    return directory


def _segments(directory: str) -> list[tuple[str, bytes]]:
    return logcase.read_dir(directory, suffix=".log")


def log_seeds() -> list[bytes]:
    """Inputs of the ``log`` target (a directory's files each; see ``logcase``)."""
    out: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="sbx-fuzz-seed-") as root:
        one = _segments(_log_dir(root, "one"))
        out.append(logcase.encode(one))
        many = _segments(_log_dir(root, "many", segment_bytes=400))
        out.append(logcase.encode(many[: logcase.MAX_FILES]))
        if len(many) > 1:
            out.append(logcase.encode(many[-2:], control=3))  # head of history missing
        out.append(logcase.encode(_segments(_log_dir(root, "keyed", key=b"fuzz-key"))))
        with eventlog.EventLog.open(os.path.join(root, "empty"), durability="none"):
            pass
        out.append(logcase.encode(_segments(os.path.join(root, "empty"))))
        name, last = one[-1]
        # What crashes leave: a last record cut short at several points, a
        # zero-filled tail, a header cut short; a pre-existing repair file.
        for cut in (1, 5, 40, len(last) // 3):
            out.append(logcase.encode([(name, last[: len(last) - cut])], control=cut))
        out.append(logcase.encode([(name, last + bytes(700))]))
        out.append(logcase.encode([(name, last[:30])]))
        out.append(logcase.encode([*one, (name + ".broken", last[-50:])]))
        # The store's own log: real sandbox events across segment files.
        store_log = _segments(fixture().state_dir)
        out.append(logcase.encode(store_log[: logcase.MAX_FILES]))
    return out


def snapshot_seeds() -> list[bytes]:
    """Inputs of the ``snapshot`` target: the fixture's real snapshot files."""
    return list(fixture().snapshots)


def metadata_seeds() -> list[bytes]:
    """Inputs of the ``metadata`` target: real ``to_json`` blobs and Go-compatible variants."""
    blobs = [make_sandbox(i).metadata.to_json() for i in range(len(POD_CONFIGS))]
    blobs.append(make_sandbox(0, netns_path="/var/run/netns/cni-1234").metadata.to_json())
    doc = json.loads(blobs[1])
    # What later containerd releases add under the same "v1" (ignored here).
    extra = dict(doc)
    extra["Metadata"] = {**doc["Metadata"], "IP": "10.88.0.5", "RuntimeHandler": "runc"}
    blobs.append(json.dumps(extra).encode())
    # Go's decoder matches keys case-insensitively; null reads as the zero value.
    folded = {"version": "v1", "metadata": {k.lower(): v for k, v in doc["Metadata"].items()}}
    blobs.append(json.dumps(folded).encode())
    blobs.append(json.dumps({"Version": "v1", "Metadata": {"ID": "x", "Name": "y"}}).encode())
    # The seed's v1alpha1 namespace options, which the config parser upcasts.
    legacy = json.loads(blobs[0])
    legacy["Metadata"]["Config"]["linux"] = {
        "security_context": {"namespace_options": {"host_network": True, "host_pid": True}}
    }
    blobs.append(json.dumps(legacy).encode())
    # runtime.v1's namespace modes (enums) as crictl 1.3x writes them.
    modern = json.loads(blobs[0])
    modern["Metadata"]["Config"]["linux"] = {
        "security_context": {"namespace_options": {"network": 2, "pid": 1, "ipc": 0}}
    }
    blobs.append(json.dumps(modern).encode())
    blobs.append(b'{"Version":"v2","Metadata":{}}')
    return blobs


# -- dictionaries: tokens libFuzzer splices into inputs --------------------------------


def _common_prefix(items: list[bytes], limit: int = 16) -> bytes:
    """The bytes every item starts with (at most ``limit``)."""
    if not items:
        return b""
    n = 0
    first = items[0]
    while n < min(limit, len(first)) and all(len(i) > n and i[n] == first[n] for i in items):
        n += 1
    return first[:n]


def _json_tokens(doc: Any, out: set[bytes]) -> None:
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.add(json.dumps(key).encode())
            _json_tokens(value, out)
    elif isinstance(doc, list):
        for item in doc:
            _json_tokens(item, out)
    elif isinstance(doc, str) and len(doc) <= 32:
        out.add(json.dumps(doc).encode())


def _msgpack_tokens(doc: Any, out: set[bytes]) -> None:
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.add(msgpack.packb(key, use_bin_type=True))
            _msgpack_tokens(value, out)
    elif isinstance(doc, list | tuple):
        for item in doc:
            _msgpack_tokens(item, out)
    elif isinstance(doc, str) and len(doc) <= 32:
        out.add(msgpack.packb(doc, use_bin_type=True))


def tokens(target: str) -> list[bytes]:
    """Dictionary entries for ``target``, taken from its real seeds at run time.

    Keys and short strings of the seeds' JSON or msgpack, and the prefix all
    seeds share (a file magic, whatever it is today): what coverage guidance
    alone finds slowly, because each is many bytes that must all be right.
    """
    out: set[bytes] = set()
    if target == "metadata":
        for blob in metadata_seeds():
            _json_tokens(json.loads(blob), out)
        out.update([b"null", b"true", b"false", b"{}", b"[]", b'"\\ud800"', b"1e999"])
    elif target == "snapshot":
        fx = fixture()
        out.add(_common_prefix(list(fx.snapshots)))
        for truth in fx.truth:
            _msgpack_tokens(truth, out)
    elif target == "log":
        segments = [content for _name, content in _segments(fixture().state_dir)]
        out.add(_common_prefix(segments))
        for payload in _PAYLOADS:
            _msgpack_tokens(payload, out)
        out.update(name.encode() for name, _content in _segments(fixture().state_dir))
    else:
        raise ValueError(f"no tokens for target {target!r}")
    return sorted(t for t in out if 0 < len(t) <= 64)


def write_dictionary(target: str, path: str) -> int:
    """Write ``tokens(target)`` as a libFuzzer ``-dict`` file; returns how many."""
    entries = tokens(target)
    with open(path, "w", encoding="ascii") as f:
        for i, token in enumerate(entries):
            escaped = "".join(
                chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}"
                for b in token
            )
            f.write(f'kw{i}="{escaped}"\n')
    return len(entries)


#: Target name -> seed builder.
_SEEDS = {"log": log_seeds, "snapshot": snapshot_seeds, "metadata": metadata_seeds}


def seeds(target: str) -> list[bytes]:
    """The seed inputs of ``target`` (a name in ``targets.TARGETS``)."""
    try:
        build = _SEEDS[target]
    except KeyError:
        raise ValueError(f"no seeds for target {target!r}; known: {sorted(_SEEDS)}") from None
    return build()


def write_corpus(target: str, directory: str) -> int:
    """Add ``target``'s seeds to a libFuzzer corpus directory (named by content hash);
    returns how many were new."""
    os.makedirs(directory, exist_ok=True)
    added = 0
    for seed in seeds(target):
        path = os.path.join(directory, "seed-" + hashlib.sha1(seed).hexdigest())
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(seed)
            added += 1
    return added


def build_fixture(root: str) -> SnapshotFixture:
    """Make a snapshot fixture for a fuzzing process to share (see ``targets.FIXTURE_ENV``)."""
    return SnapshotFixture.build(root)
