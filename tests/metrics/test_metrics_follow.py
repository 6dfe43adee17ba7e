"""``sandboxctl follow --metrics-addr``: records followed, lag, sandboxes by state.

Why over real HTTP from a real process: what an operator scrapes is the
endpoint of a running ``sandboxctl follow`` while another process writes;
the in-process test pins the lag figures down exactly, with a follower that
is held behind on purpose (records appended, none folded in yet).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import support
from support import sandbox

import eventlog
from replay.follow import follow
from sandbox import State, Store

pytest.importorskip("prometheus_client", reason="the metrics extra (prometheus-client) is missing")

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from replay.follow_metrics import FollowMetrics

P = "sandboxctl_follow_"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def poll_until(
    url: str, cond: Callable[[Samples], bool], what: str, timeout: float = 30
) -> Samples:
    """Scrape until ``cond(samples)`` holds; fail with the last scrape after ``timeout``."""
    return support.poll_until(lambda: scrape(url), cond, what, timeout)


def v(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((P + name, tuple(sorted(labels.items()))))


@attrs.frozen
class _Child:
    proc: subprocess.Popen[bytes]
    url: str


@contextlib.contextmanager
def spawn_follow(state_dir: Path) -> Iterator[_Child]:
    """``sandboxctl follow --metrics-addr 127.0.0.1:0`` as a child; killed at the end."""
    proc = support.spawn_sandboxctl(
        "--state-dir", str(state_dir), "follow", "-o", "jsonl", "--metrics-addr", "127.0.0.1:0"
    )
    try:
        yield _Child(proc, support.read_metrics_url(proc))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_follow_serves_metrics_that_move_as_another_process_writes(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        store.add(sandbox("a"))
        store.add(sandbox("b"))
        start = store.last_seq
    with spawn_follow(state_dir) as child:
        first = poll_until(child.url, lambda s: v(s, "log_head_seq") == start, "the head at start")
        assert v(first, "records_total") == 0
        assert v(first, "applied_seq") == start
        assert v(first, "lag_records") == 0 and v(first, "lag_seconds") == 0
        assert v(first, "sandboxes", state="READY") == 2
        assert v(first, "sandboxes", state="NOTREADY") == 0

        with Store.open(state_dir, netns_dir=spare_netns_dir, actor="writer") as store:
            for name in ("c", "d", "e"):
                store.add(sandbox(name))
            first_pod = store.list()[0]
            store.update_status(first_pod.id, lambda st: attrs.evolve(st, state=State.NOTREADY))
            head = store.last_seq
        appended = head - start
        assert appended >= 4

        done = poll_until(
            child.url,
            lambda s: v(s, "applied_seq") == head and v(s, "records_total") == appended,
            f"follow to apply up to seq {head}",
        )
        assert v(done, "log_head_seq") == head
        assert v(done, "lag_records") == 0 and v(done, "lag_seconds") == 0
        assert v(done, "sandboxes", state="READY") == 4
        assert v(done, "sandboxes", state="NOTREADY") == 1

        child.proc.send_signal(signal.SIGTERM)
        _, err = child.proc.communicate(timeout=20)
        assert child.proc.returncode == 0, err
        assert b"Traceback" not in err


def test_lag_while_follow_is_behind_then_caught_up(state_dir: Path, spare_netns_dir: Path) -> None:
    with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
        store.add(sandbox("a"))
        start = store.last_seq
    reg = CollectorRegistry()
    with follow(state_dir, netns_dir=str(spare_netns_dir), poll_interval=0.05) as f:
        FollowMetrics(reg, f)

        def get(name: str, **labels: str) -> float | None:
            return reg.get_sample_value(P + name, labels)

        assert get("log_head_seq") == start and get("lag_records") == 0
        with Store.open(state_dir, netns_dir=spare_netns_dir) as store:
            store.add(sandbox("b"))
            store.add(sandbox("c"))
            head = store.last_seq
        written_ns = [r.time_ns for r in eventlog.read(state_dir, from_seq=start + 1)]
        # Nothing folded in yet: the follower is held behind.
        assert get("log_head_seq") == head
        assert get("applied_seq") == start
        assert get("lag_records") == head - start
        lag = get("lag_seconds")
        assert lag is not None
        assert lag >= time.time() - written_ns[0] / 1e9 - 1.0  # the oldest waiting record's age
        assert get("sandboxes", state="READY") == 1
        records = iter(f)
        for _ in range(head - start):
            next(records)
        assert get("records_total") == head - start
        assert get("applied_seq") == head
        assert get("lag_records") == 0 and get("lag_seconds") == 0
        assert get("sandboxes", state="READY") == 3
