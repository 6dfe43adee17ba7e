"""Reading a node's records, or the whole fleet's, back from JetStream.

Why it is shaped like this: the read tools (view, history, audit, verify) are
synchronous loops over records, the same loops that run over a local log. So
the public functions here are plain iterators; the asyncio client runs in a
private thread with its own event loop and hands records over through a
bounded queue (memory stays bounded however long the stream is, and a caller
that stops early stops the reader).

A read is a snapshot: it takes the number of messages the subject holds when
the read starts and stops there, so a shipper appending meanwhile cannot make
a read endless. Reads use an ephemeral pull consumer with no acks (reading
never changes the stream) that is deleted at the end and would expire on its
own if the reader died.

``--node '*'`` reads every node and merges them by record time (ties broken
by node id, then seq); each node's own order is always kept, whatever the
clocks say.

The NATS client (nats-py, with ssl) is imported inside the functions that
talk to a server, never at module level: importing the fleet's constants and
parsers (the CLI does, for every command) must not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from replay.fleet.errors import (
    FleetConnectionError,
    FleetDataError,
    FleetError,
    NodeNotFoundError,
    StreamNotFoundError,
)
from replay.fleet.message import (
    ALL_NODES,
    DEFAULT_STREAM,
    MessageFormatError,
    ShippedRecord,
    check_node,
    check_stream,
    decode,
    node_of_subject,
)

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js.client import JetStreamContext

T = TypeVar("T")

#: Messages asked for per pull request.
FETCH_BATCH = 512

#: Seconds one pull may wait for the server before the read is called broken.
FETCH_TIMEOUT_S = 5.0

#: Consecutive empty pulls tolerated while messages are still expected.
MAX_EMPTY_FETCHES = 3

#: Seconds the synchronous side waits for the next item before giving up.
HANDOVER_TIMEOUT_S = 120.0

#: Items buffered between the reader thread and the caller.
HANDOVER_QUEUE = 2048

#: An ephemeral consumer left behind by a dead reader is removed after this.
CONSUMER_INACTIVE_S = 60.0

CONNECT_TIMEOUT_S = 5


@attrs.frozen(slots=True)
class StreamMessage:
    """One message as stored: where it is and its raw body (decoded later).

    Why raw: ``verify`` must report a malformed message as a problem at its
    stream position, while view/audit must refuse it; the choice is the
    caller's.
    """

    subject: str
    stream_seq: int
    data: bytes
    msg_id: str | None


def split_servers(nats_url: str) -> list[str]:
    """``nats://a:4222,nats://b:4222`` -> a list (a cluster's seed servers)."""
    servers = [s.strip() for s in nats_url.split(",") if s.strip()]
    if not servers:
        raise FleetConnectionError("no NATS server URL given")
    return servers


async def connect(
    nats_url: str,
    *,
    name: str = "sandboxctl",
    creds: str | None = None,
    closed_cb: Callable[[], Awaitable[None]] | None = None,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
) -> NATS:
    """One connection attempt, no automatic reconnect.

    Why no automatic reconnect: the client's reconnect buffer would re-send
    publishes from a dead connection out of our control; the shipper
    reconnects itself and resumes from what the stream acknowledges, and a
    reader simply fails.
    """
    import nats  # loaded with the first connection (see the module docstring)
    import nats.errors

    servers = split_servers(nats_url)

    seen: list[Exception] = []

    async def remember(exc: Exception) -> None:
        # nats-py reports why each try failed here; the final error only says
        # "no servers available", so the last cause is kept for the message.
        seen.append(exc)
        del seen[:-1]
        if error_cb is not None:
            await error_cb(exc)

    try:
        # nats-py retries the initial connect for ever when
        # max_reconnect_attempts is 0; 1 means "each server at most twice",
        # reconnect_time_wait spaces those tries. The shipper backs off itself.
        return await asyncio.wait_for(
            nats.connect(
                servers=servers,
                name=name,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.05,
                connect_timeout=CONNECT_TIMEOUT_S,
                user_credentials=creds,
                closed_cb=closed_cb,
                disconnected_cb=closed_cb,
                error_cb=remember,
            ),
            timeout=2 * len(servers) * (CONNECT_TIMEOUT_S + 1),
        )
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        why = str(exc) or type(exc).__name__
        if seen and isinstance(exc, nats.errors.NoServersError):
            why = str(seen[-1]) or type(seen[-1]).__name__
        raise FleetConnectionError(f"cannot reach NATS at {nats_url}: {why}") from None


