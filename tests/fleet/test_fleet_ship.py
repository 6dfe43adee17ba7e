"""Shipping to a real JetStream server and reading back, through outages and crashes.

The property under test, for every node: the stream ends up with every
record of the node's log exactly once, in seq order, and the chain verifies
from the shipped bytes alone - whether the server is killed and restarted
under the shipper, or the shipper is SIGKILLed and restarted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import nats
import pytest
from fleet_support import payload, start_shipper, stream_last_seq, wait_for, write_log

import eventlog
from eventlog import EventLog
from replay.fleet.commands import fleet_exit_code
from replay.fleet.errors import (
    DivergedError,
    FleetConnectionError,
    NodeNotFoundError,
    StreamNotFoundError,
)
from replay.fleet.message import decode, encode
from replay.fleet.natsserver import LocalNatsServer, free_port
from replay.fleet.ship import EXIT_DIVERGED, ShipConfig, ShipStats, ship_async
from replay.fleet.source import fleet_nodes, fleet_records, stream_messages
from replay.fleet.verify import fleet_verify

STREAM = "SANDBOXLOG"


def ship_once(state_dir: Path, url: str, node: str, **kw: object) -> ShipStats:
    cfg = ShipConfig(state_dir=state_dir, nats_url=url, node=node, once=True, **kw)  # type: ignore[arg-type]
    return asyncio.run(ship_async(cfg, handle_signals=False))


def stream_seqs(url: str, node: str) -> list[int]:
    """The record seqs on the node's subject, in stream order (duplicates kept)."""
    return [decode(m.data).seq for m in stream_messages(url, STREAM, node)]


def assert_same_as_log(url: str, node: str, state_dir: Path) -> None:
    local = list(eventlog.read(state_dir))
    shipped = list(fleet_records(url, STREAM, node))
    assert [r.seq for r in shipped] == [r.seq for r in local]
    for a, b in zip(local, shipped, strict=True):
        assert (a.time_ns, a.digest, a.payload) == (b.time_ns, b.digest, b.payload)


def test_two_nodes_ship_and_read_back(nats_server: LocalNatsServer, tmp_path: Path) -> None:
    url = nats_server.url
    a, b = tmp_path / "a", tmp_path / "b"
    write_log(a, 250, node="a", batch_every=9)
    write_log(b, 120, node="b")
    stats_a = ship_once(a, url, "node-a")
    stats_b = ship_once(b, url, "node-b")
    assert (stats_a.acked, stats_a.last_acked_seq) == (250, 250)
    assert (stats_b.acked, stats_b.last_acked_seq) == (120, 120)

    assert fleet_nodes(url) == ["node-a", "node-b"]
    assert_same_as_log(url, "node-a", a)
    assert_same_as_log(url, "node-b", b)
    reports = fleet_verify(url)
    assert [r.node for r in reports] == ["node-a", "node-b"]
    assert all(r.ok for r in reports), [r.problems for r in reports]

    # The fleet: every record of both, merged by time, each node's order kept.
    fleet = list(fleet_records(url, STREAM, "*"))
    assert len(fleet) == 370
    times = [r.time_ns for r in fleet]
    assert times == sorted(times)
    for node in ("node-a", "node-b"):
        seqs = [r.seq for r in fleet if r.node == node]
        assert seqs == sorted(seqs)

    # Shipping again is a no-op; more records resume after the stream's last.
    again = ship_once(a, url, "node-a")
    assert (again.acked, again.resumed_from) == (0, 250)
    with EventLog.open(a, durability="none") as log:
        for i in range(30):
            log.append(payload(i, "a", salt="more"))
    more = ship_once(a, url, "node-a")
    assert (more.resumed_from, more.acked, more.last_acked_seq) == (250, 30, 280)
    assert stream_seqs(url, "node-a") == list(range(1, 281))


