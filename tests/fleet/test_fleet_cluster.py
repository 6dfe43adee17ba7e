"""Shipping to an R3 stream on a three-node JetStream cluster that loses its leader, then quorum.

README and docs/FLEET.md tell users to ship to a cluster with ``--replicas 3``
and every seed URL; this is that setup, run for real on loopback:
``sandboxctl ship`` (a real process) tails a log that is still being written
while the stream's leader is SIGKILLed, then a second member (the stream and
the cluster lose quorum: nothing can be acknowledged), and both come back on
their ports and store dirs. What must hold afterwards is what holds on one
server: every record of the log is on the stream exactly once and in seq
order, byte for byte, and ``sandboxctl verify`` over the stream passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
import support
from cluster_support import LocalNatsCluster, nats_binary_or_skip
from fleet_support import payload, wait_for

import eventlog
from eventlog import EventLog
from replay.fleet.message import decode
from replay.fleet.source import fleet_records, stream_messages

pytestmark = pytest.mark.slow

STREAM = "CLUSTERLOG"
NODE = "node-c1"
SUBJECT = f"{STREAM}.{NODE}"
#: Records shipped between the milestones below.
STEP = 300
#: A bound on the log (the writer stops earlier when told to).
MAX_RECORDS = 12_000
#: What the shipper logs on the first failed connection of each outage.
RETRY_LINE = "retrying for up to"


def _writer(directory: Path, stop: threading.Event) -> threading.Thread:
    """Append events at a steady pace (some as batches of 4) until ``stop``, in a thread.

    Writing until told to (at most ~250 records/s) is what puts every kill
    below in the middle of shipping, on a fast machine and a slow one alike.
    durability="always": every record is durable once appended, so the test
    holds whether the shipper ships what it reads or only what is proven
    durable. Bounded: MAX_RECORDS or 120 s.
    """

    def run() -> None:
        deadline = time.monotonic() + 120
        with EventLog.open(directory, durability="always") as log:
            i = 0
            while not stop.is_set() and i < MAX_RECORDS and time.monotonic() < deadline:
                if i % 40 == 0:
                    log.append_batch([payload(i + k, NODE, "cl") for k in range(4)])
                    i += 4
                else:
                    log.append(payload(i, NODE, "cl"))
                    i += 1
                if i % 5 == 0:
                    time.sleep(0.02)

    t = threading.Thread(target=run, name="writer", daemon=True)
    t.start()
    return t


def _start_ship(state: Path, urls: str, out: IO[bytes], err: IO[bytes]) -> subprocess.Popen[bytes]:
    """``sandboxctl ship --replicas 3`` as a real process, every seed given, fast retries."""
    env = dict(os.environ)
    env.pop("SANDBOXCTL_STATE_DIR", None)
    env.pop("SANDBOX_CRASHPOINT", None)
    argv = [sys.executable, "-m", "replay", "--state-dir", str(state), "ship"]
    argv += ["--nats", urls, "--stream", STREAM, "--node", NODE, "--replicas", "3"]
    argv += ["--backoff-max", "0.3", "--ack-timeout", "2", "--poll-interval", "0.2"]
    argv += ["--give-up-after", "120", "-o", "json"]
    return subprocess.Popen(
        argv, cwd=support.REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
    )


def _last_shipped(cluster: LocalNatsCluster) -> int:
    """NODE's last record seq on the stream; 0 while the cluster cannot answer."""
    msg = cluster.ask(lambda js: js.get_last_msg(STREAM, SUBJECT))
    return decode(msg.data or b"").seq if msg is not None else 0


def _shipped_beyond(cluster: LocalNatsCluster, seq: int) -> bool:
    return _last_shipped(cluster) >= seq


