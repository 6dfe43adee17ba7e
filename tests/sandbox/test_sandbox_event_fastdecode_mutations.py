"""The typed-decode hook's soundness under a seeded loop of random mutations: byte
flips and insertions, structural changes (a field set, dropped or added anywhere,
with values of every msgpack type) and plausible ones (a leaf set to a same-kind
edge value, keys reordered). The rule and the payloads are those of
test_sandbox_event_fastdecode.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import msgpack
from test_sandbox_event_fastdecode import STRUCTURED, VALID, A, check, pack

from sandbox import events as ev

#: Bytes that change a msgpack value's type or length (nil, reserved, bools, bin, float,
#: uints, ints, fixext, str8/16, array16, map16/32, fixmap, fixarray, fixstr, ints).
_MARKERS = bytes.fromhex("c0c1c2c3c4c5cacbcccdcecfd0d3d4d6d9dadcdedf80819091a0a1ff007f")


def _byte_mutation(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and at < len(buf):
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1 and at < len(buf):
            buf[at] = rng.choice(_MARKERS)
        elif op == 2:
            buf.insert(at, rng.choice(_MARKERS))
        elif op == 3 and at < len(buf):
            del buf[at]
        elif op == 4:
            del buf[at:]
        else:
            buf[at:at] = rng.randbytes(rng.randint(1, 4))
    return bytes(buf)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(14 if depth < 3 else 10)
    return [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.choice([0, 1, -1, 2**63 - 1, 2**63, -(2**63), 2**64 - 1, 255, -129]),
        lambda: rng.choice([0.0, -0.0, 1.5, float("nan"), float("inf")]),
        lambda: rng.choice(["", "READY", "NOTREADY", "UNKNOWN", "x", A, "é", "\x00"]),
        lambda: rng.choice([b"", b"READY", b"\xff"]),
        lambda: rng.choice(list(ev.CURRENT)),
        lambda: rng.choice([1, 2, 0, 3]),
        lambda: msgpack.ExtType(rng.randrange(128), b"x"),
        lambda: rng.choice(["type", "v", "id", "env", "status", "path", "reason"]),
        lambda: [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))],
        lambda: {rng.choice(["a", "state", "pid", "time", "id"]): _random_value(rng, depth + 1)},
        lambda: dict(STRUCTURED[rng.choice(sorted(STRUCTURED))]),
        lambda: {},
    ][pick]()


def _structured_mutation(rng: random.Random, payload: dict[str, Any]) -> bytes:
    """Set, drop or add one field anywhere in the payload's maps."""
    out = dict(payload)
    target = out
    while True:
        maps = [k for k, v in target.items() if isinstance(v, dict)]
        if not maps or rng.random() < 0.4:
            break
        k = rng.choice(maps)
        target[k] = dict(target[k])
        target = target[k]
    keys = list(target)
    what = rng.randrange(3)
    if what == 0 and keys:
        target[rng.choice(keys)] = _random_value(rng)
    elif what == 1 and keys:
        del target[rng.choice(keys)]
    else:
        target[rng.choice(["extra", "state", "v", "type", "id", "config"])] = _random_value(rng)
    try:
        return pack(out)
    except (TypeError, ValueError, OverflowError):
        return pack(payload)


_EDGE_INTS = (0, 1, -1, 2**31, 2**63 - 1, 2**63, -(2**63), 2**64 - 1, 127, 128, -32, -33)
_EDGE_STRS = ("", "x", "é", "\u2028", "\U0001f600", "\x00", "READY", "UNKNOWN", A * 2)


def _edge_of(rng: random.Random, value: Any) -> Any:
    """A value of the same kind as ``value``, often at an edge of its range."""
    if isinstance(value, bool) or value is None:
        return rng.choice([None, True, False, 0, 1, "x"])
    if isinstance(value, int):
        return rng.choice(_EDGE_INTS)
    if isinstance(value, str):
        return rng.choice(_EDGE_STRS)
    if isinstance(value, list):
        return [_edge_of(rng, v) for v in value] or rng.choice([[], ["x"], [1]])
    return value


def _plausible_mutation(rng: random.Random, payload: dict[str, Any]) -> bytes:
    """One leaf set to a same-kind (often edge) value, keys shuffled now and then:
    mostly payloads the fast path still takes - where a bound it mirrors could slip."""
    out = dict(payload)
    target = out
    while True:
        maps = [k for k, v in target.items() if isinstance(v, dict) and v]
        if not maps or rng.random() < 0.3:
            break
        k = rng.choice(maps)
        target[k] = dict(target[k])
        target = target[k]
    key = rng.choice(list(target))
    if key not in ("type", "v"):
        target[key] = _edge_of(rng, target[key])
    if rng.random() < 0.3:
        items = list(target.items())
        rng.shuffle(items)
        target.clear()
        target.update(items)
    return pack(out)


def mutations(seed: int, count: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    valid = list(VALID.values())
    bases = [*valid, *STRUCTURED.values()]
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:
            yield _byte_mutation(rng, pack(rng.choice(bases)))
        elif kind == 1:
            yield _structured_mutation(rng, rng.choice(bases))
        else:
            yield _plausible_mutation(rng, rng.choice(valid))


def test_seeded_random_mutations_are_sound() -> None:
    fast = fell_back = 0
    for payload in mutations(seed=20240611, count=6000):
        if check(payload) is None:
            fell_back += 1
        else:
            fast += 1
    # Both paths ran many times (the loop is not all fallbacks, nor all clean).
    assert fast > 1000 and fell_back > 1000, (fast, fell_back)
