"""Where a shipper resumes, and whether it may: the stream's side of a (re)connect.

Why a module of its own: before the first publish of every connection the
shipper must know what the stream holds for its node and check that it is
this log's history - the rules of "resumable", "one history per node" and
"no hole behind the acks" in docs/FLEET.md. They only read the stream and
the log; the publishing itself is ``replay.fleet.ship``'s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import eventlog
from eventlog.format import ZERO_DIGEST
from replay.fleet.config import ShipConfig
from replay.fleet.errors import DivergedError, FleetError, ShipFatalError
from replay.fleet.feeder import has_log
from replay.fleet.message import MessageFormatError, decode
from replay.fleet.source import subject_messages

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

__all__ = ["check_local", "check_unacked", "ensure_stream", "stream_tail"]

log = logging.getLogger("replay.fleet.ship")


async def ensure_stream(js: JetStreamContext, cfg: ShipConfig) -> None:
    """The stream exists and takes ``<stream>.<node>`` (created when missing)."""
    import nats.js.errors  # the client: only once connected (ship.py)
    from nats.js import api

    want = f"{cfg.stream}.*"
    for _ in range(2):  # a racing shipper may create it between our two calls
        try:
            info = await js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(
                    name=cfg.stream,
                    subjects=[want],
                    storage=api.StorageType.FILE,
                    retention=api.RetentionPolicy.LIMITS,
                    duplicate_window=cfg.duplicate_window,
                    num_replicas=cfg.replicas,
                    description="sandbox event logs, one subject per node (sandboxctl ship)",
                )
                log.info("created stream %s (subjects %s)", cfg.stream, want)
                return
            except nats.js.errors.BadRequestError:
                continue
        subjects = info.config.subjects or []
        if want not in subjects and ">" not in subjects and f"{cfg.stream}.>" not in subjects:
            raise ShipFatalError(
                f"stream {cfg.stream} exists but does not take subject "
                f"{cfg.subject} (its subjects: {', '.join(subjects)})"
            )
        return
    raise FleetError(f"stream {cfg.stream} could not be created or found")


async def stream_tail(js: JetStreamContext, cfg: ShipConfig) -> tuple[int, bytes, int]:
    """(last record seq, its digest, its stream seq) the stream holds for this node."""
    import nats.js.errors

    try:
        msg = await js.get_last_msg(cfg.stream, cfg.subject)
    except nats.js.errors.NotFoundError:
        return 0, ZERO_DIGEST, 0
    try:
        rec = decode(msg.data or b"", subject=cfg.subject, stream_seq=msg.seq or 0)
    except MessageFormatError as exc:
        raise DivergedError(
            f"the last message on {cfg.subject} (stream seq {msg.seq}) is not a shipped "
            f"record ({exc}); refusing to extend it"
        ) from None
    if rec.node != cfg.node:
        raise DivergedError(f"the last message on {cfg.subject} is a record of node {rec.node}")
    return rec.seq, rec.digest, int(msg.seq or 0)


def check_local(cfg: ShipConfig, last_seq: int, last_digest: bytes) -> None:
    """The stream's last record must be this log's record (DivergedError otherwise)."""
    if last_seq == 0:
        return
    found = None
    if has_log(cfg.state_dir):
        found = eventlog.read_record(cfg.state_dir, last_seq, key=cfg.key)
    if found is None:
        raise DivergedError(
            f"{cfg.subject} holds records up to seq {last_seq} but the log in "
            f"{cfg.state_dir} has fewer: another host ships as node "
            f"{cfg.node}, or this log was replaced"
        )
    if found.digest != last_digest:
        raise DivergedError(
            f"{cfg.subject} seq {last_seq} has digest {last_digest.hex()[:16]}... but the "
            f"log in {cfg.state_dir} has {found.digest.hex()[:16]}... at that seq: "
            f"different histories under node {cfg.node}"
        )


async def check_unacked(
    js: JetStreamContext, cfg: ShipConfig, acked_seq: int, acked_sseq: int, tail_seq: int
) -> None:
    """After a broken connection: is what the stream stored beyond our acks in order?

    Publishes are pipelined, so when one fails a later one may already be
    stored. Normally the unacknowledged ones were all stored (only their
    acks were lost) or none was; anything else - a hole, a repeat - cannot
    be mended by appending, so the shipper stops (ShipFatalError) rather
    than extend a broken chain. Bounded by the messages after the last ack
    (at most about ``window`` of them).
    """
    if not acked_sseq or tail_seq == acked_seq:
        return
    if tail_seq < acked_seq:
        log.warning(
            "ship %s: the stream holds up to seq %d but acknowledged seq %d: the server "
            "lost acknowledged records; sending them again",
            cfg.subject,
            tail_seq,
            acked_seq,
        )
        return
    expected = acked_seq + 1
    async for m in subject_messages(js, cfg.stream, cfg.subject, start_seq=acked_sseq + 1):
        try:
            seq = decode(m.data, subject=m.subject, stream_seq=m.stream_seq).seq
        except MessageFormatError as exc:
            raise ShipFatalError(
                f"{cfg.subject} stream seq {m.stream_seq} is not a shipped record: {exc}"
            ) from None
        if seq != expected:
            raise ShipFatalError(
                f"{cfg.subject} holds seq {seq} at stream seq {m.stream_seq} where seq "
                f"{expected} belongs (a failed publish with a later one stored); run "
                "'sandboxctl --nats URL --node NODE verify' and repair the stream"
            )
        expected += 1
        if seq >= tail_seq:
            break