def test_r3_stream_survives_leader_kill_and_quorum_loss(tmp_path: Path) -> None:
    binary = nats_binary_or_skip()
    state = tmp_path / "state"
    err_path = tmp_path / "ship.err"
    stop = threading.Event()
    writer: threading.Thread | None = None
    shipper: subprocess.Popen[bytes] | None = None
    cluster = LocalNatsCluster.create(tmp_path / "cluster", binary)

    def retries() -> int:
        return err_path.read_text(errors="replace").count(RETRY_LINE)

    with (
        cluster,
        open(tmp_path / "ship.out", "w+b") as out,
        open(err_path, "wb") as err,
    ):
        try:
            writer = _writer(state, stop)
            wait_for(state.is_dir, 30, "the writer's state dir")
            shipper = _start_ship(state, cluster.urls, out, err)

            # An R3 stream, created by the shipper, all replicas current, shipping.
            wait_for(lambda: _shipped_beyond(cluster, STEP), 60, "shipping to the cluster")
            info = cluster.stream_info(STREAM)
            assert info is not None and info.config.num_replicas == 3
            wait_for(lambda: cluster.stream_healthy(STREAM, 3), 60, "three current replicas")

            # 1. The stream leader dies mid-ship; the others elect a new one.
            first = cluster.stream_leader(STREAM)
            assert first is not None
            cluster.server(first).kill()
            wait_for(lambda: cluster.stream_leader(STREAM) not in (None, first), 60, "a new leader")
            mark = _last_shipped(cluster)
            wait_for(lambda: _shipped_beyond(cluster, mark + STEP), 60, "shipping, 2 of 3 up")

            # 2. The new leader dies too: 1 of 3, no quorum, nothing can be acked.
            second = cluster.stream_leader(STREAM)
            assert second is not None and second != first
            seen = retries()
            cluster.server(second).kill()
            wait_for(lambda: cluster.stream_info(STREAM) is None, 30, "the stream without quorum")
            wait_for(lambda: retries() > seen, 30, "the shipper to fail on the lost quorum")
            assert writer.is_alive() and shipper.poll() is None, "both must outlive the outage"

            # 3. Both come back on their ports and store dirs and catch up.
            cluster.server(first).start()
            cluster.server(second).start()
            wait_for(lambda: cluster.stream_healthy(STREAM, 3), 60, "the stream healed")
            mark = _last_shipped(cluster)
            wait_for(lambda: _shipped_beyond(cluster, mark + STEP), 60, "shipping, 3 of 3 up")
            assert writer.is_alive(), "the kills must all land while the log grows"

            # The log stops growing; the shipper ships the rest and stops on SIGTERM.
            stop.set()
            writer.join(timeout=60)
            assert not writer.is_alive()
            last = max(r.seq for r in eventlog.read(state))
            wait_for(lambda: _last_shipped(cluster) == last, 60, "the whole log on the stream")
            shipper.send_signal(signal.SIGTERM)
            code = shipper.wait(timeout=30)
        finally:
            stop.set()
            if writer is not None:
                writer.join(timeout=60)
            if shipper is not None and shipper.poll() is None:
                shipper.kill()
                shipper.wait(timeout=30)

        err_text = err_path.read_text(errors="replace")
        assert code == 0, f"shipper exited {code}: {err_text}"
        assert "Traceback" not in err_text
        out.seek(0)
        summary = json.loads(out.read())
        assert summary["failures"] >= 1 and summary["sessions"] >= 2, summary
        assert summary["resumed_from"] > 0, summary
        assert 3 * STEP < last <= MAX_RECORDS

        # Exactly once, in order: the raw messages of the node's subject, repeats kept.
        seqs = [decode(m.data).seq for m in stream_messages(cluster.urls, STREAM, NODE)]
        assert seqs == list(range(1, last + 1)), "not every record exactly once in order"
        local = list(eventlog.read(state))
        shipped = list(fleet_records(cluster.urls, STREAM, NODE))
        for a, b in zip(local, shipped, strict=True):
            assert (a.seq, a.time_ns, a.digest, a.payload) == (
                b.seq,
                b.time_ns,
                b.digest,
                b.payload,
            )

        # The project's own verify over the stream: chain and every event.
        verified = support.ok(
            support.sandboxctl("verify", "--nats", cluster.urls, "--stream", STREAM, "--node", NODE)
        )
        assert verified.startswith(f"OK: node {NODE}: {last} records"), verified
