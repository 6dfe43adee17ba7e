"""Compaction of a shipping node, against a real JetStream server.

The property: a node that ships only lets go of history the stream holds.
``sandboxctl ship`` records the last acknowledged seq (``SHIPPED``);
``sandboxctl compact`` refuses to remove records above it (exit 1, naming
the seqs) and, once everything is shipped, compacts. Afterwards the state
dir still opens, ``verify`` passes on what is local and says what is not,
and ``verify --nats`` still passes over the stream, where the whole history
is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import support
from fleet_support import stream_last_seq

import eventlog
from eventlog.history import load_shipped
from replay.fleet.natsserver import LocalNatsServer
from sandbox import Store

STREAM = "SANDBOXLOG"
NODE = "node-c"
SEGMENT_BYTES = 4096


def ship_once(state: Path, url: str) -> None:
    support.ok(
        support.sandboxctl(
            "--state-dir", str(state), "ship", "--nats", url, "--stream", STREAM,
            "--node", NODE, "--once", "--ack-timeout", "5", "--give-up-after", "60",
        )
    )  # fmt: skip


def churn(store: Store, first: int, count: int) -> None:
    """``count`` events: add a sandbox, delete every third one added."""
    for i in range(first, first + count):
        added = store.add(support.sandbox(f"pod{i}"))
        if i % 3 == 0:
            store.delete(added.metadata.id)


def segment_names(state: Path) -> list[str]:
    return sorted(n for n in os.listdir(state) if n.endswith(".log"))


def digest_at(state: Path, seq: int) -> bytes:
    (record,) = eventlog.read(state, from_seq=seq, to_seq=seq)
    return record.digest


@pytest.mark.slow
def test_compact_waits_for_the_stream_then_verifies_locally_and_over_nats(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    state, netns = tmp_path / "state", tmp_path / "netns"
    netns.mkdir()
    with Store.open(state, netns_dir=netns, durability="none", segment_bytes=SEGMENT_BYTES) as st:
        churn(st, 0, 40)
        shipped_seq = st.last_seq

    # Ship part of the log: SHIPPED holds the acked seq and the log's digest there.
    ship_once(state, url)
    assert stream_last_seq(url, STREAM, NODE) == shipped_seq
    shipped = load_shipped(str(state))
    assert shipped is not None
    assert (shipped.seq, shipped.digest) == (shipped_seq, digest_at(state, shipped_seq))

    # More history, and two snapshots, all after what was shipped.
    with Store.open(state, netns_dir=netns, durability="none", segment_bytes=SEGMENT_BYTES) as st:
        churn(st, 40, 60)
        st.snapshot()
        churn(st, 100, 60)
        st.snapshot()
        churn(st, 160, 10)
        live = sorted(s.metadata.id for s in st.list())
        last = st.last_seq
    assert len(segment_names(state)) > 5

    # Compaction would remove unshipped records: refused, and nothing changes.
    before = sorted(os.listdir(state))
    line = support.fails(support.sandboxctl("--state-dir", str(state), "compact"), 1)
    assert "never shipped" in line and f"SHIPPED says seq {shipped_seq}" in line, line
    assert f"seqs {shipped_seq + 1}.." in line, line
    assert sorted(os.listdir(state)) == before
    assert eventlog.local_history(str(state)) is None

    # Ship the rest: SHIPPED moves to the end, and now it compacts.
    ship_once(state, url)
    assert stream_last_seq(url, STREAM, NODE) == last
    shipped = load_shipped(str(state))
    assert shipped is not None and (shipped.seq, shipped.digest) == (last, digest_at(state, last))
    out = support.ok(support.sandboxctl("--state-dir", str(state), "compact", "-o", "json"))
    history = eventlog.local_history(str(state))
    assert history is not None and history.first_seq > shipped_seq
    assert history.shipped_seq == last
    assert len(segment_names(state)) < len(before)
    assert f'"first_seq": {history.first_seq}' in out, out

    # The state dir reopens with the same live set (from the kept snapshots).
    with Store.open(state, durability="none", segment_bytes=SEGMENT_BYTES) as st:
        assert sorted(s.metadata.id for s in st.list()) == live
        assert st.last_seq == last

    # verify: what is local is clean, and it says what is not local.
    cp = support.sandboxctl("--state-dir", str(state), "verify")
    out = support.ok(cp)
    assert f"seq {history.first_seq}..{last}" in out, out
    assert f"history before seq {history.first_seq} is not local" in out, out

    # verify over the stream: the whole history, from seq 1, is in the fleet.
    cp = support.sandboxctl("verify", "--nats", url, "--stream", STREAM, "--node", NODE)
    assert f"seq 1..{last}" in support.ok(cp), cp.stdout
