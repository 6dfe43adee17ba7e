"""The demo's parent side of the writer child: start it, read its acks, SIGKILL it.

Why apart from the scenario: step 3 ("nothing acknowledged is lost to
kill -9") needs a real process killed mid-stream, and the pipe reading,
the kill moment and the last acks still in the pipe after the kill are
process plumbing, not part of the story ``replay.demo`` tells. The child's
own side is ``replay.demo_child`` (one JSON line per acknowledged command).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

import attrs

__all__ = ["ACKS_AFTER_INTENT", "ACKS_WITHOUT_NETNS", "CHILD_TIMEOUT_S", "Outcome", "WriterChild"]

#: Acks the parent waits for after the interrupted intent before it kills.
ACKS_AFTER_INTENT = 6
#: Acks it waits for when running without namespaces (no intent to wait for).
ACKS_WITHOUT_NETNS = 10
CHILD_TIMEOUT_S = 60.0


@attrs.define
class Outcome:
    """What the killed child acknowledged, its namespace intent, how it ended."""

    acks: list[dict[str, Any]] = attrs.field(factory=list)
    intent: dict[str, Any] | None = None
    status: int | None = None
    #: The child's stderr (the crash point's own note, any error).
    said: str = ""

    def take(self, lines: list[bytes]) -> None:
        """Record whole JSON lines from the pipe: acks, and the intent (an ack too)."""
        for line in lines:
            msg = json.loads(line)
            if msg["k"] in ("ack", "intent"):
                self.acks.append(msg)
            if msg["k"] == "intent":
                self.intent = msg

    def since_intent(self) -> list[dict[str, Any]]:
        """The acks after the intent (all of them while there is none)."""
        if self.intent is None:
            return self.acks
        return self.acks[self.acks.index(self.intent) + 1 :]


class WriterChild:
    """``python -m replay.demo child ...``, killed once it has acked enough."""

    def __init__(self, state_dir: str, netns_dir: str, *, use_netns: bool) -> None:
        self.cmd = [sys.executable, "-m", "replay.demo", "child", state_dir, netns_dir]
        if not use_netns:
            self.cmd.append("--no-netns")
        self.use_netns = use_netns
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self) -> Outcome:
        """Run the child and kill it mid-stream; what it said is kept aside."""
        with tempfile.TemporaryFile() as errors:
            out = self._run(errors)
            errors.seek(0)
            out.said = errors.read().decode(errors="replace").strip()
        return out

    def kill(self) -> None:
        """After a failure elsewhere: never leave the child running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def _run(self, errors: IO[bytes]) -> Outcome:
        read_fd, write_fd = os.pipe()
        proc = self.proc = subprocess.Popen(
            [*self.cmd, str(write_fd)],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stderr=errors,
        )
        os.close(write_fd)
        out = Outcome()
        buf = b""
        wanted = ACKS_AFTER_INTENT if self.use_netns else ACKS_WITHOUT_NETNS
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                ready, _, _ = select.select([read_fd], [], [], 0.5)
                chunk = os.read(read_fd, 65536) if ready else b""
                if ready and not chunk:
                    break  # the child closed the pipe: it died
                *lines, buf = (buf + chunk).split(b"\n")
                out.take(lines)
                if len(out.since_intent()) >= wanted and (
                    out.intent is not None or not self.use_netns
                ):
                    proc.send_signal(signal.SIGKILL)  # mid-stream: it is still writing
                    break
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            out.status = proc.wait()
            self.proc = None
            buf += _drain(read_fd)  # acks written just before the kill
            os.close(read_fd)
        # A line cut by the kill was never a whole acknowledgement.
        out.take(buf.split(b"\n")[:-1])
        return out


def _drain(fd: int) -> bytes:
    """What is still in the pipe, without blocking."""
    data = b""
    with contextlib.suppress(OSError):
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data
