"""sandboxctl, command by command, as a subprocess on real state dirs.

Tables are compared with golden files (tests/cli/golden/) after replacing
what cannot be fixed - record times, digests, the writer's host and pid -
with placeholders of the same width, so the layout itself is checked.
Set UPDATE_GOLDEN=1 to rewrite them after a deliberate layout change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
from replay_support import flip_record_byte, parse
from support import NO_TRACEBACK, REPO, add_with_netns, fails, ok, sandbox, sandboxctl

from sandbox import State, Store

GOLDEN = Path(__file__).parent / "golden"
NGINX = "0123456789abcdef" * 4
REDIS = "fedcba9876543210" * 4
DNS = "0123aaaabbbbcccc" * 4


def make_state(state_dir: Path, netns_dir: Path) -> int:
    """Three pods with fixed ids, created 150 s ago ("2 minutes ago"); returns last seq."""
    now = time.time_ns()
    with Store.open(state_dir, netns_dir=netns_dir, durability="none", actor="tester") as s:
        s.add(sandbox("coredns", "kube-system", sid=DNS, created_at=now - 152 * 10**9))
        s.add(sandbox("redis", sid=REDIS, created_at=now - 151 * 10**9))
        s.add(sandbox("nginx", sid=NGINX, created_at=now - 150 * 10**9, attempt=1))
        s.update_status(
            REDIS,
            lambda old: attrs.evolve(old, state=State.NOTREADY, exited_at=1_700_000_000 * 10**9),
        )
        s.update_status(DNS, lambda old: attrs.evolve(old, state=State.UNKNOWN, pid=42))
        return s.last_seq


def normalise(text: str) -> str:
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", "YYYY-MM-DDTHH:MM:SS.fffffffffZ", text)
    text = re.sub(r"\b[0-9a-f]{16}\b(?=\n)", "d" * 16, text)  # digest column
    # WHO: actor@host:pid, padded to its column (28) when it fits.
    return re.sub(r"(\w+)@\S+:\d+ *", lambda m: f"{m.group(1)}@HOST:PID".ljust(28), text)


def golden(name: str, got: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(got)
    assert got == path.read_text(), f"{name} differs from the golden file:\n{got}"


# -- tables and JSON -------------------------------------------------------------------------


@pytest.mark.slow
def test_pods_table_json_and_filters(state_dir: Path, spare_netns_dir: Path) -> None:
    make_state(state_dir, spare_netns_dir)
    sd = ["--state-dir", str(state_dir)]
    golden("pods.txt", ok(sandboxctl(*sd, "pods")))
    assert ok(sandboxctl(*sd, "ls")) == ok(sandboxctl(*sd, "pods"))
    doc = json.loads(ok(sandboxctl(*sd, "pods", "-o", "json")))
    assert [p["id"] for p in doc["items"]] == [NGINX, REDIS, DNS]  # newest first
    assert doc["items"][0]["metadata"] == {
        "name": "nginx",
        "uid": "uid-nginx",
        "namespace": "default",
        "attempt": 1,
    }
    assert doc["items"][1]["state"] == "SANDBOX_NOTREADY"
    assert ok(sandboxctl(*sd, "pods", "-q", "--state", "ready")) == NGINX + "\n"
    assert ok(sandboxctl(*sd, "pods", "-q", "--namespace", "kube-system")) == DNS + "\n"
    assert ok(sandboxctl(*sd, "pods", "-q", "--label", "app=redis")) == REDIS + "\n"
    assert NGINX in ok(sandboxctl(*sd, "pods", "--no-trunc"))
    # Global options also work after the command, and from the environment.
    assert ok(sandboxctl("pods", "-q", "--state-dir", str(state_dir))).count("\n") == 3
    env = {**os.environ, "SANDBOXCTL_STATE_DIR": str(state_dir)}
    cp = subprocess.run(
        [sys.executable, "-m", "replay", "pods", "-q"], env=env, capture_output=True, text=True
    )
    assert ok(cp).count("\n") == 3


@pytest.mark.slow
def test_history_log_audit_diff_tables(state_dir: Path, spare_netns_dir: Path) -> None:
    make_state(state_dir, spare_netns_dir)
    sd = ["--state-dir", str(state_dir)]
    cp = sandboxctl(*sd, "history", "--upto", "4")
    golden("history-upto-4.txt", ok(cp))
    assert cp.stderr.startswith("state after seq 4 (")
    golden("log.txt", normalise(ok(sandboxctl(*sd, "log"))))
    golden("log-3-4.txt", normalise(ok(sandboxctl(*sd, "log", "--from", "3", "--to", "4"))))
    # The first record names the store's netns dir, a tmp path (the last column).
    audit = ok(sandboxctl(*sd, "audit")).replace(str(spare_netns_dir), "NETNS_DIR")
    golden("audit.txt", normalise(audit))
    golden("audit-redis.txt", normalise(ok(sandboxctl(*sd, "audit", "--sandbox", "fed"))))
    golden("diff-3-6.txt", normalise(ok(sandboxctl(*sd, "diff", "3", "6"))))
    doc = json.loads(ok(sandboxctl(*sd, "diff", "3", "6", "-o", "json")))
    assert [a["id"] for a in doc["added"]] == [NGINX]
    changed = {c["id"]: c["changes"] for c in doc["changed"]}
    assert changed[REDIS]["state"] == {"from": "READY", "to": "NOTREADY"}
    assert changed[DNS]["pid"] == {"from": 0, "to": 42}
    lines = ok(sandboxctl(*sd, "audit", "-o", "jsonl", "--type", "StatusUpdated")).splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [5, 6]
    records = json.loads(ok(sandboxctl(*sd, "log", "-o", "json")))
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(len(r["digest"]) == 64 for r in records)
    at = records[3]["time"]
    assert "nginx" in ok(sandboxctl(*sd, "history", "--at", at))
    assert "redis" not in ok(sandboxctl(*sd, "history", "--at", "1000000000"))
    assert ok(sandboxctl(*sd, "audit", "--since", "10m")).count("\n") == 7
    assert ok(sandboxctl(*sd, "audit", "--until", "2001-01-01T00:00:00Z")).count("\n") == 1


def test_inspect_json_and_table(state_dir: Path, spare_netns_dir: Path) -> None:
    make_state(state_dir, spare_netns_dir)
    sd = ["--state-dir", str(state_dir)]
    doc = json.loads(ok(sandboxctl(*sd, "inspect", "fedc")))
    assert doc["id"] == REDIS and doc["status"]["state"] == "SANDBOX_NOTREADY"
    assert doc["status"]["exited_at"] == "2023-11-14T22:13:20.000000000Z"
    assert doc["metadata"]["Version"] == "v1"
    assert doc["metadata"]["Metadata"]["ID"] == REDIS
    assert doc["metadata"]["Metadata"]["Config"]["metadata"]["name"] == "redis"
    assert doc["netns"] == {"path": None, "owned": False, "state": None, "live": False}
    table = ok(sandboxctl(*sd, "inspect", "fedc", "-o", "table"))
    assert f"ID:          {REDIS}\n" in table and "State:       SANDBOX_NOTREADY\n" in table


def test_head_and_verify(state_dir: Path, spare_netns_dir: Path) -> None:
    make_state(state_dir, spare_netns_dir)
    sd = ["--state-dir", str(state_dir)]
    head = ok(sandboxctl(*sd, "head"))
    assert re.fullmatch(r"[0-9a-f]{64}\n", head)
    _, records = parse(state_dir)
    assert head.strip() == records[-1].digest.hex()
    out = ok(sandboxctl(*sd, "verify", "--head", head.strip()))
    assert out.startswith("OK: 6 records") and "still extends the given head" in out
    doc = json.loads(ok(sandboxctl(*sd, "verify", "-o", "json")))
    assert doc["ok"] is True and doc["head"] == head.strip()
    assert json.loads(ok(sandboxctl(*sd, "head", "-o", "json"))) == {"seq": 6, "head": head.strip()}
    fails(sandboxctl(*sd, "verify", "--head", "xyz"), 7, "hex")


@pytest.mark.slow
def test_run_stop_rm_with_a_real_namespace(
    state_dir: Path, netns_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "pod.json"
    config.write_text(
        json.dumps(
            {
                "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "attempt": 2},
                "hostname": "web",
                "log_directory": "/tmp",
                "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": 8080}],
                "linux": {},
            }
        )
    )
    g = ["--state-dir", str(state_dir), "--netns-dir", str(netns_dir)]
    out = ok(sandboxctl(*g, "run", str(config), "--netns"))
    assert re.fullmatch(r"[0-9a-f]{64}\n", out), "the id alone on stdout"
    sid = out.strip()
    doc = json.loads(ok(sandboxctl(*g, "inspect", sid[:10])))
    assert doc["name"] == "web_prod_u-1_2"
    assert doc["netns"]["live"] is True and doc["netns"]["owned"] is True
    assert doc["netns"]["path"].startswith(str(netns_dir) + "/cni-")
    assert doc["metadata"]["Metadata"]["Config"]["port_mappings"] == [
        {"container_port": 80, "host_port": 8080}
    ]
    assert ok(sandboxctl(*g, "stop", sid[:8])) == f"Stopped sandbox {sid}\n"
    doc = json.loads(ok(sandboxctl(*g, "inspect", sid)))
    assert doc["status"]["state"] == "SANDBOX_NOTREADY" and doc["status"]["exited_at"]
    assert doc["netns"]["live"] is False, "stop tears the network namespace down"
    assert ok(sandboxctl(*g, "stop", sid)) == f"Stopped sandbox {sid}\n", "a repeated stop is fine"
    fails(sandboxctl(*g, "run", str(config)), 7, "already reserved")  # same name again
    retry = tmp_path / "retry.json"
    retry.write_text(config.read_text().replace('"attempt": 2', '"attempt": 3'))
    second = ok(sandboxctl(*g, "run", str(retry), "-o", "json"))
    assert json.loads(second)["name"] == "web_prod_u-1_3"
    assert ok(sandboxctl(*g, "rm", sid)) == f"Removed sandbox {sid}\n"
    assert ok(sandboxctl(*g, "rm", json.loads(second)["id"], "-o", "json"))
    assert ok(sandboxctl(*g, "pods", "-q")) == ""
    assert ok(sandboxctl(*g, "reconcile")).startswith("nothing to do")
    assert json.loads(ok(sandboxctl(*g, "reconcile", "-o", "json")))["changed"] is False
    snap = ok(sandboxctl(*g, "snapshot")).strip()
    assert snap.endswith(".snap") and Path(snap).is_file()
    assert ok(sandboxctl(*g, "verify")).startswith("OK:")
    assert list(netns_dir.iterdir()) == []


def test_reconcile_reports_a_namespace_gone_out_of_band(
    state_dir: Path, netns_dir: Path, tmp_path: Path
) -> None:
    with Store.open(state_dir, netns_dir=netns_dir) as store:
        sb, path = add_with_netns(store, sandbox("victim"))
    subprocess.run(["umount", "-l", path], check=True)
    g = ["--state-dir", str(state_dir), "--netns-dir", str(netns_dir)]
    out = ok(sandboxctl(*g, "reconcile"))
    assert re.search(rf"closed\s+{re.escape(path)}", out), out
    assert ok(sandboxctl(*g, "reconcile")).startswith("nothing to do")
    trail = ok(sandboxctl(*g, "audit", "--type", "NetNSClosed"))
    assert "found closed out of band" in trail
    ok(sandboxctl(*g, "rm", sb.id))


# -- errors and exit codes ---------------------------------------------------------------------

READS_AND_WRITES = [
    ["pods"],
    ["ls"],
    ["inspect", "abc"],
    ["stop", "abc"],
    ["rm", "abc"],
    ["reconcile"],
    ["snapshot"],
    ["verify"],
    ["head"],
    ["audit"],
    ["history", "--upto", "1"],
    ["diff", "1", "2"],
    ["follow"],
    ["log"],
]


@pytest.mark.parametrize("argv", READS_AND_WRITES, ids=lambda a: a[0])
def test_a_missing_state_dir_is_exit_3_and_is_not_created(tmp_path: Path, argv: list[str]) -> None:
    missing = tmp_path / "missing"
    fails(sandboxctl("--state-dir", str(missing), *argv), 3, str(missing))
    assert not missing.exists()


@pytest.mark.slow
def test_usage_errors_are_exit_2(state_dir: Path, spare_netns_dir: Path) -> None:
    make_state(state_dir, spare_netns_dir)
    fails(sandboxctl("pods"), 2, "SANDBOXCTL_STATE_DIR")
    fails(sandboxctl("--state-dir", str(state_dir), "frobnicate"), 2)
    fails(sandboxctl("--state-dir", str(state_dir), "history"), 2)
    fails(sandboxctl("--state-dir", str(state_dir), "history", "--upto", "1", "--at", "1m"), 2)
    fails(sandboxctl("--state-dir", str(state_dir), "pods", "-o", "yaml"), 2)
    fails(sandboxctl("--state-dir", str(state_dir), "pods", "-o", "jsonl"), 2)
    assert sandboxctl().returncode == 2


@pytest.mark.slow
def test_unknown_ambiguous_and_bad_ids(state_dir: Path, spare_netns_dir: Path) -> None:
    make_state(state_dir, spare_netns_dir)
    sd = ["--state-dir", str(state_dir)]
    for cmd in ("inspect", "stop", "rm"):
        fails(sandboxctl(*sd, cmd, "9999"), 4, "9999")
        fails(sandboxctl(*sd, cmd, "0123"), 5, "0123")
        fails(sandboxctl(*sd, cmd, ""), 7, "empty")
    fails(sandboxctl(*sd, "audit", "--sandbox", "0123"), 5)
    fails(sandboxctl(*sd, "audit", "--sandbox", "9999"), 4)
    fails(sandboxctl(*sd, "history", "--upto", "99"), 7, "beyond the end")
    fails(sandboxctl(*sd, "audit", "--since", "last tuesday"), 7, "--since")
    fails(sandboxctl(*sd, "audit", "--type", "Nope"), 7, "unknown event type")
    fails(sandboxctl(*sd, "diff", "1", "someday"), 7)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"hostname": "x"}', "metadata.name"),
        ('{"metadata": {"name": "a", "namespace": "b"}}', "metadata.uid"),
        ('{"metadata": {"name": "a", "namespace": "b", "uid": "c", "attempt": "1"}}', "attempt"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_a_bad_pod_config_is_exit_7(
    state_dir: Path, spare_netns_dir: Path, tmp_path: Path, content: str, words: str
) -> None:
    config = tmp_path / "pod.json"
    config.write_text(content)
    g = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir)]
    fails(sandboxctl(*g, "run", str(config)), 7, words)
    fails(sandboxctl(*g, "run", str(tmp_path / "absent.json")), 7, "cannot read")


@pytest.mark.slow
def test_a_corrupt_log_is_exit_6_and_verify_names_the_place(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    make_state(state_dir, spare_netns_dir)
    records = flip_record_byte(state_dir, 1, 40, 0x55)  # seq 2's payload; crc not fixed
    sd = ["--state-dir", str(state_dir)]
    for argv in (["pods"], ["inspect", "0123456"], ["audit"], ["history", "--upto", "3"], ["head"]):
        fails(sandboxctl(*sd, *argv), 6, "seq 2")
    fails(sandboxctl(*sd, "stop", NGINX), 6, "corrupt")
    cp = sandboxctl(*sd, "log")
    assert cp.returncode == 6 and cp.stdout.count("\n") == 2, "records before the damage"
    cp = sandboxctl(*sd, "verify")
    assert cp.returncode == 1 and NO_TRACEBACK not in cp.stderr
    assert f"00000000000000000001.log, offset {records[1].offset}, seq 2" in cp.stdout


def test_a_locked_log_is_exit_8_for_writers_only(state_dir: Path, spare_netns_dir: Path) -> None:
    make_state(state_dir, spare_netns_dir)
    # Writers would wait --lock-timeout (10 s) first: that wait has its own tests
    # (test_cli_lock_timeout.py); here only the exit code and the holder matter.
    sd = ["--state-dir", str(state_dir), "--netns-dir", str(spare_netns_dir), "--lock-timeout", "0"]
    with Store.open(state_dir, netns_dir=spare_netns_dir):
        fails(sandboxctl(*sd, "stop", NGINX), 8, f"pid {os.getpid()}")
        fails(sandboxctl(*sd, "snapshot"), 8)
        assert ok(sandboxctl(*sd, "pods", "-q")).count("\n") == 3
        assert ok(sandboxctl(*sd, "verify")).startswith("OK")


def test_nats_only_with_the_commands_that_read_a_stream(
    state_dir: Path, spare_netns_dir: Path
) -> None:
    """--nats reads a fleet stream (tests/cli/test_cli_fleet.py); other commands refuse it."""
    make_state(state_dir, spare_netns_dir)
    for argv in (["--nats", "nats://x:4222", "log"], ["log", "--nats", "nats://x:4222"]):
        fails(sandboxctl("--state-dir", str(state_dir), *argv), 2, "--nats works with pods")
    # Given either side of the command name; a state is one node's.
    for argv in (["--nats", "nats://x:4222", "pods"], ["pods", "--nats", "nats://x:4222"]):
        fails(sandboxctl("--state-dir", str(state_dir), *argv), 2, "give --node NODE")
    # --stream and --node alone are accepted (and mean nothing without --nats).
    assert ok(sandboxctl("--state-dir", str(state_dir), "--stream", "S", "--node", "n", "pods"))


def test_help_documents_the_exit_codes() -> None:
    out = ok(sandboxctl("--help"))
    for code in (*range(12), 130):
        assert re.search(rf"^  {code:<3}  \S", out, re.M), code
    assert "demo" in out and "--state-dir" in ok(sandboxctl("demo", "--help"))
    assert "ship" in out and "--give-up-after" in ok(sandboxctl("ship", "--help"))
    console = Path(sys.executable).parent / "sandboxctl"
    if console.exists():
        cp = subprocess.run([str(console), "--help"], capture_output=True, text=True, cwd=REPO)
        assert cp.returncode == 0 and cp.stdout == out


def test_progress_only_on_a_terminal(state_dir: Path, spare_netns_dir: Path) -> None:
    import pty

    make_state(state_dir, spare_netns_dir)
    cp = sandboxctl("--state-dir", str(state_dir), "verify")
    assert cp.returncode == 0 and cp.stderr == ""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "replay", "--state-dir", str(state_dir), "verify"],
            stdout=subprocess.PIPE,
            stderr=slave,
            cwd=REPO,
            timeout=60,
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0
    assert b"checking events " in seen and b"\x1b[2K" in seen
