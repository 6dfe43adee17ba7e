"""``sandboxctl ship --metrics-addr`` against a real nats-server: the lag reaches 0.

Why a real server and a real process: the figures an operator alerts on
(``last_acked_seq`` catching up with the log's head, ``lag_records`` at 0)
are only true if the acks really come back from JetStream; the shipper is
scraped over HTTP while it runs, as Prometheus would.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import support
from support import sandbox

from replay.fleet.natsserver import LocalNatsServer
from sandbox import Store

pytest.importorskip("prometheus_client", reason="the metrics extra (prometheus-client) is missing")

from prometheus_client.parser import text_string_to_metric_families

P = "sandboxctl_ship_"
NODE = "node-m"

Samples = dict[str, float]


def scrape(url: str) -> Samples:
    """The node's samples of one scrape: name -> value."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("node") == NODE
    }


def poll_until(
    url: str, cond: Callable[[Samples], bool], what: str, timeout: float = 60
) -> Samples:
    """Scrape until ``cond(samples)`` holds; fail with the last scrape after ``timeout``."""
    return support.poll_until(lambda: scrape(url), cond, what, timeout)


def caught_up(head: int) -> Callable[[Samples], bool]:
    return lambda s: (
        s.get(P + "last_acked_seq") == head
        and s.get(P + "log_head_seq") == head
        and s.get(P + "lag_records") == 0
    )


def test_ship_metrics_reach_the_logs_head_and_zero_lag(
    nats_server: LocalNatsServer, state_dir: Path, spare_netns_dir: Path
) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        for i in range(20):
            store.add(sandbox(f"p{i}"))
        head = store.last_seq
    proc = support.spawn_sandboxctl(
        "ship",
        "--state-dir",
        str(state_dir),
        "--nats",
        nats_server.url,
        "--node",
        NODE,
        "--poll-interval",
        "0.2",
        "--backoff-max",
        "0.3",
        "--metrics-addr",
        "127.0.0.1:0",
        "-q",
        stdout=subprocess.PIPE,
    )
    try:
        url = support.read_metrics_url(proc)
        # During shipping: the head is known at once, the acks catch up with it.
        first = poll_until(url, lambda s: s.get(P + "log_head_seq") == head, "the log's head")
        assert 0 <= first[P + "last_acked_seq"] <= head
        assert first[P + "lag_records"] == head - first[P + "last_acked_seq"]
        done = poll_until(url, caught_up(head), f"the acks to reach seq {head}")
        assert done[P + "lag_seconds"] == 0
        assert done[P + "acked_records_total"] >= head

        # More records while the shipper runs: the head moves, then the acks follow.
        with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
            for i in range(5):
                store.add(sandbox(f"q{i}"))
            new_head = store.last_seq
        assert new_head > head
        done = poll_until(url, caught_up(new_head), f"the acks to reach seq {new_head}")
        assert done[P + "lag_seconds"] == 0
        assert done[P + "failures_total"] == 0

        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