async def list_nodes(js: JetStreamContext, stream: str) -> list[str]:
    """The node ids that have records on ``stream``, sorted."""
    import nats.js.errors

    try:
        info = await js.stream_info(stream, subjects_filter=f"{stream}.*")
    except nats.js.errors.NotFoundError:
        raise StreamNotFoundError(stream) from None
    subjects = info.state.subjects or {}
    nodes = []
    for subject in subjects:
        with contextlib.suppress(MessageFormatError):
            nodes.append(node_of_subject(stream, subject))
    return sorted(nodes)


async def subject_messages(
    js: JetStreamContext, stream: str, subject: str, *, start_seq: int = 0
) -> AsyncIterator[StreamMessage]:
    """Every message on ``subject`` at the time of the call, in stream order.

    ``start_seq``: only messages at or after this stream sequence.
    """
    import nats.errors
    import nats.js.errors
    from nats.js import api

    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE if start_seq else api.DeliverPolicy.ALL,
        opt_start_seq=start_seq or None,
        filter_subject=subject,
        inactive_threshold=CONSUMER_INACTIVE_S,
        mem_storage=True,
    )
    try:
        sub = await js.pull_subscribe(subject, stream=stream, config=config)
    except nats.js.errors.NotFoundError:
        raise StreamNotFoundError(stream) from None
    consumer: str | None = None
    try:
        info = await sub.consumer_info()
        consumer = info.name
        remaining = int(info.num_pending or 0)
        empty = 0
        while remaining > 0:
            try:
                msgs = await sub.fetch(min(FETCH_BATCH, remaining), timeout=FETCH_TIMEOUT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                msgs = []
            if not msgs:
                empty += 1
                if empty >= MAX_EMPTY_FETCHES:
                    raise FleetConnectionError(
                        f"stream {stream}: {remaining} messages of {subject} expected, "
                        "the server sends none"
                    )
                continue
            empty = 0
            for m in msgs:
                remaining -= 1
                yield StreamMessage(
                    subject=m.subject,
                    stream_seq=m.metadata.sequence.stream,
                    data=m.data,
                    msg_id=(m.headers or {}).get("Nats-Msg-Id"),
                )
                if remaining <= 0:
                    break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, consumer)


async def node_messages(
    js: JetStreamContext, stream: str, node: str
) -> AsyncIterator[StreamMessage]:
    """One node's messages in stream order; NodeNotFoundError if it has none."""
    check_node(node)
    nodes = await list_nodes(js, stream)
    if node not in nodes:
        raise NodeNotFoundError(stream, node, nodes)
    async for m in subject_messages(js, stream, f"{stream}.{node}"):
        yield m


def decode_strict(m: StreamMessage) -> ShippedRecord:
    """Decode for the read tools: a malformed message is an error naming where it is."""
    try:
        rec = decode(m.data, subject=m.subject, stream_seq=m.stream_seq)
    except MessageFormatError as exc:
        raise FleetDataError(f"{m.subject} stream seq {m.stream_seq}: {exc}") from None
    subject_node = m.subject.rsplit(".", 1)[-1]
    if rec.node != subject_node:
        raise FleetDataError(
            f"{m.subject} stream seq {m.stream_seq}: record of node {rec.node} "
            f"on the subject of node {subject_node}"
        )
    return rec


async def _merged_by_time(
    js: JetStreamContext, stream: str, nodes: list[str]
) -> AsyncIterator[ShippedRecord]:
    """All ``nodes`` merged by (time_ns, node, seq), each node's order kept."""
    iters = {n: aiter(node_messages(js, stream, n)) for n in nodes}
    heap: list[tuple[int, str, int, ShippedRecord]] = []

    async def push(n: str) -> None:
        try:
            m = await anext(iters[n])
        except StopAsyncIteration:
            return
        rec = decode_strict(m)
        heapq.heappush(heap, (rec.time_ns, n, rec.seq, rec))

    try:
        for n in nodes:
            await push(n)
        while heap:
            _, n, _, rec = heapq.heappop(heap)
            yield rec
            await push(n)
    finally:
        for it in iters.values():
            with contextlib.suppress(Exception):
                await it.aclose()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def _jetstream(nats_url: str, creds: str | None) -> AsyncIterator[Any]:
    """JetStream on a fresh connection, closed after; NATS errors become FleetConnectionError."""
    import nats.errors

    nc = await connect(nats_url, creds=creds)
    try:
        yield nc.jetstream()
    except nats.errors.Error as exc:
        raise FleetConnectionError(f"NATS at {nats_url}: {exc or type(exc).__name__}") from None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _records(
    nats_url: str, stream: str, node: str, creds: str | None
) -> AsyncIterator[ShippedRecord]:
    async with _jetstream(nats_url, creds) as js:
        if node == ALL_NODES:
            nodes = await list_nodes(js, stream)
            if not nodes:
                raise NodeNotFoundError(stream, node, [])
            async for rec in _merged_by_time(js, stream, nodes):
                yield rec
        else:
            async for m in node_messages(js, stream, node):
                yield decode_strict(m)


