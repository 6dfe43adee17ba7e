"""The store's Prometheus metrics, in a registry of the test's own.

Why exact counts: the metrics are only useful to an operator if they agree
with what the log itself counts (``EventLog.stats``): N appends must be N
records, every fdatasync one fsync observation.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import support

from eventlog import EventLog, Timings
from sandbox import State, Status, Store

pytest.importorskip("prometheus_client", reason="the metrics extra (prometheus-client) is missing")

from prometheus_client import CollectorRegistry

from sandbox.metrics import LogView, StoreMetrics, parse_addr, serve_metrics

P = "sandboxstore_"


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    got = reg.get_sample_value(P + name, labels)
    assert got is not None, f"{P + name}{labels} is not exposed"
    return got


def test_log_counts_match_the_logs_own_stats(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    metrics = StoreMetrics(reg)
    timings = Timings(every=1)  # time every append, so the count is exact
    with EventLog.open(tmp_path / "log", segment_bytes=2048, timings=timings) as log:
        metrics.attach(LogView(log, timings))
        for i in range(40):
            log.append({"i": i, "pad": "x" * 50})
        log.append_batch([{"b": j} for j in range(5)])
        stats = log.stats
        assert value(reg, "log_records_total") == 45 == stats.records
    assert value(reg, "log_bytes_total") == stats.bytes_written
    assert value(reg, "log_commit_group_size_count") == 41 == stats.appends
    assert value(reg, "log_commit_group_size_sum") == 41  # single-threaded: groups of one
    assert value(reg, "log_append_duration_seconds_count") == 41
    assert value(reg, "log_fsync_duration_seconds_count") == stats.syncs
    assert value(reg, "log_syncs_total") == stats.syncs
    assert stats.rotations > 0
    assert value(reg, "log_rotations_total") == stats.rotations


def test_batch_durability_reports_the_sync_threads_fsyncs(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    metrics = StoreMetrics(reg)
    timings = Timings()
    with EventLog.open(tmp_path / "log", durability="batch", timings=timings) as log:
        metrics.attach(LogView(log, timings))
        for i in range(10):
            log.append({"i": i})
    # close() synced last: every sync the log counted was observed, none twice.
    assert value(reg, "log_fsync_duration_seconds_count") == log.stats.syncs >= 1
    assert value(reg, "log_records_total") == 10


def test_commands_snapshot_and_reopen(state_dir: Path, spare_netns_dir: Path) -> None:
    reg = CollectorRegistry()
    metrics = StoreMetrics(reg)
    with Store.open(state_dir, netns_dir=spare_netns_dir, metrics=metrics) as store:
        base = value(reg, "log_records_total")
        assert value(reg, "opens_total") == 1
        ids = [store.add(support.sandbox(f"p{i}")).id for i in range(5)]
        assert value(reg, "log_records_total") == base + 5
        store.update_status(ids[0], lambda s: Status(State.NOTREADY, created_at=s.created_at))
        store.delete(ids[1])
        assert value(reg, "log_records_total") == base + 7
        assert value(reg, "sandboxes", state="READY") == 3
        assert value(reg, "sandboxes", state="NOTREADY") == 1
        assert value(reg, "sandboxes", state="UNKNOWN") == 0
        assert value(reg, "log_segments") == 1
        assert reg.get_sample_value(P + "snapshot_age_seconds") is None  # no snapshot yet
        store.snapshot()
        assert value(reg, "snapshot_duration_seconds_count") == 1
        assert value(reg, "snapshot_age_seconds") >= 0
        store.add(support.sandbox("after-snapshot"))
        stats = store._log.stats  # the log's own count of what this writer did
        assert value(reg, "log_fsync_duration_seconds_count") == stats.syncs
    # A closed store exposes no state.
    assert reg.get_sample_value(P + "log_segments") is None
    with Store.open(state_dir, netns_dir=spare_netns_dir, metrics=metrics) as store:
        assert value(reg, "opens_total") == 2
        assert value(reg, "replay_events") == store.load_result.replayed == 1
        assert value(reg, "replay_duration_seconds") > 0
        assert value(reg, "sandboxes", state="READY") == 4


def test_open_with_a_registry_builds_the_metrics(state_dir: Path, spare_netns_dir: Path) -> None:
    reg = CollectorRegistry()
    with Store.open(state_dir, netns_dir=spare_netns_dir, metrics=reg) as store:
        store.add(support.sandbox("a"))
        assert value(reg, "sandboxes", state="READY") == 1
    with pytest.raises(TypeError, match="CollectorRegistry"):
        Store.open(state_dir, netns_dir=spare_netns_dir, metrics=object())


def test_no_metrics_loads_no_prometheus(state_dir: Path, spare_netns_dir: Path) -> None:
    code = (
        "import sys\n"
        "from sandbox import Store\n"
        "with Store.open(sys.argv[1], netns_dir=sys.argv[2]) as s:\n"
        "    pass\n"
        "print('sandbox.metrics' in sys.modules, 'prometheus_client' in sys.modules)\n"
    )
    cp = support.run_python(code, str(state_dir), str(spare_netns_dir))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["False", "False"]


def test_reconcile_counts_actions(state_dir: Path, netns_dir: Path) -> None:
    reg = CollectorRegistry()
    with Store.open(state_dir, netns_dir=netns_dir, metrics=reg) as store:
        runs = value(reg, "reconcile_duration_seconds_count")  # the open's run
        sb = store.add(support.sandbox("net"), create_netns=True)
        assert value(reg, "reconcile_actions_total", kind="created") == 1
        store.delete(sb.id)
        assert value(reg, "reconcile_actions_total", kind="removed") == 1
        assert value(reg, "reconcile_errors_total") == 0
        assert value(reg, "reconcile_duration_seconds_count") == runs + 2


def test_scrape_over_http(state_dir: Path, spare_netns_dir: Path) -> None:
    reg = CollectorRegistry()
    host, port, server = serve_metrics("127.0.0.1:0", reg)
    try:
        url = f"http://{host}:{port}/metrics"
        with Store.open(state_dir, netns_dir=spare_netns_dir, metrics=reg) as store:
            first = _scrape(url)
            for i in range(3):
                store.add(support.sandbox(f"h{i}"))
            second = _scrape(url)
    finally:
        server.shutdown()
        server.server_close()
    assert first[P + 'sandboxes{state="READY"}'] == 0
    assert second[P + 'sandboxes{state="READY"}'] == 3
    assert second[P + "log_records_total"] == first[P + "log_records_total"] + 3


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    assert "# TYPE sandboxstore_log_fsync_duration_seconds histogram" in text
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            samples[name] = float(number)
    return samples


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), ("h:1", ("h", 1))],
)
def test_parse_addr(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["9464", ":9464", "host:", "host:http", "host:70000"])
def test_parse_addr_refuses(addr: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_addr(addr)
