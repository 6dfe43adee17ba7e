"""The shipper: tail a node's event log and publish every record to JetStream.

    python -m replay.fleet.ship --state-dir DIR --nats URL [--stream S] [--node N]
    sandboxctl ship --nats URL [--stream S] [--node N]        (same thing)

Why it works the way it does - the guarantees, and what gives them:

* **Every record, once, in order, per node.** Records go to subject
  ``<stream>.<node>`` in seq order with message id ``<node>:<seq>``. On each
  (re)connect the shipper asks the stream for the last record it holds for
  the node and resumes right after it, so what the stream acknowledged is
  never sent again and nothing after it is skipped. A record that was stored
  but whose ack was lost is re-sent, and the server's duplicate window
  (``--duplicate-window``, default 2 min) drops it.
* **Never reorders.** Publishes are pipelined (a bounded window of un-acked
  publishes, ``--window``), acks are consumed in order, and the first
  failure abandons the whole connection: the client's own reconnect (and its
  buffer, which would re-send old publishes out of our control) is off. The
  next connection resumes from what the stream really holds. The first
  publish of a connection carries ``Nats-Expected-Last-Subject-Sequence`` so
  a second shipper for the same node (a misconfiguration) cannot interleave.
* **Whole batches only.** Records of an ``append_batch`` are shipped when
  the batch is complete (the reader only returns whole batches, and the
  shipper holds a batch until its ``batch_left == 0`` record as well).
* **Same history or nothing.** Before publishing, the stream's last record
  for the node must be in the local log with the same digest; otherwise two
  histories would be spliced into one chain and the shipper stops with
  DivergedError (exit 11) instead.
* **Survives the server going away.** Reconnects with exponential backoff
  (``--backoff-initial`` doubling to ``--backoff-max``, with jitter) for at
  most ``--give-up-after`` seconds of continuous failure (then exit 10: a
  supervisor restarts it). Memory is bounded by the window, the handover
  queue (``--window`` records each) and the records read ahead of the
  publishing (fewer than three windows' worth), whatever the backlog.
* **Stops cleanly** on SIGINT/SIGTERM: stops reading, waits (bounded) for the
  acks of what is in flight, closes, exits 0.
* **Only what is durable.** A record is published only once it is on
  stable storage - proven so by the log itself (a later record's
  ``durable_seq``) or by the shipper's own ``fdatasync`` of its segment,
  done after reading it and before publishing it. So a power loss on the
  node can never take back a record the stream holds. The rule and its
  cost are in ``replay.fleet.durable``; the reading in ``replay.fleet.feeder``.

The digest of every record travels with it, with the bytes it covers, so the
chain can be re-verified on the far side (``replay.fleet.chain``).

The NATS client is imported by the methods that use it, not at module level,
so that the CLI can build ``ship``'s parser without loading it (see
``replay.fleet.source``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from eventlog.errors import EventLogError
from replay.fleet import config
from replay.fleet.config import *  # noqa: F403  (the exit codes: config.EXIT_NAMES)
from replay.fleet.config import ShipConfig, ShipStats
from replay.fleet.errors import (
    FleetError,
    ShipFatalError,
    ShipGaveUpError,
)
from replay.fleet.feeder import Feeder
from replay.fleet.message import MessageFormatError, encode
from replay.fleet.resume import check_local, check_unacked, ensure_stream, stream_tail
from replay.fleet.shipped import ShippedRecorder
from replay.fleet.source import connect

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import api
    from nats.js.client import JetStreamContext

__all__ = [
    *config.EXIT_NAMES,
    "ShipConfig",
    "ShipStats",
    "Shipper",
    "hostname_node",
    "ship",
    "ship_async",
]

log = logging.getLogger("replay.fleet.ship")

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

#: Seconds between two warnings of one outage.
WARN_EVERY_S = 60.0


class _SessionFailed(Exception):
    """A publish or ack failed; the connection is abandoned and a new one resumes."""


class Shipper:
    """Ships one node's log; ``await run()`` until stopped, finished (``once``) or fatal."""

    def __init__(self, cfg: ShipConfig, stats: ShipStats | None = None) -> None:
        self.cfg = cfg
        #: Live counters; pass one in to read them while shipping (``--metrics-addr``).
        self.stats = stats if stats is not None else ShipStats(node=cfg.node, subject=cfg.subject)
        #: Record seq and stream seq of the last ack consumed in order.
        self._acked_seq = 0
        self._acked_sseq = 0
        self._stop: asyncio.Event | None = None
        self._done = False
        #: ``SHIPPED`` in the state dir: what compaction may drop (replay.fleet.shipped).
        self._shipped = ShippedRecorder(cfg.state_dir)
        self._digests: dict[int, bytes] = {}

    def request_stop(self) -> None:
        """Ask the shipper to stop after the acks in flight (signal handlers call this)."""
        if self._stop is not None:
            self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop is not None and self._stop.is_set()

    async def run(self) -> ShipStats:
        """Ship until stopped (or, with ``once``, until the log's end is acked).

        Raises DivergedError, EventLogError (a corrupt local log) and
        ShipGaveUpError; everything transient is retried with backoff.
        """
        self._stop = asyncio.Event()
        self._done = False
        try:
            return await self._run()
        finally:
            self._shipped.flush()

    async def _run(self) -> ShipStats:
        import nats.errors  # loaded when the shipper runs (module docstring)

        assert self._stop is not None
        attempt = 0
        last_warned = 0.0
        failing_since: float | None = None
        while not self.stopping and not self._done:
            acked_before = self.stats.acked
            try:
                await self._connection()
            except (ShipFatalError, EventLogError, ShipGaveUpError):
                raise
            except (
                FleetError,
                _SessionFailed,
                nats.errors.Error,
                OSError,
                TimeoutError,
                MessageFormatError,
            ) as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                now = time.monotonic()
                if self.stats.acked > acked_before or failing_since is None:
                    failing_since = now
                    attempt = 0
                # The first failure of an outage, then one line a minute: an
                # hour without NATS must not be a thousand lines of log.
                if attempt == 0 or now - last_warned >= WARN_EVERY_S:
                    last_warned = now
                    log.warning(
                        "ship %s: %s (retrying for up to %.0fs)",
                        self.cfg.subject,
                        self.stats.last_error,
                        self.cfg.give_up_after - (now - failing_since),
                    )
                else:
                    log.debug("ship %s: %s", self.cfg.subject, self.stats.last_error)
                if now - failing_since > self.cfg.give_up_after:
                    raise ShipGaveUpError(
                        f"NATS at {self.cfg.nats_url} unusable for {now - failing_since:.0f}s: "
                        f"{self.stats.last_error}"
                    ) from None
                delay = min(self.cfg.backoff_max, self.cfg.backoff_initial * 2 ** min(attempt, 30))
                delay *= random.uniform(0.5, 1.0)
                attempt += 1
                await self._sleep(delay)
                continue
            failing_since = None
            attempt = 0
        return self.stats

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _connection(self) -> None:
        """One connection's life: handshake, resume point, publishing until it breaks."""
        lost = asyncio.Event()

        async def on_closed() -> None:
            lost.set()

        async def on_error(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        nc = await connect(
            self.cfg.nats_url,
            name=f"sandboxctl-ship-{self.cfg.node}",
            creds=self.cfg.creds,
            closed_cb=on_closed,
            error_cb=on_error,
        )
        self.stats.sessions += 1
        try:
            js = nc.jetstream(timeout=self.cfg.ack_timeout)
            await ensure_stream(js, self.cfg)
            last_seq, last_digest, last_sseq = await stream_tail(js, self.cfg)
            await asyncio.to_thread(check_local, self.cfg, last_seq, last_digest)
            await check_unacked(js, self.cfg, self._acked_seq, self._acked_sseq, last_seq)
            self.stats.resumed_from = last_seq
            self.stats.last_acked_seq = last_seq
            self._acked_seq, self._acked_sseq = last_seq, last_sseq
            self._digests.clear()
            self._shipped.acked(last_seq, last_digest)
            log.info("ship %s: stream holds up to seq %d; resuming", self.cfg.subject, last_seq)
            await self._session(nc, js, lost, last_seq, last_digest, last_sseq)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)

    async def _session(
        self,
        nc: NATS,
        js: JetStreamContext,
        lost: asyncio.Event,
        last_seq: int,
        last_digest: bytes,
        last_sseq: int,
    ) -> None:
        import nats.errors

        loop = asyncio.get_running_loop()
        feeder = Feeder(self.cfg, last_seq + 1, last_digest, loop, maxsize=self.cfg.window)
        feeder.start()
        inflight: deque[tuple[int, int, asyncio.Future[api.PubAck]]] = deque()
        subject = self.cfg.subject
        max_payload = nc.max_payload
        first = True
        try:
            while not self.stopping:
                if lost.is_set():
                    raise _SessionFailed("connection lost")
                try:
                    rec = await feeder.get(0.2)
                except StopAsyncIteration:
                    await self._drain(inflight, lost)
                    self._done = True
                    return
                if rec is None:
                    await self._drain(inflight, lost)
                    continue
                self._digests[rec.seq] = rec.digest
                body, headers = encode(rec)
                if len(body) + 256 > max_payload:
                    raise ShipFatalError(
                        f"record seq {rec.seq} is {len(body)} bytes shipped; the server's "
                        f"max_payload is {max_payload}: raise max_payload on the NATS servers"
                    )
                if first:
                    headers[EXPECTED_LAST_SUBJECT_SEQ] = str(last_sseq)
                    try:
                        ack = await js.publish(
                            subject, body, timeout=self.cfg.ack_timeout, headers=headers
                        )
                    except (nats.errors.TimeoutError, TimeoutError) as exc:
                        raise _SessionFailed(f"ack of seq {rec.seq} timed out") from exc
                    self.stats.published += 1
                    self._acked(rec.seq, rec.time_ns, ack)
                    first = False
                    continue
                while len(inflight) >= self.cfg.window:
                    await self._await_oldest(inflight, lost)
                self._reap(inflight)
                fut = await js.publish_async(subject, body, headers=headers)
                self.stats.published += 1
                inflight.append((rec.seq, rec.time_ns, fut))
            # Stop requested: let what is in flight be acknowledged (bounded).
            with contextlib.suppress(_SessionFailed, nats.errors.Error, TimeoutError):
                await self._drain(inflight, lost)
        finally:
            feeder.close()
            self.stats.syncs += feeder.files.syncs
            for _, _, fut in inflight:
                fut.cancel()

    def _acked(self, seq: int, time_ns: int, ack: api.PubAck) -> None:
        self.stats.acked += 1
        if ack.duplicate:
            self.stats.duplicates += 1
        self.stats.last_acked_time_ns = time_ns
        self.stats.last_acked_seq = seq
        self._acked_seq = seq
        self._acked_sseq = ack.seq
        self._shipped.acked(seq, self._digests.pop(seq, None))

    def _reap(self, inflight: deque[tuple[int, int, asyncio.Future[api.PubAck]]]) -> None:
        """Consume the acks already in, oldest first, stopping at the first not yet in."""
        while inflight and inflight[0][2].done():
            seq, time_ns, fut = inflight.popleft()
            exc = fut.exception() if not fut.cancelled() else _SessionFailed("cancelled")
            if exc is not None:
                raise _SessionFailed(f"publish of seq {seq} failed: {exc}") from exc
            self._acked(seq, time_ns, fut.result())

    async def _await_oldest(
        self, inflight: deque[tuple[int, int, asyncio.Future[api.PubAck]]], lost: asyncio.Event
    ) -> None:
        seq, _, fut = inflight[0]
        lost_wait = asyncio.ensure_future(lost.wait())
        waiters: set[asyncio.Future[Any]] = {fut, lost_wait}
        try:
            await asyncio.wait(
                waiters, timeout=self.cfg.ack_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost_wait.cancel()
        if not fut.done():
            reason = (
                "connection lost" if lost.is_set() else f"no ack within {self.cfg.ack_timeout}s"
            )
            raise _SessionFailed(f"publish of seq {seq}: {reason}")
        self._reap(inflight)

    async def _drain(
        self, inflight: deque[tuple[int, int, asyncio.Future[api.PubAck]]], lost: asyncio.Event
    ) -> None:
        while inflight:
            await self._await_oldest(inflight, lost)


def hostname_node() -> str:
    """The default node id: this host's name as a subject token."""
    import socket

    from replay.fleet.message import default_node_id

    return default_node_id(socket.gethostname())


async def ship_async(
    cfg: ShipConfig, *, handle_signals: bool = True, stats: ShipStats | None = None
) -> ShipStats:
    """Run a shipper, stopping on SIGINT/SIGTERM when ``handle_signals``; ``stats``:
    the counters to fill in (read them meanwhile from another thread)."""
    shipper = Shipper(cfg, stats)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, shipper.request_stop)
                installed.append(sig)
    try:
        return await shipper.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def ship(cfg: ShipConfig, *, stats: ShipStats | None = None) -> ShipStats:
    """Synchronous entry point (the CLI)."""
    return asyncio.run(ship_async(cfg, stats=stats))


if __name__ == "__main__":
    # ``python -m replay.fleet.ship``: the shipper without the rest of the CLI.
    # Run as a script this file is ``__main__``; the commands module imports
    # ``replay.fleet.ship`` itself, so this is no import circle.
    from replay.fleet.commands import ship_main

    sys.exit(ship_main())