def _writer(directory: Path, node: str, stop: threading.Event, salt: str) -> threading.Thread:
    """Append events at a steady pace (some as batches) until ``stop``, in a thread.

    Writing until told to stop (not a fixed count) is what makes the crashes
    below happen mid-stream on a fast machine and a slow one alike. Bounded:
    at most 40,000 events or 120 s.
    """

    def run() -> None:
        deadline = time.monotonic() + 120
        with EventLog.open(directory, durability="none") as log:
            i = 0
            while not stop.is_set() and i < 40_000 and time.monotonic() < deadline:
                if i % 40 == 0:
                    log.append_batch([payload(i + k, node, salt) for k in range(4)])
                    i += 4
                else:
                    log.append(payload(i, node, salt))
                    i += 1
                if i % 20 == 0:
                    time.sleep(0.01)

    t = threading.Thread(target=run, name=f"writer-{node}", daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_server_and_shipper_crashes_mid_stream_lose_and_repeat_nothing(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    dirs = {"n1": tmp_path / "n1", "n2": tmp_path / "n2"}
    stop = threading.Event()
    for n, d in dirs.items():
        write_log(d, 4, node=n)  # the log exists before the shipper starts
    writers = [_writer(d, n, stop, "live") for n, d in dirs.items()]
    shippers = {n: start_shipper(d, url, n, "-o", "json") for n, d in dirs.items()}
    first_n1 = None
    try:
        for n in dirs:
            wait_for(lambda n=n: stream_last_seq(url, STREAM, n) > 200, 30, f"{n} shipping")

        # The server dies mid-stream (no goodbye) and comes back on the same
        # port and store dir while the shippers and writers keep running.
        nats_server.kill()
        time.sleep(0.8)
        nats_server.start()
        mark = stream_last_seq(url, STREAM, "n2")
        wait_for(
            lambda: stream_last_seq(url, STREAM, "n2") > mark + 300, 30, "shipping after restart"
        )

        # One shipper is SIGKILLed mid-stream and started again.
        first_n1 = shippers["n1"]
        first_n1.kill()
        first_n1.wait(timeout=10)
        mark = stream_last_seq(url, STREAM, "n1")
        time.sleep(0.3)
        shippers["n1"] = start_shipper(dirs["n1"], url, "n1", "-o", "json")
        wait_for(
            lambda: stream_last_seq(url, STREAM, "n1") > mark + 300, 30, "shipping after SIGKILL"
        )
        assert all(t.is_alive() for t in writers), "the writers must still be writing"
    finally:
        stop.set()
        for t in writers:
            t.join(timeout=60)
        try:
            for n, d in dirs.items():
                last = max(r.seq for r in eventlog.read(d))
                wait_for(lambda n=n, last=last: stream_last_seq(url, STREAM, n) == last, 60, n)
        finally:
            outputs = {}
            for n, p in shippers.items():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                out, err = p.communicate(timeout=30)
                outputs[n] = (p.returncode, out.decode(), err.decode())
            if first_n1 is not None:
                first_n1.communicate(timeout=10)

    for n, (code, _out, err) in outputs.items():
        assert code == 0, f"shipper {n} exited {code}: {err}"
    summaries = {n: json.loads(out) for n, (_c, out, _e) in outputs.items()}
    assert summaries["n2"]["failures"] >= 1  # it lived through the outage
    assert summaries["n2"]["sessions"] >= 2, outputs["n2"]
    assert summaries["n2"]["resumed_from"] > 200, outputs["n2"]
    assert summaries["n1"]["resumed_from"] > 200  # the restarted one resumed, not restarted
    for n, d in dirs.items():
        last = max(r.seq for r in eventlog.read(d))
        assert last > 1000
        assert stream_seqs(url, n) == list(range(1, last + 1)), f"{n}: not exactly once in order"
        assert_same_as_log(url, n, d)
    reports = fleet_verify(url)
    assert all(r.ok for r in reports), [str(p) for r in reports for p in r.problems]


def test_sigterm_stops_cleanly_with_a_summary(nats_server: LocalNatsServer, tmp_path: Path) -> None:
    d = tmp_path / "n"
    write_log(d, 50)
    p = start_shipper(d, nats_server.url, "n", "-o", "json")
    try:
        wait_for(lambda: stream_last_seq(nats_server.url, STREAM, "n") == 50, 30, "shipping")
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    summary = json.loads(out)
    assert (summary["acked"], summary["last_acked_seq"], summary["node"]) == (50, 50, "n")


class StderrLines:
    """A process's stderr, read line by line in a thread, so a test can wait for a line."""

    def __init__(self, p: subprocess.Popen[bytes]) -> None:
        assert p.stderr is not None
        self._stream = p.stderr
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.decode(errors="replace"))

    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> str:
        """Everything, once the process has closed its stderr."""
        self._thread.join(timeout=30)
        return self.text()


def test_a_shipper_waits_for_a_log_and_for_a_server(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    """Started before the server and before the node wrote anything, it catches up."""
    nats_server.kill()  # down until the shipper has had to wait for it
    d = tmp_path / "n"
    d.mkdir()
    p = start_shipper(d, nats_server.url, "n")
    err = StderrLines(p)
    try:
        # It has tried, failed and said so - and is still running, retrying.
        wait_for(lambda: "cannot reach NATS" in err.text(), 60, "the first connection failure")
        assert p.poll() is None, err.text()
        write_log(d, 10)
        nats_server.start()
        wait_for(lambda: stream_last_seq(nats_server.url, STREAM, "n") == 10, 30, "shipping")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert p.stdout is not None
        p.stdout.close()
    text = err.join()
    assert p.returncode == 0, text
    # One outage, one warning (later failures of it are debug lines), never a copy.
    failures = [line for line in text.splitlines() if "cannot reach NATS" in line]
    assert len(failures) == 1, text


def _publish(url: str, subject: str, body: bytes, msg_id: str) -> None:
    async def go() -> None:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()

    asyncio.run(go())


def _purge(url: str, subject: str) -> None:
    async def go() -> None:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            await nc.jetstream().purge_stream(STREAM, subject=subject)
        finally:
            await nc.close()

    asyncio.run(go())


def test_tampering_on_the_stream_is_caught(nats_server: LocalNatsServer, tmp_path: Path) -> None:
    import attrs
    import msgpack

    url = nats_server.url
    d = tmp_path / "n"
    write_log(d, 40)
    ship_once(d, url, "n")
    shipped = list(fleet_records(url, STREAM, "n"))
    assert fleet_verify(url, node="n")[0].ok

    # 1. A modified copy of seq 7 published under another message id.
    evil = attrs.evolve(
        shipped[6],
        payload_bytes=msgpack.packb(dict(shipped[6].payload, id="evil"), use_bin_type=True),
    )
    body, _ = encode(evil)
    _publish(url, f"{STREAM}.n", body, "n:7-again")
    report = fleet_verify(url, node="n")[0]
    assert not report.ok
    assert [(p.kind, p.seq) for p in report.problems] == [("duplicate", 7)]

    # 2. The subject purged and republished with seq 12's payload altered.
    _purge(url, f"{STREAM}.n")
    for rec in shipped:
        if rec.seq == 12:
            forged = dict(rec.payload, status={"state": "SANDBOX_NOTREADY"})
            rec = attrs.evolve(rec, payload_bytes=msgpack.packb(forged, use_bin_type=True))
        body, _ = encode(rec)
        _publish(url, f"{STREAM}.n", body, f"n:{rec.seq}:republished")
    report = fleet_verify(url, node="n")[0]
    assert [(p.kind, p.seq) for p in report.chain.problems] == [("digest", 12)]
    assert "altered" in report.problems[0].detail


def test_a_different_history_under_the_same_node_is_refused(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    write_log(tmp_path / "one", 20, node="one")
    write_log(tmp_path / "two", 30, node="two")
    ship_once(tmp_path / "one", url, "n")
    with pytest.raises(DivergedError) as exc_info:
        ship_once(tmp_path / "two", url, "n")
    assert "different histories" in str(exc_info.value)
    assert fleet_exit_code(exc_info.value) == EXIT_DIVERGED
    write_log(tmp_path / "short", 5, node="one")
    with pytest.raises(DivergedError, match="has fewer"):
        ship_once(tmp_path / "short", url, "n")
    # The command line says the same, with its exit code.
    p = start_shipper(tmp_path / "two", url, "n", "--once")
    _out, err = p.communicate(timeout=60)
    assert p.returncode == EXIT_DIVERGED, err.decode()
    assert "different histories" in err.decode()
    assert stream_seqs(url, "n") == list(range(1, 21))


def test_read_errors_name_what_is_missing(nats_server: LocalNatsServer, tmp_path: Path) -> None:
    url = nats_server.url
    with pytest.raises(StreamNotFoundError):
        list(fleet_records(url, STREAM, "n"))
    write_log(tmp_path / "n", 3)
    ship_once(tmp_path / "n", url, "n")
    with pytest.raises(NodeNotFoundError, match="nodes on the stream: n"):
        list(fleet_records(url, STREAM, "other"))
    with pytest.raises(FleetConnectionError):
        list(fleet_records(f"nats://127.0.0.1:{free_port()}", STREAM, "n"))


def test_a_hole_behind_the_acks_stops_the_shipper(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    """A later record stored after an earlier one failed cannot be mended by appending."""
    from replay.fleet.errors import ShipFatalError
    from replay.fleet.feeder import shipped_from_log
    from replay.fleet.ship import Shipper

    url = nats_server.url
    d = tmp_path / "n"
    write_log(d, 10)
    shipper = Shipper(ShipConfig(state_dir=d, nats_url=url, node="n", once=True))
    assert asyncio.run(shipper.run()).last_acked_seq == 10
    write_log(d, 5, salt="more")
    # seq 12 lands on the stream without seq 11 (as if 11's publish had failed)
    twelve = list(shipped_from_log(d, "n"))[11]
    body, _ = encode(twelve)
    _publish(url, f"{STREAM}.n", body, "n:12")
    with pytest.raises(ShipFatalError, match="where seq 11 belongs"):
        asyncio.run(shipper.run())
    assert stream_seqs(url, "n") == [*range(1, 11), 12]


def test_a_keyed_log_ships_and_verifies_with_its_key(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    key = b"secret-key-of-node"
    d = tmp_path / "k"
    write_log(d, 25, key=key, batch_every=7)
    assert ship_once(d, nats_server.url, "k", key=key).acked == 25
    assert fleet_verify(nats_server.url, node="k", key=key)[0].ok
    (without,) = fleet_verify(nats_server.url, node="k")
    assert [p.kind for p in without.problems] == ["key-required"]
    (wrong,) = fleet_verify(nats_server.url, node="k", key=b"another-key")
    assert not wrong.ok and wrong.problems[0].kind == "digest"
