"""A three-node JetStream cluster on loopback, for the cluster tests.

Why a real cluster: what ``--replicas 3`` promises (an acknowledged record
survives losing the stream leader; with quorum lost nothing is acknowledged,
and nothing acknowledged is lost when the nodes come back) is a property of
JetStream's replication and the shipper together. Only real servers that are
SIGKILLed and restarted on the same ports and store directories show it.

Each member is a ``LocalNatsServer`` (replay/fleet/natsserver.py) with a
server name, the cluster name, its own route port and routes to the other
two. Everything binds 127.0.0.1; ports are free ones picked at creation and
kept across restarts (a restarted member rejoins as itself and catches up
from its store dir). ``close`` (also on the way out of a ``with``) SIGKILLs
every member that is still running, whatever happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Self, TypeVar

import attrs
import pytest
import support
from fleet_support import wait_for
from nats.js import api
from nats.js.client import JetStreamContext

from eventlog.closing import Closing
from replay.fleet.natsserver import (
    LocalNatsServer,
    NatsServerError,
    free_port,
    require_nats_server,
)
from replay.fleet.source import connect

T = TypeVar("T")

#: How long a client request to the cluster may take here before it counts as "not now".
REQUEST_TIMEOUT_S = 1.0


def nats_binary_or_skip() -> str:
    """The nats-server to run; skip without one, but fail in CI (where skipping hides a
    broken setup), as the ``nats_server`` fixture does."""
    try:
        return require_nats_server()
    except NatsServerError as exc:
        if support.in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (free_port may, rarely, repeat itself)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@attrs.define
class LocalNatsCluster(Closing):
    """``size`` ``nats-server -js`` processes routed into one cluster on 127.0.0.1."""

    servers: list[LocalNatsServer]
    name: str

    @classmethod
    def create(
        cls, root: Path, binary: str, *, size: int = 3, name: str = "sbx-test"
    ) -> LocalNatsCluster:
        """Members ``n1``..``n<size>`` with store dirs and logs under ``root`` (not started)."""
        ports = _free_ports(2 * size)
        client, route = ports[:size], ports[size:]
        servers = [
            LocalNatsServer(
                store_dir=root / f"n{i + 1}" / "store",
                port=client[i],
                binary=binary,
                log_path=root / f"n{i + 1}.log",
                name=f"n{i + 1}",
                cluster_name=name,
                cluster_port=route[i],
                routes=[p for j, p in enumerate(route) if j != i],
            )
            for i in range(size)
        ]
        return cls(servers, name)

    @property
    def urls(self) -> str:
        """Every member's client URL, comma-separated: what a shipper is given as seeds."""
        return ",".join(s.url for s in self.servers)

    @property
    def live_urls(self) -> str:
        """The running members' URLs (asking a dead one first only adds a connect timeout)."""
        return ",".join(s.url for s in self.servers if s.running)

    def server(self, name: str) -> LocalNatsServer:
        """The member called ``name`` (as JetStream names leaders and replicas)."""
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(f"no member {name!r} in cluster {self.name}")

    def start(self, timeout: float = 30) -> None:
        """Start every member, then wait (bounded) until JetStream has a meta leader."""
        for s in self.servers:
            s.start()
        wait_for(self.jetstream_ready, timeout, f"JetStream in cluster {self.name}", 0.2)

    def close(self) -> None:
        """SIGKILL every member still running (nothing outlives the test)."""
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.kill()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    # -- questions to the cluster (None / False when it cannot answer right now) ----------

    def ask(self, question: Callable[[JetStreamContext], Awaitable[T]]) -> T | None:
        """``await question(js)`` on a fresh connection to a live member; None on any error.

        Errors are expected here (no leader yet, no quorum, a member just
        killed): callers poll with ``wait_for`` until the answer they need.
        """
        urls = self.live_urls
        if not urls:
            return None

        async def go() -> T | None:
            try:
                nc = await connect(urls, name="cluster-test")
            except Exception:
                return None
            try:
                return await question(nc.jetstream(timeout=REQUEST_TIMEOUT_S))
            except Exception:
                return None
            finally:
                with contextlib.suppress(Exception):
                    await nc.close()

        return asyncio.run(go())

    def jetstream_ready(self) -> bool:
        """True once the JetStream API answers (the cluster has elected its meta leader)."""
        return self.ask(lambda js: js.account_info()) is not None

    def stream_info(self, stream: str) -> api.StreamInfo | None:
        """The stream's info as its leader reports it, or None (no leader, no quorum)."""
        return self.ask(lambda js: js.stream_info(stream))

    def stream_leader(self, stream: str) -> str | None:
        """The name of the member leading ``stream`` now, or None."""
        info = self.stream_info(stream)
        if info is None or info.cluster is None:
            return None
        return info.cluster.leader or None

    def stream_healthy(self, stream: str, replicas: int) -> bool:
        """A leader and ``replicas - 1`` followers, every one online and caught up."""
        info = self.stream_info(stream)
        if info is None or info.cluster is None or not info.cluster.leader:
            return False
        followers = info.cluster.replicas or []
        return len(followers) == replicas - 1 and all(
            p.current and not p.offline for p in followers
        )
