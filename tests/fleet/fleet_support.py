"""Helpers shared by the fleet tests (logs, polling, the shipper as a process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import REPO

from eventlog import EventLog
from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, State, Status
from sandbox import events as ev


def payload(i: int, node: str = "n", salt: str = "s") -> dict[str, Any]:
    """Event ``i`` of a valid store history: add, restart (pid), stop, delete, repeating.

    Every run of four events starting at a multiple of 4 is valid on its
    own, so any writer that numbers its events from a multiple of 4 with its
    own ``salt`` (ids and names are unique per salt) writes a history the
    store's state machine accepts - which ``verify`` checks.
    """
    k, step = divmod(i, 4)
    sandbox_id = f"{node}-{salt}-{k:06d}"
    env = {"time": 1_700_000_000_000_000_000 + i, "host": node, "pid": 1, "uid": 0, "actor": None}
    if step == 0:
        config = PodSandboxConfig(
            metadata=PodSandboxMetadata(name=f"pod{k}", uid=f"{salt}{k}", namespace="default")
        )
        md = Metadata(sandbox_id, f"pod{k}_default_{salt}{k}_0", config)
        return ev.sandbox_added(env, md, Status(State.READY, pid=100 + k, created_at=i))
    if step == 1:
        return ev.status_updated(env, sandbox_id, Status(State.READY, pid=200 + k, created_at=i))
    if step == 2:
        return ev.status_updated(
            env,
            sandbox_id,
            Status(State.NOTREADY, pid=0, created_at=i, exited_at=i + 1, exit_status=0),
        )
    return ev.sandbox_deleted(env, sandbox_id)


def write_log(
    directory: Path,
    count: int,
    *,
    node: str = "n",
    batch_every: int = 0,
    key: bytes | None = None,
    salt: str = "s",
) -> int:
    """Append ``count`` events (some as batches of 3 when ``batch_every``); the last seq."""
    with EventLog.open(directory, durability="none", key=key) as log:
        i = 0
        while i < count:
            if batch_every and i % batch_every == 0 and count - i >= 3:
                log.append_batch([payload(i + k, node, salt) for k in range(3)])
                i += 3
            else:
                log.append(payload(i, node, salt))
                i += 1
        return log.last_seq


def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def stream_last_seq(url: str, stream: str, node: str) -> int:
    """The last record seq the stream holds for ``node`` (0 when none or unreachable)."""
    import nats
    import nats.js.errors

    from replay.fleet.message import decode

    async def go() -> int:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=1)
        except Exception:
            return 0
        try:
            js = nc.jetstream(timeout=2)
            msg = await js.get_last_msg(stream, f"{stream}.{node}")
            return decode(msg.data or b"").seq
        except Exception:
            return 0
        finally:
            await nc.close()

    return asyncio.run(go())


def start_shipper(
    state_dir: Path, url: str, node: str, *extra: str, stream: str = "SANDBOXLOG"
) -> subprocess.Popen[bytes]:
    """The shipper as a real process (SIGKILL-able), fast retries for tests."""
    argv = [
        sys.executable,
        "-m",
        "replay.fleet.ship",
        "--state-dir",
        str(state_dir),
        "--nats",
        url,
        "--node",
        node,
        "--stream",
        stream,
        "--backoff-max",
        "0.3",
        "--ack-timeout",
        "2",
        "--poll-interval",
        "0.2",
        "--give-up-after",
        "120",
        *extra,
    ]
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
