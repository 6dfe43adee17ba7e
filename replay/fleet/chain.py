"""Re-verifying a node's hash chain from what is on the stream alone.

Why: the point of shipping is that the fleet's copy can be audited when the
node is gone or not trusted. Each message carries seq, time_ns, batch_left,
durable_seq, the record's format version, the payload's exact bytes and the
digests, so the chain digest of FORMAT.md (blake2b-256 over prev digest +
the record's signed header bytes + payload, keyed for keyed logs) is
recomputed here from seq 1 with eventlog's own functions: the signed header
comes from ``eventlog.signed_header`` for the record's own format version
(32 bytes in version 2, with durable_seq; 24 in version 1), so a log that was
upgraded from version 1 verifies across the change.

What is checked, in stream order, for one node:

* every message decodes and names the node of its subject;
* seqs run 1, 2, 3, ... with no gap and no repeat (a re-sent or inserted copy
  shows up as a repeat, a lost or deleted message as a gap);
* each record's digest is the digest of (digest of the record before it,
  its header, its payload): an edited payload, header or a record spliced
  in with a recomputed digest all break it;
* a batch (``batch_left`` counting down to 0) is never left incomplete or
  interleaved;
* the format version never goes back (a log is upgraded, never downgraded);
* optionally, that a head digest an auditor pinned earlier is in the chain.

After a problem the check re-synchronises on the record's claimed digest so
one bad record is reported once and the records after it are still judged.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from eventlog import signed_header
from eventlog.format import ZERO_DIGEST, chain_digest
from replay.fleet.message import MessageFormatError, ShippedRecord, decode

#: Problems listed in a report before the rest are only counted.
MAX_PROBLEMS = 1000

#: Problem kinds, stable strings for scripts.
MALFORMED = "malformed"
WRONG_NODE = "wrong-node"
GAP = "gap"
DUPLICATE = "duplicate"
DIGEST = "digest"
CHAIN = "chain"
BATCH = "batch"
KEY_REQUIRED = "key-required"
HEAD = "head"
EMPTY = "empty"
VERSION = "version"


@attrs.frozen(slots=True)
class ChainProblem:
    """One defect, located by node, record seq (if known) and stream seq."""

    node: str
    kind: str
    seq: int | None
    stream_seq: int | None
    detail: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return attrs.asdict(self)

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "?"
        if self.stream_seq is not None:
            where += f" (stream seq {self.stream_seq})"
        return f"{self.node}: {where}: {self.kind}: {self.detail}"


@attrs.frozen(slots=True)
class NodeVerifyReport:
    """What ``verify`` found for one node's records on the stream."""

    node: str
    records: int
    messages: int
    first_seq: int | None
    last_seq: int | None
    head: bytes
    problems: tuple[ChainProblem, ...]
    problems_total: int

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.problems_total == 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (digests as hex)."""
        return {
            "node": self.node,
            "ok": self.ok,
            "records": self.records,
            "messages": self.messages,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head": self.head.hex(),
            "problems_total": self.problems_total,
            "problems": [p.to_dict() for p in self.problems],
        }


def record_digest(prev: bytes, rec: ShippedRecord, key: bytes | None = None) -> bytes:
    """The chain digest ``rec`` must have if the record before it has digest ``prev``."""
    header = signed_header(
        len(rec.payload_bytes),
        rec.seq,
        rec.time_ns,
        rec.batch_left,
        rec.durable_seq,
        version=rec.version,
    )
    return chain_digest(prev, header, rec.payload_bytes, key or b"")


class ChainChecker:
    """Incremental verifier of one node's records in stream order.

    Why a class: the shipper's tests, ``verify`` over the network and the
    benchmark all feed records one at a time; memory stays constant.
    """

    def __init__(
        self,
        node: str,
        *,
        key: bytes | None = None,
        head: bytes | None = None,
    ) -> None:
        self.node = node
        self.key = key
        self.head = head
        self.head_seen = False
        self.expected = 1
        self.prev = ZERO_DIGEST
        self.batch_left: int | None = None
        self.version = 0
        self.records = 0
        self.messages = 0
        self.first_seq: int | None = None
        self.problems: list[ChainProblem] = []
        self.problems_total = 0
        self._key_reported = False

    def _problem(self, kind: str, seq: int | None, stream_seq: int | None, detail: str) -> None:
        self.problems_total += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(ChainProblem(self.node, kind, seq, stream_seq, detail))

    def feed_bytes(self, data: bytes, subject: str, stream_seq: int | None) -> ShippedRecord | None:
        """Check one raw message body; the decoded record, or None when malformed.

        A malformed body is a problem, not an exception: ``verify`` must list
        what is wrong with a stream, whatever is on it.
        """
        self.messages += 1
        try:
            rec = decode(data, subject=subject, stream_seq=stream_seq or 0)
        except MessageFormatError as exc:
            self._problem(MALFORMED, None, stream_seq, str(exc))
            return None
        self._check(rec, stream_seq)
        return rec

    def feed(self, rec: ShippedRecord) -> None:
        """Check one decoded record."""
        self.messages += 1
        self._check(rec, rec.stream_seq or None)

    def _check(self, rec: ShippedRecord, sseq: int | None) -> None:
        if rec.node != self.node:
            self._problem(
                WRONG_NODE, rec.seq, sseq, f"record of node {rec.node} on this node's subject"
            )
            return
        if rec.seq < self.expected:
            self._problem(
                DUPLICATE,
                rec.seq,
                sseq,
                f"seq {rec.seq} again after seq {self.expected - 1} "
                "(re-sent, inserted or reordered)",
            )
            return
        self.records += 1
        if self.first_seq is None:
            self.first_seq = rec.seq
        if rec.seq > self.expected:
            missing = (
                f"seq {self.expected}"
                if rec.seq == self.expected + 1
                else f"seqs {self.expected}..{rec.seq - 1}"
            )
            self._problem(GAP, rec.seq, sseq, f"{missing} missing before it")
            # The chain cannot be followed across a gap: take the record's
            # own claim about its predecessor and judge the rest from there.
            self.prev = rec.prev_digest
        else:
            self._check_batch(rec, sseq)
        if rec.version < self.version:
            self._problem(
                VERSION,
                rec.seq,
                sseq,
                f"format version {rec.version} after version {self.version}: "
                "a log is never downgraded",
            )
        self.version = rec.version
        self._check_digest(rec, sseq)
        self.expected = rec.seq + 1
        self.prev = rec.digest
        self.batch_left = rec.batch_left
        if self.head is not None and rec.digest == self.head:
            self.head_seen = True

    def _check_batch(self, rec: ShippedRecord, sseq: int | None) -> None:
        if self.batch_left and rec.batch_left != self.batch_left - 1:
            self._problem(
                BATCH,
                rec.seq,
                sseq,
                f"batch_left {rec.batch_left} after {self.batch_left}: "
                "a batch was cut or interleaved",
            )

    def _check_digest(self, rec: ShippedRecord, sseq: int | None) -> None:
        if self.key is None and rec.keyed:
            if not self._key_reported:
                self._key_reported = True
                self._problem(
                    KEY_REQUIRED,
                    rec.seq,
                    sseq,
                    "the node's chain is keyed: digests cannot be checked without the key",
                )
            return
        expected = record_digest(self.prev, rec, self.key)
        if expected == rec.digest:
            if rec.prev_digest != self.prev:
                self._problem(CHAIN, rec.seq, sseq, "the message's prev digest is not the chain's")
            return
        if record_digest(rec.prev_digest, rec, self.key) == rec.digest:
            self._problem(
                CHAIN,
                rec.seq,
                sseq,
                f"digest is consistent with the record but it does not chain on seq {rec.seq - 1} "
                "(a record replaced or re-signed)",
            )
        else:
            self._problem(
                DIGEST,
                rec.seq,
                sseq,
                "digest does not match the record's content (payload or header altered)",
            )

    def report(self) -> NodeVerifyReport:
        """Finish: trailing incomplete batch, pinned head, emptiness."""
        if self.batch_left:
            self._problem(
                BATCH,
                self.expected - 1,
                None,
                f"the last record leaves {self.batch_left} records of its batch missing",
            )
        if self.head is not None and not self.head_seen:
            self._problem(HEAD, None, None, f"pinned head {self.head.hex()} is not in the chain")
        if self.messages == 0:
            self._problem(EMPTY, None, None, "no records on the stream")
        return NodeVerifyReport(
            node=self.node,
            records=self.records,
            messages=self.messages,
            first_seq=self.first_seq,
            last_seq=self.expected - 1 if self.records else None,
            head=self.prev,
            problems=tuple(self.problems),
            problems_total=self.problems_total,
        )


def verify_records(
    node: str,
    records: Iterable[ShippedRecord],
    *,
    key: bytes | None = None,
    head: bytes | None = None,
) -> NodeVerifyReport:
    """Verify decoded records of one node (in stream order)."""
    checker = ChainChecker(node, key=key, head=head)
    for rec in records:
        checker.feed(rec)
    return checker.report()
