"""A throw-away local ``nats-server -js`` for tests, the benchmark and trying things.

Why it exists: the fleet code is only worth trusting if it has been run against
a real JetStream server that dies and comes back, so the tests and the
benchmark start one of their own. Both need the same things - a free port on
127.0.0.1, a private store directory, "wait until it accepts connections",
SIGKILL and a restart on the *same* port and store dir (so JetStream recovers
what it had) - so they live here once. Nothing here is used by the shipper
itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import attrs

#: Where Debian/Ubuntu put the binary; not on every user's PATH.
_FALLBACK_PATHS = ("/usr/sbin/nats-server", "/usr/local/bin/nats-server")

#: How long a start may take before it is called a failure.
START_TIMEOUT_S = 15.0


class NatsServerError(RuntimeError):
    """The local server could not be found, started or stopped."""


def find_nats_server() -> str | None:
    """The nats-server binary's path, or None when it is not installed."""
    path = shutil.which("nats-server")
    if path:
        return path
    for candidate in _FALLBACK_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            # The server greets with an INFO line once it is serving clients.
            s.settimeout(0.5)
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


@attrs.define
class LocalNatsServer:
    """One ``nats-server -js`` process bound to 127.0.0.1.

    ``start`` / ``kill`` / ``stop`` / ``restart`` may be called repeatedly; the
    port and store directory stay the same so a restarted server recovers its
    streams from disk, which is what a real outage looks like to a client.
    """

    store_dir: Path
    port: int = attrs.field(factory=free_port)
    binary: str | None = attrs.field(factory=find_nats_server)
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)

    @property
    def url(self) -> str:
        """The client URL, always loopback."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The current process id, if started."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server and wait (bounded) until it greets clients."""
        if self.running:
            return
        if self.binary is None:
            raise NatsServerError("nats-server is not installed (see scripts/ensure-nats-server)")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path or (self.store_dir.parent / f"nats-server-{self.port}.log")
        argv = [
            self.binary,
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-l",
            str(log),
        ]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._proc.returncode} at start; see {log}"
                )
            if _accepts(self.port):
                return
            time.sleep(0.05)
        self.kill()
        raise NatsServerError(f"nats-server did not accept connections within {START_TIMEOUT_S}s")

    def kill(self) -> None:
        """SIGKILL the server: an outage with no goodbye, as a crash or a cut cable."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the server and wait for it (SIGKILL if it lingers)."""
        self._end(signal.SIGTERM)

    def restart(self) -> None:
        """Kill and start again on the same port and store directory."""
        self.kill()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None

    def __enter__(self) -> LocalNatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(NatsServerError):
            self.stop()