async def _raw(
    nats_url: str, stream: str, node: str, creds: str | None
) -> AsyncIterator[StreamMessage]:
    async with _jetstream(nats_url, creds) as js:
        async for m in node_messages(js, stream, node):
            yield m


def run_async_iter(factory: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Drive an async iterator on a private thread and loop; yield its items here.

    Why a thread: callers are synchronous (CLI, ``replay.load``) and may
    already be inside an event loop of their own, where ``asyncio.run``
    would fail. The queue is bounded so a slow consumer slows the reader.
    """
    handover: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=HANDOVER_QUEUE)
    stop = threading.Event()

    async def pump() -> None:
        try:
            async for item in factory():
                while True:
                    if stop.is_set():
                        return
                    try:
                        handover.put_nowait(("item", item))
                        break
                    except queue.Full:
                        await asyncio.sleep(0.005)
        except BaseException as exc:
            if not stop.is_set():
                _put_final(handover, ("error", exc), stop)
            return
        _put_final(handover, ("end", None), stop)

    thread = threading.Thread(target=lambda: asyncio.run(pump()), name="fleet-reader", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = handover.get(timeout=HANDOVER_TIMEOUT_S)
            except queue.Empty:
                raise FleetConnectionError(
                    f"no data from the NATS reader for {HANDOVER_TIMEOUT_S:.0f}s"
                ) from None
            if kind == "item":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                handover.get_nowait()
        thread.join(timeout=FETCH_TIMEOUT_S * 2)


def _put_final(
    q: queue.Queue[tuple[str, Any]], item: tuple[str, Any], stop: threading.Event
) -> None:
    # Bounded: the consumer either takes items or sets ``stop``.
    for _ in range(int(HANDOVER_TIMEOUT_S / 0.01)):
        if stop.is_set():
            return
        try:
            q.put(item, timeout=0.01)
            return
        except queue.Full:
            continue


def fleet_records(
    nats_url: str,
    stream: str = DEFAULT_STREAM,
    node: str = ALL_NODES,
    *,
    creds: str | None = None,
) -> Iterator[ShippedRecord]:
    """The records of ``node`` (or every node, merged by time, for ``'*'``).

    Record-like: each has ``seq``, ``time_ns``, ``payload``, ``digest``,
    ``segment``, ``offset`` as ``eventlog.Record`` has, plus ``node``.
    Raises StreamNotFoundError, NodeNotFoundError, FleetConnectionError,
    FleetDataError (a malformed message; ``verify`` reports those instead).
    """
    check_stream(stream)
    if node != ALL_NODES:
        check_node(node)
    return run_async_iter(lambda: _records(nats_url, stream, node, creds))


def stream_messages(
    nats_url: str, stream: str, node: str, *, creds: str | None = None
) -> Iterator[StreamMessage]:
    """One node's raw messages in stream order (for verify)."""
    check_stream(stream)
    check_node(node)
    return run_async_iter(lambda: _raw(nats_url, stream, node, creds))


def fleet_nodes(
    nats_url: str, stream: str = DEFAULT_STREAM, *, creds: str | None = None
) -> list[str]:
    """The node ids with records on ``stream``."""
    check_stream(stream)

    async def go() -> list[str]:
        import nats.errors

        nc = await connect(nats_url, creds=creds)
        try:
            return await list_nodes(nc.jetstream(), stream)
        except nats.errors.Error as exc:
            raise FleetConnectionError(f"NATS at {nats_url}: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    return _run_sync(go)


def _run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one coroutine to completion on a private thread (safe inside a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, name="fleet-call", daemon=True)
    t.start()
    t.join(timeout=HANDOVER_TIMEOUT_S)
    if t.is_alive():
        raise FleetConnectionError(f"NATS call did not finish within {HANDOVER_TIMEOUT_S:.0f}s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


__all__ = [
    "ALL_NODES",
    "FleetError",
    "StreamMessage",
    "connect",
    "decode_strict",
    "fleet_nodes",
    "fleet_records",
    "list_nodes",
    "node_messages",
    "run_async_iter",
    "stream_messages",
    "subject_messages",
]
